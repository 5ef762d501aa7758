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
    """The company a file holds: its name before the first dot, as written (`aapl.us.txt` -> `aapl`)."""
    return file_name.split(".", 1)[0]


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
    ambiguous: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # company -> other files ignored

    @property
    def companies(self) -> list[str]:
        return list(self.files)


def resolve_selection(entries: Iterable[str], file_names: Iterable[str]) -> Selection:
    """Match list entries to files: by exact file name, else by ticker (before the first dot), case-insensitively.

    A file that is not matched by any entry is never part of the batch. When several files share a ticker
    (`aapl.us.txt` and `AAPL.csv`), an exact-name entry wins; otherwise the first name in sorted order is used
    and the others are reported as ambiguous.
    """
    valid: list[str] = []
    invalid: list[str] = []
    for name in sorted(set(file_names)):
        (valid if is_valid_company(company_of(name)) else invalid).append(name)
    exact = set(valid)
    by_ticker: dict[str, list[str]] = {}
    for name in valid:
        by_ticker.setdefault(company_of(name).casefold(), []).append(name)

    files: dict[str, str] = {}
    missing: list[str] = []
    ambiguous: dict[str, tuple[str, ...]] = {}
    taken_tickers: set[str] = set()
    for entry in entries:
        ticker = company_of(entry).casefold()
        candidates = by_ticker.get(ticker, [])
        if entry in exact:
            chosen = entry
        elif candidates:
            chosen = candidates[0]
        else:
            missing.append(entry)
            continue
        if ticker in taken_tickers:
            continue  # two entries for one company (e.g. "aapl" and "aapl.us.txt"): load it once
        taken_tickers.add(ticker)
        company = company_of(chosen)
        files[company] = chosen
        others = tuple(n for n in candidates if n != chosen)
        if others:
            ambiguous[company] = others
    listed_files = set(files.values()) | {n for others in ambiguous.values() for n in others}
    return Selection(
        files=files,
        missing=tuple(missing),
        unlisted=len([n for n in valid if n not in listed_files]),
        invalid_names=tuple(invalid),
        ambiguous=ambiguous,
    )
