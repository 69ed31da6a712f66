#!/usr/bin/env bash
# Benchmark (not a test): one batch of accounts through `imapfleet run` (embedded: in-process queue,
# locks and state) and through `imapfleet dispatch` + worker processes on RabbitMQ and Redis, on the lab.
#
#   scripts/bench_fleet.sh                      200 accounts of the small preset (~60 messages each)
#   BENCH_ACCOUNTS=50 scripts/bench_fleet.sh
#
# What it does:
#   1. starts the lab and the services (scripts/lab.sh start, scripts/services.sh start), builds the
#      release binary;
#   2. fills host1 of users user$BENCH_FIRST .. (default user1801 .. user2000, BENCH_ACCOUNTS of them)
#      with the small preset (seed = user number; `imapfleet generate`, timed) unless BENCH_KEEP_SOURCE=1
#      (then host1 is taken as it is);
#   3. embedded: empties those users on host2, runs `imapfleet run --workers $BENCH_TASKS`;
#   4. fleet: empties host2 again, dispatches the same batch, starts $BENCH_WORKERS worker processes
#      (concurrency $BENCH_TASKS / workers each, so both runs work on as many tasks at once), waits
#      with `status --wait`, stops the workers;
#   5. prints wall time, messages copied and messages/s of both, accounts done/failed, and the fleet's
#      overhead in % of the embedded wall time (target: under 5 %), with the load average.
# Both runs wipe host2 of the bench users: do not run it beside tests that use them. The default users
# are inside scripts/bench_nightly.sh's range (user1001 .. user2000): run one benchmark at a time.
# The task queue (a fresh name per run) and its dead-letter queue are deleted at the end.
# Environment: BENCH_ACCOUNTS (200), BENCH_FIRST (1801), BENCH_WORKERS (2), BENCH_TASKS (8),
# BENCH_KEEP_SOURCE, BENCH_NO_BUILD=1 (use target/release/imapfleet as it is).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

N=${BENCH_ACCOUNTS:-200}
FIRST=${BENCH_FIRST:-1801}
WORKERS=${BENCH_WORKERS:-2}
TASKS=${BENCH_TASKS:-8}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release/imapfleet

