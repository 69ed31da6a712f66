#!/usr/bin/env bash
# The fleet's services for tests: Redis and RabbitMQ on loopback.
#
#   scripts/services.sh start    install what is missing (Debian packages, as root), start both;
#                                a service already answering on its port is reused as it is
#   scripts/services.sh stop     stop what this script started (a reused service is left alone)
#   scripts/services.sh status   say what answers
#   scripts/services.sh env      print the URLs as shell variables (eval "$(scripts/services.sh env)")
#
# Redis:    127.0.0.1:6379, no persistence (--save '' --appendonly no).
# RabbitMQ: 127.0.0.1:5672, node rabbit@localhost (distribution port 25672), epmd and distribution on 127.0.0.1 only;
#           user guest/guest (RabbitMQ lets guest in from loopback only).
# Ports and node name can be moved (IMAPFLEET_REDIS_PORT, IMAPFLEET_AMQP_PORT, IMAPFLEET_RABBIT_NODE).
set -euo pipefail

STATE_DIR=${IMAPFLEET_SERVICES_DIR:-/dev/shm/imapfleet-services}
REDIS_PORT=${IMAPFLEET_REDIS_PORT:-6379}
AMQP_PORT=${IMAPFLEET_AMQP_PORT:-5672}
# A second broker beside another one needs its own node name and distribution port.
RABBIT_NODE=${IMAPFLEET_RABBIT_NODE:-rabbit@localhost}
RABBIT_DIST_PORT=${IMAPFLEET_RABBIT_DIST_PORT:-$((AMQP_PORT + 20000))}
AMQP_WAIT_SECS=${IMAPFLEET_AMQP_WAIT_SECS:-60}

