#!/usr/bin/env bash
# Builds the Debian package of emr-autoscaler and checks it.
#
#   scripts/package.sh            build the .deb, list it, extract it into a
#                                 scratch root and run the extracted binary's
#                                 `check` on the packaged configuration
#   scripts/package.sh --no-check build the .deb only
#
# Steps: `cargo build --release`, the man pages and shell completions rendered
# by the binary itself into target/assets/, then `cargo deb --no-build` with
# the [package.metadata.deb] section of Cargo.toml. cargo-deb is installed
# with `cargo install` when missing. The package lands in
# <cargo target dir>/debian/ and its extracted tree in
# <cargo target dir>/debian/root/.
#
# Sourcing this file defines the functions without running anything.
set -euo pipefail

PACKAGE_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CARGO_DEB_VERSION="3.8.0"

# The cargo target directory, wherever CARGO_TARGET_DIR or a config puts it.
package_target_dir() {
    (cd "$PACKAGE_REPO" && cargo metadata --format-version 1 --no-deps) |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p'
}

ensure_cargo_deb() {
    if cargo deb --version >/dev/null 2>&1; then
        return
    fi
    echo "==> cargo install cargo-deb --locked --version $CARGO_DEB_VERSION" >&2
    local start=$SECONDS
    cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION"
    echo "==> cargo-deb installed in $((SECONDS - start)) s" >&2
}

# Builds the package; sets DEB (the .deb's path) and TARGET_DIR.
build_deb() {
    ensure_cargo_deb
    cd "$PACKAGE_REPO"
    TARGET_DIR="$(package_target_dir)"
    [ -n "$TARGET_DIR" ] || { echo "cannot find cargo's target directory" >&2; return 1; }

    echo "==> cargo build --release --locked" >&2
    cargo build --release --locked
    local bin="$TARGET_DIR/release/emr-autoscaler"

    # cargo-deb reads these from the crate's own target/assets/, whatever the
    # cargo target directory is (see the assets in Cargo.toml).
    local assets="$PACKAGE_REPO/target/assets"
    rm -rf "$assets"
    echo "==> man pages and completions into target/assets/" >&2
    "$bin" generate man --out-dir "$assets/man" >/dev/null
    for shell in bash zsh fish; do
        "$bin" generate "$shell" --out-dir "$assets/completions" >/dev/null
    done

    local out="$TARGET_DIR/debian"
    rm -f "$out"/emr-autoscaler_*.deb
    echo "==> cargo deb --no-build" >&2
    cargo deb --no-build --locked --output "$out/"
    local debs=("$out"/emr-autoscaler_*.deb)
    [ -f "${debs[0]}" ] || { echo "cargo deb wrote no package into $out" >&2; return 1; }
    DEB="${debs[0]}"
    echo "==> built $DEB" >&2
}

# Lists and extracts "$DEB" into "$TARGET_DIR/debian/root" (sets DEB_ROOT),
# checks the files that must be in it, and runs the extracted binary's check
# on the packaged configuration.
check_deb() {
    echo "==> dpkg-deb -c $(basename "$DEB")" >&2
    dpkg-deb -c "$DEB"
    echo "==> dpkg-deb -I $(basename "$DEB")" >&2
    dpkg-deb -I "$DEB"

    DEB_ROOT="$TARGET_DIR/debian/root"
    rm -rf "$DEB_ROOT"
    mkdir -p "$DEB_ROOT"
    dpkg -x "$DEB" "$DEB_ROOT"

    local missing=0 f
    for f in \
        usr/bin/emr-autoscaler \
        usr/lib/systemd/system/emr-autoscaler.service \
        etc/emr-autoscaler/config.toml \
        usr/share/emr-autoscaler/alerts.yml \
        usr/share/emr-autoscaler/grafana-dashboard.json \
        usr/share/man/man1/emr-autoscaler.1.gz \
        usr/share/man/man1/emr-autoscaler-run.1.gz \
        usr/share/bash-completion/completions/emr-autoscaler \
        usr/share/zsh/vendor-completions/_emr-autoscaler \
        usr/share/fish/vendor_completions.d/emr-autoscaler.fish; do
        if [ ! -s "$DEB_ROOT/$f" ]; then
            echo "missing from the package: /$f" >&2
            missing=1
        fi
    done
    [ "$missing" -eq 0 ] || return 1
    cmp "$DEB_ROOT/usr/lib/systemd/system/emr-autoscaler.service" "$PACKAGE_REPO/systemd/emr-autoscaler.service"
    gzip -t "$DEB_ROOT/usr/share/man/man1/emr-autoscaler.1.gz"

    local control
    control="$(mktemp -d)"
    dpkg-deb -e "$DEB" "$control"
    if ! grep -qx /etc/emr-autoscaler/config.toml "$control/conffiles"; then
        echo "/etc/emr-autoscaler/config.toml is not a conffile" >&2
        rm -rf "$control"
        return 1
    fi
    rm -rf "$control"

    echo "==> extracted emr-autoscaler check --config <root>/etc/emr-autoscaler/config.toml" >&2
    "$DEB_ROOT/usr/bin/emr-autoscaler" --version
    "$DEB_ROOT/usr/bin/emr-autoscaler" check --config "$DEB_ROOT/etc/emr-autoscaler/config.toml"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    build_deb
    if [ "${1:-}" != "--no-check" ]; then
        check_deb
    fi
    echo "$DEB"
fi
