#!/usr/bin/env bash
# The local test lab: two independent Dovecot instances on loopback, playing host1 and host2.
#
#   scripts/lab.sh start     install Dovecot if missing, write configs, start both (reuses running ones)
#   scripts/lab.sh stop      stop both
#   scripts/lab.sh status    say what answers
#   scripts/lab.sh env       print the facts as shell variables (source it: eval "$(scripts/lab.sh env)")
#   scripts/lab.sh wipe H U  delete all mail of user U on host H (1, 2 or 3, or a profile's port), leaving
#                            an empty INBOX (and, on a profile instance, an empty command log)
#   scripts/lab.sh profile NAME [OVERRIDES_FILE] [SEP=C] [TZ=ZONE]
#                            start (or reuse) an extra instance for a Dovecot profile of the bug-report
#                            cases and print its IMAP port (see "Profiles" below)
#   scripts/lab.sh profiles  list the profile instances (port, name, state)
#
# host1: 127.0.0.1:1143 (plain + STARTTLS), 127.0.0.1:1993 (implicit TLS); Maildir++, separator "."
# host2: 127.0.0.1:2143 (plain + STARTTLS), 127.0.0.1:2993 (implicit TLS); Maildir LAYOUT=fs, separator "/"
# host3: 127.0.0.1:3143 / 3993; Courier/cPanel-like: separator ".", every folder under the prefix "INBOX."
# Users user0001 .. user2000, password "secret" (test accounts on loopback only).
# "awkward" has the password in $LAB_DIR/awkward.pass (quotes, backslash, {5}, spaces, non-ASCII).
# Master user "admin" (password "adminsecret"): log in as "user0001*admin", or SASL PLAIN with
# authzid=user0001, authcid=admin.
# Special-use folders on both: Drafts, Sent, Trash, Junk, Archive (attributes only, not auto-created).
# Mail lives on tmpfs (/dev/shm) with mail_fsync = never: on this disk each maildir file costs ~10x more.
#
# Profiles (../shared/cases/README.md names them): extra instances beside host1/2/3, one per distinct
# (profile, overrides, SEP, TZ), each in $LAB_DIR/p<PORT>/ with its own run/state/mail dirs, on a port
# from 7143 up (plain + STARTTLS only, no implicit-TLS listener). Same users and passwords as the lab.
#   lab-host1                like host1 (Maildir++, "."); SEP=/ gives Maildir LAYOUT=fs with "/"
#   lab-host2                like host2 (Maildir LAYOUT=fs, "/")
#   dovecot-dot-separator    like lab-host1, meant as a destination
#   dovecot-inbox-prefix     like host3: separator ".", every folder under "INBOX."
#   dovecot-index-layout     sdbox:~/sdbox:LAYOUT=index, separator "." ("/" allowed inside names)
#   dovecot-no-specialuse    like lab-host1 (SEP=/ as above) without any special_use
#   dovecot-gmail-emulation  LAYOUT=fs "/", "[Gmail]/All Mail" \All, "[Gmail]/Sent Mail" \Sent,
#                            "[Gmail]/Drafts" \Drafts, "[Gmail]/Trash" \Trash, "[Gmail]/Spam" \Junk
# OVERRIDES_FILE: lines appended to the instance's dovecot.conf (Dovecot merges repeated
# `protocol imap { }` / `plugin { }` blocks). TZ=ZONE starts the instance in that time zone (Dovecot
# renders INTERNALDATE in it). Every profile instance keeps a raw command log of each session of
# user U in $LAB_DIR/p<PORT>/rawlog/U/ (created by `wipe PORT U`): tests count commands there.
set -euo pipefail

LAB_DIR=${IMAPFLEET_LAB_DIR:-/dev/shm/imapfleet-lab}
USERS=${IMAPFLEET_LAB_USERS:-2000}
AWKWARD_PASS='quo"te\back {5} (x) pass word*§ü'
MAIL_USER=imapfleet-vmail

