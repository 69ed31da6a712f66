#!/usr/bin/env bash
# The image test: build the container image with podman and run the chart's worker Deployment, ConfigMap
# and Secret with `podman kube play` against the lab (Dovecot host1/host2, RabbitMQ, Redis on loopback);
# dispatch a small batch from the host and check that it completes, that host2 is deep-identical, that
# the container's /metrics answers with what was copied; run the chart's dispatcher Job pod for a delta
# pass (only new mail copied); check that SIGTERM stops the worker cleanly. About 60 s with warm caches.
#
#   deploy/test-image.sh          run it (installs podman, runc, debootstrap from Debian when missing, as root)
#   deploy/test-image.sh source   build the image the way users do, from source (the default target:
#                                 a release build inside the build stage). No registry serves
#                                 rust:1-bookworm here: the builder image is made from the base and this
#                                 machine's Rust toolchain. Slow (minutes of compiling): run it rarely
#   deploy/test-image.sh clean    remove the pod, the test images and the cached base image
#
# Opt-in from `cargo test` with IMAPFLEET_IMAGE_TEST=1 (crates/deploy-tests/tests/image.rs calls this
# script). Exit status 0: passed; 77: skipped (no podman and it cannot be installed: printed why);
# anything else: failed.
#
# Settings (environment):
#   IMAPFLEET_IMAGE_BASE      base image for the build (default localhost/debian:bookworm, made here
#                             with debootstrap + podman import and kept between runs)
#   IMAPFLEET_IMAGE_PROFILE   cargo profile of the host-built binary copied into the image (default dev)
#   IMAPFLEET_IMAGE_PORT      host port of the container's /metrics (default 19898; hostNetwork)
#   IMAPFLEET_IMAGE_KEEP=1    leave the pod running at the end (for a look around)
#   IMAPFLEET_IMAGE_BINARY    use this imapfleet binary instead of building one
#   IMAPFLEET_IMAGE_STATE     work directory (default /var/tmp/imapfleet-image-test)
#   IMAPFLEET_RENDER_CHART    the render-chart binary to use (the cargo test passes its own)
#
# Lab users user0090..user0099 belong to this test.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

STATE=${IMAPFLEET_IMAGE_STATE:-/var/tmp/imapfleet-image-test}
BASE=${IMAPFLEET_IMAGE_BASE:-localhost/debian:bookworm}
IMAGE=localhost/imapfleet:test
PROFILE=${IMAPFLEET_IMAGE_PROFILE:-dev}
PORT=${IMAPFLEET_IMAGE_PORT:-19898}
RELEASE=imgtest
USERS=(user0090 user0091 user0092)
RUN_ID="$(date +%s)-$$"
QUEUE="imapfleet.imagetest.${RUN_ID}"
JOB="image-test-${RUN_ID}"
T0=$(date +%s)

log() { printf 'image-test: [%3ss] %s\n' "$(($(date +%s) - T0))" "$*" >&2; }
skip() { log "SKIP: $*"; exit 77; }
fail() { log "FAIL: $*"; exit 1; }

mkdir -p "$STATE"
# The two settings podman needs in this sandbox (see ../shared/LAB.md): no default ulimits, runc.
cat >"$STATE/containers.conf" <<'EOF'
[containers]
default_ulimits = []
EOF
export CONTAINERS_CONF="$STATE/containers.conf"
podman() { command podman --runtime runc "$@"; }

install_tools() {
    local missing=()
    command -v podman >/dev/null 2>&1 || missing+=(podman)
    command -v runc >/dev/null 2>&1 || missing+=(runc)
    if ! command -v debootstrap >/dev/null 2>&1 && [ "$BASE" = localhost/debian:bookworm ]; then
        missing+=(debootstrap)
    fi
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        skip "missing ${missing[*]} and cannot install them (not root on Debian)"
    fi
    log "installing ${missing[*]} (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    if ! timeout 300 apt-get update -qq >/dev/null 2>&1 ||
        ! timeout 600 apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1; then
        skip "apt-get install ${missing[*]} failed"
    fi
}

