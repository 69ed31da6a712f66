#!/usr/bin/env bash
# The test command: starts what the tests need (the Dovecot lab), then runs every test of the workspace.
# Works on a fresh Debian machine as root (installs dovecot-imapd when missing). `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/lab.sh start
scripts/services.sh start; export IMAPFLEET_SERVICES=1; eval "$(scripts/services.sh env | sed 's/^/export /')"

# Tests that need the lab fail (rather than skip) when it is not reachable.
export IMAPFLEET_LAB=1
eval "$(scripts/lab.sh env | sed 's/^/export /')"
# Real-world corpus and bug-report cases, when present beside the project (CI has them).
if [ -d ../shared/corpus ]; then export IMAPFLEET_CORPUS=${IMAPFLEET_CORPUS:-$(cd ../shared/corpus && pwd)}; fi

# The lab tests run the `imapfleet` binary as a subprocess: build every binary first (a clean clone has none).
cargo build --workspace --locked --bins
cargo test --workspace --locked "$@"
