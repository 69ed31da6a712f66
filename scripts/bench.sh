#!/usr/bin/env bash
# Benchmark (not a test): imapfleet against mbsync on the lab, side by side in one run.
#
#   scripts/bench.sh                  bench preset (5,000 messages, ~145 MB, 20 folders), one round
#   BENCH_RUNS=3 scripts/bench.sh     three rounds, then the medians
#   BENCH_PRESET=small scripts/bench.sh
#
# What it does:
#   1. starts the lab (scripts/lab.sh start), installs mbsync (Debian package isync) if missing, builds
#      imapfleet and the mailgen `fill` example (release);
#   2. fills a fresh host1 user ($BENCH_SRC_USER, default user0100) with MailboxSpec::bench() via
#      crates/mailgen/examples/fill.rs, and keeps a copy of its Maildir: every round starts from the same
#      host1 (same UIDs, flags, UIDVALIDITY), and host1 is put back as it was when the script ends;
#   3. per round, on fresh empty host2 users (imapfleet: $BENCH_IMAPFLEET_USER, user0101; mbsync:
#      $BENCH_MBSYNC_USER, user0102), the tools taking turns going first:
#        full           first pass (imapfleet writes its saved state to a fresh --statedir);
#        rerun-nostate  imapfleet, nothing changed, --nostate (every folder compared in full: imapsync's way);
#        rerun-state    imapfleet, nothing changed, with the saved state (unchanged folders skipped
#                       before any SELECT);
#        rerun          mbsync, nothing changed (mbsync always keeps its own sync state);
#      then host1 is changed once: 100 new messages (doveadm save), 250 re-flagged (\Flagged or \Seen
#      toggled) and 40 deleted and expunged (doveadm expunge), spread over the folders, picked among
#      messages with a Message-Id unique in the account and not flagged \Deleted; both tools then read
#      that same changed host1:
#        delta          each tool's re-run after the change;
#      and a check of host2 after the delta: counts, flags, and the changed messages by Message-Id;
#   4. prints a table: tool, pass, wall s, CPU s (user+sys of the client), peak RSS MB, messages on
#      host2, folders, "faithful": messages of host2 whose (flags, INTERNALDATE) pair matches one of
#      host1's as it was at that moment (a multiset match; bytes are not compared, see `imapfleet verify`),
#      and the exit code; then the delta check per tool.
#
# Deletions: both tools are configured to propagate them on every pass (the same settings from the
# first pass on, as a nightly job would run): imapfleet `sync --delete2` (host2 messages no longer on
# host1 are UID EXPUNGEd; --delete2 is part of the saved state's fingerprint, so it has to be there on
# every pass for the state to be used), mbsync `Sync Pull` (New, ReNew, Delete, Flags from far to near:
# a message gone from far is flagged \Deleted on near) with `Expunge Near` (near's \Deleted messages
# are expunged). Neither tool copies host1 messages flagged \Deleted (imapfleet: unless --copydeleted).
#
# Environment: BENCH_PRESET (bench|small), BENCH_SEED (1), BENCH_RUNS (1), BENCH_SRC_USER,
# BENCH_IMAPFLEET_USER, BENCH_MBSYNC_USER, BENCH_KEEP_SOURCE=1 (reuse a host1 user that already holds
# the right number of messages), BENCH_IMAPFLEET_ARGS (extra `imapfleet sync` arguments, every pass),
# BENCH_NO_BUILD=1 (use the binaries in target/release as they are), BENCH_NEW (100), BENCH_REFLAG
# (250), BENCH_DELETE (40): the size of the change.
# Timings depend on what else runs on the machine (load average is printed): compare within one run.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

PRESET=${BENCH_PRESET:-bench}
SEED=${BENCH_SEED:-1}
RUNS=${BENCH_RUNS:-1}
SRC=${BENCH_SRC_USER:-user0100}
DST_IF=${BENCH_IMAPFLEET_USER:-user0101}
DST_MB=${BENCH_MBSYNC_USER:-user0102}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

case "$PRESET" in small | bench) ;; *) die "BENCH_PRESET=$PRESET: expected small or bench" ;; esac

