#!/usr/bin/env bash
# Benchmark (not a test): a nightly delta pass over many small accounts, through the fleet
# (`imapfleet dispatch` + worker processes on RabbitMQ and Redis) and through `imapfleet run`
# (embedded), on the lab.
#
#   scripts/bench_nightly.sh                        1,000 accounts (user1001 .. user2000) x 20 folders
#   BENCH_ACCOUNTS=100 scripts/bench_nightly.sh     a smaller try
#
# What it does:
#   1. starts the lab and the services (scripts/lab.sh start, scripts/services.sh start), builds the
#      release binary;
#   2. seeds host1 of the accounts: one Maildir++ template (BENCH_FOLDERS folders, nested, one with
#      `&`, one non-ASCII; BENCH_PER_FOLDER small messages each, some \Seen, some \Flagged) written
#      straight into the lab's mail directory ($LAB_DIR/host1/mail/<user>/Maildir, owned by the lab's
#      mail user) and copied to every account; Dovecot indexes it on first access. The seeding time is
#      printed. host2 of the accounts is emptied (their mail directories removed);
#   3. initial pass through the fleet: $BENCH_WORKERS `imapfleet worker` processes (concurrency
#      $BENCH_TASKS / workers each, metrics on free loopback ports), `imapfleet dispatch` of the batch,
#      then waiting until the workers' metrics show every account and folder task acknowledged and
#      none in flight (`imapfleet status --wait` cannot read a job this big: see fleet.py below);
#      it populates host2 (and the saved state, where the fleet keeps one: see BENCH_STATE_ARGS);
#   4. changes 1 % of the accounts on host1 (BENCH_CHANGED, default accounts/100: every
#      (accounts/changed)-th one, from the first): 3 new messages (doveadm save: 2 in INBOX, 1 in
#      Projects/Alpha), \Flagged added to one message of Sent, \Seen taken off one of INBOX (both
#      found by Message-Id);
#   5. the nightly pass through the fleet (the same workers, a new dispatch), timed from the dispatch
#      to the last task acknowledged; the workers are then stopped;
#   6. the same change on another 1 % (the accounts half a stride further on), and the same nightly
#      pass with `imapfleet run --workers $BENCH_TASKS` (embedded: in-process queue, locks and state);
#   7. checks every changed account ended in sync: host1 and host2 hold the same number of messages,
#      the same multiset of (flags, INTERNALDATE) and of Message-Ids (doveadm), and `imapfleet verify`
#      (byte-level) exits 0;
#   8. prints wall time, accounts/s, messages copied, flags updated, the client CPU (workers: from
#      /proc; embedded: /usr/bin/time), folders skipped without SELECT as the job report shows it (a
#      folder field `unchanged` when there is one, else folders recorded done with no folder task run,
#      `slices` 0), and the load average.
# It empties host1 and host2 of the bench users: do not run it beside anything else using them
# (scripts/bench_fleet.sh defaults to user1801 .. user2000, inside this range: run one at a time).
# Each run uses its own task queue (imapfleet.bench-nightly.<pid>), deleted at the end with its
# dead-letter queue; the jobs stay in Redis, like any job.
#
# Environment: BENCH_ACCOUNTS (1000), BENCH_FIRST (1001), BENCH_FOLDERS (20), BENCH_PER_FOLDER (3),
# BENCH_CHANGED (accounts/100, at least 1), BENCH_WORKERS (2), BENCH_TASKS (8),
# BENCH_TLS=1 (STARTTLS with the lab CA; default plain, as scripts/bench.sh),
# BENCH_DEFAULTS (more batch options for every account), BENCH_STATE_ARGS (extra arguments given to
# `imapfleet worker` and `imapfleet run`, for a build whose fleet takes saved-state options; default
# none), BENCH_KEEP_SOURCE=1 (take host1 as it is: no seeding), BENCH_NO_BUILD=1 (use
# target/release/imapfleet as it is), BENCH_WAIT_TIMEOUT (seconds a pass may take, 1800).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

