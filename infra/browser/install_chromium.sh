#!/usr/bin/env bash
# Install Debian's headless-capable Chromium for the browser UI test (tests/browser), if missing.
# Idempotent: does nothing when /usr/bin/chromium already runs. Needs root (or sudo) and apt-get.
# The test drives it through Playwright's Python package with executable_path=/usr/bin/chromium,
# so no browser build is downloaded by Playwright (`playwright install` is never needed).
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ] && "$CHROMIUM" --headless --no-sandbox --version >/dev/null 2>&1; then
  echo "chromium already installed: $("$CHROMIUM" --version 2>/dev/null)"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_chromium.sh: apt-get not found; install Chromium with your system's package manager" \
       "so that $CHROMIUM exists (the browser test skips without it)" >&2
  exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "install_chromium.sh: run as root or install sudo (apt-get needs root)" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# fonts-liberation: readable text in screenshots; the rest comes as chromium's own dependencies.
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-liberation

"$CHROMIUM" --headless --no-sandbox --version 2>/dev/null
