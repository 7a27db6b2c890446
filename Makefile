# Two commands a newcomer needs: `make run` (the whole stack) and `make test` (the suite).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: install run test browser lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

run: install
	$(PY) -m devstack.stack

test: install browser
	$(PY) -m pytest -q

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

clean:
	rm -rf $(VENV) .data
