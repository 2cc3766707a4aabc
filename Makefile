# socgw developer entry points. Everything bootstraps itself on a fresh Debian 12 machine.
#   make demo   simulated fleet behind the gateway
#   make test   the test suite (installs what it needs first)
#   make lint   ruff + mypy
#   make bench  benchmarks into bench/results/
#   make lock   regenerate the hash-pinned lock files from requirements*.in
#   make deb    the Debian 12 package dist/socgw_<version>_amd64.deb (packaging/build)
#   make deb-test  build, lintian, install, run as the service, upgrade, purge (packaging/deb-test; root)

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEBIAN_PACKAGES := python3-venv python3-dev mbpoll tshark openssl chromium mosquitto mosquitto-clients nodejs nftables iproute2

DEB_DIR := dist

PEER   := tests/northbound/mqtt/peer
PEER_STAMP := $(PEER)/node_modules/.package-lock.json
SPARKPLUG := gateway/northbound/mqtt/sparkplug_b

.PHONY: all venv demo test lint bench lock sparkplug clean deb deb-test

all: test

$(STAMP): requirements.lock requirements-dev.lock pyproject.toml tools/ensure-debian-packages
	tools/ensure-debian-packages $(DEBIAN_PACKAGES)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements-dev.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/socgw demo --web-port 8080

# The MQTT tests' independent Sparkplug decoder (Eclipse Tahu's sparkplug-payload, mqtt.js), from the lock.
$(PEER_STAMP): $(PEER)/package.json $(PEER)/package-lock.json $(STAMP)
	command -v npm >/dev/null || tools/ensure-debian-packages npm  # NodeSource's nodejs brings its own
	cd $(PEER) && npm ci --no-audit --no-fund --ignore-scripts

test: $(STAMP) $(PEER_STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check gateway tests bench packaging
	$(VENV)/bin/ruff format --check gateway tests bench packaging
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) -m bench

lock:
	uv pip compile --quiet --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	    requirements.in -o requirements.lock
	uv pip compile --quiet --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	    requirements-dev.in -o requirements-dev.lock

# Regenerate the committed Sparkplug B payload module from its schema (tests compare the two).
sparkplug: $(STAMP)
	$(PY) -m grpc_tools.protoc -Igateway/northbound/mqtt --python_out=gateway/northbound/mqtt \
	    --pyi_out=gateway/northbound/mqtt $(SPARKPLUG).proto

deb:
	packaging/build $(DEB_DIR)

# Needs the dev environment: the live check talks to the installed gateway with dnp3py and iec61850.
deb-test: $(STAMP)
	packaging/deb-test

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis build *.egg-info
