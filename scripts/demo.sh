#!/usr/bin/env bash
# The main job on the local lab, end to end: start two Dovecot servers, fill a host1 mailbox with generated
# mail (and the real-world corpus when ../shared/corpus is there), run `imapfleet sync`, then `imapfleet verify`.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/lab.sh start
eval "$(scripts/lab.sh env)"
cargo build --release --locked -p imapfleet
bin=${CARGO_TARGET_DIR:-target}/release/imapfleet

user=${DEMO_USER:-user0300}
scripts/lab.sh wipe 1 "$user"
scripts/lab.sh wipe 2 "$user"
pw=$(mktemp)
trap 'rm -f "$pw"' EXIT
printf '%s\n' "$LAB_PASSWORD" >"$pw"

corpus=()
[ -d ../shared/corpus ] && corpus=(--corpus ../shared/corpus)
echo "== filling host1 $user with generated test mail ${corpus[*]:+and the corpus}"
"$bin" generate --host1 "$LAB_HOST1" --port1 "$LAB_HOST1_PORT" --user1 "$user" --passfile1 "$pw" \
    --cafile1 "$LAB_CA" --preset "${DEMO_PRESET:-small}" "${corpus[@]}"

common=(--host1 "$LAB_HOST1" --port1 "$LAB_HOST1_PORT" --user1 "$user" --passfile1 "$pw" --cafile1 "$LAB_CA"
    --host2 "$LAB_HOST2" --port2 "$LAB_HOST2_PORT" --user2 "$user" --passfile2 "$pw" --cafile2 "$LAB_CA")

echo "== imapfleet sync (STARTTLS, certificates checked against the lab's CA)"
status=0
"$bin" sync "${common[@]}" --report-json "${DEMO_REPORT:-/tmp/imapfleet-demo-report.json}" || status=$?
echo "(JSON report: ${DEMO_REPORT:-/tmp/imapfleet-demo-report.json}; exit code $status)"

echo "== imapfleet verify"
"$bin" verify "${common[@]}"
exit "$status"
