"""Plain namespace knobs: user ID maps and namespace limits, pid.max, time offsets.

Each limit is proven by the kernel refusing: `unshare -n` inside past
user.max_net_namespaces, a fork past pid.max, and time.offsets once a process
has entered.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from containerfs.kernel.procs import pid_max_per_namespace

from .conftest import FORK_UNTIL_REFUSED, Mounted

pytestmark = pytest.mark.root


def test_user_maps_are_write_once_and_limits_are_enforced(cfs: Mounted) -> None:
    cfs.sh("echo +user > container.subtree && mkdir u")
    assert cfs.read("u/user.uid_map") == ""
    bad = cfs.sh("echo '0 1' > u/user.uid_map", check=False)
    assert bad.returncode != 0 and "Invalid argument" in bad.stderr
    # map the host's root to root inside, so commands keep their capabilities there
    cfs.sh("echo '0 0 65536' > u/user.uid_map && echo '0 0 65536' > u/user.gid_map")
    assert cfs.read("u/user.uid_map") == "0 0 65536\n"
    again = cfs.sh("echo '0 0 1' > u/user.uid_map", check=False)
    assert again.returncode != 0 and "Operation not permitted" in again.stderr
    assert cfs.read("u/user.uid_map") == "0 0 65536\n"
    assert cfs.exec("u", "id", "-u").stdout == "0\n"
    # the kernel's own parent-imposed limit on namespaces
    cfs.sh("echo 0 > u/user.max_net_namespaces")
    assert cfs.read("u/user.max_net_namespaces") == "0\n"
    refused = cfs.exec("u", "unshare", "-n", "true", check=False)
    assert refused.returncode != 0 and "No space left" in refused.stderr
    cfs.sh("echo 4 > u/user.max_net_namespaces")
    assert cfs.exec("u", "unshare", "-n", "true").returncode == 0
    for bad_value in ["-1", "x", "99999999999"]:
        r = cfs.sh(f"echo {bad_value} > u/user.max_net_namespaces", check=False)
        assert r.returncode != 0 and "Invalid argument" in r.stderr
    assert cfs.read("u/user.max_net_namespaces") == "4\n"
    # the host's limits are read-only here
    host = Path("/proc/sys/user/max_net_namespaces").read_text()
    assert cfs.read("user.max_net_namespaces") == host
    assert cfs.sh("echo 1 > user.max_net_namespaces", check=False).returncode != 0


@pytest.mark.skipif(not pid_max_per_namespace(), reason="kernel.pid_max is not per pid namespace")
def test_pid_max_limits_forks_inside(cfs: Mounted) -> None:
    host = Path("/proc/sys/kernel/pid_max").read_text()
    cfs.sh("mkdir p")
    assert cfs.read("p/pid.max") == "max\n"
    cfs.sh("echo 310 > p/pid.max")
    assert cfs.read("p/pid.max.effective") == "310\n"
    # inside, its own (internal) value shows; the kernel enforces the effective one
    assert cfs.exec("p", "cat", "/proc/sys/kernel/pid_max").stdout == "4194304\n"
    highest, err = cfs.exec("p", sys.executable, "-c", FORK_UNTIL_REFUSED).stdout.split()
    assert err == "EAGAIN" and int(highest) == 309  # pids stay below pid_max
    assert Path("/proc/sys/kernel/pid_max").read_text() == host
    bad = cfs.sh("echo 10 > p/pid.max", check=False)  # below the kernel's floor of 301
    assert bad.returncode != 0 and "Invalid argument" in bad.stderr
    assert cfs.read("p/pid.max") == "310\n"


def test_time_offsets_apply_until_the_first_process_enters(cfs: Mounted) -> None:
    cfs.sh("mkdir t")
    assert cfs.read("t/time.offsets") == "monotonic 0 0\nboottime 0 0\n"
    cfs.sh("echo 'monotonic 86400' > t/time.offsets")
    assert cfs.read("t/time.offsets") == "monotonic 86400 0\nboottime 0 0\n"
    before = time.monotonic()
    inside = float(
        cfs.exec("t", sys.executable, "-c", "import time; print(time.monotonic())").stdout
    )
    after = time.monotonic()
    assert before + 86400 <= inside <= after + 86400
    busy = cfs.sh("echo 'boottime 5' > t/time.offsets", check=False)
    assert busy.returncode != 0 and "busy" in busy.stderr.lower()
    assert cfs.read("t/time.offsets") == "monotonic 86400 0\nboottime 0 0\n"
    bad = cfs.sh("echo 'realtime 5' > t/time.offsets", check=False)
    assert bad.returncode != 0 and "Invalid argument" in bad.stderr
