"""The optional PostgreSQL landing of quotes (`stock_quotes`) for dashboards such as Grafana.

The same path as the batch load: COPY into a temporary staging table, then one `INSERT ... SELECT ... ON
CONFLICT DO NOTHING` into the table, so a quote delivered twice lands once and the count returned is what the
table gained.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from stock_platform.batch.schema import qualified_name, quote_ident
from stock_platform.quotes.model import Quote
from stock_platform.quotes.schema import QUOTES_TABLE

COLUMNS = ("ticker", "event_time", "price", "volume", "source")


def land_quotes(connection: psycopg.Connection[Any], schema: str, quotes: Sequence[Quote]) -> int:
    """Insert the quotes not yet in stock_quotes; return how many rows the table gained. One transaction."""
    if not quotes:
        return 0
    target = qualified_name(schema, QUOTES_TABLE)
    columns = ", ".join(quote_ident(c) for c in COLUMNS)
    with connection.transaction():
        connection.execute(f"CREATE TEMP TABLE quotes_stage (LIKE {target} INCLUDING DEFAULTS) ON COMMIT DROP")
        with connection.cursor().copy(f"COPY quotes_stage ({columns}) FROM STDIN") as copy:
            for q in quotes:
                copy.write_row((q.ticker, q.event_time, q.price, q.volume, q.source))
        cursor = connection.execute(
            f"INSERT INTO {target} ({columns}) SELECT DISTINCT ON (ticker, event_time) {columns} FROM quotes_stage "
            "ORDER BY ticker, event_time ON CONFLICT DO NOTHING"
        )
        return max(cursor.rowcount, 0)
