"""The target database: PostgreSQL (Amazon RDS in production), reached with psycopg 3.

The URL is parsed once and must parse cleanly: a password with an unescaped `@`, `/`, `#` or space would
otherwise be split into a "host" that the driver then quotes in its errors. No message this module raises ever
contains the URL, and `scrub` removes the password from any error text before it reaches a log, metadata or
a message.
"""

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, quote_plus

import dagster as dg
import psycopg
from pydantic import Field, PrivateAttr
from sqlalchemy import Engine, NullPool, create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, OperationalError

_HOST = re.compile(r"^(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])$")
MASK = "***"


class DatabaseURLError(ValueError):
    """STOCK_PLATFORM_DATABASE_URL is not a clean PostgreSQL URL. The message never quotes the URL."""


class DatabaseError(RuntimeError):
    """A database error whose text has been scrubbed of the configured secrets."""


def parse_database_url(raw: str) -> URL:
    """Parse a SQLAlchemy PostgreSQL URL strictly; raise DatabaseURLError (which never echoes it) otherwise."""
    hint = (
        "percent-encode special characters in the user name and password "
        "(@ as %40, : as %3A, / as %2F, % as %25, # as %23, space as %20)"
    )
    _, sep, rest = raw.partition("://")
    if not sep:
        raise DatabaseURLError("STOCK_PLATFORM_DATABASE_URL is not a URL (expected postgresql://user:pass@host/db)")
    authority = re.split(r"[/?]", rest, maxsplit=1)[0]
    if authority.count("@") > 1 or "#" in raw or any(c.isspace() for c in raw):
        raise DatabaseURLError(f"STOCK_PLATFORM_DATABASE_URL does not parse cleanly: {hint}")
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):
        raise DatabaseURLError(f"STOCK_PLATFORM_DATABASE_URL does not parse as a URL: {hint}") from None
    if url.get_backend_name() not in ("postgresql", "postgres"):
        raise DatabaseURLError(f"STOCK_PLATFORM_DATABASE_URL must be a PostgreSQL URL, not {url.get_backend_name()!r}")
    if url.host is not None and not _HOST.match(url.host):
        raise DatabaseURLError(f"STOCK_PLATFORM_DATABASE_URL has an invalid host part: {hint}")
    return url.set(drivername="postgresql+psycopg")


def scrub(text: str, secrets: "list[str] | tuple[str, ...]") -> str:
    """`text` with every secret (as written, and in its URL-encoded forms) replaced by ***."""
    for secret in secrets:
        if not secret:
            continue
        for form in {secret, quote(secret, safe=""), quote_plus(secret, safe="")}:
            text = text.replace(form, MASK)
    return text


class PostgresResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The PostgreSQL database that holds the table (Amazon RDS in production).

    Takes a SQLAlchemy URL; connections are psycopg 3 in autocommit mode, opened per use and always closed: the
    warehouse module opens its own transactions, and a batch needs one connection at a time, so a pool would only
    hold sockets open between runs.
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

    _parsed: URL | None = PrivateAttr(default=None)

    def sqlalchemy_url(self) -> URL:
        if self._parsed is None:
            self._parsed = parse_database_url(self.url)
        return self._parsed

    def safe_url(self) -> str:
        """The URL with its password masked: the only form that goes into logs, metadata and messages."""
        return self.sqlalchemy_url().render_as_string(hide_password=True)

    @property
    def secrets(self) -> tuple[str, ...]:
        password = self.sqlalchemy_url().password
        return (str(password),) if password else ()

    def scrub(self, text: str) -> str:
        return scrub(text, self.secrets)

    def engine(self) -> Engine:
        """A SQLAlchemy engine (pandas.read_sql, the schema inspector, ad-hoc queries); no pooling."""
        return create_engine(
            self.sqlalchemy_url(), poolclass=NullPool, connect_args={"connect_timeout": self.connect_timeout}
        )

    @contextmanager
    def unreachable_as_database_error(self) -> Iterator[None]:
        """Turn "cannot reach the database" errors into DatabaseError naming the masked URL, scrubbed."""
        try:
            yield
        except (psycopg.OperationalError, OperationalError) as error:
            text = str(getattr(error, "orig", None) or error)
            raise DatabaseError(f"Could not reach {self.safe_url()}: {self.scrub(text)}") from None

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection[Any]]:
        """An autocommit psycopg connection (for COPY), closed on exit."""
        url = self.sqlalchemy_url()
        params: dict[str, Any] = {
            **url.translate_connect_args(username="user", database="dbname"),
            **{k: v for k, v in url.query.items() if isinstance(v, str)},
            "connect_timeout": self.connect_timeout,
        }
        try:
            conn = psycopg.connect(autocommit=True, **params)
        except psycopg.Error as error:
            raise DatabaseError(f"Could not connect to {self.safe_url()}: {self.scrub(str(error))}") from None
        try:
            yield conn
        finally:
            conn.close()
