"""Which companies a batch loads: the list in CompanyNames/top_companies.txt matched against Stocks/.

Pure functions, no Dagster and no I/O: the asset, the S3 sensor and the partition sync all call
`resolve_selection`, so they can never disagree about what "the batch" is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# A company key becomes a Dagster partition key, part of an S3 key and a value in the table. Real tickers
# use letters, digits, "_" and "-" (abr_c, tdw-ws-b); anything else (spaces, "..", slashes, control
# characters) is refused so that a hostile file name can neither escape its prefix nor break a partition.
_COMPANY = re.compile(r"^\w[\w-]{0,99}$", re.ASCII)


def company_of(file_name: str) -> str:
    """The company a file holds: its name before the first dot, lower-cased (`AAPL.us.txt` -> `aapl`).

    A company's identity is case-insensitive everywhere (partition key, table, ledger, frames), so `aapl.us.txt`
    and `AAPL.us.txt` can never become two companies.
    """
    return file_name.split(".", 1)[0].lower()


def listed_companies(entries: Iterable[str]) -> tuple[str, ...]:
    """The companies list entries name, in the list's order, once each (`AAPL.us.txt`, `aapl` -> `aapl`); an
    entry with no name before its first dot names none."""
    return tuple(dict.fromkeys(company for entry in entries if (company := company_of(entry.strip()))))


def is_valid_company(company: str) -> bool:
    return bool(_COMPANY.match(company))


def parse_company_list(text: str) -> list[str]:
    """Entries of top_companies.txt, in order, de-duplicated (case-insensitively).

    Entries are separated by commas and/or newlines, may be quoted with ' or " and may carry spaces;
    blanks are ignored. `'aapl.us.csv', 'MSFT.us.txt',\\n"ge"` gives `["aapl.us.csv", "MSFT.us.txt", "ge"]`.
    """
    text = text.lstrip("\ufeff")
    entries: list[str] = []
    seen: set[str] = set()
    for raw in re.split(r"[,\r\n]+", text):
        entry = raw.strip().strip("'\"").strip()
        if not entry:
            continue
        folded = entry.casefold()
        if folded not in seen:
            seen.add(folded)
            entries.append(entry)
    return entries


@dataclass(frozen=True)
class Selection:
    """The batch: each selected company with the S3 file name it is loaded from."""

    files: Mapping[str, str]  # company -> file name under the stocks prefix, in list order
    missing: tuple[str, ...] = ()  # list entries that match no file
    unlisted: int = 0  # files present but not listed (never loaded)
    invalid_names: tuple[str, ...] = ()  # files whose name cannot be a company key
    # Listed companies with several files (`aapl.us.txt` and `AAPL.us.txt`): neither is loaded until one goes.
    ambiguous: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def companies(self) -> list[str]:
        """The listed companies that have a file (ambiguous ones included: they keep their partition and rows)."""
        return sorted({*self.files, *self.ambiguous})


def resolve_selection(entries: Iterable[str], file_names: Iterable[str]) -> Selection:
    """Match list entries to files by ticker (the name before the first dot), case-insensitively.

    A file that is not matched by any entry is never part of the batch. A listed ticker with more than one file
    (`aapl.us.txt` and `AAPL.us.txt`, or `aapl.us.txt` and `aapl.csv`) is ambiguous: neither file is loaded, the
    company keeps its previous rows, and every summary names it until one of the files is removed.
    """
    valid: list[str] = []
    invalid: list[str] = []
    for name in sorted(set(file_names)):
        (valid if is_valid_company(company_of(name)) else invalid).append(name)
    by_company: dict[str, list[str]] = {}
    for name in valid:
        by_company.setdefault(company_of(name), []).append(name)

    files: dict[str, str] = {}
    missing: list[str] = []
    ambiguous: dict[str, tuple[str, ...]] = {}
    for entry in entries:
        company = company_of(entry)
        candidates = by_company.get(company, [])
        if not candidates:
            missing.append(entry)
        elif len(candidates) > 1:
            ambiguous[company] = tuple(candidates)
        else:
            files[company] = candidates[0]  # two entries for one company ("aapl", "aapl.us.txt") load it once
    listed = set(files) | set(ambiguous)
    return Selection(
        files=files,
        missing=tuple(missing),
        unlisted=sum(1 for n in valid if company_of(n) not in listed),
        invalid_names=tuple(invalid),
        ambiguous=ambiguous,
    )
