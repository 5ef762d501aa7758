"""The platform as a user operates it: `dagster dev` (webserver + daemon), the UI in headless Chromium,
and backfills of hand-picked companies through the same GraphQL API the UI's backfill dialog uses.

Screenshots go to $STOCK_PLATFORM_SCREENSHOT_DIR (default: the test's tmp folder); docs/ holds two of them.
"""

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import dagster as dg
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By

from stock_platform.local import sample
from stock_platform.local.report import execute_batch
from stock_platform.local.stack import PROJECT_ROOT, free_port, write_local_instance
from stock_platform.tags import BACKFILL_TAG, PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG
from stock_platform_tests.processes import dagster_command, running
from stock_platform_tests.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.daemon]
# Bounds on waits for something that must happen; reached only if it never does (a hang), never on a slow machine.
HANG_S = 600

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on UnauthorizedError { message }
  }
}"""
BACKFILL_STATUS = """
query($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } } }"""


def graphql(base: str, query: str, variables: dict) -> dict:
    request = urllib.request.Request(
        f"{base}/graphql",
        json.dumps({"query": query, "variables": variables}).encode(),
        {"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise AssertionError(f"GraphQL error {error.code}: {error.read()[:2000]!r}") from error
    assert not body.get("errors"), body["errors"]
    return body["data"]


@pytest.fixture
def dagster_dev(stack, tmp_path: Path):
    home = tmp_path / "dagster_home"
    write_local_instance(home)
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "STOCK_PLATFORM_SENSORS_ENABLED": "false"}
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return urllib.request.urlopen(f"{base}/server_info", timeout=2).status == 200
        except OSError:
            return False

    command = dagster_command("dagster", "dev", "-h", "127.0.0.1", "-p", str(port))
    with running(command, env, tmp_path / "dagster_dev.log"):
        wait_until(up, timeout=HANG_S, what="the Dagster webserver", interval=1)
        yield base, home


@pytest.fixture
def loaded(stack, dagster_dev):
    """A first full load on the same instance the webserver shows."""
    base, home = dagster_dev
    batch = sample.generate(companies=14, listed=10, min_rows=100, max_rows=150)
    sample.upload(batch, stack.put)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert execute_batch(instance=instance).success
    return base, home, batch


def test_backfill_of_hand_picked_companies_touches_only_them(stack, loaded) -> None:
    base, home, batch = loaded
    companies = [r[0] for r in stack.query("SELECT DISTINCT company_name FROM {t} ORDER BY 1")]
    picked = [companies[0], companies[2], companies[4]]  # not contiguous: Dagster may split it into runs
    for company in picked:  # change the picked companies' files; the others stay as they are
        name = next(n for n in batch.files if n.startswith(company + "."))
        stack.put(f"Stocks/{name}", batch.files[name] + b"2019-01-02,1,1,1,1,1,0\n")
    untouched = stack.query("SELECT * FROM {t} WHERE company_name <> ALL(%s) ORDER BY 1, 2", (picked,))

    data = graphql(
        base,
        BACKFILL,
        {
            "params": {
                "partitionNames": picked,
                "assetSelection": [
                    {"path": [k]}
                    for k in ("company_stock_prices", "historical_stocks_data", "historical_stock_data_csv")
                ],
            }
        },
    )["launchPartitionBackfill"]
    assert data["__typename"] == "LaunchBackfillSuccess", data
    status = wait_until(
        lambda: (
            (s := graphql(base, BACKFILL_STATUS, {"id": data["backfillId"]})["partitionBackfillOrError"]["status"])
            in ("COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED")
            and s
        ),
        timeout=HANG_S,
        what="the backfill to finish",
        interval=1,
    )
    assert status in ("COMPLETED", "COMPLETED_SUCCESS")
    assert stack.query("SELECT company_name FROM {t} WHERE stock_date = '2019-01-02' ORDER BY 1") == [
        (c,) for c in picked
    ]
    assert stack.query("SELECT * FROM {t} WHERE company_name <> ALL(%s) ORDER BY 1, 2", (picked,)) == untouched
    output = stack.get("Output/historical_stock_data.csv").decode()
    assert output.count("2019-01-02") == 3  # the extract was regenerated

    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={BACKFILL_TAG: data["backfillId"]}))
    # A run covers one range of partition keys, so the non-contiguous pick is one run per company for the
    # partitioned assets (each a single-run backfill of its range), plus one run for the unpartitioned extract.
    ranges = sorted(
        (r.tags[PARTITION_RANGE_START_TAG], r.tags[PARTITION_RANGE_END_TAG])
        for r in runs
        if PARTITION_RANGE_START_TAG in r.tags
    )
    assert ranges == [(company, company) for company in sorted(picked)]
    assert len(runs) == len(picked) + 1
    # The table is one asset: the run after the frames' loads what they changed, exactly the picked companies.
    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = instance.fetch_materializations(dg.AssetKey("historical_stocks_data"), limit=100).records
        table_runs = {r.run_id: r.asset_materialization.metadata["committed_companies"].value for r in records}
    [(table_run, committed)] = [(run_id, c) for run_id, c in table_runs.items() if run_id in {r.run_id for r in runs}]
    assert sorted(committed) == sorted(picked)
    assert PARTITION_RANGE_START_TAG not in next(r for r in runs if r.run_id == table_run).tags


ASSETS = ("top_companies", "company_stock_prices", "historical_stocks_data", "historical_stock_data_csv")
# The lineage graph's nodes (Dagster's CSS module class names, stable across its builds).
COLLAPSED_GROUP = "[class*='CollapsedGroupNode_collapsedGroupNodeBox']"
ASSET_NODE = (
    "//*[contains(@class, 'AssetNode_assetNodeContainer') or contains(@class, 'AssetNode_minimalAssetNodeContainer')]"
)


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="Debian chromium + chromium-driver are not installed")
def test_ui_shows_the_graph_and_materializes(stack, loaded, tmp_path: Path) -> None:
    base, home, _ = loaded
    # The "Join the Dagster community" dialog a fresh browser profile gets would cover the page at some moment
    # after load; this is what its Skip button records on the server, so it never opens.
    graphql(base, "mutation { setNuxSeen }", {})
    assert graphql(base, "query { shouldShowNux }", {}) == {"shouldShowNux": False}
    shots = Path(os.environ.get("STOCK_PLATFORM_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--window-size=1800,1000",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)

    def shown(by: str, selector: str, enabled: bool = False) -> list:
        """The matching elements that are displayed (and enabled), none while the page is still rendering."""
        try:
            return [
                e for e in driver.find_elements(by, selector) if e.is_displayed() and (e.is_enabled() or not enabled)
            ]
        except StaleElementReferenceException:  # re-rendered while we looked: look again
            return []

    def click(element) -> bool:
        """Click `element`; False if it was re-rendered first (the click then did not happen)."""
        try:
            element.click()
        except StaleElementReferenceException:
            return False
        return True

    def gone(element) -> bool:
        try:
            element.is_displayed()
        except StaleElementReferenceException:
            return True
        return False

    def graph_nodes() -> list[str]:
        """The asset names the lineage graph draws as nodes (not the sidebar's tree)."""
        return [name for name in ASSETS if shown(By.XPATH, f"{ASSET_NODE}[.//*[contains(text(), '{name}')]]")]

    try:
        driver.get(f"{base}/asset-groups")
        # The lineage starts with the two groups (ingest, warehouse) collapsed: expand them as a user would,
        # then reload so the graph is laid out and zoomed to fit with both open (the UI remembers them).
        wait_until(lambda: shown(By.CSS_SELECTOR, COLLAPSED_GROUP) or graph_nodes(), timeout=HANG_S, what="the graph")
        while groups := shown(By.CSS_SELECTOR, COLLAPSED_GROUP):
            if click(groups[0]):
                wait_until(lambda group=groups[0]: gone(group), timeout=HANG_S, what="a group to expand")
        driver.refresh()
        wait_until(lambda: graph_nodes() == list(ASSETS), timeout=HANG_S, what=f"the graph to show {ASSETS}")
        # Each node fetches its status after it is drawn: the picture is of the statuses, not of "Loading...".
        loading = "//*[contains(text(), 'Loading') or contains(text(), 'fetching statuses')]"
        wait_until(lambda: not shown(By.XPATH, loading), timeout=HANG_S, what="the nodes' statuses")
        driver.save_screenshot(str(shots / "asset_graph.png"))

        driver.get(f"{base}/assets/historical_stock_data_csv")
        # The run's summary is the extract's metadata: its rows_read entry shows the table has rendered.
        summary_row = "//*[contains(text(), 'rows_read')]"
        wait_until(lambda: shown(By.XPATH, summary_row), timeout=HANG_S, what="the extract's metadata")
        driver.save_screenshot(str(shots / "materialization_metadata.png"))

        with dg.DagsterInstance.from_config(str(home)) as instance:
            before = {r.run_id for r in instance.get_runs()}
        driver.get(f"{base}/assets/top_companies")
        materialize = "//button[.//span[text()='Materialize'] or text()='Materialize']"
        wait_until(
            lambda: any(click(b) for b in shown(By.XPATH, materialize, enabled=True)),
            timeout=HANG_S,
            what="Materialize",
        )
        with dg.DagsterInstance.from_config(str(home)) as instance:
            [run] = wait_until(
                lambda: [r for r in instance.get_runs() if r.run_id not in before], timeout=HANG_S, what="the run"
            )
            finished = wait_until(
                lambda: (r := instance.get_run_by_id(run.run_id)).is_finished and r,
                timeout=HANG_S,
                what="the run to finish",
                interval=1,
            )
            assert finished.status == dg.DagsterRunStatus.SUCCESS
            assert len(instance.get_runs()) == len(before) + 1  # the click launched exactly one run
        driver.get(f"{base}/runs/{run.run_id}")
        wait_until(lambda: shown(By.XPATH, "//*[contains(text(), 'Success')]"), timeout=HANG_S, what="the run page")
        driver.save_screenshot(str(shots / "run_success.png"))
    except Exception:
        driver.save_screenshot(str(shots / "failure.png"))
        (shots / "failure.html").write_text(driver.page_source)
        raise
    finally:
        driver.quit()


def dagster_cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), *args, "-m", "stock_platform.definitions"],
        cwd=PROJECT_ROOT,
        env={**os.environ, "DAGSTER_HOME": str(home)},
        capture_output=True,
        text=True,
        check=False,
        timeout=HANG_S,
    )