log() { printf 'services: %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# True when the port speaks AMQP: send the 0-9-1 protocol header, expect bytes back (Connection.Start).
amqp_answers() {
    local out
    out=$(timeout 3 bash -c '
        exec 3<>/dev/tcp/127.0.0.1/'"$AMQP_PORT"' || exit 1
        printf "AMQP\x00\x00\x09\x01" >&3
        head -c 8 <&3 | od -An -tx1
    ' 2>/dev/null) || return 1
    [ -n "${out// /}" ]
}

redis_answers() {
    if command -v redis-cli >/dev/null 2>&1; then
        [ "$(timeout 3 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]
    else
        local out
        out=$(timeout 3 bash -c '
            exec 3<>/dev/tcp/127.0.0.1/'"$REDIS_PORT"' || exit 1
            printf "PING\r\n" >&3
            head -c 5 <&3
        ' 2>/dev/null) || return 1
        [ "$out" = "+PONG" ]
    fi
}

apt_install() {
    if [ "$(id -u)" != 0 ]; then
        log "missing $*; this is not root: run 'apt-get install $*' first"
        exit 1
    fi
    log "installing $* (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    if [ ! -e "$STATE_DIR/.apt-updated" ]; then
        apt-get update -qq >/dev/null
        mkdir -p "$STATE_DIR" && : >"$STATE_DIR/.apt-updated"
    fi
    # Debian's policy-rc.d (in containers) keeps the packaged services from starting; we start our own.
    apt-get install -y -qq "$@" >/dev/null
}

start_redis() {
    if redis_answers; then
        log "redis: reusing the one answering on 127.0.0.1:$REDIS_PORT"
        return 0
    fi
    if port_open "$REDIS_PORT"; then
        log "redis: something on 127.0.0.1:$REDIS_PORT does not answer PING"
        exit 1
    fi
    command -v redis-server >/dev/null 2>&1 || apt_install redis-server
    mkdir -p "$STATE_DIR/redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
        --dir "$STATE_DIR/redis" --pidfile "$STATE_DIR/redis/redis.pid" \
        --logfile "$STATE_DIR/redis/redis.log" >/dev/null
    : >"$STATE_DIR/redis/started-here"
    for _ in $(seq 1 100); do
        redis_answers && { log "redis: up on 127.0.0.1:$REDIS_PORT"; return 0; }
        sleep 0.1
    done
    log "redis: did not answer within 10 s (log: $STATE_DIR/redis/redis.log)"
    exit 1
}

start_rabbitmq() {
    if amqp_answers; then
        log "rabbitmq: reusing the broker answering on 127.0.0.1:$AMQP_PORT"
        return 0
    fi
    if port_open "$AMQP_PORT"; then
        log "rabbitmq: something on 127.0.0.1:$AMQP_PORT does not answer the AMQP handshake; waiting for it"
    else
        command -v rabbitmq-server >/dev/null 2>&1 || apt_install rabbitmq-server
        mkdir -p "$STATE_DIR/rabbitmq"
        chmod 755 "$STATE_DIR" "$STATE_DIR/rabbitmq"
        cat >"$STATE_DIR/rabbitmq/rabbitmq.conf" <<EOF
listeners.tcp.default = 127.0.0.1:$AMQP_PORT
loopback_users.guest = true
EOF
        chmod 644 "$STATE_DIR/rabbitmq/rabbitmq.conf"
        log "rabbitmq: starting (about 10 s)"
        # The Debian wrapper switches to the rabbitmq user (su keeps these variables).
        (
            cd /
            export RABBITMQ_NODENAME=$RABBIT_NODE
            export RABBITMQ_DIST_PORT=$RABBIT_DIST_PORT
            export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
            export RABBITMQ_NODE_PORT=$AMQP_PORT
            export ERL_EPMD_ADDRESS=127.0.0.1
            export RABBITMQ_CONFIG_FILE=$STATE_DIR/rabbitmq/rabbitmq.conf
            export ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"
            rabbitmq-server -detached >"$STATE_DIR/rabbitmq/start.log" 2>&1 </dev/null
        ) || { log "rabbitmq: rabbitmq-server -detached failed:"; cat "$STATE_DIR/rabbitmq/start.log" >&2; exit 1; }
        : >"$STATE_DIR/rabbitmq/started-here"
    fi
    local deadline=$((SECONDS + AMQP_WAIT_SECS))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if amqp_answers; then
            log "rabbitmq: up on 127.0.0.1:$AMQP_PORT"
            return 0
        fi
        sleep 0.5
    done
    log "rabbitmq: no AMQP handshake on 127.0.0.1:$AMQP_PORT within ${AMQP_WAIT_SECS} s (see /var/log/rabbitmq/)"
    exit 1
}

stop_redis() {
    if [ -e "$STATE_DIR/redis/started-here" ]; then
        redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
        rm -f "$STATE_DIR/redis/started-here"
        log "redis: stopped"
    else
        log "redis: not started by this script; left alone"
    fi
}

stop_rabbitmq() {
    if [ -e "$STATE_DIR/rabbitmq/started-here" ]; then
        rabbitmqctl -n "$RABBIT_NODE" stop >/dev/null 2>&1 || true
        # epmd outlives the node.
        epmd -kill >/dev/null 2>&1 || true
        rm -f "$STATE_DIR/rabbitmq/started-here"
        log "rabbitmq: stopped"
    else
        log "rabbitmq: not started by this script; left alone"
    fi
}

cmd_status() {
    if redis_answers; then echo "redis 127.0.0.1:$REDIS_PORT up"; else echo "redis 127.0.0.1:$REDIS_PORT down"; fi
    if amqp_answers; then echo "rabbitmq 127.0.0.1:$AMQP_PORT up"; else echo "rabbitmq 127.0.0.1:$AMQP_PORT down"; fi
}

cmd_env() {
    cat <<EOF
IMAPFLEET_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/
IMAPFLEET_AMQP_URL=amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2f
EOF
}

case "${1:-}" in
start)
    mkdir -p "$STATE_DIR"
    start_redis
    start_rabbitmq
    ;;
stop)
    stop_rabbitmq
    stop_redis
    ;;
status) cmd_status ;;
env) cmd_env ;;
*)
    sed -n '2,13p' "$0"
    exit 2
    ;;
esac