N=${BENCH_ACCOUNTS:-1000}
FIRST=${BENCH_FIRST:-1001}
FOLDERS=${BENCH_FOLDERS:-20}
PER=${BENCH_PER_FOLDER:-3}
CHANGED=${BENCH_CHANGED:-$(( N / 100 > 0 ? N / 100 : 1 ))}
WORKERS=${BENCH_WORKERS:-2}
TASKS=${BENCH_TASKS:-8}
WAIT_TIMEOUT=${BENCH_WAIT_TIMEOUT:-1800}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release/imapfleet
MAIL_USER=imapfleet-vmail

log() { printf 'bench_nightly: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[ "$CHANGED" -le "$N" ] || die "BENCH_CHANGED=$CHANGED is more than BENCH_ACCOUNTS=$N"
[ "$FOLDERS" -ge 4 ] || die "BENCH_FOLDERS=$FOLDERS: at least 4 (INBOX, Sent, Projects, Projects/Alpha)"
[ "$PER" -ge 1 ] || die "BENCH_PER_FOLDER=$PER: at least 1"

scripts/lab.sh start >/dev/null 2>&1 || scripts/lab.sh start
scripts/services.sh start >/dev/null 2>&1 || scripts/services.sh start
eval "$(scripts/lab.sh env)"
eval "$(scripts/services.sh env)"
export IMAPFLEET_AMQP_URL IMAPFLEET_REDIS_URL
[ $((FIRST + N - 1)) -le "$LAB_USERS" ] || die "the lab has users up to user$LAB_USERS"
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    log "building imapfleet (release)"
    build_log=$(mktemp /tmp/imapfleet-bench-build.XXXXXX)
    if ! cargo build -q --release -p imapfleet --bin imapfleet >"$build_log" 2>&1; then
        grep -E '^error' -A12 "$build_log" >&2 || tail -40 "$build_log" >&2
        rm -f "$build_log"
        die "build failed"
    fi
    rm -f "$build_log"
fi
[ -x "$BIN" ] || die "$BIN is missing"

WORK=$(mktemp -d /tmp/imapfleet-bench-nightly.XXXXXX)
export IMAPFLEET_QUEUE="imapfleet.bench-nightly.$$"
WORKER_PIDS=()
stop_workers() {
    local p
    for p in "${WORKER_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${WORKER_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    WORKER_PIDS=()
}
cleanup() {
    stop_workers
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

printf '%s\n' "$LAB_PASSWORD" >"$WORK/pass"
chmod 600 "$WORK/pass"
users=()
for ((i = FIRST; i < FIRST + N; i++)); do users+=("$(printf 'user%04d' "$i")"); done
STRIDE=$((N / CHANGED))
[ "$STRIDE" -ge 2 ] || die "BENCH_CHANGED=$CHANGED: at most half of the accounts (two disjoint change sets)"
changed_a=() changed_b=()
for ((k = 0; k < CHANGED; k++)); do
    changed_a+=("${users[$((k * STRIDE))]}")
    changed_b+=("${users[$((k * STRIDE + STRIDE / 2))]}")
done

now() { date +%s.%N; }
calc() { awk "BEGIN { print $1 }"; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
conf() { [ "$1" = 1 ] && echo "$LAB_HOST1_CONF" || echo "$LAB_HOST2_CONF"; }
dove() { local h=$1; shift; doveadm -c "$(conf "$h")" "$@"; }
# CPU seconds (user + system) a process has used so far.
cpu_of() {
    awk -v t="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / t }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# Empty both hosts of the bench users: kick whoever of them is logged in, remove the mail directories.
wipe_range() { # wipe_range HOST
    local c u
    c=$(conf "$1")
    dove "$1" who 2>/dev/null | awk 'NR > 1 { print $1 }' | sort -u | while read -r u; do
        case " ${users[*]} " in *" $u "*) doveadm -c "$c" kick "$u" >/dev/null 2>&1 || true ;; esac
    done
    (cd "${LAB_DIR:?}/host$1/mail" && rm -rf -- "${users[@]}")
}

# The folders: Maildir++ directory names (host1: separator ".", names in modified UTF-7).
folder_dirs=("" .Sent .Projects .Projects.Alpha .Drafts .Trash .Junk .Archive .Archive.2024 .Archive.2025
    .Projects.Beta .Lists .Lists.Rust ".Clients &- Partners" ".Caf&AOk-" .Receipts .Travel .Family
    .Newsletters .Notes)
for ((k = ${#folder_dirs[@]}; k < FOLDERS; k++)); do folder_dirs+=("$(printf '.Extra %03d' "$((k + 1))")"); done
folder_dirs=("${folder_dirs[@]:0:$FOLDERS}")

seed_template() { # seed_template DIR: one account's home
    local t=$1/home k i d name flags f body
    # Dovecot keeps Maildir files with LF line ends (and serves them with CRLF): write them so.
    body=$(for ((i = 1; i <= 12; i++)); do printf 'Line %02d of a small message of the nightly benchmark, some words to make it look like mail.\n' "$i"; done)
    for ((k = 0; k < FOLDERS; k++)); do
        d=$t/Maildir/${folder_dirs[$k]}
        mkdir -p "$d/cur" "$d/new" "$d/tmp"
        [ "$k" = 0 ] || : >"$d/maildirfolder"
        for ((i = 1; i <= PER; i++)); do
            case $((i % 3)) in 1) flags=S ;; 2) flags=FS ;; *) flags="" ;; esac
            name="$((1700000000 + k * 1000 + i)).M${k}P${i}.nightly:2,$flags"
            f=$d/cur/$name
            printf 'From: Sender %d <sender%d@nightly.example>\nTo: Owner <owner@lab.example>\nSubject: nightly folder %d message %d\nDate: Mon, 0%d Jun 2025 10:%02d:00 +0000\nMessage-ID: <nightly-%d-%d@imapfleet.bench>\nMIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\n%s\n' \
                "$i" "$i" "$k" "$i" "$((1 + i % 9))" "$((k % 60))" "$k" "$i" "$body" >"$f"
            touch -d "2025-06-0$((1 + i % 9)) 10:$(printf '%02d' $((k % 60))):00Z" "$f"
        done
    done
    chown -R "$MAIL_USER:$MAIL_USER" "$t"
    chmod 700 "$t"
}

# 1. host1 and host2.
SEED_WALL=-
if [ "${BENCH_KEEP_SOURCE:-0}" != 1 ]; then
    log "seeding host1 of ${#users[@]} users: $FOLDERS folders x $PER messages (Maildir files)"
    t0=$(now)
    wipe_range 1
    seed_template "$WORK/template"
    # One process copies the template to every account (a cp per account costs a fork each).
    python3 - "$WORK/template/home" "$LAB_DIR/host1/mail" "$(id -u "$MAIL_USER")" "$(id -g "$MAIL_USER")" \
        "${users[@]}" <<'PY'
import os, shutil, sys
src, root, uid, gid, users = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:]
for u in users:
    dst = os.path.join(root, u)
    shutil.copytree(src, dst, copy_function=shutil.copy2)
    for d, dirs, files in os.walk(dst):
        os.chown(d, uid, gid)
        for f in files:
            os.chown(os.path.join(d, f), uid, gid)
PY
    t1=$(now)
    SEED_WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    log "seeded in $SEED_WALL s"
fi
log "emptying host2 of the ${#users[@]} users"
wipe_range 2

{
    echo "# bench_nightly: $N accounts"
    for u in "${users[@]}"; do echo "$LAB_HOST1;$u;$LAB_PASSWORD;$LAB_HOST2;$u;$LAB_PASSWORD;"; done
} >"$WORK/batch.txt"
if [ "${BENCH_TLS:-0}" = 1 ]; then
    DEFAULTS="--port1 $LAB_HOST1_PORT --port2 $LAB_HOST2_PORT --cafile1 $LAB_CA --cafile2 $LAB_CA"
    VERIFY_TLS=(--cafile1 "$LAB_CA" --cafile2 "$LAB_CA")
else
    DEFAULTS="--port1 $LAB_HOST1_PORT --port2 $LAB_HOST2_PORT --notls1 --notls2"
    VERIFY_TLS=(--notls1 --notls2)
fi
DEFAULTS="$DEFAULTS ${BENCH_DEFAULTS:-}"
# shellcheck disable=SC2206
STATE_ARGS=(${BENCH_STATE_ARGS:-})

# 2. The fleet: workers stay up for the initial and the nightly pass.
export IMAPFLEET_SECRET_KEY
IMAPFLEET_SECRET_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
per=$(((TASKS + WORKERS - 1) / WORKERS))
: >"$WORK/queue-used"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
METRICS=()
for ((w = 0; w < WORKERS; w++)); do
    port=$(free_port)
    METRICS+=("127.0.0.1:$port")
    "$BIN" worker --concurrency "$per" --metrics-addr "127.0.0.1:$port" "${STATE_ARGS[@]}" >"$WORK/worker$w.err" 2>&1 &
    WORKER_PIDS+=("$!")
done
sleep 1
for p in "${WORKER_PIDS[@]}"; do
    kill -0 "$p" 2>/dev/null || { tail -5 "$WORK"/worker*.err >&2; die "a worker did not start"; }
done
workers_cpu() { local s=0 p; for p in "${WORKER_PIDS[@]}"; do s=$(calc "$s + $(cpu_of "$p")"); done; echo "$s"; }

RESULTS=$WORK/results.tsv
: >"$RESULTS"
# summarize NAME JSON WALL CPU: one results line from a job report (JobView JSON).
summarize() {
    python3 - "$@" >>"$RESULTS" <<'PY'
import json, sys
name, path, wall, cpu = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
v = json.load(open(path))
accts = v.get("accounts", [])
st = v.get("by_status", {})
t = v.get("totals", {})
folders = sum(len(a.get("folders", [])) for a in accts)
# Skipped without SELECT: folders the report marks `unchanged` when it has that field, else the
# folders recorded done without any folder task having run (slices 0).
unchanged, seen, no_task = 0, False, 0
for a in accts:
    for f in a.get("folders", []):
        if f.get("done") and f.get("slices", 1) == 0:
            no_task += 1
        for d in (f, f.get("counts", {})):
            if "unchanged" in d:
                seen = True
                unchanged += int(bool(d["unchanged"])) if isinstance(d["unchanged"], bool) else int(d["unchanged"])
if seen:
    skipped = f"{unchanged}/{folders}"
elif accts and all("slices" in f for a in accts for f in a.get("folders", [])):
    skipped = f"{no_task}/{folders}"
else:
    skipped = "not reported"
print("\t".join(map(str, [name, f"{wall:.2f}", len(accts), st.get("done", 0), st.get("failed", 0),
    f"{len(accts) / wall:.1f}" if wall > 0 else "-", t.get("transferred", 0), t.get("flags_updated", 0),
    cpu, folders, skipped])))
PY
}

# The end of a fleet pass, and its report. `imapfleet status --wait` reads the whole job from Redis
# every 0.5 s; for 1,000 accounts x 20 folders that is one HGETALL of ~14 MB, which runs past the
# Redis client's response timeout (500 ms) and fails ("state backend: timed out"). So the end is
# seen in the workers' metrics (every account task and every folder task acknowledged, none in
# flight; `status --json` is tried now and then too) and the report, when `status` cannot read it,
# is rebuilt from the job's hash the way `status` builds it.
cat >"$WORK/fleet.py" <<'PY'
import json, subprocess, sys, time, urllib.request

def scrape(addrs, job):
    acct = fold = inflight = 0
    for a in addrs:
        try:
            text = urllib.request.urlopen(f"http://{a}/metrics", timeout=2).read().decode()
        except Exception:
            continue
        for line in text.splitlines():
            if line.startswith("#") or f'job="{job}"' not in line:
                continue
            name, value = line.rsplit(" ", 1)
            if name.startswith("imapfleet_tasks_total{"):
                if 'kind="account"' in name:
                    acct += float(value)
                elif 'kind="folder"' in name:
                    fold += float(value)
            elif name.startswith("imapfleet_tasks_in_flight{"):
                inflight += float(value)
    return acct, fold, inflight

def wait(binary, job, accounts, folders, timeout, out, addrs):
    start = time.time()
    last_status = start
    quiet = None
    while time.time() - start < timeout:
        acct, fold, inflight = scrape(addrs, job)
        # Every account task and (without saved state) one task per folder acknowledged. An account
        # task may also settle folders itself (saved state proving them unchanged: no folder task),
        # so once every account task is done, 1 s with nothing in flight ends the pass too.
        if acct >= accounts and inflight == 0:
            if fold >= accounts * folders:
                return
            quiet = quiet or time.time()
            if time.time() - quiet >= 1.0:
                return
        else:
            quiet = None
        if time.time() - last_status > 10:
            last_status = time.time()
            r = subprocess.run([binary, "status", job, "--json"], capture_output=True, text=True)
            if r.returncode == 0:
                try:
                    v = json.loads(r.stdout)
                    if all(a["status"] in ("done", "failed", "skipped") for a in v["accounts"]):
                        return
                except (ValueError, KeyError):
                    pass
        time.sleep(0.2)
    sys.exit(f"job {job} not finished after {timeout} s")

def view(binary, job, redis_url, out):
    for _ in range(3):
        r = subprocess.run([binary, "status", job, "--json"], capture_output=True, text=True)
        if r.returncode in (0,) or (r.stdout.strip().startswith("{")):
            try:
                json.loads(r.stdout)
                open(out, "w").write(r.stdout)
                return "status"
            except ValueError:
                pass
    raw = subprocess.run(["redis-cli", "-u", redis_url, "--raw", "HGETALL", f"imapfleet:job:{job}"],
                         capture_output=True, text=True, check=True).stdout.split("\n")
    fields = dict(zip(raw[0::2], raw[1::2]))
    accts = {k[5:]: json.loads(v) for k, v in fields.items() if k.startswith("acct:")}
    folders = {}
    for k, v in fields.items():
        if k.startswith("folder:"):
            _, a, i = k.split(":")
            folders.setdefault(a, {})[int(i)] = json.loads(v)
    keys = ["transferred", "bytes", "skipped", "flags_updated", "missing_on_host2", "errors"]
    totals = dict.fromkeys(keys, 0)
    by_status = dict.fromkeys(["pending", "running", "done", "failed", "skipped"], 0)
    out_accts = []
    for a, rec in sorted(accts.items()):
        fs = [folders.get(a, {}).get(i, {"done": False, "counts": {}, "errors": []}) for i in range(len(rec.get("folders", [])))]
        errs = len(rec.get("errors", [])) + sum(len(f.get("errors", [])) for f in fs)
        missing = sum(f.get("counts", {}).get("missing_on_host2", 0) for f in fs)
        if rec.get("skipped"):
            st = "skipped"
        elif rec.get("errors"):
            st = "failed"
        elif not rec.get("prepared"):
            st = "running" if rec.get("started") else "pending"
        elif not all(f.get("done") for f in fs):
            st = "running"
        elif errs or missing:
            st = "failed"
        else:
            st = "done"
        by_status[st] += 1
        for f in fs:
            for k in keys:
                totals[k] += f.get("counts", {}).get(k, 0)
        out_accts.append({"account": a, "status": st, "folders": fs})
    json.dump({"accounts": out_accts, "by_status": by_status, "totals": totals}, open(out, "w"))
    return "redis"

if sys.argv[1] == "wait":
    wait(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]), None, sys.argv[7:])
