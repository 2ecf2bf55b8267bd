#!/usr/bin/env bash
# Runs every check of emr-autoscaler: formatting, lints and the whole test suite.
#
# Run as root on Debian, it first installs the packages the tests need that are
# missing; run as another user, it says which are missing and stops.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the test suite uses, as "command:package".
. scripts/packages.sh
ensure_packages "promtool:prometheus" "prometheus:prometheus" "systemd-analyze:systemd" \
    "dpkg-deb:dpkg" "dpkg-shlibdeps:dpkg-dev" "protoc:protobuf-compiler" "etcd:etcd-server"

echo "==> cargo fmt --check" >&2
cargo fmt --all -- --check
echo "==> cargo clippy --lib (the default build, without etcd)" >&2
cargo clippy --lib --locked -- -D warnings
echo "==> cargo clippy --all-targets --features ha -- -D warnings" >&2
cargo clippy --all-targets --locked --features ha -- -D warnings
# The `ha` feature adds the etcd client (its build needs protoc); the HA
# tests start Debian's etcd themselves.
echo "==> cargo test --features ha" >&2
cargo test --all-targets --locked --features ha
# The default build (no etcd client) refuses [ha] with the fix.
echo "==> cargo test --lib (the default build): a_build_without_ha" >&2
cargo test --lib --locked a_build_without_ha_refuses_the_section
echo "==> ops checks: alerts, .deb, systemd unit" >&2
./scripts/ops-checks.sh
