#!/usr/bin/env bash
# Install what the test suite needs on a fresh machine, then run all of it.
# Usage: bash tests/run.sh [pytest arguments]
#
# Python packages go into a virtual environment of its own (.venv-test, or $MPC_NET_TEST_VENV)
# that does not see the system's site-packages: a dependency that pyproject.toml does not
# declare fails here exactly as it fails for a new user.
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
# Room servers sharing rooms (tests/test_redis*.py) start their own redis-server, and the
# deployment test its own nginx in front of them, each on a loopback port.
command -v redis-server >/dev/null || missing+=(redis-server)
[ -x /usr/sbin/nginx ] || missing+=(nginx)
# The browser tests (tests/browser) drive Debian's Chromium through the playwright package
# (never `playwright install`) and Debian's firefox-esr through puppeteer-core, which they
# install on first use with `npm ci` from tests/browser/firefox/package-lock.json (it never
# downloads a browser); the bundle they build takes Pyodide from npm.
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/firefox-esr ] || missing+=(firefox-esr)
command -v npm >/dev/null || missing+=(npm)
# Debian and Ubuntu ship `python3 -m venv` without ensurepip until python3-venv is installed.
python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
if ((${#missing[@]})); then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -q "${missing[@]}"
    # The tests start their own turnserver (inside a network namespace), redis-server and
    # nginx; system-wide ones that the packages may have started under systemd are not wanted.
    for service in coturn redis-server nginx; do
        if [[ " ${missing[*]} " == *" $service "* ]] && [ -d /run/systemd/system ]; then
            $sudo systemctl disable --now "$service" >/dev/null 2>&1 || true
        fi
    done
fi

venv="${MPC_NET_TEST_VENV:-.venv-test}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
python="$venv/bin/python"
"$python" -m pip install -q --disable-pip-version-check -e '.[test]'
# Subprocesses started by name (mpc-net, ruff) come from the same environment.
export PATH="$PWD/$venv/bin:$PATH"
"$python" -m ruff check .
# Beside a checkout of the whole workspace, the shared checker lists third-party imports that
# pyproject.toml does not declare (the environment above already fails on them when run).
checker=../shared/tools/undeclared-imports
if [ -f "$checker" ]; then
    "$python" "$checker"
fi
"$python" -m pytest "$@"