# The Debian mirror this machine's apt uses (the base image is made from the same one).
debian_mirror() {
    local m=""
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        m=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
    fi
    if [ -z "$m" ] && [ -f /etc/apt/sources.list ]; then
        m=$(awk '$1 == "deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list)
    fi
    [ -n "$m" ] || fail "no Debian mirror found in /etc/apt"
    printf '%s\n' "$m"
}

base_image() {
    if podman image exists "$BASE"; then
        log "base image $BASE: cached"
        return
    fi
    [ "$BASE" = localhost/debian:bookworm ] || fail "base image $BASE does not exist"
    local dir="$STATE/rootfs" mirror
    mirror=$(debian_mirror)
    rm -rf "$dir"
    log "base image: debootstrap --variant=minbase bookworm (about 40 s)"
    debootstrap --variant=minbase bookworm "$dir" "$mirror" >"$STATE/debootstrap.log" 2>&1 ||
        fail "debootstrap failed (see $STATE/debootstrap.log)"
    tar -C "$dir" -c . | podman import - "$BASE" >/dev/null
    rm -rf "$dir"
    log "base image $BASE imported"
}

target_dir() {
    cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])'
}

build_binary() {
    if [ -n "${IMAPFLEET_IMAGE_BINARY:-}" ]; then
        BIN=$IMAPFLEET_IMAGE_BINARY
        log "binary: $BIN (IMAPFLEET_IMAGE_BINARY)"
    else
        local dir=debug
        [ "$PROFILE" = dev ] || dir=$PROFILE
        log "cargo build --profile $PROFILE -p imapfleet"
        cargo build --locked --profile "$PROFILE" -p imapfleet --bin imapfleet >"$STATE/cargo.log" 2>&1 ||
            { tail -n 30 "$STATE/cargo.log" >&2; fail "cargo build failed"; }
        BIN="$(target_dir)/$dir/imapfleet"
    fi
    [ -x "$BIN" ] || fail "no binary at $BIN"
    rm -rf "$STATE/context"
    mkdir -p "$STATE/context"
    # Debug symbols are of no use in the image (a debug build is ~190 MB with them).
    if command -v strip >/dev/null 2>&1; then
        strip -o "$STATE/context/imapfleet" "$BIN"
    else
        cp "$BIN" "$STATE/context/imapfleet"
    fi
}

build_image() {
    log "podman build -f deploy/Containerfile --target prebuilt (runtime: $BASE)"
    local t=$(date +%s) old
    old=$(podman image inspect "$IMAGE" --format '{{.Id}}' 2>/dev/null || true)
    podman build --network host -f deploy/Containerfile \
        --target prebuilt \
        --build-arg RUNTIME_IMAGE="$BASE" \
        --build-arg BUILDER_IMAGE="$BASE" \
        -t "$IMAGE" "$STATE/context" >"$STATE/build.log" 2>&1 ||
        { tail -n 30 "$STATE/build.log" >&2; fail "podman build failed (see $STATE/build.log)"; }
    log "image built in $(($(date +%s) - t)) s: $(podman image inspect "$IMAGE" --format '{{.Size}}') bytes"
    # The previous test image, now untagged, is of no further use (runs would pile them up).
    if [ -n "$old" ] && [ "$old" != "$(podman image inspect "$IMAGE" --format '{{.Id}}')" ]; then
        podman rmi "$old" >/dev/null 2>&1 || true
    fi
    # What the image is: non-root user, exec-form entrypoint, the binary runs in it.
    local user entry
    user=$(podman image inspect "$IMAGE" --format '{{.Config.User}}')
    entry=$(podman image inspect "$IMAGE" --format '{{json .Config.Entrypoint}}')
    [ "$user" = 10001:10001 ] || fail "image user is '$user', expected 10001:10001"
    [ "$entry" = '["/usr/local/bin/imapfleet"]' ] || fail "entrypoint is $entry"
    podman run --rm --network none "$IMAGE" --version >"$STATE/version.txt" 2>&1 ||
        fail "the image does not run: $(cat "$STATE/version.txt")"
    log "in the image: $(cat "$STATE/version.txt")"
    podman run --rm --network none --entrypoint /usr/bin/id "$IMAGE" -u | grep -qx 10001 || fail "not uid 10001"
}

