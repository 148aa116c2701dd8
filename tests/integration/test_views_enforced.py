"""The external view of a namespace knob holds at all times (issue 14).

Each test has the container's own process write its /proc/sys file above the
parent's limit and then run into that limit, in ONE ``containerfs exec`` shell
command: no containerfs read of the container happens in between, so nothing
but the kernel can refuse. Each runs for both layouts: a container owning
ipc, net, pid and mnt (root inside is host root), and one that also owns its
user namespace, mapped ``0 100000 65536`` before the limit is set (root inside
is host uid 100000, and the parent's writes come after the maps).
"""

from __future__ import annotations

import os
import textwrap

import pytest

from containerfs.kernel.procs import pid_max_per_namespace

from .conftest import FORK_UNTIL_REFUSED, LISTEN_BACKLOG, Mounted

pytestmark = pytest.mark.root

LAYOUTS = ["plain", "userns"]

# A Python root inside a user namespace may run: uid 100000 cannot reach
# interpreters under /root (pyenv), as the suite's own may be.
PYTHON = next(
    (p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.access(p, os.X_OK)), ""
)
needs_python = pytest.mark.skipif(not PYTHON, reason="no system python3 for use inside")


def container(cfs: Mounted, name: str, layout: str) -> str:
    """Make ``name``; for ``userns`` with its own user namespace and ID maps."""
    if layout == "userns":
        cfs.sh("echo +user > container.subtree")
    cfs.sh(f"mkdir {name}")
    if layout == "userns":
        cfs.sh(
            f"echo '0 100000 65536' > {name}/user.uid_map && "
            f"echo '0 100000 65536' > {name}/user.gid_map"
        )
        assert cfs.exec(name, "id", "-u").stdout == "0\n"  # root inside, host 100000
    return name


def inside(cfs: Mounted, c: str, script: str) -> list[str]:
    return cfs.exec(c, "sh", "-c", script).stdout.split()


def inside_then_python(cfs: Mounted, c: str, first: str, program: str) -> list[str]:
    """Inside ``c``, in one shell: ``first``, then (if it worked) ``program`` in Python;
    nothing of containerfs is read in between."""
    return inside(cfs, c, f"{first} && {PYTHON} -c '{program}'")


def count_ipcmk(flag: str, times: int) -> str:
    """Shell: how many of ``times`` ``ipcmk`` calls succeed."""
    return (
        f"n=0; for i in $(seq {times}); do ipcmk {flag} >/dev/null 2>&1 && n=$((n+1)); done;"
        " echo $n"
    )


@pytest.mark.parametrize("layout", LAYOUTS)
def test_shm_mni_holds_with_no_read_in_between(cfs: Mounted, layout: str) -> None:
    c = container(cfs, "v", layout)
    cfs.sh(f"echo 4 > {c}/ipc.shm_mni")
    out = inside(
        cfs,
        c,
        "echo 100 > /proc/sys/kernel/shmmni && cat /proc/sys/kernel/shmmni; "
        "stat -f -c %T /proc/sys/kernel/shmmni; " + count_ipcmk("-M 1024", 6),
    )
    # it reads back its own value, from containerfs, and the kernel stops it at 4
    assert out == ["100", "fuseblk", "4"] or out == ["100", "fuse", "4"], out
    assert cfs.read(f"{c}/ipc.shm_mni.effective") == "4\n"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_msg_mni_holds_with_no_read_in_between(cfs: Mounted, layout: str) -> None:
    c = container(cfs, "q", layout)
    cfs.sh(f"echo 3 > {c}/ipc.msg_mni")
    out = inside(cfs, c, "echo 1000 > /proc/sys/kernel/msgmni; " + count_ipcmk("-Q", 5))
    assert out == ["3"]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(
    ("knob", "limit", "sysctl", "own", "flag", "tries", "made"),
    [
        ("ipc.sem", "250 32000 32 2", "kernel/sem", "250 32000 32 128", "-S 1", 3, 2),
        ("ipc.shm_max", "4096", "kernel/shmmax", "1000000", "-M 8192", 2, 0),
    ],
)
def test_more_ipc_knobs_hold_with_no_read_in_between(
    cfs: Mounted,
    layout: str,
    knob: str,
    limit: str,
    sysctl: str,
    own: str,
    flag: str,
    tries: int,
    made: int,
) -> None:
    c = container(cfs, "k", layout)
    cfs.sh(f"echo '{limit}' > {c}/{knob}")
    out = inside(cfs, c, f"echo '{own}' > /proc/sys/{sysctl}; " + count_ipcmk(flag, tries))
    assert out == [str(made)]


