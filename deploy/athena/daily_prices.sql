-- The batch's daily prices for Athena: s3://<source-bucket>/Processed/company=<company>/prices.parquet, written by
-- stock_platform/batch/frames.py (one object per company, the columns of historical_stocks_data in its order).
-- Replace <source-bucket> (STOCK_PLATFORM_SOURCE_BUCKET) and, if changed, Processed/ (STOCK_PLATFORM_PROCESSED_PREFIX).
--
-- `company` is the lower-cased ticker (aapl), the same value as the file's company_name column; it is injected
-- (queries name their companies), or, as for the quotes, an enum of the listed companies:
--   'projection.company.type' = 'enum', 'projection.company.values' = 'aapl,msft,...'
-- A quote's ticker meets a company as lower(q.ticker) = p.company.

CREATE DATABASE IF NOT EXISTS stock_platform;

CREATE EXTERNAL TABLE IF NOT EXISTS stock_platform.daily_prices (
  stock_date           date   COMMENT 'Trading day',
  open_value           double COMMENT 'Opening price',
  high_value           double COMMENT 'Highest price of the day',
  low_value            double COMMENT 'Lowest price of the day',
  close_value          double COMMENT 'Closing price',
  volume_traded        bigint COMMENT 'Shares traded',
  daily_percent_change double COMMENT '(close - open) / open * 100; NULL when open is 0',
  value_change         double COMMENT 'close - open',
  company_name         string COMMENT 'Lower-cased ticker (aapl)'
)
COMMENT 'Daily stock prices per company, as loaded into historical_stocks_data (stock_platform)'
PARTITIONED BY (company string)
STORED AS PARQUET
LOCATION 's3://<source-bucket>/Processed/'
TBLPROPERTIES (
  'projection.enabled'        = 'true',
  'projection.company.type'   = 'injected',
  'storage.location.template' = 's3://<source-bucket>/Processed/company=${company}/'
);