else:
    print(view(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]))
PY

# fleet_pass NAME: dispatch the batch, wait until every task is done; record the pass.
fleet_pass() {
    local name=$1 t0 t1 c0 c1 job how
    log "fleet pass '$name': dispatch + $WORKERS workers x $per (load average: $(load))"
    c0=$(workers_cpu)
    t0=$(now)
    job=$("$BIN" dispatch --accounts "$WORK/batch.txt" --defaults="$DEFAULTS" --job "$name-$$" 2>"$WORK/dispatch.err" |
        awk '$1 == "job" { print $2; exit }') || true
    [ -n "$job" ] || { cat "$WORK/dispatch.err" >&2; die "dispatch failed"; }
    python3 "$WORK/fleet.py" wait "$BIN" "$job" "$N" "$FOLDERS" "$WAIT_TIMEOUT" "${METRICS[@]}" ||
        log "fleet pass '$name' did not finish"
    t1=$(now)
    c1=$(workers_cpu)
    how=$(python3 "$WORK/fleet.py" view "$BIN" "$job" "$IMAPFLEET_REDIS_URL" "$WORK/$name.json") ||
        die "no report for job $job"
    [ "$how" = status ] || log "imapfleet status could not read job $job (timed out): report rebuilt from Redis"
    echo "$name $how" >>"$WORK/views"
    summarize "fleet $name" "$WORK/$name.json" "$(calc "$t1 - $t0")" "$(calc "$c1 - $c0")"
}

