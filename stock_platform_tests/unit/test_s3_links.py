"""Where the platform's metadata links point: the local endpoint when one is set, otherwise the AWS S3 console."""

from stock_platform.resources.s3 import SourceBucket


def test_without_a_browse_url_links_open_the_aws_console() -> None:
    bucket = SourceBucket(bucket="stock-data")
    assert bucket.link("Processed/company=aapl/prices.parquet") == (
        "https://s3.console.aws.amazon.com/s3/object/stock-data?prefix=Processed/company%3Daapl/prices.parquet"
    )
    assert bucket.link("Rejected/run 1/") == (
        "https://s3.console.aws.amazon.com/s3/buckets/stock-data?prefix=Rejected/run%201/"
    )
    assert bucket.link_for_uri("s3://stock-data/Output/historical_stock_data.csv").endswith(
        "/object/stock-data?prefix=Output/historical_stock_data.csv"
    )


def test_with_a_browse_url_links_open_the_local_endpoint_path_style() -> None:
    bucket = SourceBucket(bucket="stock-data", browse_url="http://127.0.0.1:5000/")
    assert bucket.link("Stocks/aapl.us.txt") == "http://127.0.0.1:5000/stock-data/Stocks/aapl.us.txt"
    assert bucket.link("Rejected/r1/") == "http://127.0.0.1:5000/stock-data?list-type=2&prefix=Rejected/r1/"
