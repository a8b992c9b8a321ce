# postdesk: `make demo` sets up and runs the demo; `make test` runs the tests.
# Both install what they need on a fresh Debian machine (Debian packages as
# root when missing, then a virtualenv in $(VENV) with postdesk and its extras).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := postfix libmilter-dev swaks time mutt
PYTEST_ARGS ?=

.PHONY: all deps venv lint test demo bench clean

all: test

deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "Missing Debian packages:$$missing; install them as root (make deps)." >&2; exit 1; fi; \
	  echo "Installing Debian packages:$$missing"; \
	  apt-get update -qq && \
	  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(VENV)/.installed: setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,pg]'
	touch $@

venv: deps $(VENV)/.installed

# ruff (lint) and mypy (types), configured in pyproject.toml; a few seconds.
lint: venv
	$(VENV)/bin/ruff check postdesk tests bench scripts
	$(VENV)/bin/mypy postdesk

test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

demo: venv
	$(PY) scripts/demo.py

bench: venv
	$(PY) bench/filter.py
	$(PY) bench/ingest.py
	$(PY) bench/pipe_startup.py
	$(PY) bench/milter.py
	$(PY) bench/notifier.py

clean:
	rm -rf $(VENV) build *.egg-info demo-run debian/postdesk debian/.debhelper debian/files debian/*.substvars debian/*.debhelper debian/*.log debian/debhelper-build-stamp postdesk_*

# The Debian package: postdesk_VERSION_amd64.deb in this directory, built
# with dh-virtualenv (a virtualenv in /opt/postdesk; Python dependencies from
# PyPI).  Build dependencies are installed as root with apt-get.
DEB_BUILD_DEPS := build-essential debhelper dh-virtualenv python3-dev python3-venv libmilter-dev dpkg-dev

.PHONY: deb deb-deps
deb-deps:
	@missing=""; for p in $(DEB_BUILD_DEPS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "Missing build dependencies:$$missing; run make deb as root." >&2; exit 1; fi; \
	  echo "Installing build dependencies:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

deb: deb-deps
	rm -rf debian/postdesk debian/.debhelper debian/files debian/*.substvars debian/*.debhelper debian/*.log
	dpkg-buildpackage -us -uc -b
	mv ../postdesk_*_amd64.deb ../postdesk_*_amd64.buildinfo ../postdesk_*_amd64.changes . 2>/dev/null || true
	@ls -l postdesk_*_amd64.deb
