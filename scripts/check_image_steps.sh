#!/usr/bin/env bash
# Replay the Dockerfile's install steps and its CMD in a clean virtualenv (there is no Docker engine here),
# then ask the served code location for its health over gRPC. Run by `make image-check`.
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
trap 'kill "${server:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT

python3 -m venv "$work/venv"
pip="$work/venv/bin/pip"
"$pip" install --quiet --requirement requirements.lock          # RUN pip install --requirement requirements.lock
"$pip" install --quiet --no-deps .                              # RUN pip install --no-deps .
mkdir -p "$work/dagster_home" && cp dagster.yaml workspace.yaml "$work/dagster_home/"   # COPY ... $DAGSTER_HOME/

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cd "$work"   # the image serves the installed package, not the source tree
DAGSTER_HOME="$work/dagster_home" "$work/venv/bin/dagster" code-server start --host 127.0.0.1 --port "$port" \
    --module-name stock_platform.definitions --location-name stock_platform > "$work/server.log" 2>&1 &
server=$!
for _ in $(seq 1 60); do
    if "$work/venv/bin/dagster" api grpc-health-check --port "$port" --host 127.0.0.1 >/dev/null 2>&1; then
        echo "image steps OK: pinned install + code server healthy on port $port"
        "$work/venv/bin/pip" check
        exit 0
    fi
    sleep 2
done
cat "$work/server.log"
echo "code server did not become healthy" >&2
exit 1
