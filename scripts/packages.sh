# Sourced by the test and ops scripts: ensure_packages "command:package" ...
# installs the Debian packages whose command is missing when run as root, and
# otherwise names them and exits 1.
ensure_packages() {
    local missing=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        echo "==> Installing ${missing[*]}" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "Missing packages: ${missing[*]}. Install them (as root: apt-get install ${missing[*]}) and run again." >&2
        exit 1
    fi
}
