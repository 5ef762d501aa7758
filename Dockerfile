# The stock_platform code location, served over gRPC: the image shape of Dagster's ECS / Docker deployment
# examples. The webserver and daemon run from the same image (or dagster's own) with the same DAGSTER_HOME,
# and reach this container at <host>:4000 (see README "Deploying").
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=1

RUN useradd --create-home --uid 10001 dagster \
    && mkdir -p /opt/dagster/app "$DAGSTER_HOME" \
    && chown dagster /opt/dagster/dagster_home

WORKDIR /opt/dagster/app

# Pinned dependencies first, in their own layer: code changes do not reinstall them.
COPY requirements.lock ./
RUN pip install --requirement requirements.lock

COPY pyproject.toml README.md ./
COPY stock_platform ./stock_platform
RUN pip install --no-deps .

COPY dagster.yaml workspace.yaml "$DAGSTER_HOME"/

USER dagster
EXPOSE 4000

CMD ["dagster", "code-server", "start", "--host", "0.0.0.0", "--port", "4000", "--module-name", "stock_platform.definitions", "--location-name", "stock_platform"]
