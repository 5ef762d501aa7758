"""What arrives as a whole file: text encodings, gzip, binary content, and files rejected whole with their evidence."""

import bz2
import gzip
import io
import random
import zipfile
import zlib

import pyarrow as pa
import pytest

from stock_platform.batch import transforms
from stock_platform.batch.transforms import ParsedFile, parse_stock_csv

TEXT = (
    "Date,Open,High,Low,Close,Volume,OpenInt\r\n"
    "2017-11-10,10.0,11.0,9.5,10.5,1000,0\r\n"
    "2017-11-13,café,1,1,1,1,0\r\n"
    "2017-11-14,1,1,1,1,1,0\r\n"
)
BOMS = {
    "utf-16-le": b"\xff\xfe",
    "utf-16-be": b"\xfe\xff",
    "utf-32-le": b"\xff\xfe\x00\x00",
    "utf-32-be": b"\x00\x00\xfe\xff",
    "utf-8": b"\xef\xbb\xbf",
}


def parse(data: bytes, **kwargs: int) -> ParsedFile:
    result = parse_stock_csv(data, "aapl", **kwargs)
    assert result.reconciles, (result.rows_read, result.rows_loaded, result.rows_rejected, result.duplicates)
    return result


def same_outcome(a: ParsedFile, b: ParsedFile) -> bool:
    return (a.status, a.reason, a.rows_read, a.duplicates) == (b.status, b.reason, b.rows_read, b.duplicates) and (
        a.prices.equals(b.prices) and a.rejects.equals(b.rejects)
    )


def unread(result: ParsedFile) -> bool:
    """Rejected whole without reading a row, like a file over the size limit: the S3 object is the evidence."""
    return result.status == "rejected" and result.rows_read == 0 and result.rejects.num_rows == 0


@pytest.mark.parametrize("encoding", list(BOMS))
def test_unicode_files_are_read_by_their_byte_order_mark(encoding: str) -> None:
    result = parse(BOMS[encoding] + TEXT.encode(encoding))
    assert same_outcome(result, parse(TEXT.encode()))
    assert (result.rows_read, result.rows_loaded, result.rows_rejected) == (3, 2, 1)
    assert result.rejects.to_pylist()[0]["open"] == "café"


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-32-be"])
def test_a_unicode_file_cut_mid_character_keeps_what_came_before(encoding: str) -> None:
    result = parse(BOMS[encoding] + TEXT.encode(encoding)[:-1])  # cuts the last line's final LF in two
    assert result.status == "loaded" and result.rows_loaded == 2
    assert result.rejects.column("raw_line").to_pylist()[-1] == "\ufffd"  # the cut, shown where it happened


def test_a_unicode_file_missing_a_column_keeps_readable_evidence() -> None:
    text = "Date,Open,High,Low,Close\n2017-11-10,1,2,0.5,1.5\n2017-11-13,1,2,0.5,1.5\n"
    result = parse(BOMS["utf-16-le"] + text.encode("utf-16-le"))
    assert result.reason == "missing required column(s): volume"
    assert result.rows_read == 2
    assert [r["raw_line"] for r in result.rejects.to_pylist()] == text.splitlines()[1:]


def test_gzip_files_are_read_whatever_their_name() -> None:
    assert same_outcome(parse(gzip.compress(TEXT.encode())), parse(TEXT.encode()))


def test_gzip_of_utf16_and_gzip_members_back_to_back_are_read() -> None:
    utf16 = BOMS["utf-16-be"] + TEXT.encode("utf-16-be")
    assert same_outcome(parse(gzip.compress(utf16)), parse(TEXT.encode()))
    header, body = TEXT.encode().split(b"\n", 1)
    assert same_outcome(parse(gzip.compress(header + b"\n") + gzip.compress(body)), parse(TEXT.encode()))


def test_an_empty_gzip_is_an_empty_file() -> None:
    result = parse(gzip.compress(b""))
    assert (result.status, result.reason) == ("empty", "file is empty")


def test_gzip_text_is_read_up_to_the_limit_and_refused_past_it() -> None:
    data, size = gzip.compress(TEXT.encode()), len(TEXT.encode())
    assert parse(data, max_decompressed_bytes=size).rows_loaded == 2
    result = parse(data, max_decompressed_bytes=size - 1)
    assert unread(result)
    assert result.reason == f"gzip content expands past the {size - 1}-byte limit: not read"


def test_a_gzip_bomb_is_refused_without_expanding_it() -> None:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    bomb = b"".join(packer.compress(zeros) for _ in range(256)) + packer.flush()  # 256 MiB in about 256 KiB
    assert len(bomb) < 1 << 20
    result = parse(bomb, max_decompressed_bytes=1 << 20)
    assert unread(result) and result.reason == f"gzip content expands past the {1 << 20}-byte limit: not read"


