# containerfs: `make run` mounts at /run/containerfs, `make test` runs the suite.
# Both set up everything a fresh Debian machine lacks (needs root).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
BINS   := $(VENV)/bin/containerfs-pin $(VENV)/bin/containerfs-nsscan $(VENV)/bin/containerfs-exec
STAMP  := $(VENV)/.installed
# man-db groff-base mandoc zsh bash-completion: the checks of dist/man and dist/completion
# patch: pyfuse3 is rebuilt with patches/pyfuse3/ (tools/pyfuse3-patched)
# tmux: `containerfs top` is tested on a real terminal
DEB    := fuse3 libfuse3-dev pkg-config gcc patch python3-dev python3-venv util-linux iproute2 \
          man-db groff-base mandoc zsh bash-completion tmux
# Debian's prometheus and promtool, unpacked (not installed) for the tests of `metrics`
PROMTOOL := $(VENV)/prometheus/usr/bin/promtool
# Debian's podman and conmon, and containerd, unpacked (not installed) for the tests
# of `containerfs oci`;
# without them (no network) those tests say skipped
PODMAN := $(VENV)/podman/usr/bin/podman
CONTAINERD := $(VENV)/containerd/usr/bin/containerd
MOUNTPOINT ?= /run/containerfs

.PHONY: run test test-v2 test-systemd unit lint typecheck bench bench-listns deps clean install uninstall

run: $(STAMP) $(BINS)
	$(VENV)/bin/containerfs mount $(MOUNTPOINT)

# The suite runs under `python -X dev` with warnings as errors: the daemons the tests
# start inherit TEST_ENV, and a test fails on any warning (an unclosed file) they print.
TEST_ENV ?= PYTHONDEVMODE=1 PYTHONWARNINGS=error
test: $(STAMP) $(BINS) $(PROMTOOL) $(PODMAN) $(CONTAINERD)
	$(TEST_ENV) $(PY) -m pytest tests $(PYTEST_ARGS)

# Best effort: offline, the tests that need them say skipped.
$(PROMTOOL): | $(STAMP)
	-tools/fetch-prometheus $(VENV)/prometheus || echo "promtool not fetched: its tests will be skipped"

$(PODMAN): | $(STAMP)
	-tools/fetch-podman $(VENV)/podman

$(CONTAINERD): | $(STAMP)
	-tools/fetch-containerd $(VENV)/containerd

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

# bench.listing where the kernel has listns() (Linux >= 6.19): in a qemu guest on
# trixie-backports' kernel (tools/v2vm/run), the +2,000 processes in 200 groups load
# only; 4 to 6 minutes under TCG. Report in bench/listing-listns.txt, numbers in .json.
bench-listns: $(STAMP) $(BINS)
	tools/v2vm/run -k trixie-backports -- $(PY) -m bench.listing --loads 2000/200 \
	  --json - > bench/listing-listns.out
	sed -n '/^--- json$$/,$${/^--- json$$/d;p}' bench/listing-listns.out > bench/listing-listns.json
	sed '/^--- json$$/,$$d' bench/listing-listns.out > bench/listing-listns.txt
	rm bench/listing-listns.out
	cat bench/listing-listns.txt

lint: $(STAMP)
	$(VENV)/bin/ruff check containerfs tests examples bench setup.py
	$(VENV)/bin/ruff format --check containerfs tests examples bench setup.py

typecheck: $(STAMP)
	$(VENV)/bin/mypy containerfs

# Debian packages: only what is missing, so a prepared machine needs no network.
deps:
	@missing=""; for p in $(DEB); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# A new or changed pyfuse3 patch rebuilds the venv's pyfuse3 (an old build lacks it).
