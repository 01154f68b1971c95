"""Publishing: from the editors' queue to an issue sent at a tick of the cadence. Sending
itself is `delivery`'s job; the queue's rows, the issues and the tick state are the store's.

One module per job, each importing only those above it in this list:

    calendar   cadence maths: the cron trigger, the coming ticks, local times
    queue      the queue as the editors see it: files queued, expected ticks, the next issue
    build      picking the due articles, building and checking an issue (`check_issue`)
    ticks      one tick under the sending lease, the scheduler's wake-up, the tick state
    plan       `run --dry-run`: what a tick would do now, without doing it

What the CLI, the workspace and the scheduler call is re-exported here.
"""

from newsletter.alerts import HeldArticle
from newsletter.delivery import ProgressFactory
from newsletter.publish.build import BuiltIssue, Picked, build_checked, build_issue, pick
from newsletter.publish.calendar import (
    cadence_trigger,
    latest_tick,
    next_ticks,
    parse_local_time,
)
from newsletter.publish.plan import PlannedArticle, Prepared, RunPlan, Unfinished, plan_run
from newsletter.publish.queue import (
    AUTOMATIC,
    NextIssue,
    QueueEntry,
    QueueView,
    choose_next_layout,
    chosen_layout,
    held_articles,
    move_article,
    next_issue,
    queue_add,
    queue_view,
    release_article,
    remove_article,
    set_not_before,
    sync_queue,
)
from newsletter.publish.ticks import (
    NO_ACTIVE_SUBSCRIBER,
    TickContext,
    TickResult,
    missed_tick,
    no_audience,
    prepare_next,
    publish_tick,
    scheduled_work,
)
from newsletter.store.meta import SCHEDULER_STARTED

__all__ = [
    "AUTOMATIC",
    "NO_ACTIVE_SUBSCRIBER",
    "no_audience",
    "SCHEDULER_STARTED",
    "BuiltIssue",
    "HeldArticle",
    "NextIssue",
    "Picked",
    "PlannedArticle",
    "ProgressFactory",
    "QueueEntry",
    "QueueView",
    "RunPlan",
    "Prepared",
    "Unfinished",
    "TickContext",
    "TickResult",
    "build_checked",
    "build_issue",
    "cadence_trigger",
    "choose_next_layout",
    "chosen_layout",
    "held_articles",
    "missed_tick",
    "latest_tick",
    "move_article",
    "next_issue",
    "next_ticks",
    "parse_local_time",
    "pick",
    "plan_run",
    "prepare_next",
    "publish_tick",
    "queue_add",
    "queue_view",
    "release_article",
    "remove_article",
    "scheduled_work",
    "set_not_before",
    "sync_queue",
]
