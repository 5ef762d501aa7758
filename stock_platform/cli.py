"""`stock-platform`: the platform from a terminal: load a batch, list and prune companies, check the table, migrate.

`load` runs the same job and step as the sensor and the UI, in this process, on the Dagster instance in
DAGSTER_HOME, and prints the same reconciled summary as `make run`. A subcommand is a function that adds its parser
and sets `handler` to a function taking the parsed arguments and returning the exit status; list it in
`SUBCOMMANDS`. Settings come from the same `STOCK_PLATFORM_...` variables as the platform, read when the command
runs. The database URL is only ever printed masked.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from stock_platform.batch.migration import migrate_legacy_table
from stock_platform.batch.schema import SchemaError, validate_identifier
from stock_platform.batch.summary import capped, describe
from stock_platform.notices import silence_known_notices
from stock_platform.resources.postgres import DatabaseURLError, PostgresResource

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    silence_known_notices()
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


def _instance() -> dg.DagsterInstance:
    """The instance in DAGSTER_HOME (runs are kept and the UI shows them); an ephemeral one otherwise."""
    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    print("stock-platform: DAGSTER_HOME is not set: this run is not kept in any Dagster instance", file=sys.stderr)
    return dg.DagsterInstance.ephemeral()


def _definitions() -> dg.Definitions:
    from stock_platform.definitions import defs  # noqa: PLC0415 - loads every setting; only commands that run need it

    return defs()


def _add_load(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "load",
        help="load a batch now: every listed company, a partition range, or hand-picked companies",
        description="Bring the company partitions in line with the list, run stock_batch_job in this process, "
        "and print what it processed and committed.",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--companies", help="comma-separated companies to load in one run (e.g. aapl,ge,msft)")
    which.add_argument("--range", help="a partition range FIRST...LAST (one run)")
    parser.add_argument("--force-reload", action="store_true", help="reload companies whose file did not change")
    parser.add_argument(
        "--prune-unlisted",
        action="store_true",
        help="also remove companies that are no longer listed or lost their file (rows, ledger, frames)",
    )
    parser.add_argument("--notify", action="store_true", help="publish the run's SNS message (no daemon needed)")
    parser.set_defaults(handler=_load)


def _load(args: argparse.Namespace) -> int:
    from stock_platform.batch import runs  # noqa: PLC0415 - imports the platform; after main() quietened it

    partition_range = None
    if args.range:
        first, sep, last = args.range.partition("...")
        if not sep or not first or not last:
            _fail("--range takes FIRST...LAST, e.g. aapl...msft")
            return EXIT_USAGE
        partition_range = (first, last)
    companies = [c.strip() for c in args.companies.split(",") if c.strip()] if args.companies else None
    with _instance() as instance:
        result = runs.run_batch(
            _definitions(),
            instance,
            companies=companies,
            partition_range=partition_range,
            force_reload=args.force_reload,
            prune_unlisted=args.prune_unlisted,
            notify_sns=args.notify,
        )
    print(f"stock_batch_job run {result.run_id}: {'SUCCESS' if result.success else 'FAILURE'}")
    print(f"Partitions: {len(result.partitions_added)} added, {len(result.partitions_deleted)} removed")
    for line in describe(result.summary) if result.summary is not None else []:
        print(line)
    if result.summary is not None and result.summary.rejects_uri:
        print(f"List or download the rejected rows: stock-platform rejects --run {result.run_id} [--to FOLDER]")
    if result.error:
        print(f"Error: {result.error}")
    return EXIT_OK if result.success else EXIT_FAILED


def _add_sync_partitions(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "sync-partitions", help="make the company partitions equal the listed companies that have a file"
    )
    parser.set_defaults(handler=_sync_partitions)


def _sync_partitions(args: argparse.Namespace) -> int:
    from stock_platform.batch import runs  # noqa: PLC0415 - imports the platform; after main() quietened it

    with _instance() as instance:
        added, deleted = runs.sync_partitions(_definitions(), instance)
    print(f"Partitions added {len(added)}: {capped(added) or '-'}")
    print(f"Partitions removed {len(deleted)}: {capped(deleted) or '-'}")
    return EXIT_OK


def _add_stale(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "stale", help="list companies in the table that are no longer listed or have lost their file"
    )
    parser.set_defaults(handler=_stale)


def _stale(args: argparse.Namespace) -> int:
    from stock_platform.batch import runs  # noqa: PLC0415 - imports the platform; after main() quietened it

    stale = runs.stale_companies(_definitions())
    print(f"In the table, no longer listed: {len(stale.names)} companies, {stale.rows} rows")
    for name in stale.names:
        print(f"  {name}")
    if stale.names:
        print("Remove them with: stock-platform load --prune-unlisted")
    return EXIT_OK


def _add_check(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("check", help="evaluate the table's quality checks against the table as it stands")
    parser.set_defaults(handler=_check)


def _check(args: argparse.Namespace) -> int:
    from stock_platform.batch import runs  # noqa: PLC0415 - imports the platform; after main() quietened it

    with _instance() as instance:
        outcomes = runs.run_table_checks(_definitions(), instance)
    for name, (passed, offending) in sorted(outcomes.items()):
        print(f"{'passed' if passed else 'FAILED'}  {name}" + ("" if passed else f" ({offending} rows)"))
    return EXIT_OK if outcomes and all(p for p, _ in outcomes.values()) else EXIT_FAILED


def _add_rejects(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "rejects",
        help="list the rejected rows kept under Rejected/ (every run, or one), and download them",
        description=(
            "Every row a run rejects is kept, with its reason, in "
            "s3://<source bucket>/Rejected/<run id>/<company>.csv. "
            "Without --run: one line per run that rejected rows. With --run: that run's files; with --to, downloaded."
        ),
    )
    parser.add_argument("--run", help="the run id (as in the report, the message and the UI)")
    parser.add_argument("--to", help="download the run's files into this folder (created if needed)")
    parser.set_defaults(handler=_rejects)


def _rejects(args: argparse.Namespace) -> int:
    from stock_platform.batch import runs  # noqa: PLC0415 - imports the platform; after main() quietened it

    if args.to and args.run is None:
        _fail("--to needs --run")
        return EXIT_USAGE
    with runs.source_bucket(_definitions()) as bucket:
        if args.run is None:
            per_run: dict[str, list[int]] = {}
            for obj in bucket.list_objects(bucket.rejected_prefix):
                run_id = obj.key[len(bucket.rejected_prefix) :].split("/", 1)[0]
                per_run.setdefault(run_id, []).append(obj.size)
            print(f"Runs with rejected rows under {bucket.uri(bucket.rejected_prefix)}: {len(per_run)}")
            for run_id, sizes in sorted(per_run.items()):
                print(f"  {run_id}  {len(sizes)} files, {sum(sizes):,} bytes")
            return EXIT_OK
        prefix = bucket.rejects_prefix(args.run)
        objects = bucket.list_objects(prefix)
        if not objects:
            print(f"Run {args.run} rejected no rows (nothing under {bucket.uri(prefix)})")
            return EXIT_OK
        folder = Path(args.to) if args.to else None
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        for obj in objects:
            if folder is None:
                print(f"  {obj.name}  {obj.size:,} bytes  {bucket.link(obj.key)}")
            else:
                (folder / obj.name).write_bytes(bucket.get_bytes(obj.key))
                print(f"  {folder / obj.name}  {obj.size:,} bytes")
    return EXIT_OK


def _fail(message: str) -> None:
    print(f"stock-platform: {message}", file=sys.stderr)


SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None], ...] = (
    _add_load,
    _add_sync_partitions,
    _add_stale,
    _add_check,
    _add_rejects,
    _add_migrate_legacy,
)


if __name__ == "__main__":
    raise SystemExit(main())
