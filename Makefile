# The two commands of the README: `make run` and `make test`. Each creates or reuses .venv and
# installs what it needs, so on a fresh machine it is the only command to type.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# gpu when an NVIDIA driver answers; ollama on macOS (no vLLM installed, Ollama answers); else cpu.
# Override: make run PROFILE=cpu|gpu|ollama
PROFILE ?= $(shell if command -v nvidia-smi >/dev/null 2>&1; then echo gpu; \
	elif [ "$$(uname -s)" = Darwin ]; then echo ollama; else echo cpu; fi)
PYTEST_ARGS ?=

.PHONY: run test test-unit setup setup-dev lint typecheck bench monitor clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)

setup: $(PY)
	$(PY) scripts/setup_env.py --profile $(PROFILE)

setup-dev: $(PY)
	$(PY) scripts/setup_env.py --profile $(PROFILE) --dev

run: setup
	$(VENV)/bin/vidserve run --profile $(PROFILE)

lint: setup-dev
	$(PY) -m ruff check deploy tests bench scripts
	$(PY) -m ruff format --check deploy tests bench scripts

typecheck: setup-dev
	$(PY) -m mypy

test: lint typecheck
	$(PY) -m pytest $(PYTEST_ARGS)

# The quick loop: tests/unit only (no Ray, no server), about a minute on 2 cores.
test-unit: setup-dev
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

bench: setup-dev
	$(PY) bench/analyze.py

# A local Prometheus (http://127.0.0.1:9090) scraping a running `make run` (Ray's metrics on
# VIDSERVE_METRICS_PORT, 8080) with the alert rules loaded. Data kept in .prometheus/.
monitor:
	@command -v prometheus >/dev/null || { echo "prometheus is not installed: sudo apt-get install prometheus (Debian, Ubuntu) or brew install prometheus"; exit 1; }
	prometheus --config.file=monitoring/prometheus.yml --storage.tsdb.path=.prometheus \
		--web.listen-address=127.0.0.1:9090

clean-venv:
	rm -rf $(VENV)