log() { printf 'lab: %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

need_root_or_tools() {
    if ! command -v dovecot >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1; then
        if [ "$(id -u)" != 0 ]; then
            log "Dovecot is not installed and this is not root: run 'apt-get install dovecot-imapd openssl' first"
            exit 1
        fi
        log "installing dovecot-imapd (Debian package)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        # policy-rc.d keeps the packaged service from starting; we start our own instances.
        apt-get install -y -qq dovecot-imapd openssl >/dev/null
    fi
}

ensure_mail_user() {
    if ! id "$MAIL_USER" >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin "$MAIL_USER"
    fi
}

make_certs() {
    local d=$LAB_DIR/tls
    [ -s "$d/server.pem" ] && return 0
    mkdir -p "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=imapfleet lab CA" \
        -keyout "$d/ca.key" -out "$d/ca.pem" >/dev/null 2>&1
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
        -keyout "$d/server.key" -out "$d/server.csr" >/dev/null 2>&1
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$d/ext.cnf"
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
        -days 3650 -extfile "$d/ext.cnf" -out "$d/server.pem" >/dev/null 2>&1
    chmod 644 "$d"/*.pem
    chmod 600 "$d"/*.key
}

write_passwd() {
    local f=$LAB_DIR/passwd
    [ -s "$f" ] && [ "$(wc -l <"$f")" -ge "$USERS" ] && return 0
    : >"$f.tmp"
    for i in $(seq 1 "$USERS"); do
        printf 'user%04d:{PLAIN}secret::::::\n' "$i" >>"$f.tmp"
    done
    # The awkward password goes in base64 so no character needs escaping in the passwd-file.
    printf 'awkward:{PLAIN.b64}%s::::::\n' "$(printf '%s' "$AWKWARD_PASS" | base64 -w0)" >>"$f.tmp"
    mv "$f.tmp" "$f"
    printf '%s' "$AWKWARD_PASS" >"$LAB_DIR/awkward.pass"
    printf 'admin:{PLAIN}adminsecret::::::\n' >"$LAB_DIR/master-passwd"
    chmod 644 "$f" "$LAB_DIR/master-passwd"
}

# The mailbox { special_use } blocks of a namespace whose prefix is $1 (the lab's usual set).
special_use_blocks() {
    local prefix=$1 box
    for box in Drafts Sent Trash Junk Archive; do
        printf '  mailbox %s%s {\n    special_use = \\%s\n  }\n' "$prefix" "$box" "$box"
    done
}

# write_conf NAME IMAP_PORT IMAPS_PORT MAIL_LOCATION SEPARATOR PREFIX [EXTRA_CONF_FILE]
# IMAPS_PORT empty: no implicit-TLS listener. $SPECIAL_USE (if set) replaces the special-use
# blocks; $CONF_EXTRA (if set) is written before the extra file (profiles put rawlog_dir there).
write_conf() {
    local name=$1 port=$2 sport=$3 location=$4 sep=$5 prefix=$6
    local d=$LAB_DIR/$name
    mkdir -p "$d/run" "$d/state" "$d/mail"
    chown "$MAIL_USER:$MAIL_USER" "$d/mail"
    local uid gid special imaps
    uid=$(id -u "$MAIL_USER")
    gid=$(id -g "$MAIL_USER")
    special=${SPECIAL_USE-$(special_use_blocks "$prefix")}
    # Port 0 switches the listener off (it would otherwise keep Dovecot's default, 993).
    imaps="
  inet_listener imaps {
    address = 127.0.0.1
    port = ${sport:-0}
    ssl = yes
  }"
    cat >"$d/dovecot.conf" <<EOF
# Generated by scripts/lab.sh: $name of the imapfleet test lab. Loopback only.
protocols = imap
listen = 127.0.0.1
base_dir = $d/run
state_dir = $d/state
instance_name = imapfleet-$name
log_path = $d/dovecot.log
info_log_path = $d/dovecot.log
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
ssl = yes
ssl_cert = <$LAB_DIR/tls/server.pem
ssl_key = <$LAB_DIR/tls/server.key
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_master_user_separator = *
auth_cache_size = 1M
mail_location = $location
mail_fsync = never
mail_max_keyword_length = 50
mail_uid = $uid
mail_gid = $gid
passdb {
  driver = passwd-file
  args = $LAB_DIR/master-passwd
  master = yes
  pass = yes
}
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $LAB_DIR/passwd
}
userdb {
  driver = static
  args = uid=$uid gid=$gid home=$d/mail/%u
}
namespace inbox {
  inbox = yes
  separator = $sep
  prefix = $prefix
$special
}
protocol imap {
  mail_max_userip_connections = 500
  imap_idle_notify_interval = 2 mins
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $port
  }$imaps
  service_count = 0
  client_limit = 1000
  process_min_avail = 1
}
service imap {
  process_limit = 1024
}
service auth {
  client_limit = 5000
}
service anvil {
  client_limit = 5000
  # No per-IP auth penalty: tests log in with wrong passwords on purpose, and the penalty would then
  # delay every later login from 127.0.0.1 by up to 15 s. (A failed login still waits 2 s.)
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
EOF
    if [ -n "${CONF_EXTRA:-}" ]; then
        printf '%s\n' "$CONF_EXTRA" >>"$d/dovecot.conf"
    fi
    if [ -n "${7:-}" ] && [ -s "$7" ]; then
        cat "$7" >>"$d/dovecot.conf"
    fi
}

start_one() {
    local name=$1 port=$2 tz=${3:-}
    if port_open "$port"; then
        log "$name: something already answers on 127.0.0.1:$port, reusing it"
        return 0
    fi
    # The daemon must not keep our stdout/stderr (a caller reading them would wait forever) nor
    # the profile lock (fd 9, held by cmd_profile). Dovecot passes TZ on to its processes
    # (import_environment), so INTERNALDATE is rendered in that zone.
    if ! env ${tz:+TZ="$tz"} dovecot -c "$LAB_DIR/$name/dovecot.conf" \
        </dev/null >/dev/null 2>"$LAB_DIR/$name/start.err" 9>&-; then
        log "$name: dovecot did not start:"
        cat "$LAB_DIR/$name/start.err" >&2
        exit 1
    fi
    for _ in $(seq 1 100); do
        port_open "$port" && { log "$name: up on 127.0.0.1:$port"; return 0; }
        sleep 0.1
    done
    log "$name: did not come up on port $port; see $LAB_DIR/$name/dovecot.log"
    tail -20 "$LAB_DIR/$name/dovecot.log" >&2 || true
    exit 1
}

stop_one() {
    local name=$1
    [ -f "$LAB_DIR/$name/dovecot.conf" ] || return 0
    doveadm -c "$LAB_DIR/$name/dovecot.conf" stop 2>/dev/null || true
}

cmd_start() {
    need_root_or_tools
    mkdir -p "$LAB_DIR"
    ensure_mail_user
    make_certs
    write_passwd
    write_conf host1 1143 1993 "maildir:~/Maildir" "." "" "${IMAPFLEET_LAB_HOST1_EXTRA:-}"
    write_conf host2 2143 2993 "maildir:~/Maildir:LAYOUT=fs" "/" "" "${IMAPFLEET_LAB_HOST2_EXTRA:-}"
    write_conf host3 3143 3993 "maildir:~/Maildir" "." "INBOX." "${IMAPFLEET_LAB_HOST3_EXTRA:-}"
    start_one host1 1143
    start_one host2 2143
    start_one host3 3143
}

cmd_stop() {
    stop_one host1
    stop_one host2
    stop_one host3
    local d
    for d in "$LAB_DIR"/p[0-9]*; do
        [ -d "$d" ] && stop_one "$(basename "$d")"
    done
    rm -f "$LAB_DIR/profiles.idx"
}

cmd_status() {
    for p in 1143 1993 2143 2993 3143 3993; do
        if port_open "$p"; then echo "127.0.0.1:$p up"; else echo "127.0.0.1:$p down"; fi
    done
}

cmd_env() {
    cat <<EOF
LAB_DIR=$LAB_DIR
LAB_CA=$LAB_DIR/tls/ca.pem
LAB_HOST1=127.0.0.1
LAB_HOST1_PORT=1143
LAB_HOST1_TLS_PORT=1993
LAB_HOST1_CONF=$LAB_DIR/host1/dovecot.conf
LAB_HOST1_SEP=.
LAB_HOST2=127.0.0.1
LAB_HOST2_PORT=2143
LAB_HOST2_TLS_PORT=2993
LAB_HOST2_CONF=$LAB_DIR/host2/dovecot.conf
LAB_HOST2_SEP=/
LAB_HOST3=127.0.0.1
LAB_HOST3_PORT=3143
LAB_HOST3_CONF=$LAB_DIR/host3/dovecot.conf
LAB_HOST3_SEP=.
LAB_HOST3_PREFIX=INBOX.
LAB_PASSWORD=secret
LAB_USERS=$USERS
LAB_AWKWARD_USER=awkward
LAB_AWKWARD_PASSFILE=$LAB_DIR/awkward.pass
LAB_MASTER_USER=admin
LAB_MASTER_PASSWORD=adminsecret
EOF
}

# wipe HOSTNUM|PORT USER: kick the user's sessions and delete the mail directory (an empty INBOX comes
# back). On a profile instance (given by its port) the user's command log starts empty too.
cmd_wipe() {
    local h=host$1 u=$2
    case "$1" in 1 | 2 | 3) ;; *) h=p$1 ;; esac
    doveadm -c "$LAB_DIR/$h/dovecot.conf" kick "$u" >/dev/null 2>&1 || true
    rm -rf "${LAB_DIR:?}/$h/mail/$u"
    if [ -d "$LAB_DIR/$h/rawlog" ]; then
        rm -rf "${LAB_DIR:?}/$h/rawlog/$u"
        mkdir -p "$LAB_DIR/$h/rawlog/$u"
        chown "$MAIL_USER:$MAIL_USER" "$LAB_DIR/$h/rawlog/$u"
    fi
}

# The base settings of a profile in P_LOCATION P_SEP P_PREFIX, and $SPECIAL_USE where it differs
# from the lab's usual special-use blocks (write_conf reads it).
# $2 is the SEP= setting ("" = the profile's own separator).
profile_base() {
    local name=$1 sep=$2
    unset SPECIAL_USE
    case "$name" in
    lab-host1 | dovecot-dot-separator | dovecot-no-specialuse)
        if [ "$sep" = / ]; then
            P_LOCATION="maildir:~/Maildir:LAYOUT=fs" P_SEP=/
        else
            P_LOCATION="maildir:~/Maildir" P_SEP=.
        fi
        P_PREFIX=""
        if [ "$name" = dovecot-no-specialuse ]; then SPECIAL_USE=""; fi
        ;;
    lab-host2)
        P_LOCATION="maildir:~/Maildir:LAYOUT=fs" P_SEP=/ P_PREFIX=""
        ;;
    dovecot-inbox-prefix)
        P_LOCATION="maildir:~/Maildir" P_SEP=. P_PREFIX="INBOX."
        ;;
    dovecot-index-layout)
        P_LOCATION="sdbox:~/sdbox:LAYOUT=index" P_SEP=. P_PREFIX=""
        ;;
    dovecot-gmail-emulation)
        P_LOCATION="maildir:~/Maildir:LAYOUT=fs" P_SEP=/ P_PREFIX=""
        SPECIAL_USE=$(
            printf '  mailbox "[Gmail]/All Mail" {\n    special_use = \\All\n  }\n'
            printf '  mailbox "[Gmail]/Sent Mail" {\n    special_use = \\Sent\n  }\n'
            printf '  mailbox "[Gmail]/Drafts" {\n    special_use = \\Drafts\n  }\n'
            printf '  mailbox "[Gmail]/Trash" {\n    special_use = \\Trash\n  }\n'
            printf '  mailbox "[Gmail]/Spam" {\n    special_use = \\Junk\n  }\n'
        )
        ;;
    *)
        log "unknown profile '$name' (see scripts/lab.sh)"
        exit 2
        ;;
    esac
}

# profile NAME [OVERRIDES_FILE] [SEP=C] [TZ=ZONE]: print the port of a running instance for it.
# Instances are keyed by (name, SEP, TZ, SHA-256 of the overrides) in $LAB_DIR/profiles.idx; the
# lookup, port choice and start run under a lock, so parallel tests asking for the same profile
# share one instance and different ones get different ports.
cmd_profile() {
    local name=${1:-} overrides="" sep="" tz="" arg
    [ -n "$name" ] || { log "usage: scripts/lab.sh profile NAME [OVERRIDES_FILE] [SEP=C] [TZ=ZONE]"; exit 2; }
    shift
    for arg in "$@"; do
        case "$arg" in
        SEP=*) sep=${arg#SEP=} ;;
        TZ=*) tz=${arg#TZ=} ;;
        "" | -) ;;
        *) overrides=$arg ;;
        esac
    done
    if [ -n "$overrides" ] && [ ! -f "$overrides" ]; then
        log "overrides file $overrides does not exist"
        exit 2
    fi
    profile_base "$name" "$sep"
    local digest key
    digest=$( { [ -n "$overrides" ] && cat "$overrides"; true; } | sha256sum | cut -c1-16)
    key="$name|sep=$sep|tz=$tz|$digest"
    need_root_or_tools
    mkdir -p "$LAB_DIR"
    exec 9>"$LAB_DIR/profiles.lock"
    flock 9
    touch "$LAB_DIR/profiles.idx"
    local port
    port=$(awk -F'\t' -v k="$key" '$1 == k { print $2 }' "$LAB_DIR/profiles.idx" | head -1)
    if [ -n "$port" ] && port_open "$port"; then
        echo "$port"
        return 0
    fi
    if [ -z "$port" ]; then
        port=7143
        while cut -f2 "$LAB_DIR/profiles.idx" | grep -qx "$port" || port_open "$port"; do
            port=$((port + 1))
            [ "$port" -lt 7999 ] || { log "no free profile port"; exit 1; }
        done
        printf '%s\t%s\n' "$key" "$port" >>"$LAB_DIR/profiles.idx"
    fi
    ensure_mail_user
    make_certs
    write_passwd
    local inst=p$port
    mkdir -p "$LAB_DIR/$inst/rawlog"
    chown "$MAIL_USER:$MAIL_USER" "$LAB_DIR/$inst/rawlog"
    # rawlog_dir: Dovecot writes <timestamp>.in/.out of each IMAP session into it when it exists
    # (wipe creates it per user); the tests count commands there.
    CONF_EXTRA="# profile $key
protocol imap {
  rawlog_dir = $LAB_DIR/$inst/rawlog/%u
}" \
        write_conf "$inst" "$port" "" "$P_LOCATION" "$P_SEP" "$P_PREFIX" "$overrides"
    start_one "$inst" "$port" "$tz"
    echo "$port"
}

cmd_profiles() {
    [ -f "$LAB_DIR/profiles.idx" ] || return 0
    local key port
    while IFS=$'\t' read -r key port; do
        if port_open "$port"; then echo "$port up $key"; else echo "$port down $key"; fi
    done <"$LAB_DIR/profiles.idx"
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
env) cmd_env ;;
wipe) shift; cmd_wipe "$@" ;;
profile) shift; cmd_profile "$@" ;;
profiles) cmd_profiles ;;
*)
    sed -n '2,44p' "$0"
    exit 2
    ;;
esac
