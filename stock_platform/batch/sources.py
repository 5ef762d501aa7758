"""What a batch reads from the source bucket: the company list and the stock files, resolved once."""

from dataclasses import dataclass

from stock_platform.batch.selection import Selection, parse_company_list, resolve_selection
from stock_platform.resources.s3 import S3Object, SourceBucket


@dataclass(frozen=True)
class Batch:
    """What the bucket holds right now: the parsed list, the stock files, and the resolved selection."""

    entries: tuple[str, ...]
    files: dict[str, S3Object]  # file name -> object, for the direct children of the stocks prefix
    selection: Selection

    def source_of(self, company: str) -> S3Object | None:
        name = self.selection.files.get(company)
        return self.files.get(name) if name else None


def read_batch(bucket: SourceBucket) -> Batch:
    """Read the company list and list the stock files: the one source of truth for what a batch is."""
    entries = tuple(parse_company_list(bucket.get_bytes(bucket.company_list_key).decode("utf-8-sig", "replace")))
    files = bucket.stock_files()
    return Batch(entries, files, resolve_selection(entries, files))
