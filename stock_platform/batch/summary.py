"""What a batch run did, as one typed value: what it processed, what it committed, and the table after it.

The same `RunSummary` feeds the run's metadata, the `stock-platform` report and the SNS message, written once
(`to_json`) and read back once (`from_json`), so a renamed field fails loudly instead of printing 0. Pure: no
Dagster, no I/O.

*Processed* is what the run parsed from the files; *committed* is what its database transaction changed. They
differ whenever the transaction rolls back (or the run stops before it), and every reader keeps them apart.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

# How many company names a summary lists per status in text (messages and reports stay readable at 1,000).
LIST_CAP = 20
SUMMARY_METADATA_KEY = "run_summary"


class CompanyStatus(str, Enum):
    """How a company of the run ended."""

    LOADED = "loaded"  # parsed; its rows replace the company's rows (when the run commits)
    EMPTY = "empty"  # an empty or header-only file: the company then has no rows
    REJECTED = "rejected"  # the file was rejected whole: the company keeps its previous rows
    UNCHANGED = "unchanged"  # same file (ETag) as at its last committed load: not read
    MISSING_FILE = "missing_file"  # a partition of the run whose file is gone or no longer listed
    AMBIGUOUS = "ambiguous"  # several files map to the company (e.g. aapl.us.txt and AAPL.us.txt): not loaded

    @property
    def processed(self) -> bool:
        """Whether the run read and parsed the company's file."""
        return self in (CompanyStatus.LOADED, CompanyStatus.EMPTY, CompanyStatus.REJECTED)

    @property
    def writes_rows(self) -> bool:
        """Whether the company's rows in the table are replaced when the run commits."""
        return self in (CompanyStatus.LOADED, CompanyStatus.EMPTY)


@dataclass(frozen=True)
class RowCounts:
    """Rows of the files a run read: every row read is valid, rejected, or a duplicate of a later row."""

    read: int = 0
    valid: int = 0
    rejected: int = 0
    duplicates: int = 0

    def __add__(self, other: RowCounts) -> RowCounts:
        return RowCounts(
            self.read + other.read,
            self.valid + other.valid,
            self.rejected + other.rejected,
            self.duplicates + other.duplicates,
        )

    @property
    def reconciles(self) -> bool:
        return self.read == self.valid + self.rejected + self.duplicates


@dataclass(frozen=True)
class CompanyResult:
    status: CompanyStatus
    rows: RowCounts = RowCounts()
    reason: str | None = None  # why a file was rejected whole, or is empty, or is ambiguous


@dataclass(frozen=True)
class Commit:
    """What one committed transaction changed in the table, from the database's own counts."""

    companies: tuple[str, ...]  # whose rows the transaction replaced
    rows_inserted: int
    rows_updated: int
    rows_deleted: int
    rows_unchanged: int
    version: int  # the table's version after the commit
    pruned: tuple[str, ...] = ()  # companies removed with all their rows (see `prune`)

    @property
    def changed(self) -> bool:
        return bool(self.rows_inserted or self.rows_updated or self.rows_deleted or self.pruned)


@dataclass(frozen=True)
class TableState:
    """The table as it stands (queried, never computed from what a run meant to do)."""

    rows: int
    companies: int
    min_date: str | None
    max_date: str | None
    version: int


@dataclass(frozen=True)
class ExtractState:
    """The Output CSV and the table version it was exported at (current when equal to the table's)."""

    uri: str
    version: int | None
    rows: int | None
    regenerated: bool


@dataclass(frozen=True)
class StaleCompanies:
    """Companies in the table that are no longer listed or have lost their file: kept until pruned."""

    names: tuple[str, ...] = ()
    rows: int = 0


@dataclass(frozen=True)
class RunSummary:
    companies: Mapping[str, CompanyResult] = field(default_factory=dict)  # the run's companies
    missing: tuple[str, ...] = ()  # list entries that match no file
    ambiguous: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # company -> its files
    stale: StaleCompanies = StaleCompanies()
    rejects_uri: str | None = None
    commit: Commit | None = None  # None: this run committed nothing
    table: TableState | None = None  # None: the table could not be queried
    extract: ExtractState | None = None
    error: str | None = None  # why the run stopped, when it did
    phases: Mapping[str, float] = field(default_factory=dict)  # phase -> seconds

    @property
    def rows(self) -> RowCounts:
        total = RowCounts()
        for result in self.companies.values():
            total = total + result.rows
        return total

    def with_company(self, company: str, result: CompanyResult) -> RunSummary:
        return replace(self, companies={**self.companies, company: result})

    def names(self, *statuses: CompanyStatus) -> list[str]:
        return sorted(c for c, r in self.companies.items() if r.status in statuses)

    @property
    def status_counts(self) -> Counter[CompanyStatus]:
        return Counter(r.status for r in self.companies.values())

    def count(self, status: CompanyStatus) -> int:
        return self.status_counts[status]

    @property
    def processed(self) -> list[str]:
        return sorted(c for c, r in self.companies.items() if r.status.processed)

    @property
    def committed_rows(self) -> int:
        """Rows of the run's companies that its transaction wrote (inserted or updated)."""
        return self.commit.rows_inserted + self.commit.rows_updated if self.commit else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "companies": {
                c: [r.status.value, r.rows.read, r.rows.valid, r.rows.rejected, r.rows.duplicates, r.reason]
                for c, r in sorted(self.companies.items())
            },
            "missing": list(self.missing),
            "ambiguous": {c: list(files) for c, files in self.ambiguous.items()},
            "stale": {"names": list(self.stale.names), "rows": self.stale.rows},
            "rejects_uri": self.rejects_uri,
            "commit": None
            if self.commit is None
            else {**_fields(self.commit), "companies": list(self.commit.companies), "pruned": list(self.commit.pruned)},
            "table": None if self.table is None else _fields(self.table),
            "extract": None if self.extract is None else _fields(self.extract),
            "error": self.error,
            "phases": dict(self.phases),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunSummary:
        commit = data["commit"]
        return cls(
            companies={
                c: CompanyResult(CompanyStatus(s), RowCounts(read, valid, rejected, dups), reason)
                for c, (s, read, valid, rejected, dups, reason) in data["companies"].items()
            },
            missing=tuple(data["missing"]),
            ambiguous={c: tuple(files) for c, files in data["ambiguous"].items()},
            stale=StaleCompanies(tuple(data["stale"]["names"]), data["stale"]["rows"]),
            rejects_uri=data["rejects_uri"],
            commit=None
            if commit is None
            else Commit(**{**commit, "companies": tuple(commit["companies"]), "pruned": tuple(commit["pruned"])}),
            table=None if data["table"] is None else TableState(**data["table"]),
            extract=None if data["extract"] is None else ExtractState(**data["extract"]),
            error=data["error"],
            phases=dict(data["phases"]),
        )