def test_the_default_limit_is_512_mib() -> None:
    assert transforms.MAX_DECOMPRESSED_BYTES == 512 * 1024 * 1024


GOOD_GZIP = gzip.compress(TEXT.encode())


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x1f\x8b", "corrupt gzip: it ends before its compressed data does (truncated?)"),
        (GOOD_GZIP[:-9], "corrupt gzip: it ends before its compressed data does (truncated?)"),
        (GOOD_GZIP[:-8] + b"\0\0\0\0" + GOOD_GZIP[-4:], "corrupt gzip: incorrect data check"),
        (GOOD_GZIP[:12] + bytes([GOOD_GZIP[12] ^ 0xFF]) + GOOD_GZIP[13:], "corrupt gzip: "),
        (GOOD_GZIP + b"PK\x03\x04 and more", "corrupt gzip: data follows the end of the compressed stream"),
    ],
    ids=["magic-only", "truncated", "bad-crc", "flipped-byte", "trailing-junk"],
)
def test_a_corrupt_gzip_is_rejected_whole_with_the_reason(data: bytes, reason: str) -> None:
    result = parse(data)
    assert unread(result)
    assert result.reason is not None and result.reason.startswith(reason)


def test_gzip_padded_with_zero_bytes_is_read() -> None:
    assert parse(GOOD_GZIP + bytes(512)).rows_loaded == 2


def _zip_archive() -> bytes:
    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            "xl/worksheets/sheet1.xml", "".join(f"<row r='{i}'><c>{i * 7919}</c></row>" for i in range(3000))
        )
    return sink.getvalue()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (random.Random(7).randbytes(200_000), "not a text file (binary content): not read"),
        (b"\x89PNG\r\n\x1a\n" + random.Random(8).randbytes(5000), "not a text file (binary content): not read"),
        (_zip_archive(), "not a text file (binary content: a zip archive, as an Excel .xlsx is): not read"),
        (bz2.compress(TEXT.encode() * 500), "not a text file (binary content: bzip2-compressed): not read"),
        (TEXT.encode("utf-16-le"), "not a text file (binary content): not read"),  # UTF-16 without its BOM
        (gzip.compress(gzip.compress(TEXT.encode())), "not a text file (binary content: gzip inside gzip): not read"),
    ],
    ids=["random", "png", "xlsx", "bzip2", "utf16-no-bom", "double-gzip"],
)
def test_binary_files_are_rejected_whole_without_junk_lines(data: bytes, reason: str) -> None:
    result = parse(data)
    assert unread(result)
    assert result.reason == reason


def test_a_stray_control_byte_in_a_text_file_rejects_only_its_row() -> None:
    result = parse(TEXT.replace("café", "ca\x00fé").encode())
    assert (result.status, result.rows_loaded, result.rows_rejected) == ("loaded", 2, 1)


def test_a_file_missing_a_column_keeps_each_line_raw_and_counts_lines() -> None:
    lines = ["2017-11-10,1,2,0.5,1.5", '"2017-11-13","1,5",2', "2017-11-14,1,1,1,1,1,1,1", 'x,"unterminated']
    result = parse(("Date,Open,High,Low,Close\n" + "\n  \n".join(lines) + "\n").encode())
    assert (result.status, result.reason) == ("rejected", "missing required column(s): volume")
    assert result.rows_read == result.rows_rejected == 4
    rejects = result.rejects.to_pylist()
    assert [r["raw_line"] for r in rejects] == lines
    assert {r["reason"] for r in rejects} == {result.reason}
    assert [(r["date"], r["open"], r["volume"]) for r in rejects[:2]] == [
        ("2017-11-10", "1", ""),
        ("2017-11-13", "1,5", ""),
    ]


def test_an_unreadable_file_keeps_each_line_raw_and_counts_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    # pyarrow tokenises nearly anything, so this last resort is reached through a stand-in that refuses.
    def refuse(body: bytes, width: int) -> tuple[pa.Table, list[tuple[str, int, int]]]:
        raise pa.ArrowInvalid("CSV parse error: something\nmore detail")

    monkeypatch.setattr(transforms, "_split_rows", refuse)
    result = parse(TEXT.encode())
    assert (result.status, result.reason) == ("rejected", "unreadable CSV: CSV parse error: something")
    assert result.rows_read == 3
    assert [r["raw_line"] for r in result.rejects.to_pylist()] == TEXT.splitlines()[1:]
    assert result.rejects.to_pylist()[1]["open"] == "café"
