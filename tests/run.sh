#!/usr/bin/env bash
# Install what the test suite needs on a fresh machine, then run all of it.
# Usage: bash tests/run.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

# System tools: `ip`, `unshare` and `nsenter` build the network namespaces some tests run in;
# the NAT tests (tests/nat) add `iptables` for the NAT routers and coturn's `turnserver`.
missing=()
command -v ip >/dev/null || missing+=(iproute2)
command -v unshare >/dev/null || missing+=(util-linux)
command -v nsenter >/dev/null || missing+=(util-linux)
command -v iptables >/dev/null || missing+=(iptables)
command -v turnserver >/dev/null || missing+=(coturn)
# The browser tests (tests/browser) drive Debian's Chromium through the playwright package
# (never `playwright install`); the bundle they build takes Pyodide from npm.
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v npm >/dev/null || missing+=(npm)
if ((${#missing[@]})); then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -q "${missing[@]}"
    # The tests start their own turnserver inside a network namespace; a system-wide one
    # that the package may have started under systemd is not wanted.
    if [[ " ${missing[*]} " == *" coturn "* ]] && [ -d /run/systemd/system ]; then
        $sudo systemctl disable --now coturn >/dev/null 2>&1 || true
    fi
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test]'
python3 -m ruff check .
python3 -m pytest "$@"
