# Radbridge: the commands README.md promises. `make test` and `make run` set everything up first
# (Debian packages, Rust, the UI's npm packages) and are safe to repeat.
SHELL := /bin/bash
.DEFAULT_GOAL := help
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
CARGO ?= cargo
DEMO_CT := tests/data/totalsegmentator/chest_ct.nii.gz
VENV := target/refvenv
# CI builds everything once from a fresh clone: incremental compilation only costs time there.
ifeq ($(CI),true)
export CARGO_INCREMENTAL := 0
endif

# Core + CLI: a C/C++ toolchain and cmake (CharLS, the JPEG-LS decoder, builds from source).
APT_CORE := build-essential pkg-config cmake curl ca-certificates git
# Desktop shell (Tauri v2 on WebKitGTK) and the UI build (Node.js + npm).
APT_DESKTOP := libwebkit2gtk-4.1-dev libsoup-3.0-dev libjavascriptcoregtk-4.1-dev librsvg2-dev \
	libayatana-appindicator3-dev libssl-dev file libxdo-dev libgtk-3-dev
APT_NODE := $(if $(shell command -v npm),,nodejs npm)
# Test tools: Xvfb + WebKitWebDriver (end-to-end tests in the real window), chromium (UI tests),
# poppler (PDF -> PNG/text checks), dicom3tools (dciodvfy), python3-venv (the test venv below).
APT_TEST := xvfb xauth webkit2gtk-driver chromium fonts-dejavu-core dbus-x11 poppler-utils dicom3tools python3-venv slurm-wlm munge \
	orthanc orthanc-dicomweb
# Python packages some tests call (pinned): pydicom reads our DICOM SR, scikit-learn checks metrics.
TESTVENV := target/testvenv
TEST_REQUIREMENTS := tests/reference/requirements-test.txt

UI_SRC := $(shell find ui/src -name '*.ts' -o -name '*.css') ui/index.html ui/package.json ui/package-lock.json ui/vite.config.ts ui/tsconfig.json

.PHONY: help lint bindings setup setup-test setup-tauri-driver setup-system setup-rust setup-ui ui test app run bench clean

help:
	@echo "make run    - set up, build and launch the app on the demo CT"
	@echo "make test   - set up, build and run every test"
	@echo "make lint   - rustfmt --check and clippy -D warnings over the workspace"
	@echo "make app    - build the self-contained app binary target/release/radbridge-app"
	@echo "make bench  - load benchmark against SimpleITK / pydicom / nibabel, PACS retrieve against curl, JPEG decode against dicom-pixeldata (prints ratios)"

setup: setup-system setup-rust setup-ui

setup-test: setup $(TESTVENV)/.installed setup-tauri-driver

# tauri-driver (WebDriver proxy for the end-to-end tests in the real window), pinned to major 2.
setup-tauri-driver:
	@command -v tauri-driver >/dev/null || [ -x "$$HOME/.cargo/bin/tauri-driver" ] || \
		$(CARGO) install tauri-driver --version ^2 --locked

$(TESTVENV)/.installed: $(TEST_REQUIREMENTS)
	@[ -x $(TESTVENV)/bin/python ] || python3 -m venv $(TESTVENV)
	$(TESTVENV)/bin/pip install -q --disable-pip-version-check -r $(TEST_REQUIREMENTS)
	@touch $@

setup-system:
	@missing=$$(for p in $(APT_CORE) $(APT_DESKTOP) $(APT_NODE) $(APT_TEST); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

setup-rust:
	@command -v $(CARGO) >/dev/null || { \
		echo "installing Rust with rustup (https://rustup.rs)"; \
		curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal; }

setup-ui: ui/node_modules/.package-lock.json

ui/node_modules/.package-lock.json: ui/package.json ui/package-lock.json
	cd ui && npm ci --no-audit --no-fund
	@touch $@

ui: ui/dist/index.html

ui/dist/index.html: ui/node_modules/.package-lock.json $(UI_SRC)
	cd ui && npm run build

# One cargo invocation builds both binaries (the core crates compile once); the integration
# tests (one binary) run the CLI built here.
test: setup-test ui lint
	$(CARGO) build --workspace --bins
	RADBRIDGE_TEST_PYTHON=$(CURDIR)/$(TESTVENV)/bin/python $(CARGO) test --workspace
	cd ui && npm test && npm run test:ui
	RADBRIDGE_TEST_PYTHON=$(CURDIR)/$(TESTVENV)/bin/python tests/e2e/run.sh

app: setup ui
	$(CARGO) build --release -p radbridge-app -p radbridge-cli
	@echo "built target/release/radbridge-app"

run: app
	./target/release/radbridge-app $(DEMO_CT)

# Formatting (rustfmt.toml) and clippy with warnings as errors, over every crate and target.
lint: setup-rust
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Rewrite ui/src/bindings (TypeScript types of the IPC seam) from the Rust types; the test
# `bindings_are_up_to_date` (part of `cargo test --workspace`) fails while they differ.
bindings: setup-rust
	RADBRIDGE_UPDATE_BINDINGS=1 $(CARGO) test --workspace --exclude radbridge-tests bindings_are_up_to_date

bench: setup
	$(CARGO) build --release -p radbridge-cli
	@[ -x $(VENV)/bin/python ] || python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q $$(grep -E '^(numpy|pydicom|nibabel|simpleitk|pylibjpeg|pylibjpeg-openjpeg)==' tests/reference/requirements.txt)
	$(VENV)/bin/python tests/reference/bench_readers.py --radbridge target/release/radbridge
	$(VENV)/bin/python tests/reference/bench_pacs.py --radbridge target/release/radbridge
	$(CARGO) bench --workspace --bench jpeg12

clean:
	$(CARGO) clean
	rm -rf ui/dist ui/node_modules
