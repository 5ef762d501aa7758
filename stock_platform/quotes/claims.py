"""Alerts in PostgreSQL: previous closes from the batch table, and the claim-then-publish protocol.

Exactly-once as far as a database and SNS allow:
1. `claim` inserts each move into quote_alert_claims with `INSERT ... ON CONFLICT DO NOTHING` (status pending).
   The primary key (ticker, trading day, direction) makes a second claim of a key a no-op, whichever run, retry or
   duplicate record tries it.
2. `publish_pending` locks pending claims (`FOR UPDATE SKIP LOCKED`, so two runs never take the same claim),
   publishes them (one message, or one digest), and marks them published with the SNS message id, in the same
   transaction. A failed publish leaves its claims pending, with the error and the attempt count, and the next
   run publishes them: an alert is never lost to a publish failure, only delayed.
The one window left is a crash after SNS accepted a message and before the commit: that alert is sent again
(at-least-once), never lost.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import date

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from stock_platform.batch.schema import qualified_name
from stock_platform.quotes.alerts import AlertMessage, Close, PriceMove, alert_messages
from stock_platform.quotes.schema import ClaimStatus, QuoteTables

Key = tuple[str, date, str]


@dataclass
class Published:
    claimed: list[Key] = field(default_factory=list)  # claimed by this run
    published: list[Key] = field(default_factory=list)  # published by this run (its own claims and older ones)
    message_ids: list[str] = field(default_factory=list)
    still_pending: list[Key] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def previous_closes(
    connection: Connection, schema: str, table: str, wanted: Collection[tuple[str, date]]
) -> dict[tuple[str, date], Close]:
    """For each (company, trading day): the close of the company's last trading day before it, if any."""
    if not wanted:
        return {}
    if not sa.inspect(connection).has_table(table, schema=schema):
        return {}
    pairs = sorted(wanted)
    rows = connection.execute(
        sa.text(
            "SELECT v.c, v.d, p.stock_date, p.close_value "
            "FROM unnest(CAST(:companies AS text[]), CAST(:days AS date[])) AS v(c, d) "
            "CROSS JOIN LATERAL (SELECT stock_date, close_value FROM "
            f"{qualified_name(schema, table)} "
            "WHERE company_name = v.c AND stock_date < v.d AND close_value IS NOT NULL "
            "ORDER BY stock_date DESC LIMIT 1) AS p"
        ),
        {"companies": [c for c, _ in pairs], "days": [d for _, d in pairs]},
    ).all()
    return {(row[0], row[1]): Close(row[2], float(row[3])) for row in rows}


def claim(connection: Connection, tables: QuoteTables, moves: Sequence[PriceMove], run_id: str | None) -> list[Key]:
    """Claim each move's key; return the keys this call claimed (a key claimed before is skipped)."""
    if not moves:
        return []
    claims = tables.claims
    statement = (
        postgresql.insert(claims)
        .values(
            [
                {
                    "ticker": m.ticker,
                    "trading_day": m.trading_day,
                    "direction": m.direction,
                    "event_time": m.event_time,
                    "price": m.price,
                    "previous_close": m.previous_close,
                    "previous_day": m.previous_day,
                    "move_percent": m.move_percent,
                    "status": ClaimStatus.PENDING,
                    "claimed_by_run": run_id,
                }
                for m in moves
            ]
        )
        .on_conflict_do_nothing(index_elements=["ticker", "trading_day", "direction"])
        .returning(claims.c.ticker, claims.c.trading_day, claims.c.direction)
    )
    return [(r[0], r[1], r[2]) for r in connection.execute(statement).all()]


def publish_pending(
    connection: Connection,
    tables: QuoteTables,
    publish: Callable[[AlertMessage], str],
    subject_prefix: str,
    limit: int = 1000,
) -> Published:
    """Publish every pending claim this transaction can lock (oldest first); mark what SNS accepted."""
    claims = tables.claims
    rows = connection.execute(
        sa.select(claims)
        .where(claims.c.status == ClaimStatus.PENDING)
        .order_by(claims.c.event_time, claims.c.ticker)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    moves = [
        PriceMove(
            r.ticker,
            r.trading_day,
            r.direction,
            r.event_time,
            r.price,
            r.previous_close,
            r.previous_day,
            r.move_percent,
        )
        for r in rows
    ]
    result = Published()
    if not moves:
        return result
    for message in alert_messages(moves, subject_prefix):
        where = sa.tuple_(claims.c.ticker, claims.c.trading_day, claims.c.direction).in_(list(message.keys))
        try:
            message_id = publish(message)
        except Exception as error:  # noqa: BLE001 - any publish failure leaves the claims pending, with its reason
            result.errors.append(str(error))
            result.still_pending.extend(message.keys)
            connection.execute(
                sa.update(claims).where(where).values(attempts=claims.c.attempts + 1, last_error=str(error)[:2000])
            )
            continue
        connection.execute(
            sa.update(claims)
            .where(where)
            .values(
                status=ClaimStatus.PUBLISHED,
                published_at=sa.func.now(),
                message_id=message_id,
                attempts=claims.c.attempts + 1,
                last_error=None,
            )
        )
        result.published.extend(message.keys)
        result.message_ids.append(message_id)
    return result
