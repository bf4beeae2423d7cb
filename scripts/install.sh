#!/usr/bin/env bash
# Set up hallhub on Debian 12 (Python 3.11): system packages, then .venv.
#
# Safe to run again: it installs only what is missing, and reinstalls the Python
# packages only when pyproject.toml changed since the last run. It starts, stops
# and disables no system service. Debian's mosquitto package may start its own
# system broker, and its postgresql package its own cluster on 5432; hallhub uses
# neither: it runs its own broker, and the tests their own PostgreSQL cluster, on
# ports they pick.
#
# Usage: scripts/install.sh [--with-browser]
#   --with-browser   also install chromium and a Chinese font (browser tests of the console)
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/.venv"
STAMP="$VENV/.hallhub-install-stamp"
PACKAGES=(mosquitto socat python3-venv tzdata postgresql)

say() {
    echo "install.sh: $*"
}

fail() {
    echo "install.sh: error: $*" >&2
    exit 1
}

parse_args() {
    for arg in "$@"; do
        case "$arg" in
            --with-browser) PACKAGES+=(chromium fonts-wqy-microhei) ;;
            -h | --help)
                sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
                exit 0
                ;;
            *) fail "unknown option '$arg' (try --help)" ;;
        esac
    done
}

# Run a command as root: directly when we are root, else through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo --preserve-env=DEBIAN_FRONTEND "$@"
    else
        fail "need root to run '$*', and sudo is not installed"
    fi
}

is_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

install_system_packages() {
    command -v dpkg-query >/dev/null 2>&1 ||
        fail "not a Debian system: install ${PACKAGES[*]} yourself, then rerun"

    local missing=()
    for package in "${PACKAGES[@]}"; do
        is_installed "$package" || missing+=("$package")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        say "system packages present: ${PACKAGES[*]}"
        return
    fi

    say "installing ${missing[*]}"
    as_root apt-get update
    as_root apt-get install -y --no-install-recommends "${missing[@]}"
}

check_python() {
    command -v python3 >/dev/null 2>&1 || fail "python3 not found"
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        fail "hallhub needs Python 3.11 or newer, found $(python3 --version 2>&1)"
}

# A hash of what decides the Python install: pyproject.toml and the interpreter.
install_fingerprint() {
    {
        cat "$REPO_ROOT/pyproject.toml"
        "$VENV/bin/python" --version
    } | sha256sum | cut -d' ' -f1
}

install_python_packages() {
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating $VENV"
        python3 -m venv "$VENV"
    fi

    local fingerprint
    fingerprint="$(install_fingerprint)"
    if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$fingerprint" ]; then
        say "python packages up to date in $VENV"
        return
    fi

    say "installing hallhub and its dev tools into $VENV"
    (cd "$REPO_ROOT" && "$VENV/bin/python" -m pip install -e ".[dev]")
    echo "$fingerprint" >"$STAMP"
}

main() {
    parse_args "$@"
    install_system_packages
    check_python
    install_python_packages
    say "done"
}

main "$@"
