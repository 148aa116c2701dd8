"""``ip netns`` names of containers that own their network namespace.

Each test acts as an administrator would (mkdir, mv, rmdir, ``ip netns``,
``ip link``, stopping and starting the daemon) and checks with ``ip`` itself
and ``/proc``: the name lists, ``ip netns exec`` lands in the container's
namespace, a veth moved by name shows in the container's ``net.interfaces``.
Every daemon has a prefix of its own (``conftest.netns_prefix``); its names,
veths and anything ``ip netns add`` made are removed after the test, also when
it fails.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import TIME_SCALE, Mounted, mounted, netns_prefix, remove_netns_names, wait_for
from .test_core import gone, listed
from .test_lifecycle import background, netns_in

pytestmark = pytest.mark.root


def prefix(m: Mounted) -> str:
    return netns_prefix(m.state)


def names(m: Mounted) -> set[str]:
    """The names ``ip netns list`` shows of this daemon's prefix."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    found = {line.split()[0] for line in out.stdout.splitlines() if line.strip()}
    return {n for n in found if n.startswith(prefix(m) + ":")}


def net_of(m: Mounted, container: str) -> str:
    state, ino = listed(m, container)["net"]
    assert state == "own", container
    return ino


def ip_netns_exec(name: str, *argv: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", name, *argv], capture_output=True, text=True, check=True
    ).stdout


def reached(name: str) -> str:
    """The inode of the network namespace ``ip netns exec NAME`` runs in."""
    link = ip_netns_exec(name, "readlink", "/proc/self/ns/net").strip()
    assert link.startswith("net:["), link
    return link[5:-1]


def interfaces(m: Mounted, container: str) -> set[str]:
    return {line.split()[0] for line in m.read(f"{container}/net.interfaces").splitlines()}


