"""Intraday quotes: Kinesis and polling intake, the monthly log, the Parquet lake and price-move alerts."""
