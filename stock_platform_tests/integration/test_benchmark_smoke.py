"""Keeps `make bench` working: the whole benchmark on a tiny batch, one repetition. Asserts the report, not times."""

import json

import pytest

from benchmarks.bench import main

pytestmark = pytest.mark.integration


def test_benchmark_runs_end_to_end_on_a_tiny_batch(tmp_path) -> None:
    assert (
        main(
            [
                "--companies",
                "30",
                "--listed",
                "12",
                "--reps",
                "1",
                "--scales",
                "12",
                "--full-dataset-files",
                "0",
                "--usual-slice",
                "4",
                "--scale-out-ranges",
                "3",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    result = json.loads((tmp_path / "latest.json").read_text())
    rows = result["bare_copy"]["rows"]
    assert rows > 0 and result["floor"]["runs"][0]["rows"] == rows
    assert result["platform"]["runs"][0]["full"]["rows_loaded"] == rows  # the platform loads what the floor loads
    assert result["platform"]["runs"][0]["no_change"]["companies_loaded"] == 0
    assert {t["target"] for t in result["targets"]} >= {"full run ≤ 1.5 × floor", "usual ÷ platform ≥ 3"}
    assert "| floor script" in (tmp_path / "latest.md").read_text()
    scale_out = result["scale_out"]  # three concurrent range runs load exactly what one run loads
    assert scale_out["same_rows"] and scale_out["rows"] == rows and scale_out["concurrent"]["runs"] == 3
