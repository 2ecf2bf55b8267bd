#!/usr/bin/env bash
# Checks what operators install next to the binary:
#   1. config/alerts.yml and config/alerts-ha.yml: `promtool check rules`
#      and their unit tests, tests/alerts_test.yml and tests/alerts_ha_test.yml;
#   2. the Debian package: built with scripts/package.sh, listed, extracted
#      into a scratch root, and the extracted binary's `check` run on the
#      packaged configuration;
#   3. the packaged systemd unit: `systemd-analyze security` must score at
#      most 1.5, and `systemd-analyze verify` must print nothing at all (it
#      exits 0 even on unknown keys), run in a scratch root that holds the
#      packaged binary where ExecStart points.
#
# Run as root on Debian, it first installs the Debian packages it needs that
# are missing; run as another user, it says which are missing and stops.
set -euo pipefail
cd "$(dirname "$0")/.."

MAX_EXPOSURE=1.5

. scripts/packages.sh
ensure_packages "promtool:prometheus" "systemd-analyze:systemd" "dpkg-deb:dpkg" "dpkg-shlibdeps:dpkg-dev"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# ---- 1. Alerting rules ----
echo "==> promtool check rules config/alerts.yml" >&2
promtool check rules config/alerts.yml
echo "==> promtool test rules tests/alerts_test.yml" >&2
promtool test rules tests/alerts_test.yml
echo "==> promtool check rules config/alerts-ha.yml" >&2
promtool check rules config/alerts-ha.yml
echo "==> promtool test rules tests/alerts_ha_test.yml" >&2
promtool test rules tests/alerts_ha_test.yml

# ---- 2. The Debian package ----
# shellcheck source=package.sh
source scripts/package.sh
build_deb
check_deb

# ---- 3. The systemd unit, as packaged ----
unit=emr-autoscaler.service
packaged_unit="$DEB_ROOT/usr/lib/systemd/system/$unit"

# A root with systemd's own units, /bin/kill (ExecReload) and the packaged
# binary at /usr/bin/emr-autoscaler (ExecStartPre, ExecStart).
make_root() {
    local root="$1" dir
    mkdir -p "$root/usr/bin" "$root/usr/lib/systemd/system" "$root/etc/systemd/system"
    ln -s usr/bin "$root/bin"
    ln -s usr/lib "$root/lib"
    for dir in /lib/systemd/system /usr/lib/systemd/system; do
        if [ -d "$dir" ]; then
            cp -a "$dir/." "$root/usr/lib/systemd/system/"
        fi
    done
    cp -L /bin/kill "$root/usr/bin/kill"
    cp "$DEB_ROOT/usr/bin/emr-autoscaler" "$root/usr/bin/emr-autoscaler"
}

# Prints what `systemd-analyze verify` says about the unit in root $1;
# fails when it exits non-zero.
verify_in() {
    systemd-analyze verify --man=no --root="$1" "$unit" 2>&1
}

root="$scratch/root"
make_root "$root"
cp "$packaged_unit" "$root/usr/lib/systemd/system/$unit"

echo "==> systemd-analyze verify --man=no (root: packaged binary and unit)" >&2
if ! said="$(verify_in "$root")" || [ -n "$said" ]; then
    echo "systemd-analyze verify complains about $unit:" >&2
    echo "$said" >&2
    exit 1
fi

# The gate above is only worth something if verify does speak up on this
# systemd: an unknown key must be reported.
probe="$scratch/probe"
make_root "$probe"
sed 's/^\[Service\]$/[Service]\nNoSuchSetting=yes/' "$packaged_unit" >"$probe/usr/lib/systemd/system/$unit"
if said="$(verify_in "$probe")" && [ -z "$said" ]; then
    echo "systemd-analyze verify said nothing about an unknown key; the verify gate cannot be trusted" >&2
    exit 1
fi

echo "==> systemd-analyze security --offline=true $unit" >&2
report="$(systemd-analyze security --offline=true "$packaged_unit" 2>&1)" || true
echo "$report" | grep -v '^✓' >&2 || true
score="$(echo "$report" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')"
if [ -z "$score" ]; then
    echo "no exposure level in systemd-analyze security's output" >&2
    exit 1
fi
echo "security exposure score: $score (at most $MAX_EXPOSURE)"
if ! awk -v s="$score" -v max="$MAX_EXPOSURE" 'BEGIN { exit !(s <= max) }'; then
    echo "$unit scores $score, above $MAX_EXPOSURE" >&2
    exit 1
fi

echo "==> ops checks passed: alerts, package $(basename "$DEB"), unit exposure $score" >&2