need_pkg() { # need_pkg COMMAND DEBIAN_PACKAGE
    [ -x "$1" ] || command -v "$1" >/dev/null 2>&1 && return 0
    [ "$(id -u)" = 0 ] || die "$1 is missing: apt-get install $2"
    log "installing $2"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1 || {
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
    }
}
need_pkg /usr/bin/time time
need_pkg mbsync isync

scripts/lab.sh start >/dev/null 2>&1 || scripts/lab.sh start
eval "$(scripts/lab.sh env)"

if [ "${BENCH_NO_BUILD:-}" != 1 ]; then
    log "building imapfleet and the mailgen fill example (release)"
    build_log=$(mktemp /tmp/imapfleet-bench-build.XXXXXX)
    if ! { cargo build -q --release -p imapfleet --bin imapfleet &&
        cargo build -q --release -p imapfleet-mailgen --example fill; } >"$build_log" 2>&1; then
        grep -E '^error' -A12 "$build_log" >&2 || tail -40 "$build_log" >&2
        rm -f "$build_log"
        die "build failed"
    fi
    rm -f "$build_log"
fi
IMAPFLEET=$TARGET_DIR/release/imapfleet
FILL=$TARGET_DIR/release/examples/fill
[ -x "$IMAPFLEET" ] || die "$IMAPFLEET is missing"
[ -x "$FILL" ] || die "$FILL is missing"

NEW=${BENCH_NEW:-100}
REFLAG=${BENCH_REFLAG:-250}
DELETE=${BENCH_DELETE:-40}

WORK=$(mktemp -d /tmp/imapfleet-bench.XXXXXX)
PRISTINE=""
SRC_HOME=$LAB_DIR/host1/mail/$SRC
# Put host1 back as it was before the changes (when a copy was taken), then remove the temp dirs.
restore_source() {
    [ -n "$PRISTINE" ] && [ -d "$PRISTINE/$SRC" ] || return 0
    doveadm -c "$LAB_HOST1_CONF" kick "$SRC" >/dev/null 2>&1 || true
    rm -rf "$SRC_HOME"
    cp -a "$PRISTINE/$SRC" "$SRC_HOME"
}
cleanup() {
    restore_source || log "could not restore host1 $SRC (the next run refills it)"
    [ -n "$PRISTINE" ] && rm -rf "$PRISTINE"
    rm -rf "$WORK"
}
trap cleanup EXIT
printf '%s\n' "$LAB_PASSWORD" >"$WORK/pass"
chmod 600 "$WORK/pass"

# doveadm helpers. Mailbox names contain spaces: use the tab formatter and the last column.
dove() { local h=$1; shift; doveadm -c "$([ "$h" = 1 ] && echo "$LAB_HOST1_CONF" || echo "$LAB_HOST2_CONF")" "$@"; }
count_messages() { # count_messages HOST USER
    dove "$1" -f tab mailbox status -u "$2" messages '*' 2>/dev/null | awk -F'\t' 'NR > 1 { s += $NF } END { print s + 0 }'
}
count_folders() {
    dove "$1" -f tab mailbox list -u "$2" 2>/dev/null | awk 'NR > 1' | wc -l
}
count_deleted() { # messages flagged \Deleted
    dove "$1" search -u "$2" mailbox '*' DELETED 2>/dev/null | wc -l
}
# One line per message: its flags (sorted, \Recent dropped) and INTERNALDATE; sorted.
flag_date_lines() {
    dove "$1" -f tab fetch -u "$2" 'flags date.received' mailbox '*' all 2>/dev/null | awk -F'\t' 'NR > 1 {
        n = 0
        m = split($1, f, " ")
        for (i = 1; i <= m; i++) if (f[i] != "\\Recent") { n++; g[n] = f[i] }
        for (i = 2; i <= n; i++) { x = g[i]; j = i - 1; while (j > 0 && g[j] > x) { g[j + 1] = g[j]; j-- } g[j + 1] = x }
        out = ""
        for (i = 1; i <= n; i++) out = out (i > 1 ? " " : "") g[i]
        print out "\t" $2 }' | LC_ALL=C sort
}
faithful() { # faithful USER_ON_HOST2: host2 messages whose (flags, date) match host1's (multiset)
    flag_date_lines 2 "$1" >"$WORK/h2.txt"
    LC_ALL=C comm -12 "$WORK/h1.txt" "$WORK/h2.txt" | wc -l
}
wipe2() {
    scripts/lab.sh wipe 2 "$1"
    # The wipe removes the mail directory; a login recreates an empty INBOX.
}
# Every message of a user as "mailbox TAB uid TAB flags TAB message-id" (doveadm's header line first).
fetch_ids() { # fetch_ids HOST USER FILE
    dove "$1" -f tab fetch -u "$2" 'mailbox uid flags hdr.message-id' mailbox '*' all >"$3" 2>/dev/null
}