render_manifests() {
    SECRET_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
    RENDER=${IMAPFLEET_RENDER_CHART:-}
    if [ -z "$RENDER" ]; then
        cargo build -q --locked -p deploy-tests --bin render-chart >"$STATE/cargo.log" 2>&1 ||
            { tail -n 30 "$STATE/cargo.log" >&2; fail "cargo build -p deploy-tests failed"; }
        RENDER="$(target_dir)/debug/render-chart"
    fi
    ARGS=(--name "$RELEASE" --namespace default --for-podman
        --set image.repository=localhost/imapfleet --set image.tag=test --set image.pullPolicy=Never
        --set worker.hostNetwork=true --set worker.replicas=1 --set worker.concurrency=3
        --set "metrics.port=$PORT" --set "queue=$QUEUE"
        --set "secret.amqpUrl=$IMAPFLEET_AMQP_URL" --set "secret.redisUrl=$IMAPFLEET_REDIS_URL"
        --set "secret.secretKey=$SECRET_KEY" --set config.RUST_LOG=info
        --set "config.IMAPFLEET_BATCH_DEFAULTS=$DEFAULTS"
        -f "$STATE/values-lab.yaml")
    "$RENDER" "${ARGS[@]}" --kinds Deployment,ConfigMap >"$STATE/kube.yaml"
    # podman 4.3 keeps a Secret given to kube play as its YAML, but resolves a secretKeyRef by reading
    # the podman secret of that name as a JSON object of base64 values ("secret ... is not valid JSON"):
    # the chart's Secret goes in as a podman secret holding its `data` as JSON.
    "$RENDER" "${ARGS[@]}" --kinds Secret --json >"$STATE/secret-object.json"
    [ "$(wc -l <"$STATE/secret-object.json")" = 1 ] || fail "expected one Secret"
    SECRET_NAME=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["metadata"]["name"])' "$STATE/secret-object.json")
    python3 -c 'import json,sys; json.dump(json.load(open(sys.argv[1]))["data"], open(sys.argv[2], "w"))' \
        "$STATE/secret-object.json" "$STATE/secret.json"
    chmod 600 "$STATE/secret-object.json" "$STATE/secret.json"
    log "rendered: $(grep '^kind:' "$STATE/kube.yaml" | awk '{print $2}' | tr '\n' ' ')+ Secret $SECRET_NAME"
}

