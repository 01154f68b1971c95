"""The delivery log records batches, not recipients (issue 22).

Planning wrote one row per active subscriber and every row was written three times (planned,
claimed, recorded): 167 MB per million-recipient issue. An issue's audience is now a plan row
(`delivery_plans`), each claim one `delivery_batches` row, and `deliveries` keeps only the
recipients whose story differs from their batch's. Existing rows are turned into that shape
(see `_convert`), answering every question as before.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 09:45:00
"""

from __future__ import annotations

import bisect

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A database made by `metadata.create_all` (adopted at 0001) has the tables already.
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "delivery_plans" not in existing:
        _create_tables()
    _convert()


def _create_tables() -> None:
    op.create_table(
        "delivery_plans",
        sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id"), primary_key=True),
        sa.Column("segment", sa.String(40), nullable=False),
        sa.Column("last_id", sa.Integer, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("claimed_to", sa.Integer, nullable=False),
        sa.Column("next_batch", sa.Integer, nullable=False),
        sa.Column("planned_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "delivery_batches",
        sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id"), primary_key=True),
        sa.Column("number", sa.Integer, primary_key=True),
        sa.Column("first_id", sa.Integer, nullable=False),
        sa.Column("last_id", sa.Integer, nullable=False),
        sa.Column("recipients", sa.Integer, nullable=False),
        sa.Column("skipped", sa.Integer, nullable=False),
        sa.Column("excluded", sa.Text, nullable=False),
        sa.Column("listed", sa.Boolean, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("worker", sa.String(100)),
        sa.Column("claimed_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("message_id", sa.String(200)),
        sa.Column("error", sa.Text),
        sa.Column("retryable", sa.Boolean),
        sa.Column("attempts", sa.Integer, nullable=False),
    )
    op.create_index("ix_delivery_batches_state", "delivery_batches", ["issue_id", "state"])


_deliveries = sa.table(
    "deliveries",
    sa.column("issue_id", sa.Integer),
    sa.column("subscriber_id", sa.Integer),
    sa.column("state", sa.String),
    sa.column("batch", sa.Integer),
    sa.column("worker", sa.String),
    sa.column("claimed_at", sa.DateTime),
    sa.column("message_id", sa.String),
    sa.column("error", sa.Text),
    sa.column("retryable", sa.Boolean),
    sa.column("attempts", sa.Integer),
    sa.column("updated_at", sa.DateTime),
)
_plans = sa.table(
    "delivery_plans",
    sa.column("issue_id", sa.Integer),
    sa.column("segment", sa.String),
    sa.column("last_id", sa.Integer),
    sa.column("size", sa.Integer),
    sa.column("claimed_to", sa.Integer),
    sa.column("next_batch", sa.Integer),
    sa.column("planned_at", sa.DateTime),
)
_batches = sa.table(
    "delivery_batches",
    sa.column("issue_id", sa.Integer),
    sa.column("number", sa.Integer),
    sa.column("first_id", sa.Integer),
    sa.column("last_id", sa.Integer),
    sa.column("recipients", sa.Integer),
    sa.column("skipped", sa.Integer),
    sa.column("excluded", sa.Text),
    sa.column("listed", sa.Boolean),
    sa.column("state", sa.String),
    sa.column("worker", sa.String),
    sa.column("claimed_at", sa.DateTime),
    sa.column("updated_at", sa.DateTime),
    sa.column("message_id", sa.String),
    sa.column("error", sa.Text),
    sa.column("retryable", sa.Boolean),
    sa.column("attempts", sa.Integer),
)
_issues = sa.table(
    "issues",
    sa.column("id", sa.Integer),
    sa.column("next_batch", sa.Integer),
    sa.column("created_at", sa.DateTime),
)
_subscribers = sa.table("subscribers", sa.column("id", sa.Integer))
_COLUMNS = [c.name for c in _deliveries.columns]


def _encode(first_id: int, ids: list[int]) -> str:
    """Offsets from first_id as runs, "3,17-18" (store.deliveries.encode_excluded; copied so
    this revision keeps working whatever the store becomes)."""
    runs: list[list[int]] = []
    for sid in sorted(ids):
        offset = sid - first_id
        if runs and runs[-1][1] == offset - 1:
            runs[-1][1] = offset
        else:
            runs.append([offset, offset])
    return ",".join(f"{lo}" if lo == hi else f"{lo}-{hi}" for lo, hi in runs)


class _Run:
    """Consecutive recipients (in id order) of one old batch in its usual state: one batch row."""

    def __init__(self, key: tuple, row: dict) -> None:
        self.key = key
        self.members: list[int] = []
        self.message_ids: set = set()
        self.named: list[dict] = []  # followers with a message id of their own
        self.skipped = 0
        self.claimed_at = row["claimed_at"] or row["updated_at"]
        self.updated_at = row["updated_at"] or row["claimed_at"]
        self.attempts = 1

    def close(self, kept: list[dict]) -> None:
        """Each recipient's own message id (a mail server's queue id, an outbox file's) is
        an answer of its own: those rows stay; one id for the batch goes on its row."""
        if len(self.message_ids) > 1:
            kept.extend(self.named)
        self.named = []

    def add(self, row: dict, follows: bool) -> None:
        self.members.append(row["subscriber_id"])
        if follows:
            self.message_ids.add(row["message_id"])
            if row["message_id"] is not None:
                self.named.append(row)
        for name in ("claimed_at", "updated_at"):
            value = row[name]
            if value is not None:
                mine = getattr(self, name)
                if mine is None or (value < mine if name == "claimed_at" else value > mine):
                    setattr(self, name, value)
        self.attempts = max(self.attempts, row["attempts"] or 1)


def _convert() -> None:
    """Each issue's per-recipient rows into a plan, batches and exceptions:

    - rows still pending past the last claimed id are the plan's unclaimed audience (the
      plan's size counts them); pending rows below it (released, or put back by the editor)
      stay as rows of their own, claimed alone;
    - each old batch whose id span overlaps no larger one's becomes one batch row under its
      number, in its usual state (state, worker, error); its rows in another state (refused,
      settled by an event) and each one's own message id where the batch had one per
      recipient (SMTP, the outbox) stay as rows of their own; subscribers inside its span who were
      not in it are its `excluded` ids; skipped rows are counted on the batch before them;
    - the rows of the other batches (a retry's, scattered over earlier spans) stay as rows
      of their own.
    """
    conn = op.get_bind()
    planned = set(conn.scalars(sa.select(_plans.c.issue_id)))
    for issue_id, next_batch, created_at in conn.execute(
        sa.select(_issues.c.id, _issues.c.next_batch, _issues.c.created_at).order_by(_issues.c.id)
    ).all():
        if issue_id not in planned:
            _convert_issue(conn, issue_id, next_batch or 0, created_at)


def _disjoint(spans: dict) -> set:
    """The old batches that become range batches: the largest first, each kept unless its id
    span overlaps one already kept (batches claimed by one sender in order never overlap; a
    retry's rows scattered over the earlier batches' ranges do)."""
    kept: list[tuple[int, int]] = []
    chosen = set()
    for number, (low, high, _) in sorted(spans.items(), key=lambda kv: (-kv[1][2], kv[0])):
        at = bisect.bisect_left(kept, (low, high))
        before = kept[at - 1] if at else None
        after = kept[at] if at < len(kept) else None
        if (before and before[1] >= low) or (after and after[0] <= high):
            continue
        kept.insert(at, (low, high))
        chosen.add(number)
    return chosen


def _convert_issue(conn: sa.Connection, issue_id: int, next_batch: int, created_at) -> None:
    mine = _deliveries.c.issue_id == issue_id
    usual: dict = {}  # old batch number -> (count, (state, worker, error, retryable))
    spans: dict = {}  # old batch number -> [lowest id, highest id, rows]
    for number, state, worker, error, retryable, low, high, n in conn.execute(
        sa.select(
            _deliveries.c.batch,
            _deliveries.c.state,
            _deliveries.c.worker,
            _deliveries.c.error,
            _deliveries.c.retryable,
            sa.func.min(_deliveries.c.subscriber_id),
            sa.func.max(_deliveries.c.subscriber_id),
            sa.func.count(),
        )
        .where(mine, _deliveries.c.state.notin_(("pending", "skipped")))
        .group_by(
            _deliveries.c.batch,
            _deliveries.c.state,
            _deliveries.c.worker,
            _deliveries.c.error,
            _deliveries.c.retryable,
        )
    ):
        if number is None:
            continue
        if number not in usual or n > usual[number][0]:
            usual[number] = (n, (state, worker, error, retryable))
        span = spans.setdefault(number, [low, high, 0])
        span[0], span[1], span[2] = min(span[0], low), max(span[1], high), span[2] + n
    ranged = _disjoint(spans)
    claimed_to = conn.scalar(
        sa.select(sa.func.max(_deliveries.c.subscriber_id)).where(
            mine, _deliveries.c.state != "pending"
        )
    )
    claimed_to = claimed_to or 0
    last_id, tail = conn.execute(
        sa.select(
            sa.func.max(_deliveries.c.subscriber_id),
            sa.func.count().filter(_deliveries.c.subscriber_id > claimed_to),
        ).where(mine)
    ).one()
    runs: list[_Run] = []
    kept: list[dict] = []
    early_skipped = 0
    result = conn.execute(
        sa.select(*_deliveries.columns)
        .where(mine, _deliveries.c.subscriber_id <= claimed_to)
        .order_by(_deliveries.c.subscriber_id)
        .execution_options(yield_per=5000)
    )
    for values in result:
        row = dict(zip(_COLUMNS, values, strict=True))
        own = (row["state"], row["worker"], row["error"], row["retryable"])
        if row["state"] == "pending":
            kept.append(row)
            continue
        if row["state"] == "skipped":
            if runs:
                runs[-1].skipped += 1
            else:
                early_skipped += 1
            continue
        number = row["batch"]
        if number not in ranged:  # a retry's few rows among other batches': rows of their own
            kept.append(row)
            continue
        key = (number, usual[number][1])
        if not runs or runs[-1].key != key:
            if runs:
                runs[-1].close(kept)
            runs.append(_Run(key, row))
        follows = own == key[1]
        runs[-1].add(row, follows)
        if not follows:
            kept.append(row)
    if runs:
        runs[-1].close(kept)
        runs[0].skipped += early_skipped
    used: set[int] = set()
    fresh = max([next_batch, *(n for n in usual if n is not None)], default=0)
    rows = []
    for run in runs:
        number = run.key[0]
        if number in used:  # cannot happen (one run per kept batch); never two rows
            fresh += 1
            number = fresh
        used.add(number)
        first, last = run.members[0], run.members[-1]
        members = set(run.members)
        others = [
            sid
            for sid in conn.scalars(
                sa.select(_subscribers.c.id).where(_subscribers.c.id.between(first, last))
            )
            if sid not in members
        ]
        state, worker, error, retryable = run.key[1]
        shared = run.message_ids.pop() if len(run.message_ids) == 1 else None
        rows.append(
            {
                "issue_id": issue_id,
                "number": number,
                "first_id": first,
                "last_id": last,
                "recipients": len(run.members),
                "skipped": run.skipped,
                "excluded": _encode(first, others),
                "listed": False,
                "state": state,
                "worker": worker,
                "claimed_at": run.claimed_at or created_at,
                "updated_at": run.updated_at or created_at,
                "message_id": shared,
                "error": error,
                "retryable": retryable,
                "attempts": run.attempts,
            }
        )
    if early_skipped and not runs:  # every claimed recipient had left: counted on a batch
        fresh += 1
        rows.append(
            {
                "issue_id": issue_id,
                "number": fresh,
                "first_id": claimed_to,
                "last_id": claimed_to,
                "recipients": 0,
                "skipped": early_skipped,
                "excluded": "0",
                "listed": False,
                "state": "sent",
                "worker": None,
                "claimed_at": created_at,
                "updated_at": created_at,
                "message_id": None,
                "error": None,
                "retryable": None,
                "attempts": 1,
            }
        )
    for start in range(0, len(rows), 1000):
        conn.execute(sa.insert(_batches), rows[start : start + 1000])
    claimed = sum(r["recipients"] + r["skipped"] for r in rows)
    conn.execute(
        sa.insert(_plans).values(
            issue_id=issue_id,
            segment="active",
            last_id=last_id or 0,
            size=claimed + (tail or 0),
            claimed_to=claimed_to,
            next_batch=fresh,
            planned_at=created_at,
        )
    )
    conn.execute(sa.delete(_deliveries).where(mine))
    for start in range(0, len(kept), 1000):
        conn.execute(sa.insert(_deliveries), kept[start : start + 1000])


def downgrade() -> None:
    op.drop_index("ix_delivery_batches_state", table_name="delivery_batches")
    op.drop_table("delivery_batches")
    op.drop_table("delivery_plans")
