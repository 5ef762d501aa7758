"""`stock-platform`: operator commands that run outside Dagster (one subcommand each).

A subcommand is a function that adds its parser and sets `handler` to a function taking the parsed arguments and
returning the exit status; list it in `SUBCOMMANDS`. Settings come from the same `STOCK_PLATFORM_...` variables as
the platform, read when the command runs. The database URL is only ever printed masked.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

import sqlalchemy as sa

from stock_platform.batch.migration import migrate_legacy_table
from stock_platform.batch.schema import SchemaError, validate_identifier
from stock_platform.resources.postgres import DatabaseURLError, PostgresResource

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stock-platform", description=__doc__.splitlines()[0] if __doc__ else None)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(commands)
    return parser


def _add_target_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--schema",
        default=os.environ.get("STOCK_PLATFORM_DB_SCHEMA", "public"),
        help="schema of the table (default: STOCK_PLATFORM_DB_SCHEMA or public)",
    )
    parser.add_argument(
        "--table",
        default=os.environ.get("STOCK_PLATFORM_TABLE", "historical_stocks_data"),
        help="the table (default: STOCK_PLATFORM_TABLE or historical_stocks_data)",
    )


def _add_migrate_legacy(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "migrate-legacy",
        help="convert the original pipeline's table in place (see docs/migration.md)",
        description=(
            "Convert the original pipeline's table (nine VARCHAR columns, no key, duplicates) into the platform's, "
            "in place and in one transaction; rows that do not convert go to <table>_migration_rejects. "
            "The database is STOCK_PLATFORM_DATABASE_URL. See docs/migration.md."
        ),
    )
    _add_target_options(parser)
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="run the whole conversion, print the report, then roll it back: nothing changes",
    )
    parser.set_defaults(handler=_migrate_legacy)


def _migrate_legacy(args: argparse.Namespace) -> int:
    postgres = _postgres(args)
    if postgres is None:
        return EXIT_USAGE
    print(f"stock-platform migrate-legacy{' --dry-run' if args.dry_run else ''} on {postgres.safe_url()}")
    try:
        report = migrate_legacy_table(postgres.engine(), args.schema, args.table, dry_run=args.dry_run)
    except SchemaError as error:
        _fail(f"nothing was changed: {error}")
        return EXIT_FAILED
    except sa.exc.DBAPIError as error:
        # The driver's own message (its first lines; not SQLAlchemy's, which repeats the whole statement).
        detail = "\n".join(str(error.orig).strip().splitlines()[:3])
        _fail(f"the migration failed and was rolled back, nothing was changed: {postgres.scrub(detail)}")
        return EXIT_FAILED
    for line in report.lines():
        print(line)
    return EXIT_OK


def _postgres(args: argparse.Namespace) -> PostgresResource | None:
    """The database from STOCK_PLATFORM_DATABASE_URL and the validated --schema/--table, or None after an error."""
    url = os.environ.get("STOCK_PLATFORM_DATABASE_URL")
    if not url:
        _fail("STOCK_PLATFORM_DATABASE_URL is not set (a SQLAlchemy PostgreSQL URL)")
        return None
    try:
        validate_identifier(args.schema, "schema")
        validate_identifier(args.table, "table")
        postgres = PostgresResource(url=url, schema_name=args.schema, table=args.table)
        postgres.sqlalchemy_url()
    except (DatabaseURLError, ValueError) as error:
        _fail(str(error))
        return None
    return postgres


def _fail(message: str) -> None:
    print(f"stock-platform: {message}", file=sys.stderr)


SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None], ...] = (_add_migrate_legacy,)


if __name__ == "__main__":
    raise SystemExit(main())
