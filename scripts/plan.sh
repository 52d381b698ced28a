#!/usr/bin/env bash
# README command 1: set up from nothing and run the main job, the offline plan of a stack.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/servekit plan --stack "${1:-dev}"
