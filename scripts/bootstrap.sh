#!/usr/bin/env bash
# Install what the kit, its sandbox and its tests need on a fresh Debian 12 machine (as root):
# Debian packages, then a virtualenv in .venv with the project and its dev tools.
set -euo pipefail
cd "$(dirname "$0")/.."

# Every tool the sandbox and the tests use (nft and iptables drop a server's packets, curl
# asks a slot's port, git archives the release before); testbed/sandbox.py's
# REQUIRED_PROGRAMS lists the programs, and a test run stops first if one is missing.
packages=(docker.io openssh-server openssh-client haproxy socat docker-registry dnsmasq-base
          golang-go iproute2 busybox-static python3-venv ca-certificates nftables iptables
          util-linux procps pebble curl git tar bsdutils mount passwd)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "bootstrap: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
    echo "bootstrap: creating .venv"
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e '.[dev]' 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -c 'import fabric, invoke, paramiko, yaml, jinja2' 
echo "bootstrap: ready (.venv/bin/fab)"
