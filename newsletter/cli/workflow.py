"""`newsletter approve` and `newsletter reject`: an editor's decision on an issue awaiting
approval (`[issue] approval = "required"`). Parsing and printing only: the rules are
`newsletter.approval`'s."""

from __future__ import annotations

import click

from newsletter.cli.app import App, pass_app
from newsletter.cli.reports import echo, issues

EDITOR_OPTION = click.option(
    "--editor",
    "editor",
    envvar="NEWSLETTER_EDITOR",
    help="Your editor address (or NEWSLETTER_EDITOR): who decides is logged.",
)


@click.command()
@click.argument("issue_id", type=int)
@EDITOR_OPTION
@pass_app
def approve(app: App, issue_id: int, editor: str | None) -> None:
    """Approve an issue awaiting approval: it goes out at its slot (at once if the slot has
    passed). Not by the editor who queued its articles, unless allow_self_approval."""
    from newsletter import approval

    decision = approval.approve(app.store, app.settings, issue_id, editor)
    echo(issues.approved(decision, app.settings))


@click.command()
@click.argument("issue_id", type=int)
@EDITOR_OPTION
@click.option("--reason", required=True, help="Why: the editors read it on the held articles.")
@pass_app
def reject(app: App, issue_id: int, editor: str | None, reason: str) -> None:
    """Reject an issue awaiting approval: its articles go back to the queue, held with the
    reason, until an editor fixes and releases them ('newsletter queue release FILE')."""
    from newsletter import approval

    echo(
        issues.rejected(approval.reject(app.store, app.settings, issue_id, editor, reason), reason)
    )