# change USER...: 3 new messages, 2 flag changes on host1 of each.
change() {
    local u i
    for u in "$@"; do
        for i in 1 2 3; do
            local box=INBOX
            [ "$i" = 3 ] && box=Projects.Alpha
            printf 'From: Night Sender <night@nightly.example>\r\nTo: %s@lab.example\r\nSubject: nightly change %s\r\nDate: Thu, 03 Dec 2026 03:0%d:00 +0000\r\nMessage-ID: <nightly-change-%s-%s-%d@imapfleet.bench>\r\n\r\nA message that arrived during the day.\r\n' \
                "$u" "$i" "$i" "$u" "$$" "$i" | dove 1 save -u "$u" -m "$box"
        done
        # Message 1 of each folder is \Seen and not \Flagged in the template.
        dove 1 flags add -u "$u" '\Flagged' mailbox Sent header message-id nightly-1-1@
        dove 1 flags remove -u "$u" '\Seen' mailbox INBOX header message-id nightly-0-1@
    done
}

# 3. Initial pass (not the benchmark: it fills host2).
fleet_pass initial

# 4-5. 1 % changed, the nightly pass through the fleet.
log "changing ${#changed_a[@]} accounts on host1: ${changed_a[*]}"
change "${changed_a[@]}"
fleet_pass nightly
stop_workers

