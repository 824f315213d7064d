#!/usr/bin/env bash
# Install Debian's HAProxy if it is missing (idempotent). Tests and the router node run their own haproxy
# on loopback (`haproxy -f CFG -D -p PIDFILE`, no systemd); this script only makes the binary available.
set -euo pipefail
if command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "haproxy: not installed and cannot apt-get here (needs root and apt); the router tests will be skipped" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-cache show haproxy >/dev/null 2>&1; then
    apt-get update -qq
fi
# --no-install-recommends: the binary alone; the packaged service is never started by Strato
apt-get install -y -qq --no-install-recommends haproxy >/dev/null
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ]