# The change of host1 (`apply`) and the check of host2 after the delta (`check`).
cat >"$WORK/changes.py" <<'PY'
import os, random, subprocess, sys
from collections import Counter, defaultdict

def rows(path):
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        next(f, None)
        for line in f:
            p = line.rstrip("\r\n").split("\t")
            if len(p) == 4 and p[1].isdigit():
                out.append((p[0], int(p[1]), set(p[2].split()) - {"\\Recent"}, p[3].strip()))
    return out

def apply(conf, user, listing, outdir, n_new, n_reflag, n_delete, tag):
    msgs = rows(listing)
    ids = Counter(m[3] for m in msgs if m[3])
    cand = defaultdict(list)
    for m in msgs:
        if m[3] and ids[m[3]] == 1 and "\\Deleted" not in m[2]:
            cand[m[0]].append(m)
    rng = random.Random(20261203)
    folders = sorted(cand)
    for f in folders:
        rng.shuffle(cand[f])
    picked = []
    while len(picked) < n_reflag + n_delete and any(cand[f] for f in folders):
        for f in folders:
            if cand[f] and len(picked) < n_reflag + n_delete:
                picked.append(cand[f].pop())
    if len(picked) < n_reflag + n_delete:
        sys.exit(f"only {len(picked)} candidate messages for {n_reflag} re-flags and {n_delete} deletions")
    rng.shuffle(picked)
    dele, refl = picked[:n_delete], picked[n_delete:]
    doveadm = ["doveadm", "-c", conf]
    def run(args, data=None):
        subprocess.run(doveadm + args, input=data, check=True, stdout=subprocess.DEVNULL)
    # 1. re-flags: toggle \Flagged (even) or \Seen (odd), one doveadm call per (folder, op, flag).
    groups = defaultdict(list)
    with open(os.path.join(outdir, "reflag.tsv"), "w") as out:
        for i, (box, uid, flags, mid) in enumerate(refl):
            flag = "\\Flagged" if i % 2 == 0 else "\\Seen"
            op = "remove" if flag in flags else "add"
            groups[(box, op, flag)].append(uid)
            out.write(f"{mid}\t{flag}\t{1 if op == 'add' else 0}\n")
    for (box, op, flag), uids in sorted(groups.items()):
        run(["flags", op, "-u", user, flag, "mailbox", box, "uid", ",".join(map(str, sorted(uids)))])
    # 2. deletions, expunged at once.
    groups = defaultdict(list)
    with open(os.path.join(outdir, "deleted.ids"), "w") as out:
        for box, uid, _, mid in dele:
            groups[box].append(uid)
            out.write(mid + "\n")
    for box, uids in sorted(groups.items()):
        run(["expunge", "-u", user, "mailbox", box, "uid", ",".join(map(str, sorted(uids)))])
    # 3. new messages, round robin over every folder (empty ones too).
    boxes = sorted({m[0] for m in msgs} | set(folders))
    with open(os.path.join(outdir, "new.ids"), "w") as out:
        for i in range(n_new):
            box = boxes[i % len(boxes)]
            mid = f"<bench-delta-{tag}-{i:04d}@imapfleet.bench>"
            body = "".join(f"New line {j} of message {i}, written for the delta benchmark.\r\n" for j in range(20 + i % 40))
            msg = (f"From: Delta Sender <delta@imapfleet.bench>\r\nTo: {user}@lab.example\r\n"
                   f"Subject: delta message {i}\r\nDate: Thu, 03 Dec 2026 12:{i % 60:02d}:00 +0000\r\n"
                   f"Message-ID: {mid}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n{body}")
            run(["save", "-u", user, "-m", box], msg.encode())
            out.write(mid + "\n")
    print(f"{len(refl)} re-flagged, {len(dele)} expunged, {n_new} new, over {len(boxes)} folders")

