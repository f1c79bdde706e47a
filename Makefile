# Everything runs from the project's own virtual environment; targets create it when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test bench rules dashboards docs up down demo status clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m bench.run

rules: $(STAMP)
	$(BIN)/python -m devflow_monitor.alerting.build
	$(BIN)/python -m mixin.build

dashboards: $(STAMP)
	$(BIN)/python -m devflow_monitor.dashboards.build
	$(BIN)/python -m mixin.build

docs: $(STAMP)
	$(BIN)/python -m devflow_monitor.generate.metrics_doc

up: $(STAMP)
	$(BIN)/devflow-monitor stack up

down: $(STAMP)
	$(BIN)/devflow-monitor stack down

demo: $(STAMP)
	$(BIN)/devflow-monitor stack demo

status: $(STAMP)
	$(BIN)/devflow-monitor stack status

clean:
	rm -rf $(VENV) .pytest_cache
