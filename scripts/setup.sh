#!/usr/bin/env bash
# Create .venv and install servekit (editable) with its runtime dependencies. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv" >&2
  python3 -m venv .venv
fi
extras="${1:-}"
echo "==> installing servekit${extras:+[$extras]} into .venv" >&2
log="$(mktemp)"
if ! .venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras:+[$extras]}" >"$log" 2>&1; then
  grep -v "^WARNING: Location" "$log" >&2 || true
  rm -f "$log"
  echo "setup: pip install failed (output above)" >&2
  exit 1
fi
rm -f "$log"
.venv/bin/python -c "import servekit" # fail loudly if the install did not work