$(STAMP): pyproject.toml $(wildcard patches/pyfuse3/*.patch) tools/pyfuse3-patched | deps
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	tools/pyfuse3-patched $(PY)
	touch $@

# The namespace holder: a tiny C init, one per container (see docs/design.md).
$(VENV)/bin/containerfs-pin: containerfs/kernel/pin.c $(STAMP)
	gcc -O2 -Wall -Wextra -Werror -static-pie -o $@ $< 2>/dev/null || gcc -O2 -Wall -Wextra -Werror -o $@ $<

# The /proc walk of `namespaces` on several threads (kernel/nsscan.c), and the
# listns() listing; static when it can be, as the daemon starts it per listing.
$(VENV)/bin/containerfs-nsscan: containerfs/kernel/nsscan.c $(STAMP)
	gcc -O2 -Wall -Wextra -Werror -pthread -static-pie -o $@ $< 2>/dev/null || gcc -O2 -Wall -Wextra -Werror -pthread -o $@ $<

# `containerfs exec` in C (kernel/cfsexec.c), also the venv's `containerfs` command:
# a copy replaces pip's entry script, so `exec` starts no Python (other commands
# it hands to the venv's python). A copy, not a link: pip rewrites that script.
$(VENV)/bin/containerfs-exec: containerfs/kernel/cfsexec.c $(STAMP)
	gcc -O2 -Wall -Wextra -Werror -static-pie -o $@ $< 2>/dev/null || gcc -O2 -Wall -Wextra -Werror -o $@ $<
	install -m 755 $@ $(VENV)/bin/containerfs

# System install, as packagers expect: `make install PREFIX=/usr DESTDIR=/tmp/stage`.
# The Python side is a private venv in $(PREFIX)/lib/containerfs (its own pyfuse3 and
# trio, pinned by pyproject.toml, never mixed with the distribution's packages), made
# with INSTALL_PYTHON: Debian's /usr/bin/python3 when there is one, since a service
# must not depend on an interpreter in someone's home (pyenv); the install lives as
# long as that interpreter. pip builds the package from this checkout, the two C
# programs included (setup.py; they land in the package, where the daemon looks).
# `containerfs` in $(PREFIX)/bin is a link to the venv's command, `containerfs-runc`
# (the OCI runtime's one executable path, pip's console script) one to the venv's. With DESTDIR the
# venv is made where it is staged: the staging prefix is then cut from its scripts,
# and bytecode is compiled with the final paths. pip needs PyPI (or PIP_INDEX_URL /
# PIP_FIND_LINKS, PIP_INSTALL_ARGS) for pyfuse3 and trio. Files under dist/ are
# installed when present. The venv's `containerfs` is then replaced by the package's
# containerfs-exec (kernel/cfsexec.c): `exec` starts no Python, the rest goes to the
# venv's python.
PREFIX  ?= /usr/local
DESTDIR ?=
INSTALL_PYTHON ?= $(if $(wildcard /usr/bin/python3),/usr/bin/python3,$(PYTHON))
PIP_INSTALL_ARGS ?=
BINDIR  := $(PREFIX)/bin
APPDIR  := $(PREFIX)/lib/containerfs
# Where the venv is built: staged below DESTDIR (absolute, one slash: venv writes the
# normalised path into its files, and the staging prefix is cut out of them by it),
# beside the installed one, swapped in only once complete (a running service keeps
# its holder program until then).
STAGED  := $(abspath $(DESTDIR)$(APPDIR))
# What `pip install .` needs to build; install checks, never installs them (a
# packager's build machine is theirs: `make deps` is for run and test).
BUILD_DEB := gcc libfuse3-dev pkg-config python3-dev python3-venv
UNITDIR := $(PREFIX)/lib/systemd/system
MANDIR  := $(PREFIX)/share/man
BASHDIR := $(PREFIX)/share/bash-completion/completions
ZSHDIR  := $(PREFIX)/share/zsh/vendor-completions
# source -> installed path (below DESTDIR) of each data file, the unit aside
DATA := dist/man/containerfs.8:$(MANDIR)/man8/containerfs.8 \
        dist/man/containerfs.7:$(MANDIR)/man7/containerfs.7 \
        dist/completion/containerfs.bash:$(BASHDIR)/containerfs \
        dist/completion/_containerfs:$(ZSHDIR)/_containerfs
UNIT := dist/systemd/containerfs.service

install:
	@missing=""; for p in $(BUILD_DEB); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ] && command -v dpkg >/dev/null; then \
	  echo "make install: missing build packages:$$missing (apt-get install them, or make deps)" >&2; \
	  exit 1; \
	fi
	rm -rf '$(STAGED).new'
	$(INSTALL_PYTHON) -m venv '$(STAGED).new'
	PIP_ROOT_USER_ACTION=ignore '$(STAGED).new/bin/python' -m pip install -q \
	  --no-compile $(PIP_INSTALL_ARGS) .
	tools/pyfuse3-patched '$(STAGED).new/bin/python' $(PIP_INSTALL_ARGS)
	grep -rlIF -e '$(STAGED).new' '$(STAGED).new' | xargs -r sed -i 's|$(STAGED).new|$(APPDIR)|g'
	'$(STAGED).new/bin/python' -m compileall -q -f -j0 \
	  -d '$(APPDIR)/lib' '$(STAGED).new/lib'
	exe=$$(find '$(STAGED).new/lib' -path '*/containerfs/bin/containerfs-exec' | head -n1); \
	  test -n "$$exe" && install -m 755 "$$exe" '$(STAGED).new/bin/containerfs'
	rm -rf '$(STAGED).old'
	if [ -e '$(STAGED)' ]; then mv '$(STAGED)' '$(STAGED).old'; fi
	mv '$(STAGED).new' '$(STAGED)'
	rm -rf '$(STAGED).old'
	install -d '$(DESTDIR)$(BINDIR)'
	ln -sfn '$(APPDIR)/bin/containerfs' '$(DESTDIR)$(BINDIR)/containerfs'
	ln -sfn '$(APPDIR)/bin/containerfs-runc' '$(DESTDIR)$(BINDIR)/containerfs-runc'
	if [ -f $(UNIT) ]; then \
	  install -d '$(DESTDIR)$(UNITDIR)' && \
	  sed 's|@BINDIR@|$(BINDIR)|g' $(UNIT) > '$(DESTDIR)$(UNITDIR)/containerfs.service' && \
	  chmod 644 '$(DESTDIR)$(UNITDIR)/containerfs.service'; \
	fi
	for pair in $(DATA); do \
	  src=$${pair%%:*}; dst='$(DESTDIR)'$${pair#*:}; \
	  if [ -f "$$src" ]; then install -D -m 644 "$$src" "$$dst"; fi; \
	done

# Removes what install put there (the directories it shares with others stay; a
# `containerfs` in BINDIR that is not install's link too).
uninstall:
	if [ "$$(readlink '$(DESTDIR)$(BINDIR)/containerfs')" = '$(APPDIR)/bin/containerfs' ]; then \
	  rm -f '$(DESTDIR)$(BINDIR)/containerfs'; \
	fi
	if [ "$$(readlink '$(DESTDIR)$(BINDIR)/containerfs-runc')" = '$(APPDIR)/bin/containerfs-runc' ]; then \
	  rm -f '$(DESTDIR)$(BINDIR)/containerfs-runc'; \
	fi
	rm -f '$(DESTDIR)$(UNITDIR)/containerfs.service'
	for pair in $(DATA); do rm -f '$(DESTDIR)'$${pair#*:}; done
	rm -rf '$(STAGED)'

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build
