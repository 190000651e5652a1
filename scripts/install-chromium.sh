#!/usr/bin/env bash
# Make sure Debian's Chromium is installed for the browser test (tests/test_web.py).
# Playwright drives /usr/bin/chromium; its own browser download fails on
# machines that reach only package registries.
set -euo pipefail

if command -v chromium >/dev/null; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "install-chromium: chromium is missing; install Debian's chromium package" \
        "(sudo apt-get install chromium) and run the command again" >&2
    exit 1
fi
echo "install-chromium: installing Debian's chromium package"
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
