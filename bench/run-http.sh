#!/usr/bin/env bash
# The HTTP benchmark of issue 8: tidefeed's HTTP service beside Redis 7
# (appendonly + appendfsync always) and a bare axum server, all on
# 127.0.0.1, driven by one load tool (bench/src/http_load) with the same
# concurrency. Prints; asserts nothing.
#
#   bench/run-http.sh [http-load flags...]     e.g. --repeats 5 --only put,batch
#
# Installs Debian's redis-server when it is missing (and says so), builds
# the tidefeed release binary and the bench tools, starts the three servers
# in a temporary directory, runs the load tool, and stops the servers and
# removes the directory on exit, whatever happens.
#
# Environment:
#   BENCH_TMP       parent of the temporary directory (default $TMPDIR or /tmp)
#   BENCH_PERF=1    records a CPU profile (perf record, cpu-clock) of tidefeed
#                   and bare-axum (apart by pid, printed at the start) into
#                   bench/target/perf-http.data, with frame-pointer call graphs;
#   BENCH_PERF=dwarf  the same with DWARF unwinding (Rust code has no frame
#                   pointers, so callers need it; big files: combine it with
#                   --only put --put-conns 64 --repeats 1)
#   BENCH_PRELOAD=LIB  runs tidefeed and bare-axum with LD_PRELOAD=LIB (an
#                   allocator experiment, e.g. Debian's libjemalloc2)
#   TIDEFEED_*      reach tidefeed as usual (e.g.
#                   TIDEFEED_STORAGE__DURABILITY=async for the CPU ceiling)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

say() { echo "run-http.sh: $*" >&2; }

if ! command -v redis-server >/dev/null 2>&1; then
    say "redis-server is missing: installing Debian's redis-server package (apt-get install -y redis-server)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq redis-server >/dev/null
fi
say "$(redis-server --version)"

# 10,000 open streams need 10,000 descriptors in the servers and in the
# load tool; take the hard limit (capped, in case it is unlimited).
hard=$(ulimit -Hn)
if [[ $hard == unlimited || $hard -gt 65536 ]]; then hard=65536; fi
ulimit -n "$hard"
if [[ $(ulimit -n) -lt 10100 ]]; then
    say "warning: open files limited to $(ulimit -n); the 10,000-stream figure needs about 10,100"
fi

tmp=$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/tidefeed-http-bench.XXXXXX")
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "building (cargo build --release; bench tools)"
cargo build --release --quiet
cargo build --release --quiet --manifest-path bench/Cargo.toml --bin http-load --bin bare-axum

