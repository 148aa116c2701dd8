# containerfs: `make run` mounts at /run/containerfs, `make test` runs the suite.
# Both set up everything a fresh Debian machine lacks (needs root).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
BINS   := $(VENV)/bin/containerfs-pin $(VENV)/bin/containerfs-nsscan
STAMP  := $(VENV)/.installed
DEB    := fuse3 libfuse3-dev pkg-config gcc python3-dev python3-venv util-linux iproute2
MOUNTPOINT ?= /run/containerfs

.PHONY: run test test-v2 test-systemd unit lint typecheck bench deps clean

run: $(STAMP) $(BINS)
	$(VENV)/bin/containerfs mount $(MOUNTPOINT)

# The suite runs under `python -X dev` with warnings as errors: the daemons the tests
# start inherit TEST_ENV, and a test fails on any warning (an unclosed file) they print.
TEST_ENV ?= PYTHONDEVMODE=1 PYTHONWARNINGS=error
test: $(STAMP) $(BINS)
	$(TEST_ENV) $(PY) -m pytest tests $(PYTEST_ARGS)

# The integration tests on pure cgroup v2 in throw-away qemu guests (Debian 6.1 and
# 6.12 kernels, root and delegated cgroup): tools/v2vm/matrix says which.
test-v2: $(STAMP) $(BINS)
	tools/v2vm/matrix

# The systemd service (dist/systemd) with systemd as pid 1 in a throw-away qemu guest:
# installed, started, restarted, killed and stopped around a container and its process
# (tools/v2vm/systemd-lane, tools/v2vm/systemd-checks).
test-systemd: $(STAMP) $(BINS)
	tools/v2vm/systemd-lane

unit: $(STAMP)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

# Timings live here, never in the tests (root; see bench/*.py for what each measures).
bench: $(STAMP) $(BINS)
	$(PY) -m bench.control --json bench/control.json
	$(PY) -m bench.creation --json bench/creation.json
	$(PY) -m bench.lifecycle --json bench/lifecycle.json
	$(PY) -m bench.inject --json bench/inject.json
	$(PY) -m bench.listing --json bench/listing.json
	$(PY) -m bench.scale --json bench/scale.json
	$(PY) -m bench.depth --json bench/depth.json

lint: $(STAMP)
	$(VENV)/bin/ruff check containerfs tests examples bench
	$(VENV)/bin/ruff format --check containerfs tests examples bench

typecheck: $(STAMP)
	$(VENV)/bin/mypy containerfs

# Debian packages: only what is missing, so a prepared machine needs no network.
deps:
	@missing=""; for p in $(DEB); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml | deps
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# The namespace holder: a tiny C init, one per container (see docs/design.md).
$(VENV)/bin/containerfs-pin: containerfs/kernel/pin.c $(STAMP)
	gcc -O2 -Wall -Wextra -Werror -static-pie -o $@ $< 2>/dev/null || gcc -O2 -Wall -Wextra -Werror -o $@ $<

# The /proc walk of `namespaces` on several threads (kernel/nsscan.c).
$(VENV)/bin/containerfs-nsscan: containerfs/kernel/nsscan.c $(STAMP)
	gcc -O2 -Wall -Wextra -Werror -pthread -o $@ $<

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
