# Everything runs from a virtual environment in .venv, made by `make install`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
INSTALLED := $(VENV)/.installed
STUBS := gateway/tfs/.generated
PROTOS := $(wildcard gateway/tfs/*.proto)

# make train
DATA ?= ../shared/data/rps-cgi-train
REAL ?= ../shared/data/rps-real-train
TRAIN_ARGS ?=
VERSION ?=
# make classify
IMG ?= rock1.png
URL ?= $(or $(RPS_GATEWAY_URL),http://localhost:$(GATEWAY_PORT))
# make up
GATEWAY_PORT ?= 5000
MODEL_PORT ?= 8500

.PHONY: install stubs up classify test train clean

install: $(INSTALLED) $(STUBS)

$(INSTALLED): requirements/*.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet \
		-r requirements/serving.txt -r requirements/client.txt \
		-r requirements/build.txt -r requirements/test.txt \
		-r requirements/browser.txt
	$(BIN)/pip install --quiet --no-deps -r requirements/serving-api.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

# The gateway's protobuf and gRPC stubs, compiled from the .proto subset.
stubs: $(STUBS)

$(STUBS): $(INSTALLED) $(PROTOS)
	$(PY) -m grpc_tools.protoc -I . --python_out=. --grpc_python_out=. $(PROTOS)
	touch $@

up: install
	GATEWAY_PORT=$(GATEWAY_PORT) MODEL_PORT=$(MODEL_PORT) VENV=$(VENV) scripts/up.sh

classify: install
	@$(BIN)/rps-classify --url $(URL) $(IMG)

test: install
	scripts/install-chromium.sh
	$(PY) -m pytest

train: install
	$(BIN)/pip install --quiet -r requirements/train.txt
	$(PY) -m serving.train --data $(DATA) --real $(REAL) $(if $(VERSION),--version $(VERSION)) $(TRAIN_ARGS)

clean:
	rm -rf $(VENV) $(STUBS) gateway/tfs/*_pb2*.py .pytest_cache

# The container test (tests/containers/run.sh): builds the gateway image and a
# stand-in for TensorFlow Serving with podman, runs both on a private network
# and classifies the samples through them. Needs root; installs podman with
# apt-get when it is missing.
.PHONY: test-containers images
test-containers: install
	bash tests/containers/run.sh

# The gateway image that docker-compose.yml runs, built with podman when it is
# installed, else docker. BASE_IMAGE replaces python:3.11-slim as the base.
CONTAINER_TOOL ?= $(shell command -v podman || command -v docker)
GATEWAY_IMAGE ?= rps-gateway:latest
BASE_IMAGE ?=

images:
	$(CONTAINER_TOOL) build $(if $(findstring podman,$(CONTAINER_TOOL)),--format docker) \
		$(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) \
		-f gateway/Dockerfile -t $(GATEWAY_IMAGE) .

# The benchmark suite (bench/): in-process limit, the stack under load, the
# classroom baseline, the gateway's footprint and a py-spy profile, in one run
# of about 6 minutes. Writes bench/results/latest.json and docs/benchmarks.md.
# BENCH_ARGS=--quick makes a smoke run of about a minute.
BENCH_ARGS ?=
.PHONY: bench
bench: install
	$(BIN)/pip install --quiet -r requirements/bench.txt
	$(PY) -m bench $(BENCH_ARGS)
