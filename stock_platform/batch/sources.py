"""What a batch reads from the source bucket: the company list and the stock files, resolved once."""

import codecs
from dataclasses import dataclass

from stock_platform.batch.selection import Selection, parse_company_list, resolve_selection
from stock_platform.resources.s3 import S3Object, SourceBucket


class CompanyListError(ValueError):
    """The company list is empty or unreadable: a batch of zero companies is never a success."""


@dataclass(frozen=True)
class Batch:
    """What the bucket holds right now: the parsed list, the stock files, and the resolved selection."""

    entries: tuple[str, ...]
    files: dict[str, S3Object]  # file name -> object, for the direct children of the stocks prefix
    selection: Selection

    def source_of(self, company: str) -> S3Object | None:
        name = self.selection.files.get(company)
        return self.files.get(name) if name else None


def decode_company_list(data: bytes, uri: str) -> tuple[str, ...]:
    """The list's entries; raises CompanyListError when the list is not text or names nothing."""
    encoding = "utf-8-sig"
    for bom, name in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            encoding = name
            break
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        raise CompanyListError(f"The company list {uri} is not readable text ({encoding} expected)") from None
    entries = tuple(parse_company_list(text))
    if not entries:
        raise CompanyListError(f"The company list {uri} is empty: it names no company, so nothing was loaded")
    return entries


def read_batch(bucket: SourceBucket) -> Batch:
    """Read the company list and list the stock files: the one source of truth for what a batch is."""
    entries = decode_company_list(bucket.get_bytes(bucket.company_list_key), bucket.uri(bucket.company_list_key))
    files = bucket.stock_files()
    return Batch(entries, files, resolve_selection(entries, files))