log() { printf 'bench_fleet: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

scripts/lab.sh start >/dev/null
scripts/services.sh start >/dev/null
eval "$(scripts/lab.sh env)"
eval "$(scripts/services.sh env)"
[ $((FIRST + N - 1)) -le "$LAB_USERS" ] || die "the lab has users up to user$LAB_USERS"
export IMAPFLEET_AMQP_URL IMAPFLEET_REDIS_URL
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    log "building (release)"
    cargo build --release -q -p imapfleet --bin imapfleet
fi
[ -x "$BIN" ] || die "$BIN is missing"

WORK=$(mktemp -d /tmp/imapfleet-bench-fleet.XXXXXX)
export IMAPFLEET_QUEUE="imapfleet.bench.$$"
WORKER_PIDS=()
cleanup() {
    for p in "${WORKER_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    # The task queue and its dead-letter queue (delay queues expire by themselves).
    if [ -e "$WORK/queue-used" ] && command -v rabbitmqctl >/dev/null 2>&1; then
        for q in "$IMAPFLEET_QUEUE" "$IMAPFLEET_QUEUE.dead"; do
            timeout 20 rabbitmqctl -q -n "${IMAPFLEET_RABBIT_NODE:-rabbit@localhost}" delete_queue "$q" \
                >/dev/null 2>&1 || true
        done
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

printf '%s\n' "$LAB_PASSWORD" > "$WORK/pass"
users=()
for ((i = FIRST; i < FIRST + N; i++)); do users+=("$(printf 'user%04d' "$i")"); done

FILL_WALL=-
if [ "${BENCH_KEEP_SOURCE:-0}" != 1 ]; then
    log "filling host1 of ${#users[@]} users (small preset)"
    fill_t0=$(date +%s.%N)
    for u in "${users[@]}"; do
        scripts/lab.sh wipe 1 "$u" >/dev/null
        "$BIN" generate --preset small --seed "${u#user}" --host1 "$LAB_HOST1" --port1 "$LAB_HOST1_PORT" \
            --user1 "$u" --passfile1 "$WORK/pass" --cafile1 "$LAB_CA" >/dev/null
    done
    FILL_WALL=$(awk -v a="$fill_t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    log "filled in $FILL_WALL s"
fi

{
    echo "# bench_fleet: $N accounts"
    for u in "${users[@]}"; do echo "$LAB_HOST1;$u;$LAB_PASSWORD;$LAB_HOST2;$u;$LAB_PASSWORD;"; done
} > "$WORK/batch.txt"
DEFAULTS="--port1 $LAB_HOST1_PORT --port2 $LAB_HOST2_PORT --cafile1 $LAB_CA --cafile2 $LAB_CA"

wipe2() { for u in "${users[@]}"; do scripts/lab.sh wipe 2 "$u" >/dev/null; done; }
now() { date +%s.%N; }
calc() { awk "BEGIN { print $1 }"; }
copied() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["totals"]["transferred"])' "$1"; }
statuses() { python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["by_status"]; print("%d done, %d failed" % (s.get("done",0), s.get("failed",0)))' "$1"; }

log "embedded: imapfleet run --workers $TASKS (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
wipe2
t0=$(now)
"$BIN" run --quiet --workers "$TASKS" --accounts "$WORK/batch.txt" --defaults="$DEFAULTS" \
    --report-json "$WORK/embedded.json" > "$WORK/embedded.out" 2> "$WORK/embedded.err" || {
    tail -5 "$WORK/embedded.out"; log "embedded run failed"; exit 1; }
t1=$(now)
EMB_WALL=$(calc "$t1 - $t0")
EMB_MSGS=$(copied "$WORK/embedded.json")

log "fleet: dispatch + $WORKERS workers on RabbitMQ/Redis (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
wipe2
export IMAPFLEET_SECRET_KEY
IMAPFLEET_SECRET_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
per=$(( (TASKS + WORKERS - 1) / WORKERS ))
: > "$WORK/queue-used"
for ((w = 0; w < WORKERS; w++)); do
    "$BIN" worker --concurrency "$per" --metrics-addr off > "$WORK/worker$w.err" 2>&1 &
    WORKER_PIDS+=("$!")
done
sleep 1
for p in "${WORKER_PIDS[@]}"; do
    kill -0 "$p" 2>/dev/null || { tail -5 "$WORK"/worker*.err >&2; die "a worker did not start"; }
done
t0=$(now)
JOB=$("$BIN" dispatch --accounts "$WORK/batch.txt" --defaults="$DEFAULTS" --job "bench-$$" 2>"$WORK/dispatch.err" |
    awk '$1 == "job" { print $2; exit }') || true
[ -n "$JOB" ] || { cat "$WORK/dispatch.err" >&2; die "dispatch failed"; }
# `status --wait` gives up at the first failed read of the job (a Redis response slower than the
# client's 500 ms timeout: "state backend: timed out", seen on big jobs under load): wait again then.
finished() { python3 -c 'import json,sys; v=json.load(open(sys.argv[1])); sys.exit(0 if v["accounts"] and all(a["status"] in ("done","failed","skipped") for a in v["accounts"]) else 1)' "$1" 2>/dev/null; }
for attempt in $(seq 1 20); do
    "$BIN" status "$JOB" --wait --json > "$WORK/fleet.json" 2>"$WORK/status.err" || true
    finished "$WORK/fleet.json" && break
    log "status --wait failed ($(tail -1 "$WORK/status.err")); waiting again ($attempt)"
    sleep 0.5
done
finished "$WORK/fleet.json" || { cat "$WORK/status.err" >&2; die "no final status for job $JOB"; }
t1=$(now)
FLEET_WALL=$(calc "$t1 - $t0")
FLEET_MSGS=$(copied "$WORK/fleet.json")
for p in "${WORKER_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
wait "${WORKER_PIDS[@]}" 2>/dev/null || true
WORKER_PIDS=()

printf '\n%s accounts (%s .. %s, small preset); host1 filled in %s s\n' "$N" "${users[0]}" "${users[-1]}" "$FILL_WALL"
printf '%-34s %10s %10s %10s  %s\n' "run ($N accounts)" "wall s" "messages" "msg/s" "accounts"
printf '%-34s %10.2f %10d %10.1f  %s\n' "embedded (run, $TASKS tasks)" "$EMB_WALL" "$EMB_MSGS" "$(calc "$EMB_MSGS / $EMB_WALL")" "$(statuses "$WORK/embedded.json")"
printf '%-34s %10.2f %10d %10.1f  %s\n' "fleet ($WORKERS workers x $per, AMQP)" "$FLEET_WALL" "$FLEET_MSGS" "$(calc "$FLEET_MSGS / $FLEET_WALL")" "$(statuses "$WORK/fleet.json")"
printf 'fleet overhead: %+.1f %% of the embedded wall time (target < 5 %%); load average: %s\n' \
    "$(calc "($FLEET_WALL - $EMB_WALL) * 100 / $EMB_WALL")" "$(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$EMB_MSGS" != "$FLEET_MSGS" ]; then
    log "the two runs copied different counts: $EMB_MSGS vs $FLEET_MSGS"
    exit 1
fi
