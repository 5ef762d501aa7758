"""The `stock-platform` console script against moto's HTTP server and a real PostgreSQL, as a user types it."""

import pytest

from stock_platform.cli import main

pytestmark = pytest.mark.integration
HEADER = b"Date,Open,High,Low,Close,Volume,OpenInt\n"


@pytest.fixture
def home(tmp_path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return tmp_path


def put(stack, *companies: str, rows: int = 3) -> None:
    stack.put("CompanyNames/top_companies.txt", ", ".join(f"'{c}.us.csv'" for c in companies).encode())
    body = b"".join(f"2017-11-{d:02d},10,11,9,10.5,{100 + d},0\n".encode() for d in range(1, rows + 1))
    for company in companies:
        stack.put(f"Stocks/{company}.us.txt", HEADER + body)


def test_load_sync_stale_prune_and_check(stack, home, capsys) -> None:
    put(stack, "aapl", "msft", "nvda")
    assert main(["sync-partitions"]) == 0
    assert "Partitions added 3: aapl, msft, nvda" in capsys.readouterr().out

    assert main(["load"]) == 0
    out = capsys.readouterr().out
    assert (
        "SUCCESS" in out and "Committed: 3 companies' rows replaced (inserted 9" in out and "Table now: 9 rows" in out
    )

    assert main(["load", "--companies", "aapl", "--force-reload"]) == 0
    assert "Companies in the run: 1" in capsys.readouterr().out

    put(stack, "aapl", "msft")  # nvda leaves the list
    assert main(["stale"]) == 0
    out = capsys.readouterr().out
    assert "no longer listed: 1 companies, 3 rows" in out and "  nvda" in out

    assert main(["load", "--prune-unlisted"]) == 0
    assert "pruned 1: nvda" in capsys.readouterr().out
    assert stack.query("SELECT DISTINCT company_name FROM {t} ORDER BY 1") == [("aapl",), ("msft",)]

    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert "passed  has_unique_keys" in out and "FAILED" not in out
    stack.query("UPDATE {t} SET volume_traded = -1 WHERE company_name = 'aapl' RETURNING 1")
    assert main(["check"]) == 1
    assert "FAILED  has_non_negative_volume (3 rows)" in capsys.readouterr().out


def test_a_bad_range_is_a_usage_error(stack, home, capsys) -> None:
    assert main(["load", "--range", "aapl"]) == 2
    assert "FIRST...LAST" in capsys.readouterr().err


def test_rejects_are_listed_and_downloaded(stack, home, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("STOCK_PLATFORM_MAX_REJECTED_SHARE", "0.5")  # one bad row of five: loaded, not a failure
    monkeypatch.setenv("STOCK_PLATFORM_S3_BROWSE_URL", stack.endpoint)
    put(stack, "aapl", "msft")
    stack.put("Stocks/msft.us.txt", HEADER + b"2017-11-01,10,11,9,10.5,100,0\n2017-11-02,10,,9,10.5,100,0\n")
    assert main(["rejects"]) == 0
    assert f"Runs with rejected rows under s3://{stack.bucket}/Rejected/: 0" in capsys.readouterr().out

    assert main(["load"]) == 0
    out = capsys.readouterr().out
    run_id = next(line.split()[2].rstrip(":") for line in out.splitlines() if line.startswith("stock_batch_job run "))
    assert f"stock-platform rejects --run {run_id}" in out
    assert main(["rejects"]) == 0
    assert f"  {run_id}  1 files" in capsys.readouterr().out

    assert main(["rejects", "--run", run_id]) == 0
    assert f"{stack.endpoint}/{stack.bucket}/Rejected/{run_id}/msft.csv" in capsys.readouterr().out

    assert main(["rejects", "--run", run_id, "--to", str(tmp_path / "rejects")]) == 0
    assert (tmp_path / "rejects" / "msft.csv").read_text().splitlines()[1].startswith('"High is missing"')
    assert main(["rejects", "--to", str(tmp_path)]) == 2
