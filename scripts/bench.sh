#!/usr/bin/env bash
# Benchmark (not a test): imapfleet against mbsync on the lab, side by side in one run.
#
#   scripts/bench.sh                  bench preset (5,000 messages, ~145 MB, 20 folders), one round
#   BENCH_RUNS=3 scripts/bench.sh     three rounds, then the medians
#   BENCH_PRESET=small scripts/bench.sh
#
# What it does:
#   1. starts the lab (scripts/lab.sh start), builds imapfleet and the mailgen `fill` example (release);
#   2. fills a fresh host1 user ($BENCH_SRC_USER, default user0100) with MailboxSpec::bench() via
#      crates/mailgen/examples/fill.rs;
#   3. per round, on fresh empty host2 users: imapfleet ($BENCH_IMAPFLEET_USER, user0101) full pass and
#      no-change re-run, and mbsync 1.4 IMAP->IMAP ($BENCH_MBSYNC_USER, user0102, Channel Far -> Near,
#      Patterns *, Create Near, Sync Pull, CopyArrivalDate yes) full pass and re-run; the tools take
#      turns going first;
#   4. prints a table: tool, pass, wall s, CPU s (user+sys of the client), peak RSS MB, messages on
#      host2, and "faithful": messages of host2 whose (flags, INTERNALDATE) pair matches one of host1's
#      (a multiset match; bytes are not compared, see `imapfleet verify` for that).
#
# Environment: BENCH_PRESET (bench|small), BENCH_SEED (1), BENCH_RUNS (1), BENCH_SRC_USER,
# BENCH_IMAPFLEET_USER, BENCH_MBSYNC_USER, BENCH_KEEP_SOURCE=1 (reuse a host1 user that already holds
# the right number of messages), BENCH_IMAPFLEET_ARGS (extra `imapfleet sync` arguments),
# BENCH_NO_BUILD=1 (use the binaries in target/release as they are).
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

WORK=$(mktemp -d /tmp/imapfleet-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
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
deleted=$(dove 1 search -u "$SRC" mailbox '*' DELETED 2>/dev/null | wc -l)
flag_date_lines 1 "$SRC" >"$WORK/h1.txt"
log "host1 $SRC: $have messages ($deleted flagged \\Deleted) in $src_folders folders"

# 2. Rounds.
RESULTS=$WORK/results.tsv
: >"$RESULTS"
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
Expunge None
CopyArrivalDate yes
SyncState $WORK/mbsync-state/
EOF

# shellcheck disable=SC2086
for round in $(seq 1 "$RUNS"); do
    log "round $round/$RUNS (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
    wipe2 "$DST_IF"
    wipe2 "$DST_MB"
    rm -rf "$WORK/mbsync-state"
    mkdir -p "$WORK/mbsync-state"
    IF_ARGS=(sync --host1 "$LAB_HOST1" --port1 "$LAB_HOST1_PORT" --user1 "$SRC" --passfile1 "$WORK/pass" --notls1
        --host2 "$LAB_HOST2" --port2 "$LAB_HOST2_PORT" --user2 "$DST_IF" --passfile2 "$WORK/pass" --notls2 --quiet
        ${BENCH_IMAPFLEET_ARGS:-})
    # Alternate which tool goes first, so neither always meets a warmer (or busier) server.
    if [ $((round % 2)) = 1 ]; then order="imapfleet mbsync"; else order="mbsync imapfleet"; fi
    for tool in $order; do
        if [ "$tool" = imapfleet ]; then
            timed imapfleet full "$DST_IF" "$IMAPFLEET" "${IF_ARGS[@]}"
            timed imapfleet rerun "$DST_IF" "$IMAPFLEET" "${IF_ARGS[@]}"
        else
            timed mbsync full "$DST_MB" mbsync -q -c "$WORK/mbsyncrc" Far
            timed mbsync rerun "$DST_MB" mbsync -q -c "$WORK/mbsyncrc" Far
        fi
    done
done

# 3. Table.
echo
echo "preset $PRESET (seed $SEED): host1 $SRC holds $have messages ($deleted flagged \\Deleted) in $src_folders folders; $RUNS round(s)"
fmt='%-10s %-6s %8s %8s %13s %17s %8s %10s %3s\n'
# shellcheck disable=SC2059
printf "$fmt" tool pass "wall s" "CPU s" "peak RSS MB" "messages on host2" folders faithful rc
awk -F'\t' -v fmt="$fmt" '{ printf fmt, $1, $2, $3, $4, $5, $6, $7, $8, $9 }' "$RESULTS"
if [ "$RUNS" -gt 1 ]; then
    echo
    echo "medians over $RUNS rounds"
    # shellcheck disable=SC2059
    printf "$fmt" tool pass "wall s" "CPU s" "peak RSS MB" "messages on host2" folders faithful rc
    for key in "imapfleet full" "imapfleet rerun" "mbsync full" "mbsync rerun"; do
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
echo "faithful = host2 messages whose flags and INTERNALDATE match a host1 message (of $have)."
echo "A tool that leaves \\Deleted messages behind copies $((have - deleted))."
fails=$(awk -F'\t' -v a="$have" -v b="$((have - deleted))" '$2 == "full" && $6 != a && $6 != b { n++ } END { print n + 0 }' "$RESULTS")
if [ "$fails" != 0 ]; then
    echo "WARNING: $fails full pass(es) left host2 with neither $have nor $((have - deleted)) messages"
fi
