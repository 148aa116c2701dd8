"""Internal and external views of namespace knobs, proven by the kernel refusing.

The parent writes ``ipc.shm_mni`` (its limit); the container writes its own
``/proc/sys/kernel/shmmni`` (its internal view, served by containerfs over the
real file); the kernel holds the tighter of the two, and ``ipcmk`` fails past it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import LISTEN_BACKLOG, Mounted, wait_for

pytestmark = pytest.mark.root


def views(m: Mounted, c: str, knob: str) -> tuple[str, str, str]:
    return (
        m.read(f"{c}/{knob}").strip(),
        m.read(f"{c}/{knob}.internal").strip(),
        m.read(f"{c}/{knob}.effective").strip(),
    )


def inside(m: Mounted, c: str, script: str, check: bool = True) -> str:
    return m.exec(c, "sh", "-c", script, check=check).stdout


def make(m: Mounted, c: str, count: int, flag: str) -> int:
    """How many of ``count`` `ipcmk` calls the kernel allows inside ``c``."""
    out = inside(
        m,
        c,
        f"n=0; for i in $(seq {count}); do ipcmk {flag} >/dev/null 2>&1 && n=$((n+1)); done;"
        " echo $n",
    )
    return int(out)


def test_shm_mni_limit_is_enforced_by_the_kernel(cfs: Mounted) -> None:
    cfs.sh("mkdir c")
    ext, internal, eff = views(cfs, "c", "ipc.shm_mni")
    assert ext == "max" and internal == eff == "4096"  # a new IPC namespace's default
    cfs.sh("echo 4 > c/ipc.shm_mni")
    # the container sets its own value at the usual path, and sees it there
    assert (
        inside(cfs, "c", "echo 100 > /proc/sys/kernel/shmmni; cat /proc/sys/kernel/shmmni")
        == "100\n"
    )
    assert views(cfs, "c", "ipc.shm_mni") == ("4", "100", "4")
    # the kernel refuses a fifth segment
    assert make(cfs, "c", 5, "-M 1024") == 4
    # raising the parent's limit lets it through at once
    cfs.sh("echo 10 > c/ipc.shm_mni")
    assert views(cfs, "c", "ipc.shm_mni") == ("10", "100", "10")
    assert make(cfs, "c", 1, "-M 1024") == 1
    # the container raising its own view above the limit changes nothing effective
    inside(cfs, "c", "echo 1000 > /proc/sys/kernel/shmmni")
    assert views(cfs, "c", "ipc.shm_mni") == ("10", "1000", "10")
    assert make(cfs, "c", 6, "-M 1024") == 5  # 5 made so far, 10 allowed
    # ten made: an eleventh is refused
    assert make(cfs, "c", 1, "-M 1024") == 0
    # lowering the container's own view below the limit takes effect too
    cfs.sh("echo 2 > c/ipc.shm_mni.internal")
    assert views(cfs, "c", "ipc.shm_mni") == ("10", "2", "2")
    assert inside(cfs, "c", "cat /proc/sys/kernel/shmmni") == "2\n"
    cfs.sh("echo max > c/ipc.shm_mni")
    assert views(cfs, "c", "ipc.shm_mni") == ("max", "2", "2")


def test_msg_mni_limit_is_enforced_by_the_kernel(cfs: Mounted) -> None:
    cfs.sh("mkdir q && echo 3 > q/ipc.msg_mni")
    assert make(cfs, "q", 4, "-Q") == 3
    cfs.sh("echo 4 > q/ipc.msg_mni")
    assert make(cfs, "q", 2, "-Q") == 1


def test_somaxconn_caps_the_listen_backlog(cfs: Mounted) -> None:
    cfs.sh("mkdir n && echo 100 > n/net.somaxconn")
    inside(cfs, "n", "echo 4096 > /proc/sys/net/core/somaxconn")
    assert views(cfs, "n", "net.somaxconn") == ("100", "4096", "100")
    # the kernel clamps listen()'s backlog to somaxconn; `ss` shows it as Send-Q
    cfs.exec("n", "ip", "link", "set", "lo", "up")
    assert cfs.exec("n", sys.executable, "-c", LISTEN_BACKLOG).stdout.strip() == "100"


def test_port_range_external_view_narrows_it(cfs: Mounted) -> None:
    cfs.sh("mkdir p && echo '40000 40100' > p/net.ip_local_port_range")
    assert views(cfs, "p", "net.ip_local_port_range")[2] == "40000 40100"
    inside(cfs, "p", "echo '30000 60000' > /proc/sys/net/ipv4/ip_local_port_range")
    assert views(cfs, "p", "net.ip_local_port_range") == (
        "40000 40100",
        "30000 60000",
        "40000 40100",
    )
    bind = "import socket; s = socket.socket(); s.bind(('', 0)); print(s.getsockname()[1])"
    port = cfs.exec("p", sys.executable, "-c", bind).stdout
    assert 40000 <= int(port) <= 40100


def test_bad_values_are_refused_and_change_nothing(cfs: Mounted) -> None:
    cfs.sh("mkdir b && echo 7 > b/ipc.shm_mni && echo '250 32000 32 128' > b/ipc.sem")
    for path, bad in [
        ("b/ipc.shm_mni", "-1"),
        ("b/ipc.shm_mni", "abc"),
        ("b/ipc.shm_mni", "0"),
        ("b/ipc.shm_mni.internal", "99999999"),
        ("b/ipc.sem", "1 2 3"),
        ("b/net.ip_local_port_range", "500 400"),
    ]:
        before = cfs.read(path)
        r = cfs.sh(f"echo '{bad}' > {path}", check=False)
        assert r.returncode != 0 and "Invalid argument" in r.stderr, (path, bad)
        assert cfs.read(path) == before, path
    assert views(cfs, "b", "ipc.sem")[0] == "250 32000 32 128"
    r = cfs.sh("echo 5 > b/ipc.shm_mni.effective", check=False)
    assert r.returncode != 0 and "Permission denied" in r.stderr


def test_shared_kind_shows_the_parents_views_read_only(cfs: Mounted) -> None:
    cfs.sh("mkdir s && echo 6 > s/ipc.shm_mni && mkdir s/child")
    assert views(cfs, "s/child", "ipc.shm_mni") == views(cfs, "s", "ipc.shm_mni")
    r = cfs.sh("echo 5 > s/child/ipc.shm_mni", check=False)
    assert r.returncode != 0 and "Permission denied" in r.stderr
    # the root's are the host's: shown, never written
    assert cfs.read("ipc.shm_mni.internal") == Path("/proc/sys/kernel/shmmni").read_text()
    assert cfs.sh("echo 5 > ipc.shm_mni", check=False).returncode != 0


def test_monitoring_files_show_the_namespace_as_seen_inside(cfs: Mounted) -> None:
    cfs.sh("mkdir i")
    # ipc.usage counts what the container made
    inside(cfs, "i", "ipcmk -M 1024 >/dev/null && ipcmk -M 2048 >/dev/null && ipcmk -Q >/dev/null")
    usage = dict(line.split() for line in cfs.read("i/ipc.usage").splitlines())
    assert usage["shm_segments"] == "2" and usage["shm_bytes"] == "3072"
    assert usage["msg_queues"] == "1" and usage["sem_sets"] == "0"
    host_usage = dict(line.split() for line in cfs.read("ipc.usage").splitlines())
    assert set(host_usage) == set(usage)
    # net.interfaces: the container's own loopback, not the host's devices
    cfs.exec("i", "ip", "link", "set", "lo", "up")
    lines = cfs.read("i/net.interfaces").splitlines()
    assert [line.split()[0] for line in lines] == ["lo"]
    assert lines[0].split()[1] == "up" and "127.0.0.1/8" in lines[0].split()[2]
    # mnt.mounts: the container's table, with its internal views bound over /proc/sys
    mounts = cfs.read("i/mnt.mounts").splitlines()
    assert mounts[0] == f"count {len(mounts) - 1}"
    points = [line.split()[0] for line in mounts[1:]]
    assert "/proc/sys/kernel/shmmni" in points
    assert str(cfs.mnt) not in points  # the daemon's mount is not visible inside
    # pid.count: tasks inside, never the holder
    assert cfs.read("i/pid.count") == "0\n"
    sleeper = cfs.spawn("i", "sleep", "300")
    wait_for(lambda: cfs.read("i/pid.count") == "1\n", what="one process in i's pid namespace")
    sleeper.kill()
    sleeper.wait()
    # cgroupns.root: the container's own cgroups are `/` inside
    roots = [Path(line) for line in cfs.read("i/cgroupns.root").splitlines()]
    assert roots and all(r.name == "i" for r in roots)
    assert {r.parent for r in roots} <= set(cfs.subtree.dirs)


def test_a_view_write_is_the_daemons_own_once_the_holder_gave_the_fd(cfs: Mounted) -> None:
    """After the first write the daemon writes a view's sysctl itself, through the
    fd the holder opened in the container's namespaces (pin.c "f"): with the
    holder stopped, writes and reads of the views still work and reach the
    container's namespaces, never the host's."""
    cfs.sh("mkdir w && echo 100 > w/ipc.shm_mni.internal && echo 90 > w/net.somaxconn.internal")
    holder = int(cfs.read("w/container.init"))
    host = {k: Path(f"/proc/sys/{k}").read_text() for k in ("kernel/shmmni", "net/core/somaxconn")}

    def kernel(kind: str, path: str) -> str:
        argv = ["nsenter", f"--{kind}=/proc/{holder}/ns/{kind}", "cat", f"/proc/sys/{path}"]
        return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()

    os.kill(holder, signal.SIGSTOP)
    try:
        # Through the holder these would wait for it, then fail (ETIMEDOUT).
        cfs.sh("echo 7 > w/ipc.shm_mni && echo 50 > w/net.somaxconn", timeout=3)
        cfs.sh("echo 101 > w/ipc.shm_mni.internal", timeout=3)
        assert views(cfs, "w", "ipc.shm_mni") == ("7", "101", "7")
        assert views(cfs, "w", "net.somaxconn") == ("50", "90", "50")
        assert kernel("ipc", "kernel/shmmni") == "7"
        assert kernel("net", "net/core/somaxconn") == "50"
    finally:
        os.kill(holder, signal.SIGCONT)
    assert {k: Path(f"/proc/sys/{k}").read_text() for k in host} == host
    assert make(cfs, "w", 9, "-M 1024") == 7


def test_a_view_write_survives_a_crash_right_after(cfs: Mounted) -> None:
    """Each view write is journalled (one short line) before it is answered: a
    SIGKILL right after loses none of it."""
    cfs.sh("mkdir k && echo 5 > k/ipc.shm_mni && echo 300 > k/ipc.shm_mni.internal")
    cfs.sh("echo '250 32000 32 64' > k/ipc.sem && echo 6 > k/ipc.shm_mni")
    before = views(cfs, "k", "ipc.shm_mni"), views(cfs, "k", "ipc.sem")
    assert before[0] == ("6", "300", "6")
    assert cfs.stop(signal.SIGKILL) != 0
    cfs.start()
    assert (views(cfs, "k", "ipc.shm_mni"), views(cfs, "k", "ipc.sem")) == before
    assert make(cfs, "k", 8, "-M 1024") == 6


MQ = (
    "import ctypes, os, sys; rt = ctypes.CDLL('librt.so.1', use_errno=True); "
    "fd = rt.mq_open(sys.argv[2].encode(), os.O_CREAT | os.O_RDWR, ctypes.c_uint(0o600), None) "
    "if sys.argv[1] == 'open' else rt.mq_unlink(sys.argv[2].encode()); "
    "sys.exit(0 if fd >= 0 else ctypes.get_errno())"
)


def test_ipc_usage_is_never_stale(cfs: Mounted) -> None:
    """The daemon reads ``ipc.usage`` from fds the holder opened once (pin.c "i"):
    every read, by a new open or again from offset 0 on one held open, shows the
    objects as they are now, System V and POSIX alike, made and removed."""
    cfs.sh("mkdir u")

    def usage() -> dict[str, int]:
        return {
            k: int(v) for k, v in (line.split() for line in cfs.read("u/ipc.usage").splitlines())
        }

    zero = {"shm_segments": 0, "shm_bytes": 0, "msg_queues": 0, "sem_sets": 0, "mq_queues": 0}
    assert usage() == zero  # the first read: the daemon takes the fds here
    with open(cfs.mnt / "u/ipc.usage", "rb") as held:
        assert held.read().decode().split()[1] == "0"
        shmid = inside(cfs, "u", "ipcmk -M 4096 | awk '{print $NF}'").strip()
        held.seek(0)
        assert held.read().decode().split()[:2] == ["shm_segments", "1"]
    assert usage() == zero | {"shm_segments": 1, "shm_bytes": 4096}
    inside(cfs, "u", "ipcmk -Q >/dev/null && ipcmk -S 2 >/dev/null")
    cfs.exec("u", sys.executable, "-c", MQ, "open", "/q1")
    cfs.exec("u", sys.executable, "-c", MQ, "open", "/q2")
    both = {"shm_segments": 1, "shm_bytes": 4096, "msg_queues": 1, "sem_sets": 1, "mq_queues": 2}
    assert usage() == both
    inside(cfs, "u", f"ipcrm -m {shmid}")
    cfs.exec("u", sys.executable, "-c", MQ, "unlink", "/q1")
    assert usage() == both | {"shm_segments": 0, "shm_bytes": 0, "mq_queues": 1}


def ip_routes(m: Mounted, c: str) -> list[str]:
    """The main table's IPv4 unicast routes as `ip route` shows them inside ``c``, as
    ``DESTINATION GATEWAY DEVICE``: the oracle for ``net.routes``."""
    out = []
    for line in inside(m, c, "ip -4 route show table main type unicast").splitlines():
        words = line.split()
        dest = words[0] if words[0] == "default" or "/" in words[0] else words[0] + "/32"
        via = words[words.index("via") + 1] if "via" in words else "-"
        dev = words[words.index("dev") + 1] if "dev" in words else "-"
        out.append(f"{dest} {via} {dev}")
    return out


def test_net_routes_is_the_namespaces_routing_table(cfs: Mounted) -> None:
    cfs.sh("mkdir r")
    assert cfs.read("r/net.routes") == ""  # a new network namespace: lo down, no routes
    inside(
        cfs,
        "r",
        # a kernel without the dummy driver (this one) gets a veth pair with both
        # ends inside the container's namespace: no traffic leaves it either way
        "{ ip link add dummy0 type dummy 2>/dev/null ||"
        " { ip link add dummy0 type veth peer name dummy0p && ip link set dummy0p up; }; } && "
        "ip addr add 10.9.8.1/24 dev dummy0 && ip link set dummy0 up && "
        "ip route add 10.7.0.0/16 via 10.9.8.2",
    )
    lines = cfs.read("r/net.routes").splitlines()
    assert "10.9.8.0/24 - dummy0" in lines and "10.7.0.0/16 10.9.8.2 dummy0" in lines, lines
    assert [ln for ln in lines if ":" not in ln] == ip_routes(cfs, "r")  # IPv4 first, then IPv6
    assert all(len(ln.split()) == 3 for ln in lines)
    assert "10.7.0.0/16 10.9.8.2 dummy0" not in cfs.read("net.routes").splitlines()  # the host's
    inside(cfs, "r", "ip route del 10.7.0.0/16")
    lines = cfs.read("r/net.routes").splitlines()
    assert "10.9.8.0/24 - dummy0" in lines and not any(ln.startswith("10.7.") for ln in lines)
    assert [ln for ln in lines if ":" not in ln] == ip_routes(cfs, "r")
