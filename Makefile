# The two commands of the README:
#   make demo   set everything up and run the pipeline end to end on the local stack
#   make test   set everything up and run the whole test suite (lint, types, unit, integration)
PY := .venv/bin/python

.PHONY: demo test bootstrap lint stack-up stack-down
bootstrap:
	@bash infra/bootstrap.sh

demo: bootstrap
	$(PY) -m producers.demo

lint: bootstrap
	$(PY) -m ruff check producers schemas streams control infra tests
	$(PY) -m mypy

test: lint
	$(PY) -m pytest -p no:cacheprovider -ra

stack-up: bootstrap
	$(PY) -m infra up

stack-down:
	python3 -m infra down
