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
# The library's unit tests, the one integration-test binary (tests/it) and the
# benchmarks' smoke run. One build, then the run: the two figures apart.
# Most integration tests wait on real processes (Prometheus, etcd, daemons)
# rather than compute, so eight run at once on two cores.
TEST_TARGETS=(--tests --bench figures --locked)
step "cargo test --no-run (build)" cargo test "${TEST_TARGETS[@]}" --no-run
step "cargo test (run)" cargo test "${TEST_TARGETS[@]}" -- --test-threads=8
step "ops checks: alerts, .deb (release build), systemd unit" ./scripts/ops-checks.sh

echo "==> every check passed; time per step:" >&2
printf '%s\n' "${timings[@]}" >&2
echo "$(printf '%5d s' "$SECONDS")  in all" >&2
