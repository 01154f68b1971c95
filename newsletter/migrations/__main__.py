"""Developer commands for the schema history (no alembic.ini needed):

python -m newsletter.migrations revision "add a column"   # autogenerate the next revision
python -m newsletter.migrations revision --empty "data fix"
python -m newsletter.migrations current URL
python -m newsletter.migrations upgrade URL [REVISION]
python -m newsletter.migrations check URL                 # differences from store/schema/
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine

from newsletter import migrations


def _revision(message: str, empty: bool) -> None:
    head = migrations.head_revision()
    rev_id = f"{int(head) + 1:04d}" if head.isdigit() else None
    with tempfile.TemporaryDirectory() as scratch:
        # Autogenerate compares store/schema/ with a scratch database brought to head.
        engine = create_engine(f"sqlite:///{Path(scratch) / 'head.db'}")
        try:
            migrations.upgrade(engine)
            with migrations._locked(engine) as conn:
                script = command.revision(
                    migrations._config(conn),
                    message=message,
                    autogenerate=not empty,
                    rev_id=rev_id,
                )
        finally:
            engine.dispose()
    assert script is not None and not isinstance(script, list)  # one revision, one head
    print(f"wrote {script.path}: review it, then test it on SQLite and PostgreSQL")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m newsletter.migrations")
    sub = parser.add_subparsers(dest="command", required=True)
    rev = sub.add_parser("revision", help="write the next revision file")
    rev.add_argument("message")
    rev.add_argument("--empty", action="store_true", help="do not autogenerate")
    for name in ("current", "upgrade", "check"):
        p = sub.add_parser(name)
        p.add_argument("url", help="SQLAlchemy URL, e.g. sqlite:///newsletter.db")
        if name == "upgrade":
            p.add_argument("revision", nargs="?", default="head")
    args = parser.parse_args(argv)

    if args.command == "revision":
        _revision(args.message, args.empty)
        return 0
    engine = create_engine(args.url)
    try:
        if args.command == "current":
            print(migrations.current_revision(engine) or "(none)")
        elif args.command == "upgrade":
            migrations.upgrade(engine, args.revision)
            print(migrations.current_revision(engine))
        else:
            diffs = migrations.schema_differences(engine)
            for diff in diffs:
                print(diff)
            return 1 if diffs else 0
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
