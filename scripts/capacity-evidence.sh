#!/usr/bin/env bash
# Replays the synthetic week (docs/demand-week.csv) through the policies of
# docs/week/, each day on its own from 0 task nodes, and prints node-hours,
# unmet GiB·minutes and unmet minutes: over the whole week, over the days the
# capacity rule's defaults were chosen on (Mon, Wed, Fri, Sun) and over the
# held-out days (Tue, Thu, Sat). With --sweep it also prints the parameter
# grid the defaults were chosen from, on the choosing days, and the setting
# the choice rule picks from it.
#
#   ./scripts/capacity-evidence.sh [--sweep]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --quiet
bin=target/release/emr-autoscaler
csv=docs/demand-week.csv
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# day N (0 = Monday 2026-11-02) of CONFIG: "node-hours unmet-GiB·min unmet-min"
day() {
    local from to
    from=$(date -u -d "2026-11-02 +$2 day" +%Y-%m-%dT%H:%M:%SZ)
    to=$(date -u -d "2026-11-02 +$(($2 + 1)) day" +%Y-%m-%dT%H:%M:%SZ)
    "$bin" backtest --config "$1" --from "$from" --to "$to" --input "$csv" \
        --out "$tmp/out" --step 15s --base-capacity-mb 229376 \
        --node-memory-mb 57344 --provisioning-delay 4m --initial-task-nodes 0 \
        2>/dev/null |
        awk '/^node-hours/ {h = $2} /^unmet minutes/ {m = $3} /^unmet GiB/ {g = $3}
             END {print h, g, m}'
}

# CONFIG DAYS...: the sums over those days
days() {
    local config=$1
    shift
    for d in "$@"; do day "$config" "$d"; done |
        awk '{h += $1; g += $2; m += $3} END {printf "%9.1f %12.0f %8.0f\n", h, g, m}'
}

table() {
    local title=$1
    shift
    printf '\n%s\n%-16s %9s %12s %8s\n' "$title" policy node-h "unmet GiB·min" "unmet min"
    for p in capacity utilisation-80 utilisation-90 demand-sized; do
        printf '%-16s %s\n' "$p" "$(days "docs/week/$p.toml" "$@")"
    done
}

table "whole week (each day from 0 task nodes)" 0 1 2 3 4 5 6
table "choosing days: Mon, Wed, Fri, Sun" 0 2 4 6
table "held-out days: Tue, Thu, Sat" 1 3 5

if [[ ${1:-} == --sweep ]]; then
    # The defaults are the setting with the fewest node-hours among those
    # that leave less unmet demand than every other policy on the choosing
    # days; the held-out days then judge them.
    best_unmet=$(for p in utilisation-80 utilisation-90 demand-sized; do
        days "docs/week/$p.toml" 0 2 4 6
    done | awk 'NR == 1 || $2 < m {m = $2} END {print m}')
    printf '\nthe capacity rule on the choosing days, by headroom (MB), trend_window and trend_horizon\n'
    for h in 0 14336 28672 57344; do
        for w in 1m 2m 3m; do
            for z in 4m 8m 12m; do
                sed -e "s/^per_node = 57344$/per_node = 57344\nheadroom = $h\ntrend_window = \"$w\"\ntrend_horizon = \"$z\"/" \
                    docs/week/capacity.toml >"$tmp/c.toml"
                printf 'headroom %-6s window %-3s horizon %-4s %s\n' "$h" "$w" "$z" \
                    "$(days "$tmp/c.toml" 0 2 4 6)"
            done
        done
    done | tee "$tmp/grid"
    printf '\nfewest node-hours below %s unmet GiB·min (the least of the other policies):\n' "$best_unmet"
    awk -v m="$best_unmet" '$8 < m' "$tmp/grid" | sort -k7,7n | head -1
fi