def bound_anywhere(ino: str) -> list[str]:
    """Mount tables of the host's processes that bind network namespace ``ino``."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            text = Path(f"/proc/{pid}/mountinfo").read_text()
        except OSError:
            continue
        if f"net:[{ino}]" in text:
            found.append(pid)
    return found


@contextlib.contextmanager
def veth() -> Iterator[tuple[str, str]]:
    """A veth pair made on the host (HOST end, PEER end); deleted after, wherever
    the peer went (deleting one end deletes both)."""
    tag = secrets.token_hex(3)
    host, peer = f"cfsh{tag}", f"cfsp{tag}"
    subprocess.run(
        ["ip", "link", "add", host, "type", "veth", "peer", "name", peer],
        check=True,
        capture_output=True,
    )
    try:
        yield host, peer
    finally:
        subprocess.run(["ip", "link", "del", host], check=False, capture_output=True)


def test_ip_netns_lists_the_name_and_exec_reaches_the_container(cfs: Mounted) -> None:
    cfs.sh("mkdir web")
    name = f"{prefix(cfs)}:web"
    assert names(cfs) == {name}
    assert reached(name) == net_of(cfs, "web")
    links = ip_netns_exec(name, "ip", "-o", "link", "show")
    assert {line.split(": ")[1].split("@")[0] for line in links.splitlines()} == interfaces(
        cfs, "web"
    )


def test_a_veth_moved_by_name_shows_in_net_interfaces(cfs: Mounted) -> None:
    cfs.sh("mkdir web")
    with veth() as (host, peer):
        assert peer not in interfaces(cfs, "web")
        subprocess.run(
            ["ip", "link", "set", "dev", peer, "netns", f"{prefix(cfs)}:web"],
            check=True,
            capture_output=True,
        )
        assert peer in interfaces(cfs, "web")
        in_web = cfs.exec("web", "ip", "-o", "link", "show", "dev", peer).stdout
        assert peer in in_web
        assert not Path(f"/sys/class/net/{peer}").exists()  # gone from the host


def test_mv_moves_the_names_and_rmdir_removes_them(cfs: Mounted) -> None:
    p = prefix(cfs)
    cfs.sh("mkdir a && echo +net > a/container.subtree && mkdir a/b a/c")
    b = net_of(cfs, "a/b")
    cfs.sh("echo -net > container.subtree && mkdir shares")  # owns no net namespace
    assert names(cfs) == {f"{p}:a", f"{p}:a:b", f"{p}:a:c"}
    cfs.sh("mv a z")
    assert names(cfs) == {f"{p}:z", f"{p}:z:b", f"{p}:z:c"}
    assert reached(f"{p}:z:b") == b
    cfs.sh("rmdir z/b")
    assert names(cfs) == {f"{p}:z", f"{p}:z:c"}
    # Nothing keeps b's namespace: not the host's /run/netns, and not a copy of
    # its name in the mount namespace of c, made after it.
    assert bound_anywhere(b) == []
    cfs.sh("rmdir z/c z shares")
    assert names(cfs) == set()


def test_a_name_that_needs_escaping_round_trips(cfs: Mounted) -> None:
    p = prefix(cfs)
    cfs.sh("mkdir 'x:y%z'")
    assert names(cfs) == {f"{p}:x%3Ay%25z"}
    assert reached(f"{p}:x%3Ay%25z") == net_of(cfs, "x:y%z")
    cfs.sh("mv 'x:y%z' 'p%3A'")
    assert names(cfs) == {f"{p}:p%253A"}
    assert reached(f"{p}:p%253A") == net_of(cfs, "p%3A")
    cfs.sh("rmdir 'p%3A'")
    assert names(cfs) == set()


def test_a_restart_keeps_the_names_and_cleans_up_those_of_gone_containers(cfs: Mounted) -> None:
    p = prefix(cfs)
    cfs.sh("mkdir a b c")
    nets = {c: net_of(cfs, c) for c in "abc"}
    holder_b = int(cfs.read("b/container.init"))
    assert cfs.stop(signal.SIGTERM) == 0
    assert names(cfs) == {f"{p}:a", f"{p}:b", f"{p}:c"}  # they stay with the containers
    # While no daemon runs: b's holder dies (b is dropped at the next start), c's
    # name is deleted, and a name of the prefix that no container accounts for
    # appears (as a crash in a mkdir would leave it).
    os.kill(holder_b, signal.SIGKILL)
    wait_for(lambda: gone(holder_b), what="b's holder to die")
    subprocess.run(["ip", "netns", "del", f"{p}:c"], check=True)
    subprocess.run(["ip", "netns", "add", f"{p}:ghost"], check=True)
    cfs.start()
    assert names(cfs) == {f"{p}:a", f"{p}:c"}
    assert reached(f"{p}:a") == nets["a"]
    assert reached(f"{p}:c") == nets["c"]
    assert bound_anywhere(nets["b"]) == []
    # A crash keeps them too; a container made in between gets its name.
    cfs.sh("mkdir d")
    assert cfs.stop(signal.SIGKILL) != 0
    cfs.start()
    assert names(cfs) == {f"{p}:a", f"{p}:c", f"{p}:d"}
    assert reached(f"{p}:d") == net_of(cfs, "d")


def clones(m: Mounted, parent: str) -> list[str]:
    """The clone children of ``parent`` (one going away meanwhile is not one)."""
    found = []
    for d in (m.mnt / parent).iterdir():
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            if (d / "container.origin").read_text() == "clone\n":
                found.append(d.name)
    return sorted(found)


def all_paths(m: Mounted) -> list[str]:
    return [
        str(d.relative_to(m.mnt))
        for d in m.mnt.rglob("*")
        if d.is_dir() and (d / "container.origin").exists()
    ]


def test_two_daemons_do_not_adopt_each_others_names(cfs: Mounted) -> None:
    """A mount namespace copied from the host's (``unshare -m`` in a container that
    shares the host's) holds every daemon's names; the other daemon's must not
    become clones of this one."""
    cfs.sh("echo -mnt > container.subtree && mkdir box")
    with mounted("netns-second") as other:
        try:
            other.sh("mkdir web")
            theirs = f"{prefix(other)}:web"
            assert names(other) == {theirs}
            background(cfs, "box", "exec unshare --mount sleep 300")
            wait_for(lambda: len(clones(cfs, "box")) == 1, timeout=5, what="the mnt clone")
            (clone,) = clones(cfs, "box")
            assert listed(cfs, f"box/{clone}")["mnt"][0] == "own"
            time.sleep(1.5)  # several looks at its mount table, where theirs is
            assert not any(theirs in path for path in all_paths(cfs)), all_paths(cfs)
            assert all_paths(other) == ["web"]
            assert names(cfs) == {f"{prefix(cfs)}:box"}  # neither takes the other's
            assert reached(theirs) == net_of(other, "web")
        finally:
            remove_netns_names(prefix(other))


def test_a_copy_of_our_own_name_does_not_keep_a_clone(cfs: Mounted) -> None:
    """A clone of ours that owns its network namespace gets a name; a later
    ``unshare -m`` copies it. The copy must not count as the clone being kept
    by a bind mount: the clone goes with its task, and its name with it."""
    p = prefix(cfs)
    cfs.sh("echo -mnt > container.subtree && mkdir box")
    net = background(cfs, "box", "exec unshare --net sleep 300")
    wait_for(lambda: len(clones(cfs, "box")) == 1, timeout=5, what="the net clone")
    (netclone,) = clones(cfs, "box")
    wait_for(lambda: f"{p}:box:{netclone}" in names(cfs), what="its name")
    background(cfs, "box", "exec unshare --mount sleep 300")
    wait_for(lambda: len(clones(cfs, "box")) == 2, timeout=5, what="the mnt clone")
    time.sleep(1)  # a few looks at the mnt clone's table, which holds the copy
    net.kill()
    net.wait(timeout=10)
    wait_for(lambda: netclone not in clones(cfs, "box"), timeout=5, what="the net clone to go")
    assert f"{p}:box:{netclone}" not in names(cfs)


def test_ip_netns_add_inside_a_named_container_is_still_a_clone(cfs: Mounted) -> None:
    cfs.sh("mkdir box")
    assert names(cfs) == {f"{prefix(cfs)}:box"}
    with netns_in(cfs, "box") as blue:
        wait_for(lambda: (cfs.mnt / "box" / blue).is_dir(), timeout=5, what="the clone")
        assert cfs.read(f"box/{blue}/container.origin") == "clone\n"
        # it owns its network namespace, so it is named too
        assert names(cfs) == {f"{prefix(cfs)}:box", f"{prefix(cfs)}:box:{blue}"}
        cfs.exec("box", "ip", "netns", "del", blue)
        wait_for(lambda: not (cfs.mnt / "box" / blue).exists(), timeout=5, what="it to go")
    assert names(cfs) == {f"{prefix(cfs)}:box"}


def nsfs_names_in(pid: int) -> list[str]:
    """ip netns names bound in the mount namespace of process ``pid``."""
    lines = Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
    return [
        ln.split()[4] for ln in lines if " nsfs " in ln and ln.split()[4].startswith("/run/netns/")
    ]


def test_a_new_mount_namespace_holds_no_copy_of_the_names(cfs: Mounted) -> None:
    """A container's own mount namespace starts without the host's /run/netns
    names: a user's name on the host is not taken for a namespace of the
    container's (a clone), and no container keeps another's namespace alive."""
    cfs.sh("mkdir web")
    user_name = f"hostns-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", user_name], check=True)
    try:
        cfs.sh("mkdir later && echo +user > container.subtree && mkdir userns")
        for c in ("later", "userns"):
            assert listed(cfs, c)["mnt"][0] == "own"
            assert nsfs_names_in(int(cfs.read(f"{c}/container.init"))) == [], c
        time.sleep(1)  # a few looks of clone discovery
        assert clones(cfs, "later") == [] and clones(cfs, "userns") == []
    finally:
        subprocess.run(["ip", "netns", "del", user_name], check=False)


#: What the shells of the load below do, at random, on overlapping names.
NAMES_LOAD = """
RANDOM={seed}
tops=(a b c d e f g h)
end=$(( $(date +%s%N) + {ns} ))
while [ "$(date +%s%N)" -lt "$end" ]; do
  t=${{tops[RANDOM % 8]}}; u=${{tops[RANDOM % 8]}}
  case $((RANDOM % 4)) in
    0) mkdir "$t" && echo +net > "$t/container.subtree" && mkdir "$t/x" ;;
    1) rmdir "$t/x" "$t" ;;
    2|3) [ -e "$u" ] || mv "$t" "$u" ;;
  esac >/dev/null 2>&1
