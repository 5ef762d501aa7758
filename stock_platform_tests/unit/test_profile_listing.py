"""The benchmark's profile listing (benchmarks/platform_run.py): the functions with the most time of their own."""

from benchmarks.platform_run import top_functions

# pyinstrument's flat listing (ConsoleRenderer(flat=True, show_all=True)), trimmed: its header, then one row per
# frame identifier; every function's "[self]" part shares one identifier, so its row sums them all.
FLAT = """
  _     ._   __/__   _ _  _  _ _/_   Recorded: 17:02:17  Samples:  4336
 /_//_/// /_\\ / //_// / //_'/ //     Duration: 16.309    CPU time: 14.765

3.037 Cursor.execute  <built-in>
2.911 [self]  stock_platform/downloads/assets.py
2.506 Connection.commit  <built-in>
1.965 ParquetWriter.write_table  pyarrow/parquet/core.py:1200
"""


def test_the_listing_keeps_the_functions_and_drops_the_self_row() -> None:
    assert top_functions(FLAT) == [
        "3.037 Cursor.execute  <built-in>",
        "2.506 Connection.commit  <built-in>",
        "1.965 ParquetWriter.write_table  pyarrow/parquet/core.py:1200",
    ]


def test_the_listing_has_at_most_the_count_asked_for() -> None:
    assert top_functions(FLAT, count=1) == ["3.037 Cursor.execute  <built-in>"]
