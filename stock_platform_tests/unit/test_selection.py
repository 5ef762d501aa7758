"""Which companies a batch loads: parsing top_companies.txt and matching entries to files."""

import pytest

from stock_platform.batch.partitions import company_partition_requests
from stock_platform.batch.selection import (
    company_of,
    is_valid_company,
    listed_companies,
    parse_company_list,
    resolve_selection,
)


@pytest.mark.parametrize(
    ("text", "entries"),
    [
        ("'tmusp.us.csv', 'mcv.us.csv','abr_c.us.csv'", ["tmusp.us.csv", "mcv.us.csv", "abr_c.us.csv"]),
        ("aapl.us.txt\nmsft.us.txt\r\nge\n", ["aapl.us.txt", "msft.us.txt", "ge"]),
        ('"aapl" ,  " msft ",\n\n, ,ge', ["aapl", "msft", "ge"]),
        ("\ufeff'aapl.us.csv'", ["aapl.us.csv"]),
        ("aapl, AAPL, aapl", ["aapl"]),  # duplicates collapse, first spelling kept
        ("", []),
        (" ,\n, '' ", []),
    ],
)
def test_parse_company_list(text: str, entries: list[str]) -> None:
    assert parse_company_list(text) == entries


FILES = ["aapl.us.txt", "msft.us.csv", "abr_c.us.txt", "tdw-ws-b.us.txt", "GE.csv", "unlisted.us.txt"]


@pytest.mark.parametrize(
    ("entry", "company", "file"),
    [
        ("aapl.us.txt", "aapl", "aapl.us.txt"),  # exact name
        ("aapl.us.csv", "aapl", "aapl.us.txt"),  # the original list's .csv for a .txt file: by ticker
        ("AAPL", "aapl", "aapl.us.txt"),  # bare ticker, case-insensitively
        ("msft.us.txt", "msft", "msft.us.csv"),
        ("abr_c", "abr_c", "abr_c.us.txt"),
        ("tdw-ws-b.us.csv", "tdw-ws-b", "tdw-ws-b.us.txt"),
        ("ge.us.txt", "ge", "GE.csv"),  # a company's identity is its lower-cased ticker
    ],
)
def test_entry_matches_a_file(entry: str, company: str, file: str) -> None:
    selection = resolve_selection([entry], FILES)
    assert dict(selection.files) == {company: file}
    assert selection.missing == ()


def test_missing_and_unlisted() -> None:
    selection = resolve_selection(["aapl", "nope.us.csv"], FILES)
    assert selection.companies == ["aapl"]
    assert selection.missing == ("nope.us.csv",)
    assert selection.unlisted == len(FILES) - 1  # never loaded


def test_two_entries_for_one_company_load_it_once() -> None:
    assert resolve_selection(["aapl", "aapl.us.txt"], FILES).companies == ["aapl"]


@pytest.mark.parametrize("entry", ["AAPL.csv", "aapl.us.txt", "aapl"])
def test_two_files_of_one_company_are_ambiguous_and_neither_is_loaded(entry: str) -> None:
    selection = resolve_selection([entry], ["aapl.us.txt", "AAPL.csv"])
    assert dict(selection.files) == {}
    assert selection.ambiguous == {"aapl": ("AAPL.csv", "aapl.us.txt")}
    assert selection.companies == ["aapl"]  # keeps its partition (and its rows) while the files are ambiguous


@pytest.mark.parametrize(
    "name", ["../etc.us.txt", "a b.us.txt", "x;drop table.us.txt", ".hidden", "é\u200b.csv", "a/b.csv", "-x.csv"]
)
def test_hostile_file_names_are_never_companies(name: str) -> None:
    selection = resolve_selection([name, company_of(name)], [name])
    assert selection.companies == []
    assert name in selection.invalid_names


@pytest.mark.parametrize(
    ("company", "valid"),
    [("aapl", True), ("abr_c", True), ("tdw-ws-b", True), ("", False), ("a..b", False), ("a" * 101, False)],
)
def test_company_keys(company: str, valid: bool) -> None:
    assert is_valid_company(company) is valid


def test_partition_requests_add_new_and_delete_dropped_companies() -> None:
    selection = resolve_selection(["aapl", "msft"], FILES)
    requests = company_partition_requests(selection, existing=["aapl", "old"])
    assert [(type(r).__name__, list(r.partition_keys)) for r in requests] == [
        ("AddDynamicPartitionsRequest", ["msft"]),
        ("DeleteDynamicPartitionsRequest", ["old"]),
    ]
    assert company_partition_requests(selection, existing=["aapl", "msft"]) == []


def test_listed_companies_are_the_entries_companies_in_order_once_each() -> None:
    entries = ["MSFT.us.txt", " aapl ", "msft", ".hidden", "AAPL.us.csv", "brk-b.us.txt"]
    assert listed_companies(entries) == ("msft", "aapl", "brk-b")
