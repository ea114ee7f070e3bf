#!/usr/bin/env bash
# Set up (see setup.sh) and start the web app on http://localhost:7860 with the shipped weights.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh requirements.txt
exec .venv/bin/python app.py
