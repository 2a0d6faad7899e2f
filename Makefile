# Jobico: `make run` starts the platform locally, `make test` runs the suite.
# Everything installs into .venv/ at the repository root.
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed

.PHONY: install run test test-ops test-python test-spec chaos stateful test-unit examples examples-python bench lint clean help

help:
	@echo "make run       start the whole platform locally (embedded defaults; RUN_ARGS=\"--mqtt --port 8090\")"
	@echo "make test      install, start Redis/PostgreSQL/S3 on private ports, run pytest: all but test-ops, test-python, test-spec, chaos; a short stateful run (<8 min)"
	@echo "make test-ops  the launcher: make run / jobico run from the checkout and from the built wheel, its ports and stop (~2 min)"
	@echo "make test-unit  tests/unit only, no servers (~15 s)"
	@echo "make test-python  Python jobicolets on the real interpreter (~1 min; compiles it once per machine, 1-5 min, cached)"
	@echo "make test-spec  schemathesis checks the OpenAPI document against the API on real services (~2 min)"
	@echo "make chaos     kill/stop/freeze workers, Redis, PostgreSQL, S3 under load (docs/delivery.md; ~4 min)"
	@echo "make stateful  long random sequences over the real platform checked against a model (tests/stateful; ~20 min)"
	@echo "make examples  rebuild examples/jobicolets/*.wasm (apt: clang lld wasi-libc libclang-rt-dev-wasm32 rustc libstd-rust-dev-wasm32; TinyGo from its releases) and the Python zip"
	@echo "make examples-python  rebuild examples/python/pricing.zip from examples/python/pricing/ (deterministic)"
	@echo "make bench     run the benchmarks in bench/ (needs apt: wrk for ingest; BENCH_ARGS=--quick)"
	@echo "make lint      ruff, the import contracts (lint-imports) and the type checker (mypy); run by .ci/run"

$(STAMP): requirements.txt pyproject.toml scripts/bootstrap-venv.sh
	@scripts/bootstrap-venv.sh $(VENV)
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(VENV)/bin/jobico run $(RUN_ARGS)

test: install
	$(VENV)/bin/pytest -q -p no:cacheprovider --ignore=tests/chaos --ignore=tests/python --ignore=tests/spec \
		--ignore=tests/ops

# the launcher (tests/ops): `make run`/`jobico run` from the checkout and from the built wheel in a fresh
# virtualenv, its ports, its services and its stop; whole-platform start-ups, ~2 min, run by .ci/run
# after `make test`
test-ops: install
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/ops

# Python jobicolets on the sealed CPython (docs/python.md). The interpreter is compiled once per
# machine (1-5 min on 2 cores) into $$JOBICO_TEST_PYTHON_CACHE (default ~/.cache/jobico/python) and
# reused by later runs; then ~1 min. Run by .ci/run after `make test`.
test-python: install
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/python

# the OpenAPI document against the running API (tests/spec, docs/api.md "Checked by schemathesis"):
# schemathesis, every phase, --checks all, with the admin token and with a tenant key; run by .ci/run
test-spec: install
	$(VENV)/bin/pytest -q -rP -p no:cacheprovider tests/spec

# crash/outage scenarios on private servers (docs/delivery.md); ~4 min, run by .ci/run after `make test`
chaos: install
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/chaos

# model-based random sequences over the real platform (tests/stateful/test_stateful.py); `make test` runs a
# short variant (10 sequences of at most 30 steps per backend). Here: 140 sequences of at most 50 steps per
# backend (SQLite + files, PostgreSQL + S3), then more until each backend has taken 5,200 steps: over 10,000
# steps in all, ~20 min on 2 cores. Replay a failure with the seed it prints: JOBICO_STATEFUL_SEED=<seed>
# (tests/stateful/test_stateful.py lists the knobs).
STATEFUL_EXAMPLES  ?= 140
STATEFUL_STEPS     ?= 50
STATEFUL_MIN_STEPS ?= 5200
stateful: install
	JOBICO_STATEFUL_EXAMPLES=$(STATEFUL_EXAMPLES) JOBICO_STATEFUL_STEPS=$(STATEFUL_STEPS) \
		JOBICO_STATEFUL_MIN_STEPS=$(STATEFUL_MIN_STEPS) \
		$(VENV)/bin/pytest -q -p no:cacheprovider tests/stateful

test-unit: install
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/unit

examples: install examples-python
	$(PY) examples/jobicolets/build.py

# the Python package zip example, byte for byte reproducible (docs/python.md, "Packaging a zip")
examples-python: install
	$(PY) examples/python/build_zip.py examples/python/pricing examples/python/pricing.zip

bench: install
	$(PIP) install -q -r bench/requirements.txt
	@command -v wrk >/dev/null || echo "NOTE: wrk not found (Debian: apt-get install -y wrk): ingest/scaling fall back to a slower Python load generator"
	$(PY) bench/run_all.py $(BENCH_ARGS)

# ruff (pyproject.toml [tool.ruff]), the layers (docs/architecture.md; [tool.importlinter]) and the
# types of jobico_core and jobico_runtime ([tool.mypy])
lint: install
	$(PY) -m compileall -q jobico_core jobico_runtime jobico_api jobico_worker jobico_cli jobico_ops tests bench
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .jobico .pytest_cache
