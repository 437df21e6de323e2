#!/usr/bin/env bash
# Set up RelForge for development: a virtual environment in .venv (unless one
# is already active, or RELFORGE_NO_VENV=1 to use the current interpreter),
# torch, and relforge itself in editable mode with its test extras.
#
# torch: an existing torch (a CUDA build, say) is never replaced. Without one,
# TORCH_SPEC (default torch==2.13.0) is installed first, so that relforge's
# own `torch>=2.1` requirement is already satisfied and pip pulls nothing more.
# On a CPU-only machine that has the CPU wheel (as the project's machines do)
# that is the CPU build; elsewhere set TORCH_SPEC and PIP_INDEX_URL as
# pytorch.org describes for your platform.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ -z "${VIRTUAL_ENV:-}" ] && [ "${RELFORGE_NO_VENV:-0}" != "1" ]; then
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  PY=.venv/bin/python
fi
pip_install() { "$PY" -m pip install --disable-pip-version-check -q "$@" 2>&1 | grep -v "is ignored: it is neither" || true; }
if ! "$PY" -c "import torch" 2>/dev/null; then
  echo "setup: installing ${TORCH_SPEC:-torch==2.13.0}"
  pip_install "${TORCH_SPEC:-torch==2.13.0}"
fi
echo "setup: installing relforge (editable) with extras ${RELFORGE_EXTRAS:-test,etrag,cluster,onnx}"
pip_install -e ".[${RELFORGE_EXTRAS:-test,etrag,cluster,onnx}]"
"$PY" -c "import torch, relforge; print(f'setup: relforge {relforge.__version__}, torch {torch.__version__}')"
