"""The target database: PostgreSQL (Amazon RDS in production), reached with psycopg 3."""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import psycopg
from pydantic import Field
from sqlalchemy import NullPool, create_engine
from sqlalchemy.engine import URL, make_url

from stock_platform.batch.schema import validate_identifier


class PostgresResource(dg.ConfigurableResource):
    """The PostgreSQL database that holds the table (Amazon RDS in production).

    Takes a SQLAlchemy URL; connections are psycopg 3, opened per use and always closed, because a batch
    needs one connection for one transaction and a pool would only hold sockets open between runs.
    """

    url: str = Field(
        description=(
            "SQLAlchemy URL of the target database (STOCK_PLATFORM_DATABASE_URL), e.g. "
            "postgresql+psycopg://user:pass@host:5432/db?sslmode=require"
        )
    )
    schema_name: str = Field(default="public", description="Schema holding the table.")
    table: str = Field(default="historical_stocks_data", description="Table name.")
    connect_timeout: int = Field(default=10, description="Seconds to wait for a connection.")

    def sqlalchemy_url(self) -> URL:
        url = make_url(self.url)
        if url.get_backend_name() not in ("postgresql", "postgres"):
            raise ValueError(f"STOCK_PLATFORM_DATABASE_URL must be a PostgreSQL URL, not {url.get_backend_name()!r}")
        return url.set(drivername="postgresql+psycopg")

    def safe_url(self) -> str:
        """The URL with its password masked: the only form that goes into logs, metadata and messages."""
        return self.sqlalchemy_url().render_as_string(hide_password=True)

    def engine(self):  # noqa: ANN201 - sqlalchemy.Engine; for pandas.read_sql and ad-hoc queries
        return create_engine(
            self.sqlalchemy_url(), poolclass=NullPool, connect_args={"connect_timeout": self.connect_timeout}
        )

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        """A psycopg connection (for COPY), closed on exit. Nothing is committed unless the caller commits."""
        engine = self.engine()
        raw = engine.raw_connection()
        try:
            conn = raw.driver_connection
            assert isinstance(conn, psycopg.Connection)
            yield conn
        finally:
            raw.close()
            engine.dispose()

    @property
    def target(self) -> tuple[str, str]:
        return validate_identifier(self.schema_name, "schema"), validate_identifier(self.table, "table")