@needs_python
@pytest.mark.parametrize("layout", LAYOUTS)
def test_port_range_holds_with_no_read_in_between(cfs: Mounted, layout: str) -> None:
    c = container(cfs, "p", layout)
    cfs.sh(f"echo '40000 40100' > {c}/net.ip_local_port_range")
    # 20 sockets bound to port 0: by chance all in the range 1 time in ~10^60
    script = textwrap.dedent(
        """
        import socket
        socks = [socket.socket() for _ in range(20)]
        for s in socks:
            s.bind(("", 0))
        print(" ".join(str(s.getsockname()[1]) for s in socks))
        """
    )
    out = inside_then_python(
        cfs, c, "echo '30000 60000' > /proc/sys/net/ipv4/ip_local_port_range", script
    )
    ports = [int(p) for p in out]
    assert len(ports) == 20 and all(40000 <= p <= 40100 for p in ports), ports


@needs_python
@pytest.mark.parametrize("layout", LAYOUTS)
def test_somaxconn_holds_with_no_read_in_between(cfs: Mounted, layout: str) -> None:
    c = container(cfs, "s", layout)
    cfs.sh(f"echo 100 > {c}/net.somaxconn")
    # the kernel clamps listen()'s backlog to somaxconn; `ss` shows it as Send-Q
    out = inside_then_python(
        cfs, c, "echo 4096 > /proc/sys/net/core/somaxconn && ip link set lo up", LISTEN_BACKLOG
    )
    assert out == ["100"]


FORWARDING = "/proc/sys/net/ipv4/conf/all/forwarding"  # the kernel's other name for it


@pytest.mark.parametrize("layout", LAYOUTS)
def test_ip_forward_zero_holds_with_no_read_in_between(cfs: Mounted, layout: str) -> None:
    c = container(cfs, "f", layout)
    cfs.sh(f"echo 0 > {c}/net.ip_forward")
    # the container turns forwarding on and reads its own value back; the kernel
    # (seen through its other file, not bound) keeps forwarding off
    out = inside(
        cfs,
        c,
        f"echo 1 > /proc/sys/net/ipv4/ip_forward; cat /proc/sys/net/ipv4/ip_forward {FORWARDING}",
    )
    assert out == ["1", "0"], out
    assert [cfs.read(f"{c}/net.ip_forward{v}") for v in ("", ".internal", ".effective")] == [
        "0\n",
        "1\n",
        "0\n",
    ]
    # without the parent's 0 (max, or 1) the container's own writes take effect
    for limit in ("max", "1"):
        cfs.sh(f"echo {limit} > {c}/net.ip_forward")
        out = inside(
            cfs,
            c,
            f"echo 0 > /proc/sys/net/ipv4/ip_forward; cat {FORWARDING}; "
            f"echo 1 > /proc/sys/net/ipv4/ip_forward; cat {FORWARDING}",
        )
        assert out == ["0", "1"], (limit, out)


@needs_python
@pytest.mark.skipif(not pid_max_per_namespace(), reason="kernel.pid_max is not per pid namespace")
@pytest.mark.parametrize("layout", LAYOUTS)
def test_pid_max_holds_with_no_read_in_between(cfs: Mounted, layout: str) -> None:
    c = container(cfs, "m", layout)
    cfs.sh(f"echo 310 > {c}/pid.max")
    # pids of a new pid namespace count up from 1 (the holder): the kernel
    # refuses a fork once the next pid would reach pid_max
    out = inside_then_python(
        cfs,
        c,
        "echo 4194304 > /proc/sys/kernel/pid_max && cat /proc/sys/kernel/pid_max",
        FORK_UNTIL_REFUSED,
    )
    assert out == ["4194304", "309", "EAGAIN"], out


def test_root_inside_a_user_namespace_cannot_unbind_or_bypass(cfs: Mounted) -> None:
    c = container(cfs, "u", "userns")
    cfs.sh(f"echo 4 > {c}/ipc.shm_mni")
    out = inside(
        cfs,
        c,
        # root inside may mount in its own mount namespace (a tmpfs: 0) ...
        "mount -t tmpfs t /mnt && umount /mnt; echo $?; "
        # ... but each way past the bound file fails (0 would be: let through)
        "umount /proc/sys/kernel/shmmni 2>/dev/null; echo $?; "
        "umount -l /proc/sys/kernel/shmmni 2>/dev/null; echo $?; "
        "umount /proc/sys/kernel/pid_max 2>/dev/null; echo $?; "
        "umount /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null; echo $?; "
        "mount -t proc proc /mnt 2>/dev/null; echo $?; "  # a fresh proc, nothing over it
        "mount --bind /proc /mnt 2>/dev/null; echo $?; "  # a copy without the binds
        "mount -t proc proc /proc 2>/dev/null; echo $?; "
        "echo 100 > /proc/sys/kernel/shmmni; " + count_ipcmk("-M 1024", 6),
    )
    assert out[0] == "0", out
    assert [x != "0" for x in out[1:8]] == [True] * 7, out
    assert out[8] == "4", out


