#!/usr/bin/env bash
# tansu: the real Kafka-protocol broker used by the connector's real-broker tests.
#
#   scripts/tansu.sh install   build tansu 0.6.0 once into the cache directory (idempotent)
#   scripts/tansu.sh path      print the binary's path if installed (exit 1 if not)
#   scripts/tansu.sh start     start a broker on 127.0.0.1 with a free port; prints
#                              "PORT PID"; the broker's log goes to $TANSU_LOG (or a temp file)
#
# The cache directory is $TIDEFEED_TOOLS_DIR, else $XDG_CACHE_HOME/tidefeed-tools, else
# ~/.cache/tidefeed-tools. The tests find the binary the same way (or through $TANSU_BIN).
set -euo pipefail

TANSU_VERSION=0.6.0
cache_dir() {
    if [[ -n "${TIDEFEED_TOOLS_DIR:-}" ]]; then
        echo "$TIDEFEED_TOOLS_DIR"
    elif [[ -n "${XDG_CACHE_HOME:-}" ]]; then
        echo "$XDG_CACHE_HOME/tidefeed-tools"
    else
        echo "$HOME/.cache/tidefeed-tools"
    fi
}
root="$(cache_dir)/tansu-$TANSU_VERSION"
bin="$root/bin/tansu"

case "${1:-}" in
install)
    if [[ -x "$bin" ]]; then
        echo "tansu $TANSU_VERSION already installed at $bin"
        exit 0
    fi
    echo "installing tansu $TANSU_VERSION into $root (a one-off build; it takes a while)"
    mkdir -p "$root"
    # A private target dir so an interrupted build resumes and does not touch the project's.
    # --debug: the dev profile compiles in about a third of the release build's time
    # (measured here: 12 min against 43 on two loaded cores), and the tests need
    # no broker speed.
    CARGO_TARGET_DIR="$root/build" cargo install tansu --version "$TANSU_VERSION" --locked \
        --features dynostore --root "$root" --debug
    rm -rf "$root/build"
    echo "installed tansu $TANSU_VERSION at $bin"
    ;;
path)
    if [[ -x "$bin" ]]; then echo "$bin"; else exit 1; fi
    ;;
start)
    if [[ ! -x "$bin" ]]; then
        echo "tansu is not installed: run scripts/tansu.sh install" >&2
        exit 1
    fi
    # A port nobody listens on ($TANSU_PORT, or a random one).
    port="${TANSU_PORT:-}"
    while [[ -z "$port" ]]; do
        candidate=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then
            port=$candidate
        fi
    done
    log="${TANSU_LOG:-$(mktemp -t tansu.XXXXXX.log)}"
    "$bin" broker --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine memory://tansu/ >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port $pid"
            exit 0
        fi
        sleep 0.1
    done
    echo "tansu did not start listening on 127.0.0.1:$port; log: $log" >&2
    kill "$pid" 2>/dev/null || true
    exit 1
    ;;
*)
    echo "usage: $0 install|path|start" >&2
    exit 2
    ;;
esac
