#!/usr/bin/env bash
# Set up a fresh Debian machine (run as root): apt packages, then .venv with pinned requirements.
# Usage: bash scripts/setup.sh [requirements file]   (default: requirements.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
requirements=${1:-requirements.txt}
packages=$(grep -v '^#' packages.txt | tr '\n' ' ')
[ "$requirements" = requirements-dev.txt ] && packages="$packages chromium"
missing=$(for p in $packages; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if [ -n "$missing" ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r "$requirements"
