"""The database URL is parsed once and strictly; no error quotes it; secrets are scrubbed from error text."""

import re
from urllib.parse import quote, quote_plus

import pytest

from stock_platform.resources.postgres import DatabaseURLError, PostgresResource, parse_database_url, scrub

PASSWORDS = ["Pg@S3cr3t", "Ab1:Cd2/Ef3", "100%Sur3", "Hash#T4g", "With Sp4ce", "@:/%# Qz9"]


@pytest.mark.parametrize("password", PASSWORDS)
def test_an_escaped_password_parses_to_itself(password: str) -> None:
    url = parse_database_url(f"postgresql://loader:{quote(password, safe='')}@db.internal:5432/stocks")
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "loader",
        password,
        "db.internal",
        5432,
        "stocks",
    )
    masked = PostgresResource(url=f"postgresql://loader:{quote(password, safe='')}@db.internal/stocks").safe_url()
    assert masked == "postgresql+psycopg://loader:***@db.internal/stocks"


@pytest.mark.parametrize("password", ["Pg@S3cr3t", "Hash#T4g", "With Sp4ce", "@:/%# Qz9"])
def test_an_unescaped_password_is_refused_without_echoing_it(password: str) -> None:
    with pytest.raises(DatabaseURLError) as error:
        parse_database_url(f"postgresql+psycopg://loader:{password}@127.0.0.1/db")
    assert "percent-encode" in str(error.value)
    for piece in re.findall(r"[A-Za-z0-9]{3,}", password):
        assert piece not in str(error.value)


@pytest.mark.parametrize("password", ["Ab1:Cd2/Ef3", "100%Sur3"])
def test_an_unescaped_password_that_parses_unambiguously_parses_to_itself(password: str) -> None:
    url = parse_database_url(f"postgresql+psycopg://loader:{password}@127.0.0.1/db")
    assert (url.password, url.host, url.database) == (password, "127.0.0.1", "db")


@pytest.mark.parametrize("raw", ["mysql://u:p@h/db", "not a url", "postgresql://u:p@h:notaport/db"])
def test_other_bad_urls_fail_cleanly(raw: str) -> None:
    with pytest.raises(DatabaseURLError) as error:
        parse_database_url(raw)
    assert "p@h" not in str(error.value)


def test_scrub_removes_the_password_in_every_form() -> None:
    secret = "Pg@S3 cr#t"
    text = f"a {secret} b {quote(secret, safe='')} c {quote_plus(secret, safe='')}"
    assert secret not in scrub(text, (secret,)) and "S3" not in scrub(text, (secret,))