def check(listing, outdir):
    msgs = rows(listing)
    by_id = defaultdict(list)
    for m in msgs:
        if m[3]:
            by_id[m[3]].append(m[2])
    new = [l.strip() for l in open(os.path.join(outdir, "new.ids")) if l.strip()]
    gone = [l.strip() for l in open(os.path.join(outdir, "deleted.ids")) if l.strip()]
    new_ok = sum(1 for i in new if len(by_id.get(i, [])) == 1)
    gone_ok = sum(1 for i in gone if not by_id.get(i))
    refl_ok = total = 0
    for l in open(os.path.join(outdir, "reflag.tsv")):
        mid, flag, want = l.rstrip("\n").split("\t")
        total += 1
        got = by_id.get(mid, [])
        if len(got) == 1 and (flag in got[0]) == (want == "1"):
            refl_ok += 1
    print(f"{new_ok}/{len(new)}\t{gone_ok}/{len(gone)}\t{refl_ok}/{total}")

if sys.argv[1] == "apply":
    apply(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8]), sys.argv[9])
else:
    check(sys.argv[2], sys.argv[3])
PY

# 1. Source mailbox.
have=$(count_messages 1 "$SRC")
want=$([ "$PRESET" = bench ] && echo 5000 || echo 60)
if [ "${BENCH_KEEP_SOURCE:-}" = 1 ] && [ "$have" = "$want" ]; then
    log "host1 $SRC already holds $have messages: kept"
else
    scripts/lab.sh wipe 1 "$SRC"
    log "filling host1 $SRC with the $PRESET preset (seed $SEED)"
    LAB_PASSWORD=$LAB_PASSWORD /usr/bin/time -f '%e %U %S %M' -o "$WORK/fill.time" \
        "$FILL" --host "$LAB_HOST1" --port "$LAB_HOST1_PORT" --user "$SRC" --password-env LAB_PASSWORD \
        --preset "$PRESET" --seed "$SEED" >"$WORK/fill.out"
    cat "$WORK/fill.out" >&2
    have=$(count_messages 1 "$SRC")
fi
[ "$have" = "$want" ] || die "host1 $SRC holds $have messages, expected $want"
src_folders=$(count_folders 1 "$SRC")
deleted=$(count_deleted 1 "$SRC")
log "host1 $SRC: $have messages ($deleted flagged \\Deleted) in $src_folders folders"
# The copy every round starts from (and host1 is put back from at the end).
doveadm -c "$LAB_HOST1_CONF" kick "$SRC" >/dev/null 2>&1 || true
PRISTINE=$(mktemp -d /dev/shm/imapfleet-bench-src.XXXXXX)
cp -a "$SRC_HOME" "$PRISTINE/$SRC"

# 2. Rounds.
RESULTS=$WORK/results.tsv
CHECKS=$WORK/checks.tsv
: >"$RESULTS"
: >"$CHECKS"
# timed TOOL PASS USER CMD...: run, record wall/cpu/rss, messages and faithfulness on host2.
timed() {
    local tool=$1 pass=$2 user=$3 rc=0
    shift 3
    /usr/bin/time -f '%e %U %S %M' -o "$WORK/t" "$@" >"$WORK/out.$tool.$pass" 2>&1 || rc=$?
    local wall usr sys rss
    read -r wall usr sys rss <<<"$(tail -1 "$WORK/t")"
    local msgs folders faith
    msgs=$(count_messages 2 "$user")
    folders=$(count_folders 2 "$user")
    faith=$(faithful "$user")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$pass" "$wall" \
        "$(awk -v u="$usr" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')" \
        "$(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }')" "$msgs" "$folders" "$faith" "$rc" >>"$RESULTS"
    if [ "$rc" != 0 ]; then
        log "$tool $pass exited $rc; last lines of its output:"
        tail -5 "$WORK/out.$tool.$pass" >&2
    fi
}

cat >"$WORK/mbsyncrc" <<EOF
IMAPAccount far
Host $LAB_HOST1
Port $LAB_HOST1_PORT
User $SRC
PassCmd "cat $WORK/pass"
SSLType None
AuthMechs LOGIN

IMAPStore far
Account far

IMAPAccount near
Host $LAB_HOST2
Port $LAB_HOST2_PORT
User $DST_MB
PassCmd "cat $WORK/pass"
SSLType None
AuthMechs LOGIN

