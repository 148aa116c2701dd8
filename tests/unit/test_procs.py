"""The pure parts of the process and namespace helpers (no root needed)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from containerfs.engine.catalog import NAMESPACE_FILES, Role
from containerfs.kernel import procfs, procs
from containerfs.kernel import sys as ksys
from containerfs.kernel.holder import Holder, _proc_exited
from containerfs.kernel.namespaces import ns_inode
from containerfs.kernel.sysctls import sysctl_path
from containerfs.nskinds import KINDS


def test_nspids_and_inodes_of_ourselves() -> None:
    assert procfs.nspids(os.getpid())[0] == os.getpid()
    inodes = procs.process_inodes("self")
    assert set(inodes) == set(KINDS)
    assert inodes["uts"] == os.stat("/proc/self/ns/uts").st_ino


def test_translate_pid_is_the_identity_in_our_pid_namespace() -> None:
    me = os.getpid()
    assert procs.translate_pid(me, me) == me
    assert procs.translate_pid(os.getppid(), me) == os.getppid()
    with pytest.raises(ProcessLookupError):
        procs.translate_pid(-1, me)


def test_missing_process_is_a_lookup_error() -> None:
    with pytest.raises(ProcessLookupError):
        ns_inode(4_194_305, "uts")  # above the largest possible pid
    with pytest.raises(ValueError):
        ns_inode("self", "nope")


def test_every_kind_has_its_clone_flag() -> None:
    assert set(ksys.NS_FLAGS) == set(KINDS)
    assert len(set(ksys.NS_FLAGS.values())) == len(KINDS)
    assert ksys.flags_of(["uts", "ipc"]) == ksys.CLONE_NEWUTS | ksys.CLONE_NEWIPC


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("kernel.hostname", "/proc/sys/kernel/hostname"),
        ("net.ipv4.ip_forward", "/proc/sys/net/ipv4/ip_forward"),
        ("net/ipv4/conf/eth0.1/forwarding", "/proc/sys/net/ipv4/conf/eth0.1/forwarding"),
    ],
)
def test_sysctl_names_map_to_proc_sys(name: str, path: str) -> None:
    assert sysctl_path(name) == path


@pytest.mark.parametrize("name", ["", "kernel..hostname", "../etc/passwd", "net/../x", "a/./b"])
def test_sysctl_names_cannot_escape(name: str) -> None:
    with pytest.raises(ValueError):
        sysctl_path(name)


def test_catalogue_sysctls_name_a_kind_and_a_proc_sys_file() -> None:
    sysctls = {e.name: (e.kind, e.key) for e in NAMESPACE_FILES if e.role == Role.SYSCTL}
    assert sysctls["uts.hostname"] == ("uts", "kernel.hostname")
    assert sysctls["user.max_net_namespaces"] == ("user", "user.max_net_namespaces")
    for name, (kind, sysctl) in sysctls.items():
        assert kind in KINDS and name.startswith(f"{kind}.")
        assert os.path.exists(sysctl_path(sysctl))


def test_holder_gone_without_waiting_for_the_reaper() -> None:
    proc = subprocess.Popen(["sleep", "100"])
    holder = Holder(proc.pid, os.pidfd_open(proc.pid), {})
    try:
        assert not holder.gone() and holder.alive()
        assert not _proc_exited(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        # Not reaped yet: a zombie, yet gone, by pidfd and by /proc state.
        deadline = time.monotonic() + 5
        while not holder.gone() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert holder.gone()
        assert os.path.exists(f"/proc/{proc.pid}")
        holder.close()
        assert holder.gone()  # from /proc/PID/stat: state Z
        with pytest.raises(ProcessLookupError):
            holder.dup_pidfd()
        with pytest.raises(ValueError):
            holder.kill()
    finally:
        holder.close()
        proc.kill()
        proc.wait()
    assert holder.gone()  # no /proc/PID at all
    assert not Holder(os.getpid(), -1, {}).gone()


# -- who may move whom ---------------------------------------------------------

CRED_STATUS = """Name:\tsleep
Umask:\t0022
State:\tS (sleeping)
Tgid:\t4242
TracerPid:\t{tracer}
Uid:\t{uid}\t{uid}\t{uid}\t{uid}
Gid:\t{gid}\t{gid}\t{gid}\t{gid}
Threads:\t{threads}
CapEff:\t{cap}
"""


def creds_of(uid: int = 1000, gid: int = 1000, cap: str = "0" * 16, threads: int = 1):
    from containerfs.kernel.procs import parse_creds

    return parse_creds(CRED_STATUS.format(uid=uid, gid=gid, cap=cap, threads=threads, tracer=0))


def test_parse_creds() -> None:
    from containerfs.kernel.procs import parse_creds

    c = parse_creds(CRED_STATUS.format(uid=7, gid=8, cap="000001fffeffffff", threads=3, tracer=99))
    assert c.uids == (7, 7, 7, 7) and c.gids == (8, 8, 8, 8)
    assert c.cap_eff & (1 << 19) and c.threads == 3 and c.tracer == 99
