-- The lake's example queries. stock_platform/quotes/queries.py runs the same two through pyarrow datasets, and
-- stock_platform_tests/integration/test_quotes_lake.py checks their results on moto's S3.

-- day_summary: per ticker on a day, distinct quotes and the day's range.
SELECT ticker,
       count(DISTINCT event_time) AS quotes,
       min(price)                 AS low,
       max(price)                 AS high
FROM stock_platform.quotes
WHERE "date" = DATE '2024-03-05' AND ticker IN ('AAPL', 'MSFT')
GROUP BY ticker
ORDER BY ticker;

-- moves: each ticker's last quote of a day against its company's last close before that day.
WITH last_quote AS (
  SELECT ticker, max_by(price, event_time) AS last_price
  FROM stock_platform.quotes
  WHERE "date" = DATE '2024-03-05' AND ticker IN ('AAPL', 'MSFT')
  GROUP BY ticker
),
previous_close AS (
  SELECT company, max_by(close_value, stock_date) AS close_value
  FROM stock_platform.daily_prices
  WHERE company IN ('aapl', 'msft') AND stock_date < DATE '2024-03-05'
  GROUP BY company
)
SELECT q.ticker,
       q.last_price,
       p.close_value,
       (q.last_price - p.close_value) / p.close_value * 100 AS move_percent
FROM last_quote q
JOIN previous_close p ON p.company = lower(q.ticker)
ORDER BY q.ticker;
