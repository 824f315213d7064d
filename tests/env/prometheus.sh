#!/usr/bin/env bash
# Install Debian's Prometheus server if it is missing (idempotent). Tests start their own instance
# on a free loopback port with a temporary TSDB; this script only makes the binary available.
set -euo pipefail
if command -v prometheus >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "prometheus: not installed and cannot apt-get here (needs root and apt); PromQL tests will be skipped" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-cache show prometheus >/dev/null 2>&1; then
    apt-get update -qq
fi
# --no-install-recommends: the server alone, not the exporters and their services
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
command -v prometheus >/dev/null