# 6. Another 1 % changed, the same nightly pass embedded.
log "changing ${#changed_b[@]} other accounts on host1: ${changed_b[*]}"
change "${changed_b[@]}"
log "embedded nightly pass: imapfleet run --workers $TASKS (load average: $(load))"
rc=0
/usr/bin/time -f '%e %U %S %M' -o "$WORK/embedded.time" \
    "$BIN" run --quiet --workers "$TASKS" --accounts "$WORK/batch.txt" --defaults="$DEFAULTS" \
    --job "embedded-$$" "${STATE_ARGS[@]}" --report-json "$WORK/embedded.json" >"$WORK/embedded.out" 2>"$WORK/embedded.err" || rc=$?
[ "$rc" = 0 ] || { tail -5 "$WORK/embedded.out" "$WORK/embedded.err" >&2; log "imapfleet run exited $rc"; }
read -r e_wall e_usr e_sys _ <<<"$(tail -1 "$WORK/embedded.time")"
summarize "embedded nightly" "$WORK/embedded.json" "$e_wall" "$(calc "$e_usr + $e_sys")"

# 7. The changed accounts, host1 against host2.
# One line per message: mailbox-independent (flags without \Recent, INTERNALDATE, Message-Id), sorted.
account_lines() { # account_lines HOST USER
    dove "$1" -f tab fetch -u "$2" 'flags date.received hdr.message-id' mailbox '*' all 2>/dev/null | awk -F'\t' 'NR > 1 {
        n = 0; m = split($1, f, " ")
        for (i = 1; i <= m; i++) if (f[i] != "\\Recent") { n++; g[n] = f[i] }
        for (i = 2; i <= n; i++) { x = g[i]; j = i - 1; while (j > 0 && g[j] > x) { g[j + 1] = g[j]; j-- } g[j + 1] = x }
        out = ""; for (i = 1; i <= n; i++) out = out (i > 1 ? " " : "") g[i]
        print out "\t" $2 "\t" $3 }' | LC_ALL=C sort
}
in_sync=0 not_in_sync=()
for u in "${changed_a[@]}" "${changed_b[@]}"; do
    account_lines 1 "$u" >"$WORK/a1"
    account_lines 2 "$u" >"$WORK/a2"
    vrc=0
    "$BIN" verify --host1 "$LAB_HOST1" --port1 "$LAB_HOST1_PORT" --user1 "$u" --passfile1 "$WORK/pass" \
        --host2 "$LAB_HOST2" --port2 "$LAB_HOST2_PORT" --user2 "$u" --passfile2 "$WORK/pass" "${VERIFY_TLS[@]}" \
        >"$WORK/verify.out" 2>&1 || vrc=$?
    if [ -s "$WORK/a1" ] && cmp -s "$WORK/a1" "$WORK/a2" && [ "$vrc" = 0 ]; then
        in_sync=$((in_sync + 1))
    else
        not_in_sync+=("$u(host1 $(wc -l <"$WORK/a1"), host2 $(wc -l <"$WORK/a2"), verify rc $vrc)")
    fi
