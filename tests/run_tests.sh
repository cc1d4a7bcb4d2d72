#!/usr/bin/env bash
# The one command that runs the whole zkpoll test suite, on a fresh Debian
# machine too: installs what is missing (system packages, a .venv with the
# package, its test tools and the plugins of plugins/), then runs pytest.
#
#   bash tests/run_tests.sh                    # tests/ and every plugins/*/tests
#   bash tests/run_tests.sh tests/unit -x -q   # any pytest arguments, unchanged
#
# Needs root or sudo only when a system package is missing. Exits with
# pytest's code (5, "no tests collected", is a failure too).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.zkpoll-installed
PACKAGES=(zookeeper redis-server memcached openssl rabbitmq-server prometheus faketime
          snmpd snmp prometheus-snmp-exporter victoria-metrics prometheus-node-exporter)
shopt -s nullglob
PLUGINS=(plugins/*/)   # each a separately installable plugin with its own tests/
shopt -u nullglob

step() { printf '==> %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

missing_packages() {
    local pkg
    for pkg in "${PACKAGES[@]}"; do
        installed "$pkg" || echo "$pkg"
    done
    command -v java >/dev/null || echo default-jre-headless
    command -v "$PYTHON" >/dev/null || echo python3
    # Debian splits venv's pip bootstrap out of python3 into python3-venv.
    if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then echo python3-venv; fi
}

install_system_packages() {
    local missing
    missing=$(missing_packages | tr '\n' ' ')
    if [ -z "${missing// /}" ]; then
        step "system packages: all present"
        return
    fi
    step "system packages: installing $missing"
    as_root apt-get update -qq
    # shellcheck disable=SC2086  # one word per package
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
}

# True when setup.cfg or setup.py, ours or a plugin's, changed after the stamp.
stale_metadata() {
    local dir
    for dir in . "${PLUGINS[@]}"; do
        if [ "${dir%/}/setup.cfg" -nt "$STAMP" ] || [ "${dir%/}/setup.py" -nt "$STAMP" ]; then
            return 0
        fi
    done
    return 1
}

install_python_packages() {
    if [ ! -x "$VENV/bin/python" ]; then
        step "virtualenv: creating $VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    if [ -e "$STAMP" ] && ! stale_metadata; then
        step "python packages: up to date ($STAMP newer than every setup.cfg)"
        return
    fi
    local args=(-e '.[test,bench,lint]') plugin
    for plugin in "${PLUGINS[@]}"; do
        args+=(-e "$plugin")
    done
    step "python packages: pip install ${args[*]}"
    "$VENV/bin/python" -m pip install -q "${args[@]}"
    touch "$STAMP"
}

run_pytest() {
    step "pytest $*"
    local rc=0
    "$VENV/bin/python" -m pytest -p no:cacheprovider "$@" || rc=$?
    if [ "$rc" -eq 5 ]; then
        step "pytest collected no tests: failing"
    fi
    return "$rc"
}

install_system_packages
install_python_packages
if [ "$#" -eq 0 ]; then
    set -- tests "${PLUGINS[@]/%/tests}"
fi
run_pytest "$@"
