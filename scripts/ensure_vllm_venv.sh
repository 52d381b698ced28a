#!/usr/bin/env bash
# Make .venv-vllm: a separate venv holding the pinned vLLM, so its pins never touch .venv.
# Idempotent: does nothing when `import vllm` already works at the pinned version.
# The tests in tests/test_vllm_flags.py run scripts/vllm_probe.py with this interpreter.
set -euo pipefail

VLLM_VERSION="0.33.0"   # keep in step with servekit/vllm_flags.py VLLM_VERSION
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${SERVEKIT_VLLM_VENV:-$ROOT/.venv-vllm}"
PY="$VENV/bin/python"

have_vllm() {
    [ -x "$PY" ] && "$PY" - "$VLLM_VERSION" <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
import vllm  # noqa: F401  (the import itself is the check: a broken install fails here)
sys.exit(0 if version("vllm") == sys.argv[1] else 1)
EOF
}

if have_vllm; then
    echo "ensure_vllm_venv: vllm $VLLM_VERSION already in $VENV"
    exit 0
fi

start=$(date +%s)
if [ ! -x "$PY" ]; then
    echo "ensure_vllm_venv: creating $VENV"
    python3 -m venv "$VENV"
fi
echo "ensure_vllm_venv: installing vllm==$VLLM_VERSION into $VENV (about 9 GB, a few minutes)"
"$PY" -m pip install -qq --disable-pip-version-check --upgrade pip
"$PY" -m pip install -qq --disable-pip-version-check "vllm==$VLLM_VERSION"

if ! have_vllm; then
    echo "ensure_vllm_venv: vllm $VLLM_VERSION still does not import from $PY" >&2
    exit 3
fi
echo "ensure_vllm_venv: done in $(( $(date +%s) - start ))s"
