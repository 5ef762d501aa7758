#!/usr/bin/env bash
# Replay the Dockerfile without Docker (there is no Docker engine here): the build context that .dockerignore lets
# through, every COPY into a scratch root, the ENV, the RUN pip steps in a clean virtualenv (standing in for the base
# image), then the image's CMD (the gRPC code server) checked with the image's HEALTHCHECK, and the webserver the
# ECS stack runs from the same image, on the production workspace, showing the code location loaded.
# Run by `make image-check`.
#
# IMAGE_CHECK_VENV=<virtualenv> uses that environment instead of building one (the RUN pip steps are skipped): the
# test of this script's signal handling uses it to get to a running code server in seconds.
#
# It stops everything it started when it exits, however it exits: on success, on failure, on Ctrl-C (SIGINT), on
# SIGTERM or SIGHUP to it or to its process group.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
work="$(mktemp -d)"
children=()  # the servers this script starts; each leads its own process group (see `spawn`)
step=""      # the step `run` is waiting for, if any

stop_children() {
    local pid alive groups=("${children[@]}" ${step:+"$step"})
    [ "${#groups[@]}" -gt 0 ] || return 0
    for pid in "${groups[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
    for _ in $(seq 1 150); do  # up to 30 s to shut down cleanly
        alive=no
        for pid in "${groups[@]}"; do kill -0 -- "-$pid" 2>/dev/null && alive=yes; done
        [ "$alive" = no ] && break
        sleep 0.2
    done
    for pid in "${groups[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap 'stop_children; rm -rf "$work"' EXIT
trap 'echo "image-check: interrupted, stopping what it started" >&2; exit 130' INT
trap 'echo "image-check: terminated, stopping what it started" >&2; exit 143' TERM
trap 'exit 129' HUP

# Start "$@" in the background as the leader of its own session and process group, so that one signal to the
# group reaches it and its children (the code server's gRPC subprocess), and with SIGINT at its default. A background
# job of a non-interactive shell starts with SIGINT ignored, and Dagster's CLIs give SIGTERM whatever SIGINT has
# (dagster/_utils/interrupts.py, setup_interrupt_handlers): started with a bare `&`, the code server ignored SIGTERM
# and outlived this script, on success too.
spawn() {
    python3 -c 'import os, signal, sys; os.setsid(); signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])' "$@" &
}
start() {  # a server, stopped when the script exits
    spawn "$@"
    children+=("$!")
}
# Run a step to completion. `wait` returns as soon as a trapped signal arrives, so Ctrl-C during a long pip install
# stops it at once instead of after it.
run() {
    local status=0
    spawn "$@"
    step=$!
    wait "$step" || status=$?
    step=""
    return "$status"
}
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

root="$work/root"  # the image's filesystem
venv="${IMAGE_CHECK_VENV:-$work/venv}"
port="$(free_port)"  # the container's 4000, published on a free port of this machine (docker run -p <port>:4000)

# Send the build context as .dockerignore filters it, and turn the Dockerfile into the shell steps that replay it.
python3 - "$repo" "$work" <<'PY'
import json, os, re, shlex, shutil, sys

repo, work = sys.argv[1:]
context, root = os.path.join(work, "context"), os.path.join(work, "root")

def pattern(text):
    """A .dockerignore pattern as a regex over slash-separated paths (Go filepath.Match, plus `**`)."""
    out, i = "", 0
    while i < len(text):
        if text.startswith("**/", i):
            out, i = out + "(.*/)?", i + 3
        elif text.startswith("**", i):
            out, i = out + ".*", i + 2
        elif text[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif text[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(text[i]), i + 1
    return re.compile(out + r"\Z")

rules = []
for line in open(os.path.join(repo, ".dockerignore")):
    line = line.strip()
    if line and not line.startswith("#"):
        negated = line.startswith("!")
        text = line.lstrip("!").strip("/")
        rules.append((negated, text, pattern(text)))

def excluded(path):
    # The last rule matching the path or one of its parent directories decides.
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for negated, _, regex in rules:
        if any(regex.match(p) for p in prefixes):
            result = not negated
    return result

for directory, subdirs, files in os.walk(repo):
    relative = "" if directory == repo else os.path.relpath(directory, repo).replace(os.sep, "/")
    keep = []
    for name in subdirs:
        path = f"{relative}/{name}" if relative else name
        if not excluded(path) or any(n and t.startswith(path + "/") for n, t, _ in rules):
            keep.append(name)
    subdirs[:] = keep
    for name in files:
        path = f"{relative}/{name}" if relative else name
        if not excluded(path):
            os.makedirs(os.path.join(context, relative), exist_ok=True)
            shutil.copy2(os.path.join(repo, path), os.path.join(context, path))

# The Dockerfile, one instruction a line (continuations joined), replayed as shell steps.
text = re.sub(r"\\\n", " ", open(os.path.join(repo, "Dockerfile")).read())
instructions = [l.strip() for l in text.splitlines() if l.strip() and not l.strip().startswith("#")]
variables, steps, workdir = {}, [], "/"

def expand(value):
    return re.sub(r"\$\{?(\w+)\}?", lambda m: variables.get(m[1], ""), value)

def in_root(path):
    return '"$root"' + shlex.quote(path) if path.startswith("/") else shlex.quote(path)

def published(argv):
    # The container's port and interface, as `docker run -p` would publish them here.
    out = []
    for previous, arg in zip([None, *argv], argv):
        out.append('"$port"' if previous == "--port" else "127.0.0.1" if previous == "--host" else shlex.quote(arg))
    return " ".join(out)

for line in instructions:
    keyword, _, rest = line.partition(" ")
    keyword = keyword.upper()
    if keyword == "ARG":
        name, _, default = rest.partition("=")
        variables[name] = default
        steps.append(f"# ARG {rest}")
    elif keyword == "ENV":
        for pair in shlex.split(rest):
            name, _, value = pair.partition("=")
            variables[name] = expand(value)
            if name == "PIP_NO_CACHE_DIR":  # keep this machine's pip cache: caching does not change what is installed
                steps.append(f"# ENV {name}={value} (not replayed)")
            else:
                steps.append(f"export {name}={in_root(variables[name])}")
    elif keyword == "WORKDIR":
        workdir = expand(rest)
        steps.append(f"mkdir -p {in_root(workdir)} && cd {in_root(workdir)}")
    elif keyword == "COPY":
        *sources, target = [expand(a) for a in shlex.split(rest)]
        for source in sources:
            steps.append(f"image_copy {shlex.quote(source)} {in_root(target)}")
    elif keyword == "RUN" and rest.startswith("pip "):
        steps.append(f"image_pip {rest[len('pip '):]}")
    elif keyword == "HEALTHCHECK":
        steps.append(f"healthcheck=({published(json.loads(rest.split(' CMD ', 1)[1]))})")
    elif keyword == "CMD":
        steps.append(f"cmd=({published(json.loads(rest))})")
    else:  # FROM (the virtualenv), RUN useradd/mkdir/chown, USER, EXPOSE: nothing to replay outside a container
        steps.append(f"# {line}")

with open(os.path.join(work, "replay.sh"), "w") as replay:
    replay.write("\n".join(steps) + "\n")
PY

# COPY <source> <target> from the build context, with Docker's meaning: a directory's contents are copied.
image_copy() {
    local source="$work/context/$1" target="$2"
    if [ ! -e "$source" ]; then
        echo "COPY $1: not in the build context (see .dockerignore)" >&2
        return 1
    fi
    if [ -d "$source" ]; then
        mkdir -p "$target" && cp -R "$source/." "$target/"
    elif [[ "$target" == */ ]]; then
        mkdir -p "$target" && cp "$source" "$target"
    else
        mkdir -p "$(dirname "$target")" && cp "$source" "$target"
    fi
}
image_pip() {
    if [ -n "${IMAGE_CHECK_VENV:-}" ]; then
        echo "  (skipped: IMAGE_CHECK_VENV) pip $*"
    else
        run "$venv/bin/pip" --quiet "$@"
    fi
}

echo "replaying the Dockerfile:"
sed 's/^/  /' "$work/replay.sh"
if [ -z "${IMAGE_CHECK_VENV:-}" ]; then
    run python3 -m venv "$venv"
fi
export PATH="$venv/bin:$PATH"
mkdir -p "$root"
# shellcheck source=/dev/null
source "$work/replay.sh"

start "${cmd[@]}" > "$work/code-server.log" 2>&1
healthy=no
for _ in $(seq 1 120); do
    if run "${healthcheck[@]}" > /dev/null 2>&1; then healthy=yes; break; fi
    sleep 1
done
if [ "$healthy" = no ]; then
    cat "$work/code-server.log"
    echo "image-check: the code server did not pass the HEALTHCHECK in 120 s" >&2
    exit 1
fi
echo "code server healthy (HEALTHCHECK) on port $port"

# The webserver, as the ECS stack runs it: the same image, the production workspace pointing at the code server.
# Its instance is a throwaway SQLite one here; the instance files are checked by the tests on PostgreSQL.
if ! command -v dagster-webserver > /dev/null; then
    echo "image-check: dagster-webserver is not installed by requirements.lock, so the image cannot run the UI;" \
        "it has to be a dependency of the package (then 'make lock')" >&2
    exit 1
fi
web_port="$(free_port)"
mkdir -p "$work/webserver_home"
DAGSTER_HOME="$work/webserver_home" DAGSTER_CODE_LOCATION_HOST=127.0.0.1 DAGSTER_CODE_LOCATION_PORT="$port" \
    start dagster-webserver -h 127.0.0.1 -p "$web_port" -w "$root/opt/dagster/app/workspace.yaml" \
    > "$work/webserver.log" 2>&1
status=""
for _ in $(seq 1 120); do
    status="$(python3 - "$web_port" <<'PY' 2>/dev/null || true
import json, sys, urllib.request
query = "{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError { __typename } } } } }"
request = urllib.request.Request(
    f"http://127.0.0.1:{sys.argv[1]}/graphql", json.dumps({"query": query}).encode(), {"Content-Type": "application/json"}
)
entries = json.load(urllib.request.urlopen(request, timeout=5))["data"]["workspaceOrError"]["locationEntries"]
print(" ".join(f"{e['name']}={(e['locationOrLoadError'] or {}).get('__typename')}" for e in entries))
PY
)"
    [ "$status" = "stock_platform=RepositoryLocation" ] && break
    sleep 1
done
if [ "$status" != "stock_platform=RepositoryLocation" ]; then
    cat "$work/webserver.log"
    echo "image-check: the webserver did not load the code location over gRPC (got: ${status:-no answer})" >&2
    exit 1
fi
echo "webserver on the production workspace: location stock_platform loaded from the code server"

if [ -z "${IMAGE_CHECK_VENV:-}" ]; then
    run "$venv/bin/pip" check
fi
echo "image steps OK"
