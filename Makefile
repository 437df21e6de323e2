# The README's two commands. PY is the environment scripts/setup.sh made
# (or the active one when a virtual environment is active).
PY := $(if $(VIRTUAL_ENV),python,.venv/bin/python)

.PHONY: setup quickstart test test-all gpu-check

setup:
	./scripts/setup.sh

quickstart: setup
	$(PY) -m relforge quickstart

test: setup
	$(PY) -m pytest -q

test-all: setup
	$(PY) -m pytest -q -m "slow or not slow"

# On a machine with CUDA: GPU tests, the CuPy kernel benchmark and a short bf16 run of every method,
# in under 8 minutes, results in benchmarks/results/gpu-check-<date>/ (benchmarks/gpu/check.py)
gpu-check: setup
	$(PY) benchmarks/gpu/check.py
