# gifsent: the two commands of the README's quick start are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The demo writes everything (data, runs, models, scores.csv) under this folder.
DEMO_HOME ?= $(CURDIR)/demo-home
# Extra arguments for scripts/demo.py, e.g. DEMO_ARGS="--preset tiny --n-gifs 60" (tests).
DEMO_ARGS ?=

.PHONY: install browser postgres demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[cpu,train,dev,ray,openvino,collect,serve,parquet,ann,nncf]"
	touch $@

install: $(VENV)/.installed

demo: install
	GIFSENT_HOME=$(DEMO_HOME) $(PY) scripts/demo.py $(DEMO_ARGS)

# The report's browser tests drive headless Chromium: install Debian's when it is missing and
# we are root with apt (a no-op otherwise; the tests then skip, or fail under CI=true).
browser:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's chromium for the report's browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	fi

# The collect tests run a real PostgreSQL server (started by the tests as the postgres user in
# a temporary folder): install Debian's when it is missing and we are root with apt.
postgres:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's postgresql for the collect tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; \
	fi

test: install browser postgres
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# Every benchmark script with its defaults, one after another (long: tens of minutes on a
# 2-core machine); pick some with `make bench BENCH="benchmarks/bench_infer.py"`. Results
# are printed; BENCHMARKS.md records them by hand, with the machine's CPU flags.
BENCH ?= $(sort $(wildcard benchmarks/bench_*.py))
bench: install
	@set -e; for script in $(BENCH); do echo "== $$script"; $(PY) $$script; done

clean:
	rm -rf $(DEMO_HOME) .pytest_cache .ruff_cache
