-- The intraday quotes lake for Athena: s3://<source-bucket>/Lake/quotes/date=<YYYY-MM-DD>/ticker=<TICKER>/*.parquet,
-- written by stock_platform/quotes/lake.py (one part per intake run, compacted to one file per day and ticker).
-- Replace <source-bucket> (STOCK_PLATFORM_SOURCE_BUCKET) and, if changed, Lake/quotes/ (STOCK_PLATFORM_QUOTES_LAKE_PREFIX).
--
-- Partition projection computes the partitions from the path template, so new days and tickers are queryable as
-- soon as their files exist: no crawler, no MSCK REPAIR TABLE, no ALTER TABLE ADD PARTITION.
-- `date` and `ticker` live only in the path (never inside the files), as Athena requires of partition columns.
-- `ticker` is "injected": every query names its tickers (WHERE ticker = 'AAPL' or ticker IN (...)), which also
-- keeps each query to the folders it needs. To scan every ticker of a day without naming them, switch it to
--   'projection.ticker.type' = 'enum', 'projection.ticker.values' = 'AAPL,MSFT,...'
-- and keep that list in step with the watchlist (a ticker missing from it is invisible to Athena).
-- Until a day is compacted a quote can sit in two parts (delivery is at-least-once): queries count DISTINCT
-- event_time per ticker, as deploy/athena/queries.sql does.

CREATE DATABASE IF NOT EXISTS stock_platform;

CREATE EXTERNAL TABLE IF NOT EXISTS stock_platform.quotes (
  event_time timestamp COMMENT 'When the quote was made (UTC)',
  price      double    COMMENT 'Price',
  volume     bigint    COMMENT 'Volume, when the source gives one',
  source     string    COMMENT 'Where the quote came from (kinesis, producer, the price source)'
)
COMMENT 'Intraday quotes, one row per ticker and event time once compacted (stock_platform)'
PARTITIONED BY (`date` date, ticker string)
STORED AS PARQUET
LOCATION 's3://<source-bucket>/Lake/quotes/'
TBLPROPERTIES (
  'projection.enabled'              = 'true',
  'projection.date.type'            = 'date',
  'projection.date.format'          = 'yyyy-MM-dd',
  'projection.date.range'           = '2016-07-01,NOW+1DAYS',
  'projection.date.interval'        = '1',
  'projection.date.interval.unit'   = 'DAYS',
  'projection.ticker.type'          = 'injected',
  'storage.location.template'       = 's3://<source-bucket>/Lake/quotes/date=${date}/ticker=${ticker}/'
);