def test_parent_writes_after_the_id_maps_take_effect(cfs: Mounted) -> None:
    c = container(cfs, "w", "userns")
    # the maps make the namespace's root host uid 100000: the holder writes as it
    cfs.sh(f"echo 2 > {c}/ipc.shm_mni && echo 1000 > {c}/ipc.msg_mni")
    assert cfs.exec(c, "cat", "/proc/sys/kernel/shmmni").stdout == "4096\n"  # its own view
    assert inside(cfs, c, count_ipcmk("-M 1024", 3)) == ["2"]
    # a value the kernel refuses: refused, logged, nothing changed
    bad = cfs.sh(f"echo 99999999 > {c}/ipc.shm_mni", check=False)
    assert bad.returncode != 0 and "Invalid argument" in bad.stderr
    assert "w/ipc.shm_mni <- '99999999': refused" in cfs.log.read_text()
    assert cfs.read(f"{c}/ipc.shm_mni.effective") == "2\n"
    # the holder, root of the user namespace now, keeps its capabilities there
    cfs.sh(f"echo 0 > {c}/user.max_net_namespaces")
    refused = cfs.exec(c, "unshare", "-n", "true", check=False)
    assert refused.returncode != 0 and "No space left" in refused.stderr


@pytest.mark.parametrize("cfs", [("--subtree", "+ipc +uts +pid +net")], indirect=True)
def test_without_its_own_mount_namespace_a_limit_is_refused(cfs: Mounted) -> None:
    cfs.sh("mkdir nm")
    # nothing could keep the container from writing the kernel's file: refused
    r = cfs.sh("echo 4 > nm/ipc.shm_mni", check=False)
    assert r.returncode != 0 and "Operation not supported" in r.stderr
    assert "nm/ipc.shm_mni <- '4': refused" in cfs.log.read_text()
    r = cfs.sh("echo '40000 40100' > nm/net.ip_local_port_range", check=False)
    assert r.returncode != 0 and "Operation not supported" in r.stderr
    assert cfs.read("nm/ipc.shm_mni") == "max\n"
    # no limit, and the container's own value, are fine
    cfs.sh("echo max > nm/ipc.shm_mni && echo 3 > nm/ipc.shm_mni.internal")
    assert cfs.read("nm/ipc.shm_mni.effective") == "3\n"
    assert inside(cfs, "nm", count_ipcmk("-M 1024", 4)) == ["3"]


def test_a_limit_set_before_the_id_maps_holds(cfs: Mounted) -> None:
    cfs.sh("echo +user > container.subtree && mkdir b && echo 4 > b/ipc.shm_mni")
    cfs.sh("echo '0 100000 65536' > b/user.uid_map && echo '0 100000 65536' > b/user.gid_map")
    out = inside(cfs, "b", "id -u; echo 100 > /proc/sys/kernel/shmmni; " + count_ipcmk("-M 1", 6))
    assert out == ["0", "4"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_limits_hold_after_a_daemon_restart(cfs: Mounted, layout: str) -> None:
    c = container(cfs, "r", layout)
    cfs.sh(f"echo 4 > {c}/ipc.shm_mni")
    cfs.stop()
    cfs.start()
    # the old binds are dead (or, locked, still there under the new ones)
    out = inside(
        cfs,
        c,
        "echo 100 > /proc/sys/kernel/shmmni && cat /proc/sys/kernel/shmmni; "
        + count_ipcmk("-M 1024", 6),
    )
    assert out == ["100", "4"]
    cfs.sh(f"echo 5 > {c}/ipc.shm_mni")
    assert inside(cfs, c, count_ipcmk("-M 1024", 2)) == ["1"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_child_made_at_once_shares_its_parents_enforced_views(cfs: Mounted, layout: str) -> None:
    if layout == "userns":
        cfs.sh("echo +user > container.subtree")
    # b made right away (the parent's views are still being bound): it shares a's
    # ipc and mount namespaces, so a's limit holds in b too
    cfs.sh("mkdir a && echo +pid > a/container.subtree && mkdir a/b")
    if layout == "userns":
        cfs.sh("echo '0 100000 65536' > a/user.uid_map && echo '0 100000 65536' > a/user.gid_map")
    cfs.sh("echo 3 > a/ipc.shm_mni")
    out = inside(
        cfs,
        "a/b",
        "echo 100 > /proc/sys/kernel/shmmni; umount /proc/sys/kernel/shmmni 2>/dev/null;"
        " echo $?; " + count_ipcmk("-M 1024", 5),
    )
    assert out[1] == "3", out
    if layout == "userns":
        assert out[0] != "0", out  # locked for root inside