done
"""


def expected_names(m: Mounted) -> dict[str, str]:
    """Name -> inode each container owning its network namespace must have."""
    out = {}
    for path in all_paths(m):
        state, ino = listed(m, path)["net"]
        if state == "own":
            out[f"{prefix(m)}:{path.replace('/', ':')}"] = ino
    return out


def bound_names(m: Mounted) -> dict[str, str]:
    """Name -> inode of this daemon's names in /run/netns, as ``stat`` shows them."""
    return {n: str(os.stat(f"/run/netns/{n}").st_ino) for n in names(m)}


def run_names_load(m: Mounted, seconds: float, seed: int) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen(
            ["bash", "-c", NAMES_LOAD.format(seed=seed * 10 + i, ns=int(seconds * 1e9))],
            cwd=m.mnt,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(4)
    ]


def test_names_stay_in_step_under_load_and_after_a_crash_in_it(cfs: Mounted) -> None:
    """Four shells make, rename and remove containers at once; then the names are
    exactly the tree's. Again with the daemon killed in the middle of it: the
    next start puts them right (a bind made before the state was saved, a mv
    half done)."""
    # Containers that own a net namespace and nothing else: quick to make.
    cfs.sh("for k in $(cat container.subtree); do echo -$k > container.subtree; done")
    cfs.sh("echo +net > container.subtree")
    for sh in run_names_load(cfs, 4.0 * TIME_SCALE, seed=1):  # enough work when slow
        sh.wait(timeout=60 * TIME_SCALE)
    text = cfs.log.read_text()
    assert text.count("INFO mv ") > 5 and text.count("INFO mkdir ") > 5  # it did work
    assert bound_names(cfs) == expected_names(cfs)
    shells = run_names_load(cfs, 4.0 * TIME_SCALE, seed=2)
    time.sleep(2.0 * TIME_SCALE)
    assert cfs.stop(signal.SIGKILL) == -signal.SIGKILL
    for sh in shells:
        sh.wait(timeout=60 * TIME_SCALE)
    cfs.start()
    assert bound_names(cfs) == expected_names(cfs)
    for path in sorted(all_paths(cfs), key=len, reverse=True):
        cfs.sh(f"rmdir {path}")
    assert names(cfs) == set()
