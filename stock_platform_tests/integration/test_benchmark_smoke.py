"""Keeps `make bench` working: the whole benchmark on a tiny input, one repetition. Asserts the report, not times."""

import json

import pytest

from benchmarks.bench import main

pytestmark = [pytest.mark.integration, pytest.mark.daemon]  # the latency section runs the real daemon

TICKERS = 12
QUOTES = 1_500


def test_benchmark_runs_end_to_end_on_a_tiny_input(tmp_path) -> None:
    arguments = {
        "--companies": 30,
        "--listed": 12,
        "--reps": 1,
        "--scales": 12,
        "--full-dataset-files": 0,
        "--usual-slice": 4,
        "--scale-out-ranges": 3,
        "--download-tickers": TICKERS,
        "--download-rate": 50,
        "--quotes": QUOTES,
        "--quote-tickers": 5,
        "--markers": 1,
        "--alerts": 1,
        "--out": tmp_path,
    }
    assert main([str(part) for pair in arguments.items() for part in pair] + ["--profile"]) == 0
    result = json.loads((tmp_path / "latest.json").read_text())
    rows = result["bare_copy"]["rows"]
    assert rows > 0 and result["floor"]["runs"][0]["rows"] == rows
    assert result["pipelined"]["runs"][0]["rows"] == rows  # the overlapped script loads the same rows
    assert result["platform"]["runs"][0]["full"]["rows_loaded"] == rows  # the platform loads what the floor loads
    assert result["platform"]["runs"][0]["no_change"]["companies_loaded"] == 0
    assert [(s["listed"], len(s["runs_seconds"])) for s in result["scale"]] == [(12, 1)]  # a median of --reps
    targets = {t["target"]: t for t in result["targets"]}
    assert {"full run ≤ 1.25 × floor", "usual ÷ platform ≥ 3", "moonshot: full run ≤ 2.5 × bare COPY"} <= set(targets)
    assert all(t["value"] >= 0 and isinstance(t["met"], bool) for t in targets.values())
    report = (tmp_path / "latest.md").read_text()
    assert "| floor script" in report and "| pipelined script" in report and "platform ÷ pipelined script" in report
    # The profiled run: its top functions in the report, the whole profile beside it.
    assert "Where a full run's time goes" in report and result["profile_top"]
    assert "load_stock_batch" in (tmp_path / "latest.profile.txt").read_text()
    scale_out = result["scale_out"]  # three concurrent range runs load exactly what one run loads
    assert scale_out["same_rows"] and scale_out["rows"] == rows and scale_out["concurrent"]["runs"] == 3

    downloads = result["downloads"]  # every ticker downloaded by both sides, each one request
    assert downloads["bare"][0]["pairs"] == TICKERS
    for run in (*downloads["platform"], *downloads["platform_rate_limited"]):
        assert (
            run["tickers_downloaded"] == TICKERS and run["provider_requests"] == TICKERS and run["rows_new"] == TICKERS
        )
    assert downloads["rate_limited_ideal_s"] == TICKERS / 50
    assert f"download of {TICKERS} tickers ≤ 2 × bare GET+PUT" in targets
    assert "| bare script: 12 plain GET + PUT pairs" in report

    quotes = result["quotes"]  # both sides read every record and keep each distinct quote once
    assert quotes["bare"][0]["records_read"] == QUOTES and quotes["bare"][0]["quotes_written"] == quotes["distinct"]
    platform = quotes["platform"][0]
    assert platform["runs"] >= 1 and platform["quotes_logged"] == quotes["distinct"]
    assert platform["alert_messages"] >= 1 and platform["alerts_published"] == platform["alerts_claimed"]
    assert 0 < quotes["peak_rss_mb"] < 4096
    assert "| platform: stream sensor ticks" in report

    latency = result["latency"]  # one marker gave one successful run and its message; one quote its alert
    assert [m["subject"] for m in latency["markers"]] == ["BENCH_Pipeline_Success"]
    assert len(latency["marker_run_seconds"]) == 1 and len(latency["alerts"]) == 1
    assert 0 < latency["markers_median_s"] == latency["markers_p95_s"]
    assert latency["alerts_median_s"] > 0 and "quote → alert p95 ≤ 3 sensor intervals (15 s)" in targets
    for kind in ("markers", "alerts"):  # each sample split by the run it started: the stages add up to its wait
        [sample] = latency[kind]
        assert abs(sum(sample["stages"].values()) - sample["latency_s"]) < 0.01
        assert latency[f"{kind}_stages_samples"] == 1
    assert "| marker upload → `_Pipeline_Success` in SQS" in report