def test_cli_range_and_hand_picked_loads_are_one_run_each(stack, tmp_path: Path) -> None:
    home = tmp_path / "home"
    write_local_instance(home)
    batch = sample.generate(companies=14, listed=10, min_rows=50, max_rows=80)
    sample.upload(batch, stack.put)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert execute_batch(instance=instance).success
        keys = instance.get_dynamic_partitions("company")
    before = stack.table_rows()

    # A contiguous range from the CLI: frames and table of those companies, in one run (single-run policy).
    result = dagster_cli(
        home,
        "asset",
        "materialize",
        "--select",
        "company_stock_prices,historical_stocks_data",
        "--partition-range",
        f"{keys[1]}...{keys[3]}",
        "--config-json",
        json.dumps({"ops": {"load_stock_batch": {"config": {"force_reload": True}}}}),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # Then the extract alone, as the README says: a CSV-only run of the same (subsettable) step rewrites it.
    stack.s3.delete_object(Bucket=stack.bucket, Key="Output/historical_stock_data.csv")
    result = dagster_cli(home, "asset", "materialize", "--select", "historical_stock_data_csv")
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(stack.get("Output/historical_stock_data.csv").decode().splitlines()) == len(before)
    # A hand-picked set from the CLI: the job, its config naming the companies, one run.
    picked = [keys[0], keys[4], keys[6]]
    config = tmp_path / "picked.yaml"
    config.write_text(
        json.dumps({"ops": {"load_stock_batch": {"config": {"companies": picked, "force_reload": True}}}})
    )
    result = dagster_cli(home, "job", "execute", "-j", "stock_batch_job", "-c", str(config))
    assert result.returncode == 0, result.stderr[-3000:]

    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert len(runs) == 4  # the first load, the range, the extract, the hand-picked set
        records = instance.fetch_materializations(dg.AssetKey("historical_stocks_data"), limit=1000).records
        by_run = {r.run_id: set(r.asset_materialization.metadata["committed_companies"].value) for r in records}
        assert by_run[runs[2].run_id] == {keys[1], keys[2], keys[3]}
        assert runs[1].run_id not in by_run  # the extract run loads no company
        assert by_run[runs[0].run_id] == set(picked)
    assert stack.table_rows() == before  # forced reloads of unchanged files leave the same rows