IMAPStore near
Account near

Channel Far
Far :far:
Near :near:
Patterns *
Create Near
Sync Pull
Expunge Near
CopyArrivalDate yes
SyncState $WORK/mbsync-state/
EOF

# shellcheck disable=SC2086
for round in $(seq 1 "$RUNS"); do
    log "round $round/$RUNS (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
    restore_source
    flag_date_lines 1 "$SRC" >"$WORK/h1.txt"
    wipe2 "$DST_IF"
    wipe2 "$DST_MB"
    rm -rf "$WORK/mbsync-state" "$WORK/state"
    mkdir -p "$WORK/mbsync-state"
    IF_ARGS=(sync --host1 "$LAB_HOST1" --port1 "$LAB_HOST1_PORT" --user1 "$SRC" --passfile1 "$WORK/pass" --notls1
        --host2 "$LAB_HOST2" --port2 "$LAB_HOST2_PORT" --user2 "$DST_IF" --passfile2 "$WORK/pass" --notls2 --quiet
        --delete2 ${BENCH_IMAPFLEET_ARGS:-})
    STATE=(--statedir "$WORK/state")
    # Alternate which tool goes first, so neither always meets a warmer (or busier) server.
    if [ $((round % 2)) = 1 ]; then order="imapfleet mbsync"; else order="mbsync imapfleet"; fi
    for tool in $order; do
        if [ "$tool" = imapfleet ]; then
            timed imapfleet full "$DST_IF" "$IMAPFLEET" "${IF_ARGS[@]}" "${STATE[@]}"
            timed imapfleet rerun-nostate "$DST_IF" "$IMAPFLEET" "${IF_ARGS[@]}" --nostate
            timed imapfleet rerun-state "$DST_IF" "$IMAPFLEET" "${IF_ARGS[@]}" "${STATE[@]}"
        else
            timed mbsync full "$DST_MB" mbsync -q -c "$WORK/mbsyncrc" Far
            timed mbsync rerun "$DST_MB" mbsync -q -c "$WORK/mbsyncrc" Far
        fi
    done

    # The change, once, on the one host1 both tools read.
    log "changing host1 $SRC: $NEW new, $REFLAG re-flagged, $DELETE expunged"
    mkdir -p "$WORK/changes"
    fetch_ids 1 "$SRC" "$WORK/h1-ids.tsv"
    python3 "$WORK/changes.py" apply "$LAB_HOST1_CONF" "$SRC" "$WORK/h1-ids.tsv" "$WORK/changes" \
        "$NEW" "$REFLAG" "$DELETE" "r$round" >&2
    flag_date_lines 1 "$SRC" >"$WORK/h1.txt"
    have_now=$(count_messages 1 "$SRC")
    deleted_now=$(count_deleted 1 "$SRC")
    for tool in $order; do
        if [ "$tool" = imapfleet ]; then
            timed imapfleet delta "$DST_IF" "$IMAPFLEET" "${IF_ARGS[@]}" "${STATE[@]}"
            user=$DST_IF expect=$((have_now - deleted_now))
            case " ${BENCH_IMAPFLEET_ARGS:-} " in *" --copydeleted "*) expect=$have_now ;; esac
        else
            timed mbsync delta "$DST_MB" mbsync -q -c "$WORK/mbsyncrc" Far
            user=$DST_MB expect=$((have_now - deleted_now))
        fi
        fetch_ids 2 "$user" "$WORK/h2-ids.tsv"
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$tool" "$have_now" "$expect" \
            "$(awk -F'\t' -v t="$tool" '$1 == t && $2 == "delta" { m = $6; f = $8 } END { print m "\t" f }' "$RESULTS")" \
            "$(python3 "$WORK/changes.py" check "$WORK/h2-ids.tsv" "$WORK/changes")" >>"$CHECKS"
    done
done

