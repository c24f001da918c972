# kmsync — the two commands are `make run` and `make test`; both bootstrap what they need.
SHELL := /bin/bash
# The interpreter the venv is made from (PYTHON=... overrides): Debian's CPython 3.11 where the machine has it with
# venv, built with profile-guided optimisation and LTO as the image's python:3.11-slim is (deploy/docker/Dockerfile),
# else python3.11 from PATH (pyenv's default build has neither: about half the speed per Python operation;
# docs/decisions.md, "The interpreter the venv and the benchmarks run on").
ifeq ($(origin PYTHON),undefined)
PYTHON := $(shell /usr/bin/python3.11 -c 'import ensurepip, venv' 2>/dev/null && echo /usr/bin/python3.11 || echo python3.11)
endif
VENV := .venv
BIN := $(VENV)/bin
KAFKA_VERSION ?= 4.4.0
KAFKA_CACHE := .cache/kafka/$(KAFKA_VERSION)
KAFKA_LIBS := $(KAFKA_CACHE)/libs
export KMSYNC_KAFKA_VERSION := $(KAFKA_VERSION)
export KMSYNC_KAFKA_LIBS := $(abspath $(KAFKA_LIBS))
UV_VERSION := 0.13.9
UV := .cache/uv/bin/uv

.PHONY: all venv lock compose-secrets kafka-jars kafka tools test unit lint run bench chaos clean help

help:
	@echo "make run    - start local Kafka, the sandboxes and the three services; play a virtual event"
	@echo "make test   - lint, type-check, unit and integration tests against a real Kafka broker"
	@echo "make kafka  - start a local single-node KRaft broker in the foreground (Ctrl-C stops it)"
	@echo "make venv   - .venv from requirements.lock and requirements-dev.lock (hash-checked)"
	@echo "make lock   - regenerate the lock files (runtime, dev, image build) with uv"
	@echo "make compose-secrets - random keys for docker compose (deploy/compose/secrets, git-ignored)"
	@echo "make bench  - benchmarks (JSON report under bench/results)"
	@echo "make chaos  - the pipeline under Marketo faults, kill -9 of every service and a broker restart, reconciled"

venv: $(VENV)/.installed

# The runtime lock (what the image installs), then the dev lock (the same pins plus the dev tools),
# both checked against their hashes; then the project itself, editable, without dependencies.
# On an existing venv this only adds what is missing (pip leaves satisfied pins alone).
$(VENV)/.installed: requirements.lock requirements-dev.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes -r requirements.lock
	$(BIN)/python -m pip install -q --require-hashes -r requirements-dev.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	@touch $@

# Regenerates the locks (runtime, dev, and the image's build backend) with uv (itself pinned, installed under .cache/uv).
# Existing pins are kept unless LOCK_FLAGS says otherwise, e.g. LOCK_FLAGS=--upgrade or
# LOCK_FLAGS="--upgrade-package httpx". Each lock records its command in its first lines.
lock: $(UV)
	$(UV) pip compile pyproject.toml --python-version 3.11 --generate-hashes $(LOCK_FLAGS) -o requirements.lock
	$(UV) pip compile pyproject.toml --extra dev -c requirements.lock --python-version 3.11 --generate-hashes \
	    $(LOCK_FLAGS) -o requirements-dev.lock
	$(UV) pip compile requirements-build.in --python-version 3.11 --generate-hashes $(LOCK_FLAGS) \
	    -o requirements-build.lock

$(UV):
	$(PYTHON) -m venv .cache/uv
	.cache/uv/bin/python -m pip install -q uv==$(UV_VERSION)

kafka-jars: $(KAFKA_LIBS)/.complete

$(KAFKA_LIBS)/.complete: deploy/kafka/pom.xml
	@mkdir -p $(KAFKA_LIBS)
	mvn -B -q -f deploy/kafka/pom.xml -Dkafka.version=$(KAFKA_VERSION) \
	    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=$(abspath $(KAFKA_LIBS))
	@touch $@

# prometheus + promtool for the tests (alert rules, the end-to-end scrape): Debian's package
# unpacked under .cache/prometheus by apt-get download + dpkg-deb -x, as any user; nothing is
# installed system-wide. Its usr/bin comes first on PATH for every recipe (make test, ...).
PROMETHEUS_ROOT := .cache/prometheus
export PATH := $(abspath $(PROMETHEUS_ROOT))/usr/bin:$(PATH)

tools: $(PROMETHEUS_ROOT)/usr/bin/promtool

$(PROMETHEUS_ROOT)/usr/bin/promtool:
	@bash tests/deploy/fetch_debian_package.sh prometheus $(PROMETHEUS_ROOT)

# The compose stack's secrets (docker-compose.yml `secrets:`): random, kept across runs, git-ignored.
# Delete a file to rotate it. Mode 0644: compose bind-mounts the file as it is, for uid 10001.
COMPOSE_SECRETS := deploy/compose/secrets

compose-secrets: $(COMPOSE_SECRETS)/email-hash-key $(COMPOSE_SECRETS)/upload-tokens

$(COMPOSE_SECRETS)/%:
	@mkdir -p $(COMPOSE_SECRETS)
	@$(PYTHON) -c "import secrets; print(secrets.token_urlsafe(32))" > $@.tmp
	@chmod 0644 $@.tmp && mv $@.tmp $@
	@echo "wrote a random $* to $@"

kafka: venv kafka-jars
	$(BIN)/kmsync kafka start

lint: venv
	$(BIN)/ruff check libs services apps tests
	$(BIN)/mypy libs services apps tests/support

test: venv kafka-jars tools lint
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=25

unit: venv
	$(BIN)/python -m pytest -q -m "not kafka"

run: venv kafka-jars
	$(BIN)/kmsync run

bench: venv kafka-jars
	$(BIN)/kmsync bench

chaos: venv kafka-jars
	$(BIN)/kmsync chaos

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache
