# Two commands on a fresh machine: `make lab` opens the course, `make test` runs every test.
# Both create .venv on first use (and again whenever pyproject.toml changes) and install the kit.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Debian packages the tests drive as real peers: g++ compiles config.h and sketches, openssl
# checks certificates, mosquitto_pub/mosquitto_sub talk to the local broker, libbearssl-dev
# validates the broker chain as the board does, chromium runs the real-browser test, zsh (macOS's
# shell) opens in JupyterLab's terminal.
TEST_APT_PACKAGES := g++ openssl mosquitto-clients libbearssl-dev chromium zsh

.PHONY: lab test demo bench setup system-deps lint format clean

lab: $(STAMP)
	$(BIN)/kit lab

# The type checker first (strict on kit/, settings in pyproject.toml), as on each system the
# kit runs on, since their modules differ (fcntl, msvcrt, resource, pty): a minute or two.
test: $(STAMP) system-deps
	$(BIN)/mypy
	$(BIN)/mypy --platform win32
	$(BIN)/mypy --platform darwin
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/csr_capture.py
	@sh tools/ensure-apt.sh mosquitto
	$(BIN)/python bench/cloud_load.py
	$(BIN)/python bench/broker_floods.py
	$(BIN)/python bench/class_register.py
	$(BIN)/python bench/class_live.py
	$(BIN)/python bench/aws_provision.py
	$(BIN)/python bench/class_load.py

# The whole course, headless, on the virtual board and the local cloud; results in build/.
demo: $(STAMP)
	$(BIN)/kit demo

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) tools/check-python.py
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

system-deps:
	@sh tools/ensure-apt.sh $(TEST_APT_PACKAGES)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy --platform win32
	$(BIN)/mypy --platform darwin

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache
