# Two commands a newcomer needs: `make run` (the whole stack) and `make test` (the suite).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

# Exact versions with their sha256 hashes, so every install gets the same files (`make lock`
# refreshes them from pyproject.toml): requirements.lock for the image, requirements-dev.lock
# (the same versions plus the dev tools) for `make install`. Both include the build backend, so
# installing the project itself downloads nothing unpinned (--no-build-isolation).
LOCK     := requirements.lock
DEV_LOCK := requirements-dev.lock

.PHONY: install run test soak browser lint bench clean lock

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(DEV_LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes -r $(DEV_LOCK)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

# pip-tools in a venv of its own, resolving against PyPI alone (no local indexes or wheel
# folders from pip's configuration), for this Python (3.11, Linux x86_64).
LOCK_VENV := $(VENV)/lock-tools
PIP_COMPILE = env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL -u PIP_INDEX_URL PIP_CONFIG_FILE=/dev/null \
	CUSTOM_COMPILE_COMMAND="make lock" \
	$(LOCK_VENV)/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras --all-build-deps \
	--index-url https://pypi.org/simple --no-emit-index-url

lock:
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install -q 'pip-tools==7.6.2'
	$(PIP_COMPILE) --upgrade -o $(LOCK) pyproject.toml
	$(PIP_COMPILE) --upgrade --extra dev -c $(LOCK) -o $(DEV_LOCK) pyproject.toml

run: install
	$(PY) -m devstack.stack

test: install browser
	$(PY) -m pytest -q

# The generated-lifecycle billing test at 10,000 lifecycles (CI runs 200), in two processes, with
# progress and a summary: README "Soak". BIZSUPPORT_SOAK_SEED, _LIFECYCLES, _SHARDS change it.
soak: install
	$(PY) -m tests.soak

# The browser test drives Debian's chromium (never a downloaded browser build); without a Korean
# font it would draw the console's text as empty boxes.
browser:
	@if ! command -v chromium >/dev/null 2>&1 || ! dpkg -s fonts-nanum >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian chromium and fonts-nanum for the browser test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-nanum >/dev/null; \
	  else echo "chromium or fonts-nanum is missing: the browser test may be skipped"; fi; \
	fi

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

bench: install
	$(PY) bench/month_close.py

# As root the embedded cluster lives in /var/lib/bizsupport-pg (devstack/embedded.py): remove it
# with the data folder that points to it.
clean:
	-@[ -x $(PY) ] && $(PY) -c 'from pathlib import Path; from devstack.embedded import EmbeddedPostgres as P; P(Path(".data/postgres")).destroy()'
	rm -rf $(VENV) .data
