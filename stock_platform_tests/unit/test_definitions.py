"""The code location loads and shows the whole platform; settings bind to their documented variables."""

import os
import subprocess
import sys

import dagster as dg
import pytest

from stock_platform.batch.warehouse import Target
from stock_platform.definitions import defs

ASSETS = {"top_companies", "company_stock_prices", "historical_stocks_data", "historical_stock_data_csv"}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCK_PLATFORM_SOURCE_BUCKET", "source")
    monkeypatch.setenv("STOCK_PLATFORM_DATABASE_URL", "postgresql://u:secret@db.example.com:5432/stocks")


def test_definitions_load_with_the_expected_graph(env: None) -> None:
    definitions = defs()
    dg.Definitions.validate_loadable(definitions)
    graph = definitions.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert ASSETS | {"raw_stock_files"} <= keys
    assert graph.get(dg.AssetKey("historical_stocks_data")).parent_keys == {dg.AssetKey("company_stock_prices")}
    assert graph.get(dg.AssetKey("historical_stock_data_csv")).parent_keys == {dg.AssetKey("historical_stocks_data")}
    batch_job = definitions.resolve_job_def("stock_batch_job")
    assert batch_job.tags["stock_platform/target"] == "historical_stocks_data"  # the run queue's limit applies
    checks_job = definitions.resolve_job_def("historical_stocks_data_checks_job")
    assert {
        k.name
        for k in checks_job.asset_layer.asset_graph.asset_check_keys
        if k.asset_key.path == ["historical_stocks_data"]
    } >= {"has_unique_keys"}
    assert graph.get(dg.AssetKey("company_stock_prices")).partitions_def.name == "company"
    # One table: a materialization per run that changed it, the companies in its metadata.
    assert graph.get(dg.AssetKey("historical_stocks_data")).partitions_def is None


def test_optional_settings_fall_back_to_their_defaults(env: None) -> None:
    with dg.build_resources({"bucket": defs().resources["bucket"], "postgres": defs().resources["postgres"]}) as r:
        assert (r.bucket.stocks_prefix, r.bucket.company_list_key, r.bucket.output_key) == (
            "Stocks/",
            "CompanyNames/top_companies.txt",
            "Output/historical_stock_data.csv",
        )
        assert Target(r.postgres.schema_name, r.postgres.table).name == "public.historical_stocks_data"
        assert "secret" not in r.postgres.safe_url()


def test_optional_settings_bind_to_their_variables(env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCK_PLATFORM_STOCKS_PREFIX", "raw/stocks/")
    monkeypatch.setenv("STOCK_PLATFORM_TABLE", "prices")
    monkeypatch.setenv("STOCK_PLATFORM_S3_CONCURRENCY", "4")
    with dg.build_resources({"bucket": defs().resources["bucket"], "postgres": defs().resources["postgres"]}) as r:
        assert r.bucket.stocks_prefix == "raw/stocks/" and r.bucket.max_concurrency == 4
        assert Target(r.postgres.schema_name, r.postgres.table).name == "public.prices"


@pytest.mark.parametrize("name", ["drop table x", "a;b", 'a"b', "", "x" * 64])
def test_hostile_table_names_are_refused(env: None, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv("STOCK_PLATFORM_TABLE", name)
    resources = {"postgres": defs().resources["postgres"]}
    with dg.build_resources(resources) as r, pytest.raises(ValueError, match="not a valid identifier"):
        Target(r.postgres.schema_name, r.postgres.table)


def test_the_definitions_never_import_the_local_stack(env: None) -> None:
    # A fresh interpreter: what the code location (and the production image) imports to load the platform.
    code = (
        "import sys; from stock_platform.definitions import defs; defs(); "
        "print(sorted(m for m in sys.modules if m.startswith(('stock_platform.local', 'moto', 'pgserver'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ)
    assert out.stdout.strip() == "[]"


def test_loading_the_definitions_exempts_what_is_loaded_from_the_garbage_collector(env: None) -> None:
    # A fresh interpreter, as a run worker: nothing is frozen before the definitions load, everything loaded after.
    code = (
        "import gc; from stock_platform.definitions import defs; before = gc.get_freeze_count(); defs(); "
        "print(before, gc.get_freeze_count())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ)
    before, after = map(int, out.stdout.split())
    assert before == 0
    assert after > 100_000  # the imported modules' objects and the definitions (~310,000 in a run's process)