# Waits for a "<name> ready: listen=ADDR ..." line in FILE; prints ADDR.
wait_ready() {
    local name=$1 file=$2 pid=$3
    for _ in $(seq 600); do
        if line=$(grep -m1 "^$name ready: " "$file" 2>/dev/null); then
            line=${line#*listen=}
            echo "${line%% *}"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            say "$name exited before it was ready:"
            cat "$file" "$file.err" >&2 2>/dev/null || true
            return 1
        fi
        sleep 0.1
    done
    say "$name not ready after 60 s"
    return 1
}

# A free port for Redis (which cannot bind port 0): a random one that
# nothing listens on; Redis failing to bind it is caught below.
free_port() {
    local port
    for _ in $(seq 100); do
        port=$((20000 + RANDOM % 20000))
        if ! ss -Htln "sport = :$port" | grep -q .; then
            echo "$port"
            return 0
        fi
    done
    return 1
}

mkdir -p "$tmp/redis" "$tmp/tidefeed"
redis_port=$(free_port)
cat >"$tmp/redis/redis.conf" <<EOF
bind 127.0.0.1
port $redis_port
dir $tmp/redis
appendonly yes
appendfsync always
save ""
maxclients 12000
protected-mode no
daemonize no
logfile $tmp/redis/redis.log
EOF
redis-server "$tmp/redis/redis.conf" &
pids+=($!)
redis_pid=$!
for _ in $(seq 100); do
    if redis-cli -p "$redis_port" ping >/dev/null 2>&1; then break; fi
    if ! kill -0 "$redis_pid" 2>/dev/null; then
        say "redis-server exited:"; cat "$tmp/redis/redis.log" >&2; exit 1
    fi
    sleep 0.1
done
redis-cli -p "$redis_port" ping >/dev/null
say "redis-server on 127.0.0.1:$redis_port (pid $redis_pid), appendonly yes, appendfsync always, maxclients $(redis-cli -p "$redis_port" config get maxclients | tail -1)"

preload=()
if [[ -n ${BENCH_PRELOAD:-} ]]; then
    preload=(env "LD_PRELOAD=$BENCH_PRELOAD")
    say "tidefeed and bare-axum run with LD_PRELOAD=$BENCH_PRELOAD"
fi

TIDEFEED_SERVER__MAX_STREAMS=20000 "${preload[@]}" target/release/tidefeed serve \
    --listen 127.0.0.1:0 --data-dir "$tmp/tidefeed/data" \
    >"$tmp/tidefeed/out" 2>"$tmp/tidefeed/out.err" &
pids+=($!)
tidefeed_pid=$!
tidefeed_addr=$(wait_ready tidefeed "$tmp/tidefeed/out" "$tidefeed_pid")
say "tidefeed on $tidefeed_addr (pid $tidefeed_pid), durability ${TIDEFEED_STORAGE__DURABILITY:-sync}, max_streams 20000"

"${preload[@]}" bench/target/release/bare-axum --listen 127.0.0.1:0 >"$tmp/bare.out" 2>"$tmp/bare.out.err" &
pids+=($!)
bare_pid=$!
bare_addr=$(wait_ready bare-axum "$tmp/bare.out" "$bare_pid")
say "bare-axum on $bare_addr (pid $bare_pid)"

if [[ ${BENCH_PERF:-0} != 0 ]]; then
    if [[ $BENCH_PERF == dwarf ]]; then
        call_graph=(-F 249 --call-graph dwarf,16384)
    else
        call_graph=(-F 999 -g)
    fi
    perf record -e cpu-clock "${call_graph[@]}" -p "$tidefeed_pid,$bare_pid" -o "$tmp/perf.data" 2>"$tmp/perf.err" &
    perf_pid=$!
    pids=("$perf_pid" "${pids[@]}")
fi

# The disk's durable append rate now (the servers' data directories live
# on the same file system): 128-byte O_DSYNC appends to a growing file,
# each one a write + fdatasync, as an AOF or an un-preallocated log does.
dsync_rate() {
    local start end
    start=$(date +%s.%N)
    dd if=/dev/zero of="$tmp/dsync-probe" bs=128 count=300 oflag=dsync status=none
    end=$(date +%s.%N)
    rm -f "$tmp/dsync-probe"
    awk -v s="$start" -v e="$end" 'BEGIN { printf "%.0f/s (%.0f us each)", 300 / (e - s), (e - s) * 1e6 / 300 }'
}

echo "uptime at start: $(uptime)"
echo "raw 128 B write + fdatasync (O_DSYNC appends) at start: $(dsync_rate)"
echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' (with local changes)')"
bench/target/release/http-load \
    --tidefeed "$tidefeed_addr" --tidefeed-pid "$tidefeed_pid" \
    --redis "127.0.0.1:$redis_port" --redis-pid "$redis_pid" \
    --bare "$bare_addr" --bare-pid "$bare_pid" \
    "$@"
echo "uptime at end: $(uptime)"
echo "raw 128 B write + fdatasync (O_DSYNC appends) at end: $(dsync_rate)"

if [[ ${BENCH_PERF:-0} != 0 ]]; then
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
    mv "$tmp/perf.data" bench/target/perf-http.data
    say "CPU profile of tidefeed (pid $tidefeed_pid) and bare-axum (pid $bare_pid) in bench/target/perf-http.data (perf report -i bench/target/perf-http.data)"
fi
if [[ -s $tmp/tidefeed/out.err ]]; then
    say "tidefeed logged $(wc -l <"$tmp/tidefeed/out.err") lines; the last ones:"
    tail -5 "$tmp/tidefeed/out.err" >&2
fi
