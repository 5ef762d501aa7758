"""One intake batch through the whole intraday path, Dagster-free: what the ingest step runs and tests call.

Every stage is idempotent, so a retried run or a re-delivered batch changes nothing twice: the monthly log skips
quotes already present, lake parts are named after the batch, the landing inserts ON CONFLICT DO NOTHING, and
alerts are claimed before they are published (claims.py). Alerts come last, so a quote is logged and in the lake
before anyone is told it moved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from stock_platform.quotes.alerts import AlertMessage, evaluate
from stock_platform.quotes.claims import Published, claim, previous_closes, publish_pending
from stock_platform.quotes.lake import write_parts
from stock_platform.quotes.landing import land_quotes
from stock_platform.quotes.model import Quote, dedupe, group_by_month, trading_day
from stock_platform.quotes.monthly_log import Appended, append_to_month, month_key
from stock_platform.quotes.schema import prepare_quote_tables
from stock_platform.quotes.settings import IntradayConfig
from stock_platform.resources.postgres import PostgresResource
from stock_platform.resources.s3 import S3Bucket
from stock_platform.resources.sns import SNSResource


@dataclass
class IngestResult:
    """What a run committed so far: filled stage by stage, so a run that fails still reports what it wrote."""

    quotes: int = 0  # distinct quotes in the batch
    per_month: dict[str, int] = field(default_factory=dict)  # distinct quotes of the batch per month
    appended: dict[str, Appended] = field(default_factory=dict)
    parts_by_month: dict[str, int] = field(default_factory=dict)
    landed_by_month: dict[str, int] = field(default_factory=dict)
    alerts: Published = field(default_factory=Published)
    alerts_evaluated: bool = False
    without_close: list[str] = field(default_factory=list)  # tickers with no previous close in the table

    @property
    def alert_errors(self) -> list[str]:
        return self.alerts.errors

    def lines(self, rejected: Sequence[object] = ()) -> list[str]:
        added = sum(len(a.added) for a in self.appended.values())
        lines = [
            f"{self.quotes} distinct quotes; {added} new in the monthly logs "
            f"({', '.join(f'{m}: +{len(a.added)}' for m, a in self.appended.items()) or 'none'})",
            f"{sum(self.parts_by_month.values())} lake parts written",
        ]
        if rejected:
            lines.append(f"{len(rejected)} records rejected (kept in the staged batch)")
        if self.landed_by_month:
            lines.append(f"{sum(self.landed_by_month.values())} rows inserted into stock_quotes")
        if self.alerts_evaluated:
            lines.append(
                f"alerts: {len(self.alerts.claimed)} claimed, {len(self.alerts.published)} published, "
                f"{len(self.alerts.still_pending)} pending"
            )
        if self.without_close:
            lines.append(f"no previous close for: {', '.join(self.without_close[:20])}")
        return lines


class AlertMessageSender:
    """Publishes an AlertMessage (`move` goes out as a Number attribute, so subscribers can filter numerically)."""

    def __init__(self, sns: SNSResource) -> None:
        self.sns = sns

    def __call__(self, message: AlertMessage) -> str:
        return self.sns.publish(message.subject, message.body, message.attributes)


def ingest(
    quotes: Sequence[Quote],
    *,
    bucket: S3Bucket,
    postgres: PostgresResource,
    intraday: IntradayConfig,
    batch_id: str,
    run_id: str | None,
    alerts: SNSResource | None,
    result: IngestResult | None = None,
) -> IngestResult:
    """Run a batch through every stage; record each stage's outcome in `result` once it is committed."""
    tz = intraday.exchange_timezone
    unique = dedupe(quotes)
    result = result if result is not None else IngestResult()
    result.quotes = len(unique)
    for month, group in group_by_month(unique, tz).items():
        result.per_month[month] = len(group)
        result.appended[month] = append_to_month(
            bucket, month_key(intraday.log_prefix, month), group, intraday.max_append_attempts
        )
    for key in write_parts(bucket, intraday.lake_prefix, unique, tz, batch_id):
        day = key.split("date=", 1)[1][:10]
        month = day[:4] + day[5:7]
        result.parts_by_month[month] = result.parts_by_month.get(month, 0) + 1
    if not (intraday.land_in_postgres or alerts is not None) or not unique:
        return result
    engine = postgres.engine()
    with postgres.unreachable_as_database_error():
        with engine.begin() as connection:
            tables = prepare_quote_tables(connection, postgres.schema_name, intraday.land_in_postgres)
        if intraday.land_in_postgres:
            with postgres.connect() as conn:
                for month, group in group_by_month(unique, tz).items():
                    result.landed_by_month[month] = land_quotes(conn, postgres.schema_name, group)
        if alerts is not None:
            result.alerts_evaluated = True
            wanted = {(q.company, trading_day(q.event_time, tz)) for q in unique}
            with engine.begin() as connection:
                closes = previous_closes(connection, postgres.schema_name, postgres.table, wanted)
                moves = evaluate(unique, closes, intraday.alert_threshold_percent, tz)
                result.without_close = sorted(
                    {q.ticker for q in unique if (q.company, trading_day(q.event_time, tz)) not in closes}
                )
                claimed = claim(connection, tables, moves, run_id)
            result.alerts.claimed = claimed  # committed
            with engine.begin() as connection:
                published = publish_pending(connection, tables, AlertMessageSender(alerts), alerts.subject_prefix)
            published.claimed = claimed
            result.alerts = published
    return result