http_get() { # port path -> body on stdout; status in HTTP_STATUS
    local resp
    resp=$(timeout 10 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" "$2" >&3
        cat <&3' _ "$1" "$2" 2>/dev/null) || return 1
    HTTP_STATUS=$(printf '%s' "$resp" | head -n1 | awk '{print $2}')
    printf '%s' "$resp" | sed '1,/^\r$/d'
}

pod_down() {
    if [ -f "$STATE/kube.yaml" ]; then podman kube down "$STATE/kube.yaml" >/dev/null 2>&1 || true; fi
    if [ -f "$STATE/dispatch.yaml" ]; then podman kube down "$STATE/dispatch.yaml" >/dev/null 2>&1 || true; fi
    if [ -n "${SECRET_NAME:-}" ]; then podman secret rm "$SECRET_NAME" >/dev/null 2>&1 || true; fi
}

# This run's queues (task, dead-letter, delay) on the shared broker, best effort.
delete_queues() {
    command -v rabbitmqctl >/dev/null 2>&1 || return 0
    local q
    for q in $(timeout 30 rabbitmqctl -q list_queues name 2>/dev/null | grep -F "$QUEUE" || true); do
        timeout 30 rabbitmqctl -q delete_queue "$q" >/dev/null 2>&1 || true
    done
}

# A stand-in for rust:1-bookworm: the base image, a C toolchain (ring, linking), this machine's rustc.
builder_image() {
    local builder=localhost/rust:local
    if podman image exists "$builder"; then
        log "builder image $builder: cached"
        BUILDER=$builder
        return
    fi
    local sysroot ctx="$STATE/rust-context"
    sysroot=$(rustc --print sysroot)
    [ -n "$sysroot" ] && [ -x "$sysroot/bin/cargo" ] || fail "no Rust toolchain with cargo at '$sysroot'"
    rm -rf "$ctx"
    mkdir -p "$ctx/rust"
    # The compiler and the standard library, not the docs or the sources.
    tar -C "$sysroot" --exclude=./share/doc --exclude=./lib/rustlib/src --exclude=./lib/rustlib/rustc-src \
        -c . | tar -C "$ctx/rust" -x
    # This machine's trust store, so that cargo in the build stage reaches crates.io as the host's does.
    cp "${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}" "$ctx/host-ca.crt"
    {
        echo "FROM $BASE"
        echo "RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev ca-certificates \\"
        echo "    && rm -rf /var/lib/apt/lists/*"
        echo "COPY host-ca.crt /etc/ssl/certs/ca-certificates.crt"
        echo "COPY rust /usr/local/rust"
        echo "ENV PATH=/usr/local/rust/bin:/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\"
        echo "    CARGO_HOME=/usr/local/cargo"
    } >"$ctx/Containerfile"
    log "builder image $builder from $sysroot ($(du -sh "$ctx/rust" | cut -f1))"
    podman build --network host -t "$builder" "$ctx" >"$STATE/builder-build.log" 2>&1 ||
        { tail -n 20 "$STATE/builder-build.log" >&2; fail "builder image build failed"; }
    rm -rf "$ctx"
    BUILDER=$builder
}

if [ "${1:-}" = source ]; then
    install_tools
    command -v podman >/dev/null 2>&1 || skip "podman is not available"
    base_image
    builder_image
    log "podman build -f deploy/Containerfile (the default target) from the repository"
    t=$(date +%s)
    podman build --network host -f deploy/Containerfile \
        --build-arg BUILDER_IMAGE="$BUILDER" --build-arg RUNTIME_IMAGE="$BASE" \
        -t localhost/imapfleet:source . >"$STATE/source-build.log" 2>&1 ||
        { tail -n 30 "$STATE/source-build.log" >&2; fail "source build failed (see $STATE/source-build.log)"; }
    log "built from source in $(($(date +%s) - t)) s: $(podman image inspect localhost/imapfleet:source --format '{{.Size}}') bytes"
    podman run --rm --network none localhost/imapfleet:source --version >&2 || fail "the source-built image does not run"
    [ "$(podman image inspect localhost/imapfleet:source --format '{{.Config.User}}')" = 10001:10001 ] || fail "image user"
    log "PASS (source build) in $(($(date +%s) - T0)) s"
    exit 0
fi

if [ "${1:-}" = clean ]; then
    pod_down
    podman rmi -f "$IMAGE" localhost/imapfleet:source localhost/rust:local "$BASE" >/dev/null 2>&1 || true
    rm -rf "$STATE"
    exit 0
fi

install_tools
command -v podman >/dev/null 2>&1 || skip "podman is not available"
log "$(command podman --version), $(runc --version | head -n1)"

# The lab: Dovecot host1/host2, Redis, RabbitMQ (each script reuses what already runs).
scripts/lab.sh start >/dev/null
scripts/services.sh start >/dev/null
eval "$(scripts/lab.sh env | sed 's/^/export /')"
eval "$(scripts/services.sh env | sed 's/^/export /')"

base_image
build_binary
build_image

# Mail for the batch: fresh host1 and host2 mailboxes, generated mail on host1.
for u in "${USERS[@]}"; do
    scripts/lab.sh wipe 1 "$u" >/dev/null
    scripts/lab.sh wipe 2 "$u" >/dev/null
done
i=0
for u in "${USERS[@]}"; do
    i=$((i + 1))
    IMAPFLEET_PASSWORD1=secret "$BIN" generate --host1 "$LAB_HOST1" --port1 "$LAB_HOST1_PORT" --user1 "$u" \
        --cafile1 "$LAB_CA" --preset small --seed "$((90 + i))" >/dev/null
done
log "host1: ${#USERS[@]} mailboxes filled (preset small)"

{
    echo "# image test batch"
    for u in "${USERS[@]}"; do
        echo "$LAB_HOST1;$u;secret;$LAB_HOST2;$u;secret;"
    done
} >"$STATE/accounts.txt"
# The workers read --cafile1/2 from the task: the lab CA is mounted at the same path in the container.
cat >"$STATE/values-lab.yaml" <<EOF
extraVolumes:
  - name: lab-ca
    hostPath:
      path: $LAB_CA
      type: File
extraVolumeMounts:
  - name: lab-ca
    mountPath: $LAB_CA
    readOnly: true
EOF
DEFAULTS="--port1 $LAB_HOST1_PORT --port2 $LAB_HOST2_PORT --cafile1 $LAB_CA --cafile2 $LAB_CA"

render_manifests
pod_down
trap 'if [ "${IMAPFLEET_IMAGE_KEEP:-}" != 1 ]; then pod_down; delete_queues; fi' EXIT
podman secret create "$SECRET_NAME" "$STATE/secret.json" >/dev/null
log "podman kube play (worker Deployment, ConfigMap; hostNetwork)"
podman kube play "$STATE/kube.yaml" >"$STATE/play.log" 2>&1 || { cat "$STATE/play.log" >&2; fail "kube play failed"; }
CONTAINER=$(podman ps --format '{{.Names}}' | grep -E "^${RELEASE}-imapfleet-worker-pod.*-worker$" | head -n1 || true)
[ -n "$CONTAINER" ] || { podman ps -a >&2; fail "no worker container running"; }
log "container $CONTAINER"

ready=""
for _ in $(seq 1 60); do
    if http_get "$PORT" /readyz >/dev/null && [ "$HTTP_STATUS" = 200 ]; then ready=1; break; fi
    if ! podman ps --format '{{.Names}}' | grep -qx "$CONTAINER"; then break; fi
    sleep 0.5
done
[ -n "$ready" ] || { podman logs "$CONTAINER" >&2 || true; fail "the worker's /readyz never answered 200 on port $PORT"; }
http_get "$PORT" /healthz >/dev/null && [ "$HTTP_STATUS" = 200 ] || fail "/healthz did not answer 200"
log "worker ready (/healthz and /readyz answer 200)"

# The batch, dispatched from the host with the same broker, Redis, queue and key.
export IMAPFLEET_QUEUE="$QUEUE" IMAPFLEET_SECRET_KEY="$SECRET_KEY"
t=$(date +%s)
"$BIN" dispatch --accounts "$STATE/accounts.txt" --job "$JOB" --defaults "$DEFAULTS" \
    >"$STATE/dispatch.log" 2>&1 || { cat "$STATE/dispatch.log" >&2; fail "dispatch failed"; }
log "dispatched: $(tail -n1 "$STATE/dispatch.log")"
# Metrics carry the job id (the name is for people): "job <id> (<name>): N account(s) enqueued".
JOB_ID=$(sed -n 's/^job \([^ ]*\) (.*enqueued$/\1/p' "$STATE/dispatch.log" | tail -n1)
[ -n "$JOB_ID" ] || fail "no job id in the dispatch output"
if ! "$BIN" status "$JOB" --wait --wait-timeout 180 >"$STATE/status.txt" 2>&1; then
    cat "$STATE/status.txt" >&2
    podman logs --tail 40 "$CONTAINER" >&2 || true
    fail "the job did not complete"
fi
log "job complete in $(($(date +%s) - t)) s: $(head -n1 "$STATE/status.txt")"
grep -q "${#USERS[@]} account(s): ${#USERS[@]} done, 0 failed" "$STATE/status.txt" || { cat "$STATE/status.txt" >&2; fail "not every account is done"; }

# host2 deep-identical to host1 (bytes, flags, dates), checked by the host's binary.
for u in "${USERS[@]}"; do
    IMAPFLEET_PASSWORD1=secret IMAPFLEET_PASSWORD2=secret "$BIN" verify \
        --host1 "$LAB_HOST1" --port1 "$LAB_HOST1_PORT" --user1 "$u" --cafile1 "$LAB_CA" \
        --host2 "$LAB_HOST2" --port2 "$LAB_HOST2_PORT" --user2 "$u" --cafile2 "$LAB_CA" \
        >"$STATE/verify-$u.txt" 2>&1 || { cat "$STATE/verify-$u.txt" >&2; fail "verify $u: host2 differs"; }
done
log "verify: host2 is identical to host1 for ${USERS[*]}"

# The container's /metrics: Prometheus text with what this job copied.
http_get "$PORT" /metrics >"$STATE/metrics.txt" && [ "$HTTP_STATUS" = 200 ] || fail "/metrics did not answer"
copied=$(awk -v job="$JOB_ID" '$1 ~ "^imapfleet_messages_copied_total\\{" && index($1, "imapfleet_job=\"" job "\"") {s += $2} END {print s + 0}' "$STATE/metrics.txt")
status_copied=$(sed -n 's/^totals: \([0-9]*\) messages copied.*/\1/p' "$STATE/status.txt")
[ "${copied%.*}" -gt 0 ] || { head -n 40 "$STATE/metrics.txt" >&2; fail "/metrics shows no message copied for job $JOB_ID"; }
[ "${copied%.*}" = "$status_copied" ] || fail "/metrics says $copied copied, status says $status_copied"
log "/metrics: $(grep -c '^# TYPE imapfleet_' "$STATE/metrics.txt") imapfleet families; $copied messages copied (status agrees)"
# The dashboard against this live sample: crates/deploy-tests/tests/image.rs checks it after this script
# (run alone, the script does it with the dashboard test).
if [ -z "${IMAPFLEET_RENDER_CHART:-}" ]; then
    IMAPFLEET_METRICS_SAMPLE="$STATE/metrics.txt" cargo test -q --locked -p deploy-tests --test dashboard \
        >"$STATE/dashboard-test.log" 2>&1 ||
        { cat "$STATE/dashboard-test.log" >&2; fail "dashboard test against the live /metrics"; }
    log "dashboard and alert rules checked against the live /metrics"
fi
# What the worker used for this batch (cgroup counters, as podman reports them).
usage=$(podman stats --no-stream --format '{{.CPU}} CPU, {{.MemUsage}} memory' "$CONTAINER" 2>/dev/null || true)
[ -n "$usage" ] && log "worker usage now: $usage"

# No password in the container's logs.
podman logs "$CONTAINER" >"$STATE/worker.log" 2>&1 || true
if grep -q "secret;" "$STATE/worker.log" || grep -q "$SECRET_KEY" "$STATE/worker.log"; then
    fail "a credential appears in the worker's log"
fi

# A delta pass by the chart's dispatcher: new mail on host1 for one account, then the Job's pod (as the
# CronJob runs it nightly, batch file from the chart's batch Secret) dispatches the whole batch again.
# podman 4.3 has no Job kind and crashes on a Secret volume (VolumeFromSecret), so the script runs the
# Job's pod template as a Pod and puts the batch Secret's decoded data in a host directory mounted in
# its place; nothing else of the rendered pod changes.
IMAPFLEET_PASSWORD1=secret "$BIN" generate --host1 "$LAB_HOST1" --port1 "$LAB_HOST1_PORT" --user1 "${USERS[0]}" \
    --cafile1 "$LAB_CA" --preset small --seed 190 >/dev/null
"$RENDER" "${ARGS[@]}" --set-file "batch.content=$STATE/accounts.txt" --set "dispatcher.jobName=$JOB-delta" \
    --kinds Job,ConfigMap,Secret --json >"$STATE/dispatch-objects.json"
rm -rf "$STATE/batch" && mkdir -p "$STATE/batch"
python3 - "$STATE" "$RELEASE" <<'EOF'
import base64, json, os, sys
state, release = sys.argv[1], sys.argv[2]
objs = [json.loads(l) for l in open(os.path.join(state, "dispatch-objects.json"))]
job = next(o for o in objs if o["kind"] == "Job")
config = next(o for o in objs if o["kind"] == "ConfigMap")
spec = job["spec"]["template"]["spec"]
vol = next(v for v in spec["volumes"] if v["name"] == "batch")
batch = next(o for o in objs if o["kind"] == "Secret" and o["metadata"]["name"] == vol["secret"]["secretName"])
for key, value in batch["data"].items():
    path = os.path.join(state, "batch", key)
    open(path, "wb").write(base64.b64decode(value))
    os.chmod(path, 0o644)
os.chmod(os.path.join(state, "batch"), 0o755)
vol.pop("secret")
vol["hostPath"] = {"path": os.path.join(state, "batch"), "type": "Directory"}
spec["hostNetwork"] = True
pod = {"apiVersion": "v1", "kind": "Pod",
       "metadata": {"name": release + "-dispatch", "labels": job["spec"]["template"]["metadata"]["labels"]},
       "spec": spec}
with open(os.path.join(state, "dispatch.yaml"), "w") as f:
    f.write(json.dumps(config) + "\n---\n" + json.dumps(pod) + "\n")
EOF
podman kube play "$STATE/dispatch.yaml" >"$STATE/play-dispatch.log" 2>&1 ||
    { cat "$STATE/play-dispatch.log" >&2; fail "kube play of the dispatcher pod failed"; }
DCONTAINER="${RELEASE}-dispatch-dispatch"
for _ in $(seq 1 120); do
    [ "$(podman inspect "$DCONTAINER" --format '{{.State.Status}}' 2>/dev/null)" = exited ] && break
    sleep 0.5
done
podman logs "$DCONTAINER" >"$STATE/dispatcher.log" 2>&1 || true
code=$(podman inspect "$DCONTAINER" --format '{{.State.ExitCode}}' 2>/dev/null || echo none)
[ "$code" = 0 ] || { cat "$STATE/dispatcher.log" >&2; fail "the dispatcher pod exited $code"; }
JOB2_ID=$(sed -n 's/^job \([^ ]*\) (.*enqueued$/\1/p' "$STATE/dispatcher.log" | tail -n1)
[ -n "$JOB2_ID" ] || { cat "$STATE/dispatcher.log" >&2; fail "no job id in the dispatcher pod's output"; }
log "dispatcher pod (the chart's Job): $(grep 'enqueued$' "$STATE/dispatcher.log" | tail -n1)"
"$BIN" status "$JOB2_ID" --wait --wait-timeout 180 >"$STATE/status-delta.txt" 2>&1 ||
    { cat "$STATE/status-delta.txt" >&2; fail "the delta pass did not complete"; }
grep -q "${#USERS[@]} account(s): ${#USERS[@]} done, 0 failed" "$STATE/status-delta.txt" ||
    { cat "$STATE/status-delta.txt" >&2; fail "delta pass: not every account is done"; }
delta_copied=$(sed -n 's/^totals: \([0-9]*\) messages copied.*/\1/p' "$STATE/status-delta.txt")
[ "$delta_copied" -gt 0 ] && [ "$delta_copied" -lt "$status_copied" ] ||
    fail "delta pass copied $delta_copied messages (first pass: $status_copied): expected only the new ones"
IMAPFLEET_PASSWORD1=secret IMAPFLEET_PASSWORD2=secret "$BIN" verify \
    --host1 "$LAB_HOST1" --port1 "$LAB_HOST1_PORT" --user1 "${USERS[0]}" --cafile1 "$LAB_CA" \
    --host2 "$LAB_HOST2" --port2 "$LAB_HOST2_PORT" --user2 "${USERS[0]}" --cafile2 "$LAB_CA" \
    >"$STATE/verify-delta.txt" 2>&1 || { cat "$STATE/verify-delta.txt" >&2; fail "verify after the delta pass"; }
log "delta pass: $delta_copied new messages copied (first pass $status_copied), ${USERS[0]} identical again"
podman kube down "$STATE/dispatch.yaml" >/dev/null 2>&1 || true

# SIGTERM (kube down stops the pod): the worker stops taking tasks and exits 0, well inside its grace.
t=$(date +%s)
podman stop -t 60 "$CONTAINER" >/dev/null
code=$(podman inspect "$CONTAINER" --format '{{.State.ExitCode}}')
podman logs "$CONTAINER" >"$STATE/worker.log" 2>&1 || true
[ "$code" = 0 ] || { tail -n 20 "$STATE/worker.log" >&2; fail "the worker exited $code on SIGTERM"; }
grep -q "worker stopped" "$STATE/worker.log" || fail "no 'worker stopped' in the log after SIGTERM"
log "SIGTERM: worker stopped, exit 0, in $(($(date +%s) - t)) s"

log "PASS in $(($(date +%s) - T0)) s"
