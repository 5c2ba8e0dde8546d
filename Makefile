# kubebots: `make run` and `make test` are all a fresh machine needs.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SRC := runtime operator
BENCH_VENV ?= .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed
LITELLM_VENV ?= .venv-litellm
LITELLM_STAMP := $(LITELLM_VENV)/.installed
IMAGE ?= ghcr.io/kubebots/kubebots:0.1.0
PYTHON_IMAGE ?= python:3.11-slim
# Debian's docker client when installed (a newer one earlier on PATH may outrun the daemon's API).
DOCKER ?= $(if $(wildcard /usr/bin/docker),/usr/bin/docker,docker)

.PHONY: run chat crds test test-unit lint fmt bench clean image cluster cluster-down

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## run: the main job on the embedded default: the chat API on 127.0.0.1:8000 (examples/bots applied)
run: $(STAMP)
	$(BIN)/kubebots serve

## lint: ruff + mypy --strict + import-linter contracts
lint: $(STAMP)
	$(BIN)/ruff check $(SRC) tests bench
	$(BIN)/ruff format --check $(SRC)
	@# mypy sees the packages under their real names through a symlink farm (the directories are
	@# mapped by setuptools, which mypy cannot follow); .typecheck/ is generated, never committed.
	@mkdir -p .typecheck/kubebots && ln -sfn ../../runtime .typecheck/kubebots/runtime && ln -sfn ../../operator .typecheck/kubebots/operator
	MYPYPATH=.typecheck $(BIN)/mypy -p kubebots.runtime -p kubebots.operator
	PYTHONPATH=.typecheck $(BIN)/lint-imports

## test: lint, then the whole suite (PostgreSQL must be up: .ci/run starts it)
test: lint
	$(BIN)/pytest -q -p no:cacheprovider

## test-unit: the suite without lint, stop at first failure (for iteration)
test-unit: $(STAMP)
	$(BIN)/pytest -q -x -p no:cacheprovider

## bench: every benchmark, side by side with the peers; writes docs/benchmarks.md (+ PNG, JSON)
bench: $(BENCH_STAMP) $(LITELLM_STAMP)
	KUBEBOTS_BENCH_LITELLM=$(LITELLM_VENV)/bin/litellm $(BENCH_VENV)/bin/python -m bench --out docs

# The bench environment: ours plus the in-process peer (dataknobs-bots) and the plotting/profiling
# tools; the LiteLLM proxy gets a venv of its own. Neither is a dependency of kubebots.
$(BENCH_STAMP): pyproject.toml bench/requirements.txt
	@test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet -e '.[dev]' -r bench/requirements.txt
	@touch $(BENCH_STAMP)

$(LITELLM_STAMP): bench/requirements-litellm.txt
	@test -x $(LITELLM_VENV)/bin/python || $(PYTHON) -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LITELLM_VENV)/bin/python -m pip install --quiet -r bench/requirements-litellm.txt
	@touch $(LITELLM_STAMP)

fmt: $(STAMP)
	$(BIN)/ruff format $(SRC) tests bench
	$(BIN)/ruff check --fix $(SRC) tests bench

clean:
	rm -rf $(VENV) $(BENCH_VENV) $(LITELLM_VENV) build *.egg-info .mypy_cache .ruff_cache .typecheck

## crds: regenerate crds/ from the schema (a test fails when the committed file differs)
crds: $(STAMP)
	$(BIN)/kubebots crd -o crds/bots.kubebots.io.yaml

## chat: an interactive terminal chat with the example support bot (no server)
chat: $(STAMP)
	$(BIN)/kubebots chat -f examples/bots/support.yaml

## image: build the container image $(IMAGE) (runtime + operator) on $(PYTHON_IMAGE)
image:
	$(DOCKER) build --build-arg PYTHON_IMAGE=$(PYTHON_IMAGE) -t $(IMAGE) .

## cluster: a single-node Kubernetes on this machine with the quickstart from the local image
##          (root; installs Debian packages, starts docker; prints KUBECONFIG and a chat command)
cluster: $(STAMP)
	$(BIN)/python -m tests.e2e.harness.devcluster up

## cluster-down: stop `make cluster` and remove everything it made
cluster-down: $(STAMP)
	$(BIN)/python -m tests.e2e.harness.devcluster down
