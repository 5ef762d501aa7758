# One image for every Dagster process of the platform. By default it serves the stock_platform code location over
# gRPC on port 4000; the same image runs the webserver (`dagster-webserver -w /opt/dagster/app/workspace.yaml`),
# the daemon (`dagster-daemon run -w ...`) and, started by the daemon's run launcher, each run. deploy/README.md
# says which instance and workspace each one uses; deploy/cloudformation.yaml runs them on ECS.
# `make image-check` replays these steps without Docker: keep its replay in step with what is here.
FROM python:3.11-slim

# The image's own reference (registry/repository:tag). The code location records it on every run it creates, so a
# run launcher that builds a run's task from the run starts this very image. Pass --build-arg at build time; the
# ECS stack also sets it at run time from its ImageUri parameter.
ARG DAGSTER_CURRENT_IMAGE=stock-platform:latest

# DAGSTER_HOME holds the single-machine instance (dagster.yaml); the ECS stack points DAGSTER_HOME at
# /opt/dagster/ecs_home instead. DAGSTER_PG_PORT and DAGSTER_CODE_LOCATION_PORT are the defaults the instance and
# workspace files document: Dagster's `env:` config has no default of its own, so the image provides it.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    DAGSTER_CURRENT_IMAGE=${DAGSTER_CURRENT_IMAGE} \
    DAGSTER_PG_PORT=5432 \
    DAGSTER_CODE_LOCATION_PORT=4000 \
    DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=1

RUN useradd --create-home --uid 10001 dagster \
    && mkdir -p /opt/dagster/app /opt/dagster/dagster_home /opt/dagster/ecs_home \
    && chown dagster /opt/dagster/dagster_home /opt/dagster/ecs_home

WORKDIR /opt/dagster/app

# Pinned dependencies first, in their own layer: code changes do not reinstall them.
COPY requirements.lock ./
RUN pip install --requirement requirements.lock

COPY pyproject.toml README.md ./
COPY stock_platform ./stock_platform
RUN pip install --no-deps .

COPY dagster.yaml /opt/dagster/dagster_home/
COPY deploy/ecs/dagster.yaml /opt/dagster/ecs_home/
COPY deploy/workspace.yaml ./

USER dagster
EXPOSE 4000 3000

# For the default command, the code server. ECS ignores this and uses each task definition's health check (the
# webserver and daemon have their own there); under plain Docker, run those two with --no-healthcheck.
HEALTHCHECK --start-period=60s --interval=30s --timeout=10s --retries=3 \
    CMD ["dagster", "api", "grpc-health-check", "--port", "4000"]

CMD ["dagster", "code-server", "start", "--host", "0.0.0.0", "--port", "4000", "--module-name", "stock_platform.definitions", "--location-name", "stock_platform"]
