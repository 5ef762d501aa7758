"""The intraday domain's PostgreSQL tables, declared once with SQLAlchemy Core (like batch/schema.py):

- `quote_alert_claims`: one row per (ticker, trading day, direction) that has alerted, claimed before publishing;
- `stock_quotes`: the optional landing of every quote for dashboards (key: ticker, event time).
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateSchema

from stock_platform.batch.schema import lock_schema_ddl, validate_identifier

CLAIMS_TABLE = "quote_alert_claims"
QUOTES_TABLE = "stock_quotes"


class ClaimStatus:
    """Values of quote_alert_claims.status."""

    PENDING = "pending"  # claimed; not (yet) published: the next run publishes it
    PUBLISHED = "published"


@dataclass(frozen=True)
class QuoteTables:
    schema: str
    metadata: sa.MetaData
    claims: sa.Table
    quotes: sa.Table


def declare_quote_tables(schema: str) -> QuoteTables:
    validate_identifier(schema, "schema")
    metadata = sa.MetaData(schema=schema)
    timestamp = postgresql.TIMESTAMP(timezone=True)
    claims = sa.Table(
        CLAIMS_TABLE,
        metadata,
        sa.Column("ticker", sa.Text(), nullable=False),
        sa.Column("trading_day", sa.Date(), nullable=False, comment="The exchange's calendar day of the quote."),
        sa.Column("direction", sa.Text(), nullable=False, comment="up or down"),
        sa.Column("event_time", timestamp, nullable=False, comment="The first quote that crossed the threshold."),
        sa.Column("price", postgresql.DOUBLE_PRECISION(), nullable=False),
        sa.Column("previous_close", postgresql.DOUBLE_PRECISION(), nullable=False),
        sa.Column("previous_day", sa.Date(), nullable=False, comment="The trading day previous_close is from."),
        sa.Column("move_percent", postgresql.DOUBLE_PRECISION(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False, server_default=ClaimStatus.PENDING),
        sa.Column("claimed_at", timestamp, nullable=False, server_default=sa.func.now()),
        sa.Column("claimed_by_run", sa.Text()),
        sa.Column("published_at", timestamp),
        sa.Column("message_id", sa.Text(), comment="The SNS message id that carried the alert."),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text()),
        sa.PrimaryKeyConstraint("ticker", "trading_day", "direction"),
        sa.CheckConstraint("direction IN ('up', 'down')", name="quote_alert_claims_direction"),
        sa.CheckConstraint("status IN ('pending', 'published')", name="quote_alert_claims_status"),
        comment="Price-move alerts, at most one per ticker, trading day and direction (stock_platform).",
    )
    sa.Index("quote_alert_claims_pending", claims.c.claimed_at, postgresql_where=claims.c.status == "pending")
    quotes = sa.Table(
        QUOTES_TABLE,
        metadata,
        sa.Column("ticker", sa.Text(), nullable=False),
        sa.Column("event_time", timestamp, nullable=False),
        sa.Column("price", postgresql.DOUBLE_PRECISION(), nullable=False),
        sa.Column("volume", sa.BigInteger()),
        sa.Column("source", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("ticker", "event_time"),
        comment="Intraday quotes, one row per ticker and event time (stock_platform).",
    )
    return QuoteTables(schema, metadata, claims, quotes)


def prepare_quote_tables(connection: Connection, schema: str, landing: bool) -> QuoteTables:
    """Create the schema and the missing tables, in the caller's transaction (safe when runs race)."""
    tables = declare_quote_tables(schema)
    lock_schema_ddl(connection, schema)
    if not sa.inspect(connection).has_schema(schema):
        connection.execute(CreateSchema(schema))
    wanted = [tables.claims, tables.quotes] if landing else [tables.claims]
    tables.metadata.create_all(connection, tables=wanted, checkfirst=True)
    return tables
