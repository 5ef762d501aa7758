"""The downloads domain's definitions: the daily download asset and its check, job and schedule, and the
domain's own resources (the price source, and the optional AWS Lambda that runs the download)."""

import os

import dagster as dg

from stock_platform.downloads.assets import build_download_asset, build_download_job, build_download_schedule
from stock_platform.downloads.serverless import DownloadLambda
from stock_platform.downloads.settings import LAMBDA_FUNCTION, LAMBDA_REGION, DownloadSettings
from stock_platform.settings import Settings, optional_env


def build_download_defs(settings: Settings) -> dg.Definitions:
    downloads = DownloadSettings.from_environment()
    asset = build_download_asset(downloads)
    job = build_download_job(asset)
    return dg.Definitions(
        assets=[asset],
        jobs=[job],
        schedules=[build_download_schedule(job, downloads)],
        resources={
            "price_source": downloads.price_source(),
            # Bound only when set and not empty: the deploy stack sets it empty when there is no downloader Lambda.
            "download_lambda": DownloadLambda(
                **optional_env(region_name=LAMBDA_REGION),
                **({"function_name": dg.EnvVar(LAMBDA_FUNCTION)} if os.environ.get(LAMBDA_FUNCTION) else {}),
            ),
        },
    )