done

# 8. Table.
echo
echo "nightly pass: $N accounts x $FOLDERS folders x $PER messages (users ${users[0]} .. ${users[-1]});"
echo "changed before each pass: ${#changed_a[@]} accounts (3 new messages, 2 flag changes each)"
echo "seeding host1: $SEED_WALL s (Maildir template copied to every account)"
echo "saved-state options given to worker/run: ${BENCH_STATE_ARGS:-none}; TLS: $([ "${BENCH_TLS:-0}" = 1 ] && echo STARTTLS || echo none)"
fmt='%-18s %8s %8s %6s %6s %10s %8s %8s %8s %8s %22s\n'
# shellcheck disable=SC2059
printf "$fmt" pass "wall s" accounts done failed accounts/s copied "flags" "CPU s" folders "skipped without SELECT"
awk -F'\t' -v fmt="$fmt" '{ printf fmt, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 }' "$RESULTS"
echo "CPU s: the imapfleet processes' (workers, or the embedded run); Dovecot's is not counted."
if grep -q ' redis$' "$WORK/views" 2>/dev/null; then
    echo "fleet reports of $(awk '$2 == "redis" { printf "%s%s", s, $1; s = ", " }' "$WORK/views") rebuilt from Redis:" \
        "\`imapfleet status JOB --json\` failed with \"state backend: timed out\""
fi
echo "changed accounts in sync afterwards (counts, flags, dates, Message-Ids; imapfleet verify): $in_sync/$((${#changed_a[@]} + ${#changed_b[@]}))"
[ "${#not_in_sync[@]}" = 0 ] || echo "NOT in sync: ${not_in_sync[*]}"
nightly=$(awk -F'\t' '$1 == "fleet nightly" { print $2 }' "$RESULTS")
embedded=$(awk -F'\t' '$1 == "embedded nightly" { print $2 }' "$RESULTS")
printf 'fleet nightly pass %s s (target <= 60 s: %s); embedded %s s; fleet overhead %+.1f %% of the embedded\n' \
    "$nightly" "$(awk -v a="$nightly" 'BEGIN { print (a <= 60) ? "met" : "NOT met" }')" "$embedded" \
    "$(calc "($nightly - $embedded) * 100 / $embedded")"
echo "load average at the end: $(uptime | sed 's/.*load average: //')"
[ "${#not_in_sync[@]}" = 0 ]
