# The two commands: `make run` and `make test`. Both set up what they need.
PY := $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# CI counts as set when it is true, 1, yes or on, in any case (as tests/realparts.py's under_ci):
# then a missing real part fails the setup instead of letting its tests skip.
UNDER_CI := $(filter true 1 yes on,$(shell printf %s "$$CI" | tr A-Z a-z | tr -d ' '))
STAMP := $(VENV)/.installed-$(shell cat setup.cfg setup.py pyproject.toml jasmin_sfu/media/_fastpath.c | cksum | cut -d' ' -f1)

.PHONY: run test test-fast test-browser lint bench chromium coturn whip-clients gstreamer clean

$(STAMP): setup.cfg setup.py pyproject.toml jasmin_sfu/media/_fastpath.c
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "jasmin-sfu needs Python 3.11")'
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,bench]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

## Set up and run the daemon on its embedded defaults; prints the demo page URL.
run: $(STAMP)
	$(BIN)/jasmin-sfu serve

## Set up and run the whole suite: lint, import contracts, types, tests (browser and load tests included).
test: $(STAMP) chromium coturn gstreamer
	$(MAKE) --no-print-directory lint
	$(BIN)/python -m pytest -m "not browser"
	$(MAKE) --no-print-directory test-browser

## The real-browser tests, inside a network namespace that has only loopback:
## Chromium gathers ICE candidates on every interface it sees, so this keeps all
## of its traffic on 127.0.0.1 (unshare --net as root, --map-root-user otherwise).
test-browser: $(STAMP) chromium coturn whip-clients
	@if [ "$$(id -u)" = 0 ]; then ns="unshare --net"; else ns="unshare --net --map-root-user"; fi; \
	$$ns sh -c 'ip link set lo up && exec $(BIN)/python -m pytest -m browser'

## The static checks alone (also the pre-commit hooks, .pre-commit-config.yaml): ruff's defect
## rules and its formatting (config in pyproject.toml; `ruff format .` fixes the latter), the import
## contracts (setup.cfg), strict mypy.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

## The suite without the slow (browser, load) tests.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

## Debian's Chromium for the real-browser tests: installed with apt-get when missing and root.
## Under CI (true, 1, yes or on, any case: as tests/realparts.py's under_ci) a missing one fails.
chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian chromium for the browser tests"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	else \
		echo "The browser tests need Debian's chromium: run 'sudo apt-get install chromium' (or set CI=false to let them skip)."; \
		if [ -n "$(UNDER_CI)" ]; then exit 1; fi; \
	fi

## Debian's coturn and nftables for the TURN tests (tests/turn, tests/browser/test_turn_page.py):
## installed with apt-get when missing and root; the package's own service is stopped (tests
## start turnserver themselves, inside network namespaces).
coturn:
	@if command -v turnserver >/dev/null && command -v nft >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian coturn and nftables for the TURN tests"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q coturn nftables; \
		systemctl disable --now coturn 2>/dev/null || true; \
	else \
		echo "The TURN tests need Debian's coturn and nftables: run 'sudo apt-get install coturn nftables' (or set CI=false to let them skip)."; \
		if [ -n "$(UNDER_CI)" ]; then exit 1; fi; \
	fi

## Third-party WHIP/WHEP clients for tests/whip/test_whip_browser.py, from the npm registry:
## installed from tests/whip/js/package-lock.json and bundled with esbuild (node_modules is never committed).
WHIP_JS := tests/whip/js
whip-clients: $(WHIP_JS)/build/whip-clients.js

$(WHIP_JS)/build/whip-clients.js: $(WHIP_JS)/package.json $(WHIP_JS)/package-lock.json $(WHIP_JS)/entry.js
	@if command -v npm >/dev/null; then \
		cd $(WHIP_JS) && npm ci --no-audit --no-fund && \
		./node_modules/.bin/esbuild entry.js --bundle --format=iife --platform=browser --outfile=build/whip-clients.js; \
	else \
		echo "The WHIP/WHEP browser test needs npm (Debian: apt-get install npm); it skips without it."; \
		if [ -n "$(UNDER_CI)" ]; then exit 1; fi; \
	fi

## Debian's GStreamer webrtcbin and python3-gi for tests/whip/test_whip_gstreamer.py (a WHIP publisher
## run by the system Python): installed with apt-get when missing and root, like chromium.
GST_DEBS := python3-gi gir1.2-gst-plugins-base-1.0 gir1.2-gst-plugins-bad-1.0 gstreamer1.0-plugins-base \
	gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-nice
gstreamer:
	@if /usr/bin/python3 -c "import gi; gi.require_version('GstWebRTC', '1.0')" 2>/dev/null \
		&& command -v gst-inspect-1.0 >/dev/null && gst-inspect-1.0 x264enc >/dev/null 2>&1 && gst-inspect-1.0 nicesrc >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian GStreamer (webrtcbin, x264, libnice) for the WHIP interop test"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(GST_DEBS) gstreamer1.0-tools; \
	else \
		echo "The GStreamer WHIP test needs: sudo apt-get install $(GST_DEBS) gstreamer1.0-tools (it skips without them)."; \
		if [ -n "$(UNDER_CI)" ]; then exit 1; fi; \
	fi

## The first load tool: one synthetic publisher, N counting viewers.
bench: $(STAMP)
	$(BIN)/python -m bench.load --viewers 1,10,50

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache
