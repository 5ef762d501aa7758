"""The extract hands the upload blocks of about a megabyte, not PostgreSQL's one piece per row."""

from stock_platform.batch.warehouse import blocks


def test_rows_are_joined_into_blocks_of_at_least_the_size_and_nothing_is_lost() -> None:
    rows = [f"2017-11-{d:02d},10,11,9,10.5,100,0,aapl\n".encode() for d in range(1, 29)] * 50
    joined = list(blocks((memoryview(r) for r in rows), size=1000))
    assert b"".join(joined) == b"".join(rows)
    assert all(len(b) >= 1000 for b in joined[:-1]) and len(joined[-1]) > 0
    assert len(joined) < len(rows) / 20  # about 1000 / 37 rows per block, each block a new bytes object
    assert all(type(b) is bytes for b in joined)


def test_no_rows_no_blocks() -> None:
    assert list(blocks(iter([]), size=10)) == []
    assert list(blocks([b"abc"], size=10)) == [b"abc"]
