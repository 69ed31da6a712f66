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
#   2. fills host1 of users user$BENCH_FIRST .. (default user0001, BENCH_ACCOUNTS of them) with the small
#      preset (seed = user number) unless BENCH_KEEP_SOURCE=1 (then host1 is taken as it is);
#   3. embedded: empties those users on host2, runs `imapfleet run --workers $BENCH_TASKS`;
#   4. fleet: empties host2 again, dispatches the same batch, starts $BENCH_WORKERS worker processes
#      (concurrency $BENCH_TASKS / workers each, so both runs work on as many tasks at once), waits
#      with `status --wait`, stops the workers;
#   5. prints wall time, messages copied and messages/s of both, and the fleet's overhead in % of the
#      embedded wall time (target: under 5 %).
# Both runs wipe host2 of the bench users: do not run it beside tests that use them.
# Environment: BENCH_ACCOUNTS (200), BENCH_FIRST (1), BENCH_WORKERS (2), BENCH_TASKS (8),
# BENCH_KEEP_SOURCE, BENCH_NO_BUILD=1 (use target/release/imapfleet as it is).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

N=${BENCH_ACCOUNTS:-200}
FIRST=${BENCH_FIRST:-1}
WORKERS=${BENCH_WORKERS:-2}
TASKS=${BENCH_TASKS:-8}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release/imapfleet

log() { printf 'bench_fleet: %s\n' "$*" >&2; }

scripts/lab.sh start >/dev/null
scripts/services.sh start >/dev/null
eval "$(scripts/lab.sh env)"
eval "$(scripts/services.sh env)"
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    log "building (release)"
    cargo build --release -q -p imapfleet
fi

WORK=$(mktemp -d /tmp/imapfleet-bench-fleet.XXXXXX)
WORKER_PIDS=()
cleanup() {
    for p in "${WORKER_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

printf '%s\n' "$LAB_PASSWORD" > "$WORK/pass"
users=()
for ((i = FIRST; i < FIRST + N; i++)); do users+=("$(printf 'user%04d' "$i")"); done

if [ "${BENCH_KEEP_SOURCE:-0}" != 1 ]; then
    log "filling host1 of ${#users[@]} users (small preset)"
    for u in "${users[@]}"; do
        scripts/lab.sh wipe 1 "$u" >/dev/null
        "$BIN" generate --preset small --seed "${u#user}" --host1 "$LAB_HOST1" --port1 "$LAB_HOST1_PORT" \
            --user1 "$u" --passfile1 "$WORK/pass" --cafile1 "$LAB_CA" >/dev/null
    done
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

log "embedded: imapfleet run --workers $TASKS"
wipe2
t0=$(now)
"$BIN" run --quiet --workers "$TASKS" --accounts "$WORK/batch.txt" --defaults="$DEFAULTS" \
    --report-json "$WORK/embedded.json" > "$WORK/embedded.out" 2> "$WORK/embedded.err" || {
    tail -5 "$WORK/embedded.out"; log "embedded run failed"; exit 1; }
t1=$(now)
EMB_WALL=$(calc "$t1 - $t0")
EMB_MSGS=$(copied "$WORK/embedded.json")

log "fleet: dispatch + $WORKERS workers on RabbitMQ/Redis"
wipe2
export IMAPFLEET_SECRET_KEY
IMAPFLEET_SECRET_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export IMAPFLEET_QUEUE="imapfleet.bench.$$"
per=$(( (TASKS + WORKERS - 1) / WORKERS ))
for ((w = 0; w < WORKERS; w++)); do
    "$BIN" worker --concurrency "$per" --metrics-addr off 2> "$WORK/worker$w.err" &
    WORKER_PIDS+=("$!")
done
sleep 1
t0=$(now)
JOB=$("$BIN" dispatch --accounts "$WORK/batch.txt" --defaults="$DEFAULTS" --job "bench-$$" 2>/dev/null | awk '{print $2; exit}')
"$BIN" status "$JOB" --wait --json > "$WORK/fleet.json" 2>/dev/null || true
t1=$(now)
FLEET_WALL=$(calc "$t1 - $t0")
FLEET_MSGS=$(copied "$WORK/fleet.json")
for p in "${WORKER_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
wait "${WORKER_PIDS[@]}" 2>/dev/null || true
WORKER_PIDS=()

printf '\n%-34s %10s %10s %10s\n' "run ($N accounts)" "wall s" "messages" "msg/s"
printf '%-34s %10.2f %10d %10.1f\n' "embedded (run, $TASKS tasks)" "$EMB_WALL" "$EMB_MSGS" "$(calc "$EMB_MSGS / $EMB_WALL")"
printf '%-34s %10.2f %10d %10.1f\n' "fleet ($WORKERS workers x $per, AMQP)" "$FLEET_WALL" "$FLEET_MSGS" "$(calc "$FLEET_MSGS / $FLEET_WALL")"
printf 'fleet overhead: %+.1f %% of the embedded wall time (target < 5 %%); load average: %s\n' \
    "$(calc "($FLEET_WALL - $EMB_WALL) * 100 / $EMB_WALL")" "$(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$EMB_MSGS" != "$FLEET_MSGS" ]; then
    log "the two runs copied different counts: $EMB_MSGS vs $FLEET_MSGS"
    exit 1
fi
