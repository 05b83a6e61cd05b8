#!/usr/bin/env bash
# System packages the test suite needs beyond Python: Debian's chromium for the browser tests.
# Idempotent: does nothing when /usr/bin/chromium is already there. Debian/Ubuntu, as root (or via sudo).
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-system-deps: no apt-get here; install chromium yourself (the browser tests need /usr/bin/chromium)" >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "install-system-deps: run as root (or install sudo): apt-get install chromium needs root" >&2
        exit 1
    fi
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
/usr/bin/chromium --version