# 3. Table.
echo
echo "preset $PRESET (seed $SEED): host1 $SRC holds $have messages ($deleted flagged \\Deleted) in $src_folders folders; $RUNS round(s)"
echo "load average at the end: $(uptime | sed 's/.*load average: //')"
fmt='%-10s %-14s %8s %8s %13s %17s %8s %10s %3s\n'
# shellcheck disable=SC2059
printf "$fmt" tool pass "wall s" "CPU s" "peak RSS MB" "messages on host2" folders faithful rc
awk -F'\t' -v fmt="$fmt" '{ printf fmt, $1, $2, $3, $4, $5, $6, $7, $8, $9 }' "$RESULTS"
if [ "$RUNS" -gt 1 ]; then
    echo
    echo "medians over $RUNS rounds"
    # shellcheck disable=SC2059
    printf "$fmt" tool pass "wall s" "CPU s" "peak RSS MB" "messages on host2" folders faithful rc
    for key in "imapfleet full" "imapfleet rerun-nostate" "imapfleet rerun-state" "imapfleet delta" \
        "mbsync full" "mbsync rerun" "mbsync delta"; do
        set -- $key
        med() { awk -F'\t' -v t="$1" -v p="$2" -v c="$3" '$1 == t && $2 == p { print $c }' "$RESULTS" | sort -g |
            awk -v f="${4:-%.2f}" '{ v[NR] = $1 } END { printf f, (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
        # shellcheck disable=SC2059
        printf "$fmt" "$1" "$2" "$(med "$1" "$2" 3)" "$(med "$1" "$2" 4)" "$(med "$1" "$2" 5 %.1f)" \
            "$(med "$1" "$2" 6 %d)" "$(med "$1" "$2" 7 %d)" "$(med "$1" "$2" 8 %d)" "-"
    done
fi
echo
echo "wall/CPU/RSS are the client's (/usr/bin/time); Dovecot's own CPU is not counted."
echo "faithful = host2 messages whose flags and INTERNALDATE match a host1 message (of $have before the change,"
echo "of $have + $NEW - $DELETE after it). A tool that leaves \\Deleted messages behind copies $((have - deleted))."
echo "imapfleet: sync --delete2 on every pass; full and rerun-state/delta with --statedir (fresh each round),"
echo "rerun-nostate with --nostate. mbsync: Sync Pull, Expunge Near, Create Near, CopyArrivalDate yes."
median_of() { # median_of TOOL PASS: median wall time over the rounds
    awk -F'\t' -v t="$1" -v p="$2" '$1 == t && $2 == p { print $3 }' "$RESULTS" | sort -g |
        awk '{ v[NR] = $1 } END { if (NR) printf "%.2f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
rerun_if=$(median_of imapfleet rerun-state)
rerun_mb=$(median_of mbsync rerun)
if [ -n "$rerun_if" ] && [ -n "$rerun_mb" ]; then
    echo "no-change re-run with saved state: imapfleet $rerun_if s, mbsync $rerun_mb s (medians);" \
        "target <= 0.1 s and <= 2x mbsync: $(awk -v a="$rerun_if" -v b="$rerun_mb" 'BEGIN { print (a <= 0.1 && a <= 2 * b) ? "met" : "NOT met" }')"
fi
echo
echo "delta check (host2 after the delta pass; changed messages found by their Message-Id)"
cfmt='%-6s %-10s %14s %17s %17s %10s %12s %12s %14s %6s\n'
# shellcheck disable=SC2059
printf "$cfmt" round tool "host1 messages" "expected on host2" "messages on host2" faithful "new there" "deleted gone" "re-flags right" equal
awk -F'\t' -v fmt="$cfmt" '{
    split($7, a, "/"); split($8, b, "/"); split($9, c, "/")
    eq = ($6 == $4 && $5 == $4 && a[1] == a[2] && b[1] == b[2] && c[1] == c[2]) ? "yes" : "no"
    printf fmt, $1, $2, $3, $4, $5, $6, $7, $8, $9, eq }' "$CHECKS"
echo "equal = host2 holds the expected count, every message's flags and INTERNALDATE match host1's, the new"
echo "messages are there once, the expunged ones are gone and the re-flagged ones carry host1's flag."
echo "Both are expected to hold host1's messages not flagged \\Deleted; mbsync drops keywords, so its"
echo "faithful count is lower than its message count."
fails=$(awk -F'\t' -v a="$have" -v b="$((have - deleted))" '$2 == "full" && $6 != a && $6 != b { n++ } END { print n + 0 }' "$RESULTS")
if [ "$fails" != 0 ]; then
    echo "WARNING: $fails full pass(es) left host2 with neither $have nor $((have - deleted)) messages"
fi
