# engram: the two commands a user needs are `make train` and `make test`.
VENV   ?= .venv
PYTHON ?= python3
PY      = $(VENV)/bin/python
CONFIG ?= configs/pong_lstm.yaml

.PHONY: install train test test-fast bench clean

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test,video,suites,rllib,images]'
	touch $@

install: $(VENV)/.installed

train: install
	$(VENV)/bin/engram train $(CONFIG)

test: install
	$(PY) -m pytest -q -ra

test-fast: install
	$(PY) -m pytest -q -m "not e2e"

bench: install
	$(VENV)/bin/engram bench throughput

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
