#!/usr/bin/env bash
# Runs every check of emr-autoscaler: formatting, lints, the whole test suite
# and the operations checks, printing each step's time.
#
# Run as root on Debian, it first installs the packages the tests need that are
# missing; run as another user, it says which are missing and stops.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the test suite uses, as "command:package".
. scripts/packages.sh
ensure_packages "promtool:prometheus" "prometheus:prometheus" "systemd-analyze:systemd" \
    "dpkg-deb:dpkg" "dpkg-shlibdeps:dpkg-dev" "etcd:etcd-server" "openssl:openssl"

timings=()
# step NAME COMMAND...: runs the command and records how long it took.
step() {
    local name="$1" start=$SECONDS
    shift
    echo "==> $name" >&2
    "$@"
    timings+=("$(printf '%5d s  %s' $((SECONDS - start)) "$name")")
}

step "cargo fmt --check" cargo fmt --all -- --check
step "cargo clippy --all-targets" cargo clippy --all-targets --locked -- -D warnings
# Three test binaries: the library's unit and property tests, the one
# integration-test binary (tests/it) and the benchmarks' smoke run. One
# build, then each run: the figures apart.
if compgen -G "tests/*.rs" >/dev/null; then
    echo "tests/ holds $(ls tests/*.rs); integration tests go in tests/it/ (one binary)" >&2
    exit 1
fi
step "cargo test --no-run (build)" cargo test --tests --bench figures --locked --no-run
step "cargo test --lib (unit and property tests)" cargo test --lib --locked
# Most integration tests wait on real processes (Prometheus, etcd, daemons)
# and on time, not on the CPU: sixteen at once overlap the waits.
step "cargo test --test it (integration)" cargo test --test it --locked -- --test-threads=16
step "cargo test --bench figures (smoke run)" cargo test --bench figures --locked
step "ops checks: alerts, .deb (release build), systemd unit" ./scripts/ops-checks.sh

echo "==> every check passed; time per step:" >&2
printf '%s\n' "${timings[@]}" >&2
echo "$(printf '%5d s' "$SECONDS")  in all" >&2