def _fields(value: Commit | TableState | ExtractState) -> dict[str, Any]:
    return {name: getattr(value, name) for name in value.__dataclass_fields__}


def capped(names: Iterable[str], cap: int = LIST_CAP) -> str:
    """`a, b, c` — or the first `cap` names and how many more."""
    listed = list(names)
    if len(listed) <= cap:
        return ", ".join(listed)
    return ", ".join(listed[:cap]) + f" and {len(listed) - cap} more"


def describe(summary: RunSummary) -> list[str]:
    """The summary as lines a person reads (the e-mail body and the CLI report share them)."""
    counts = summary.status_counts
    rows = summary.rows
    lines = [
        f"Companies in the run: {len(summary.companies)}: loaded {counts[CompanyStatus.LOADED]}, "
        f"empty {counts[CompanyStatus.EMPTY]}, rejected whole {counts[CompanyStatus.REJECTED]}, "
        f"unchanged since their last load {counts[CompanyStatus.UNCHANGED]}, "
        f"file gone {counts[CompanyStatus.MISSING_FILE]}, ambiguous {counts[CompanyStatus.AMBIGUOUS]}; "
        f"listed but missing {len(summary.missing)}",
        f"Processed: {len(summary.processed)} files, rows read {rows.read} = valid {rows.valid} + rejected "
        f"{rows.rejected} + duplicates dropped {rows.duplicates}"
        + ("" if rows.reconciles else " (DOES NOT RECONCILE)"),
    ]
    for label, statuses in (
        ("Loaded", (CompanyStatus.LOADED,)),
        ("Empty", (CompanyStatus.EMPTY,)),
        ("Rejected whole", (CompanyStatus.REJECTED,)),
        ("File gone", (CompanyStatus.MISSING_FILE,)),
    ):
        names = summary.names(*statuses)
        if names:
            lines.append(f"  {label}: {capped(names)}")
    if summary.missing:
        lines.append(f"  Listed but missing: {capped(summary.missing)}")
    for company, files in sorted(summary.ambiguous.items()):
        lines.append(f"  Ambiguous, not loaded: {company} has several files ({', '.join(files)}); keep one")
    if summary.rejects_uri:
        lines.append(f"Rejected rows: {summary.rejects_uri}")
    commit = summary.commit
    if commit is None:
        lines.append("Committed: nothing; the table was not changed by this run")
    else:
        lines.append(
            f"Committed: {len(commit.companies)} companies' rows replaced (inserted {commit.rows_inserted}, "
            f"updated {commit.rows_updated}, deleted {commit.rows_deleted}, unchanged {commit.rows_unchanged})"
            + (f"; pruned {len(commit.pruned)}: {capped(commit.pruned)}" if commit.pruned else "")
            + f"; table version {commit.version}"
        )
    if summary.table is not None:
        t = summary.table
        lines.append(
            f"Table now: {t.rows} rows, {t.companies} companies, {t.min_date or '-'} .. {t.max_date or '-'} "
            f"(version {t.version})"
        )
    else:
        lines.append("Table now: could not be queried")
    if summary.stale.names:
        lines.append(
            f"In the table, no longer listed: {len(summary.stale.names)} companies, {summary.stale.rows} rows "
            f"({capped(summary.stale.names)}); kept until pruned"
        )
    if summary.extract is not None:
        e = summary.extract
        current = summary.table is not None and e.version == summary.table.version
        state = "rewritten" if e.regenerated else "already current"
        if not current:
            state = "STALE (older than the table; the next run rewrites it)"
        lines.append(f"Output CSV: {e.uri} ({state})")
    return lines


def root_error(error: object) -> str:
    """The first error in a Dagster SerializableErrorInfo chain that is not Dagster's own wrapper.

    Dagster wraps a step's exception in DagsterExecutionStepExecutionError; a reader wants the exception the
    platform raised (which may itself name the object it was working on and quote its own cause).
    """
    current = error
    while (
        current is not None
        and str(getattr(current, "cls_name", "")).startswith("Dagster")
        and getattr(current, "cause", None)
    ):
        current = getattr(current, "cause", None)
    return str(getattr(current, "message", current)).strip()
