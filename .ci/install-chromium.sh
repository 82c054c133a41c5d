#!/bin/sh
# Install Debian's chromium for the headless browser test of tests/test_report.py,
# which is skipped when /usr/bin/chromium is absent. Safe to run again: does
# nothing when chromium is already there.
set -eu

if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
# CI images run as root; elsewhere go through sudo.
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
$SUDO apt-get update
# env, not a prefix: sudo drops the caller's environment.
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
