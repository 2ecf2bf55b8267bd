#!/usr/bin/env bash
# Runs every check of emr-autoscaler: formatting, lints and the whole test suite.
#
# Run as root on Debian, it first installs the packages the tests need that are
# missing; run as another user, it says which are missing and stops.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the test suite uses, as "command:package".
needs=("promtool:prometheus" "prometheus:prometheus" "systemd-analyze:systemd" "dpkg-deb:dpkg" "dpkg-shlibdeps:dpkg-dev")
missing=()
for pair in "${needs[@]+"${needs[@]}"}"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        echo "==> Installing ${missing[*]}" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "Missing packages: ${missing[*]}. Install them (as root: apt-get install ${missing[*]}) and run again." >&2
        exit 1
    fi
fi

echo "==> cargo fmt --check" >&2
cargo fmt --all -- --check
echo "==> cargo clippy --all-targets -- -D warnings" >&2
cargo clippy --all-targets --locked -- -D warnings
echo "==> cargo test" >&2
cargo test --all-targets --locked
echo "==> ops checks: alerts, .deb, systemd unit" >&2
./scripts/ops-checks.sh
