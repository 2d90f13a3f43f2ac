# ml-system-patterns: what a contributor runs. `make help` lists the targets.
PATTERN ?= web_single
PY := .venv/bin/python
UV ?= uv
SECONDS ?= 10
USERS ?=
STEPS ?=
SLO ?=
HOST ?=
PORT ?= 8000
ENV ?=
PROCESS ?=
TARGET ?= local
# container builds: where no registry or the default TLS trust works (CI here), set
# BASE_IMAGE=localhost/python-base:3.11 (kube/make-base-image.sh) and a CA mount in BUILD_FLAGS
BASE_IMAGE ?=
BUILD_FLAGS ?=
CLUSTER ?=
# make test fails below this total line coverage of serving/ patterns/ training/ kube/ (in-process
# code only: servers the tests spawn as subprocesses are not measured)
COV_FLOOR ?= 67
COV := --cov=serving --cov=patterns --cov=training --cov=kube --cov-report=term:skip-covered
export BASE_IMAGE BUILD_FLAGS CLUSTER

.DEFAULT_GOAL := help
.PHONY: help setup models run status url stop start kill example docs test test-fast lint format bench loadtest build deploy undeploy verify clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

setup: ## create .venv from the lock file (installs uv if missing), .venv-kserve and .venv-checkov
	@command -v $(UV) >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --frozen --all-extras
	@$(MAKE) --no-print-directory .venv-kserve/done .venv-checkov/done

# The KServe SDK for the OIP client tests, in its own environment: it cannot share the lock
# with the kubernetes client (python-dateutil pins).
# checkov, the second manifest linter of make verify (kube/lint.py): its pins are not ours.
.venv-checkov/done: kube/checkov.txt
	$(UV) venv --quiet --allow-existing --python 3.11 .venv-checkov
	VIRTUAL_ENV=.venv-checkov $(UV) pip install --quiet -r kube/checkov.txt
	touch $@

.venv-kserve/done: tests/clients/kserve.txt
	$(UV) venv --quiet --allow-existing --python 3.11 .venv-kserve
	VIRTUAL_ENV=.venv-kserve $(UV) pip install --quiet -r tests/clients/kserve.txt
	touch $@

models: ## train, export, register every model, then promote candidates to production
	$(PY) -m training run --all
	$(PY) -m training promote --all

data/models/%/model.json:
	$(MAKE) models

run: ## run a pattern, supervised: make run PATTERN=web_single [ENV="proc:NAME=VALUE ..."] [PORT=8000]
	@$(MAKE) --no-print-directory data/models/iris-svc/model.json
	@$(PY) -m patterns.runner run $(PATTERN) --port $(PORT) $(foreach e,$(ENV),--env $(e))

status: ## the processes of a running pattern: make status PATTERN=x
	@$(PY) -m patterns.runner status $(PATTERN)

url: ## the URL of one process of a running pattern, or of its Redis/MLflow: make url PATTERN=x PROCESS=redis
	@$(PY) -m patterns.runner url $(PATTERN) $(PROCESS)

stop: ## stop one process of a running pattern and keep it down: make stop PATTERN=x PROCESS=y
	@$(PY) -m patterns.runner stop $(PATTERN) $(PROCESS)

start: ## start a stopped process again: make start PATTERN=x PROCESS=y
	@$(PY) -m patterns.runner start $(PATTERN) $(PROCESS)

kill: ## SIGKILL one process (a crash; the runner restarts it): make kill PATTERN=x PROCESS=y
	@$(PY) -m patterns.runner kill $(PATTERN) $(PROCESS)

example: ## run a pattern's worked example, printing each command and its real output
	@$(MAKE) --no-print-directory data/models/iris-svc/model.json
	$(PY) -m patterns.example $(PATTERN)

docs: ## regenerate the generated docs: docs/settings.md, every README's example blocks (slow)
	@$(MAKE) --no-print-directory data/models/iris-svc/model.json
	$(PY) -m patterns.settings_doc --write
	$(PY) -m patterns.example --write $(PATTERN)

test: ## every test (real processes, Redis, MLflow), failing below COV_FLOOR % coverage
	$(PY) -m pytest $(COV) --cov-fail-under=$(COV_FLOOR)

test-fast: ## tests not marked slow: no PostgreSQL, kubectl or trained data/ needed
	$(PY) -m pytest -m "not slow"

lint: ## ruff (format, complexity) + mypy --strict on serving/, training/, patterns/, bench/
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

format: ## apply ruff's formatting and autofixes
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: ## web_single vs raw ASGI (wrk); async, batch, cache, fan-out, chain, breaker, routing hops, shadow, overload and monitor figures vs baselines
	@$(MAKE) --no-print-directory data/models/iris-svc/model.json
	$(PY) -m bench.run --seconds $(SECONDS)
	$(PY) -m bench.patterns --seconds $(SECONDS)
	$(PY) -m bench.prediction_log --seconds $(SECONDS)
	$(PY) -m bench.composition --seconds $(SECONDS)
	$(PY) -m bench.circuit_breaker --seconds $(SECONDS)
	$(PY) -m bench.hops --seconds $(SECONDS)
	$(PY) -m bench.overload --seconds $(SECONDS)
	$(PY) -m bench.monitoring

loadtest: ## locust: make loadtest PATTERN=x [STEPS=10:20,50:20,100:20 | USERS=n SECONDS=s] [SLO=f] [TARGET=k8s | HOST=url]
	@$(if $(filter local,$(TARGET)),$(MAKE) --no-print-directory data/models/iris-svc/model.json)
	$(PY) -m patterns.load_test run $(PATTERN) $(if $(STEPS),--steps $(STEPS),$(if $(USERS),--steps $(USERS):$(SECONDS))) $(if $(SLO),--slo $(SLO)) $(if $(HOST),--host $(HOST)) $(if $(filter k8s,$(TARGET)),--kubernetes)

build: ## container images: make build [PATTERN=x] (all images without PATTERN)
	@$(MAKE) --no-print-directory data/models/iris-svc/model.json
	$(PY) -m kube build $(if $(filter command line,$(origin PATTERN)),--pattern $(PATTERN)) $(if $(MODEL_URI),--model-uri $(MODEL_URI))

deploy: ## kind or minikube [CLUSTER=kind|minikube]: build, load, apply, wait; make deploy PATTERN=x
	@$(MAKE) --no-print-directory data/models/iris-svc/model.json
	$(PY) -m kube deploy $(PATTERN)

undeploy: ## delete a deployed pattern (shared Redis/PostgreSQL stay while another uses them): make undeploy PATTERN=x
	$(PY) -m kube undeploy $(PATTERN)

verify: ## container tier: build images, smoke them, validate and checkov-lint overlays, podman kube play
	@$(MAKE) --no-print-directory .venv-checkov/done
	@$(MAKE) --no-print-directory data/models/iris-svc/model.json
	./kube/ci-setup.sh
	$(PY) -m kube verify

clean: ## remove generated data (models, MLflow store, pipeline cache) and caches
	rm -rf data bench-results .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov
