"""Where a new holder starts and sits: placed by the kernel at fork, not moved by pid.

A daemon is played by a script started inside the test's own cgroup subtree
(``own_subtree``): it discovers its cgroups there, makes a container's cgroup
directories and starts a holder owning a cgroup namespace through
``Kernel.spawn_holder``, with every move by pid (``CgroupBackend.move``) made
to fail. The checks read the kernel's answers: ``/proc/HOLDER/cgroup`` (the
holder sits in the holders' cgroups, not the container's) and
``/proc/self/cgroup`` of a process that joins the holder's cgroup namespace
(its root is the container's cgroups); and that a start failing half-way
leaves the container's cgroups empty at once (they can be removed). The
subtree's teardown kills the holders it finds there.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cgtree import OwnSubtree, cgroups_available, own_subtree
from tests.integration.conftest import PIN, holder_skip_reason

_why_not = cgroups_available() or holder_skip_reason()
pytestmark = [pytest.mark.root, pytest.mark.skipif(_why_not is not None, reason=_why_not or "")]

REPO = Path(__file__).resolve().parents[2]

# The "daemon": start a holder of a container "a" owning uts and cgroup (and
# the v1 pids cgroup when there is one), with moves by pid refused unless
# FALLBACK asks for the kernel to refuse clone3 into a cgroup instead.
SCRIPT = textwrap.dedent(
    """
    import errno, json, os, sys
    from containerfs.kernel import holder_start
    from containerfs.kernel.cgroups import CgroupBackend
    from containerfs.kernel.system import Kernel

    fallback = sys.argv[2] == "fallback"
    b = CgroupBackend.discover()
    b.setup()
    owned = frozenset(k for k in ("pids",) if b.kinds().get(k) is None)
    b.create(("a",), owned)
    moves = []
    real_move = b.move

    def move(pid, dirs):
        moves.append([str(d) for d in dirs])
        if not fallback:
            raise AssertionError("a holder was moved by pid")
        real_move(pid, dirs)

    b.move = move
    real_spawn = holder_start.spawn_holder

    def spawn(**kw):
        if fallback and kw["cgroup_fds"]:  # as a kernel before 5.7 answers clone3
            raise holder_start.CloneIntoRefused(errno.ENOSYS, "no clone3 here")
        return real_spawn(**kw)

    holder_start.spawn_holder = spawn
    k = Kernel(b, sys.argv[1], "/nonexistent-containerfs-mount")
    root = b.placement(("a",), lambda kind: ("a",) if kind in owned else (), leaf=False)
    if sys.argv[2] == "deadparent":  # a parent gone: the pin fails joining it
        parent = k.spawn_holder(None, frozenset({"uts"}), {}, None)
        parent.kill()
        try:
            k.spawn_holder(parent, frozenset({"uts", "cgroup"}), {}, root)
        except OSError as exc:
            b.remove(("a",))  # empty at once: the helper is gone too
            print(json.dumps({"errno": exc.errno, "moves": moves}))
            sys.exit(0)
        finally:
            parent.close()
        sys.exit("the pin joined a dead parent")
    h = k.spawn_holder(None, frozenset({"uts", "cgroup"}), {}, root)
    again = k.clone_into_cgroup
    print(json.dumps({
        "pid": h.pid,
        "root": [str(d) for d in root],
        "pins": [str(d) for d in b.pins_placement()],
        "hierarchies": [
            {"mount": str(x.mount), "version": x.version, "controllers": sorted(x.controllers)}
            for x in b.hierarchies
        ],
        "moves": moves,
        "clone_into_again": again,
    }))
    h.close()
    """
)


@pytest.fixture
def tree(request: pytest.FixtureRequest) -> Iterator[OwnSubtree]:
    with own_subtree(request.node.name.removeprefix("test_")[:24]) as t:
        yield t


def start(tree: OwnSubtree, how: str) -> dict[str, object]:
    child = tree.spawn(
        [sys.executable, "-c", SCRIPT, str(PIN), how], stdout=subprocess.PIPE, cwd=REPO
    )
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 0
    report: dict[str, object] = json.loads(out)
    return report


def cgroup_lines(text: str, hierarchies: list[dict[str, object]]) -> dict[str, str]:
    """``/proc/PID/cgroup`` text as {mount point of the daemon's hierarchy: path}."""
    out = {}
    for line in text.splitlines():
        hid, ctrls, path = line.split(":", 2)
        for h in hierarchies:
            v2 = h["version"] == 2 and hid == "0"
            if v2 or (h["version"] == 1 and sorted(ctrls.split(",")) == h["controllers"]):
                out[str(h["mount"])] = path
    return out


def check(report: dict[str, object]) -> None:
    pid = report["pid"]
    hierarchies = report["hierarchies"]
    assert isinstance(pid, int) and isinstance(hierarchies, list)

    def rel(d: str) -> tuple[str, str]:
        mount = next(str(h["mount"]) for h in hierarchies if Path(d).is_relative_to(h["mount"]))
        return mount, "/" + str(Path(d).relative_to(mount)).removeprefix(".")

    # The holder sits in the holders' cgroups, as the host sees it.
    holder = cgroup_lines(Path(f"/proc/{pid}/cgroup").read_text(), hierarchies)
    pins = dict(rel(str(d)) for d in report["pins"])  # type: ignore[attr-defined]
    assert holder == pins
    # Its cgroup namespace is rooted at the container's cgroups: a process that
    # joins it sees its own cgroups relative to them.
    joined = subprocess.run(
        ["nsenter", "-C", "-t", str(pid), "cat", "/proc/self/cgroup"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert joined.returncode == 0, joined.stderr
    inside = cgroup_lines(joined.stdout, hierarchies)
    ours = cgroup_lines(Path("/proc/self/cgroup").read_text(), hierarchies)
    roots = dict(rel(str(d)) for d in report["root"])  # type: ignore[attr-defined]
    assert roots.keys() == ours.keys() == inside.keys()
    for mount, root in roots.items():
        up = os.path.relpath(ours[mount], root)  # "..", "../x" when outside the root
        assert inside[mount] == ("/" if up == "." else "/" + up), (mount, root, ours[mount])


def test_holder_is_forked_into_place_with_no_move_by_pid(tree: OwnSubtree) -> None:
    report = start(tree, "clone")
    assert report["moves"] == []
    check(report)


def test_without_clone_into_cgroup_the_holder_is_moved_as_before(tree: OwnSubtree) -> None:
    report = start(tree, "fallback")
    moves = report["moves"]
    assert isinstance(moves, list) and len(moves) == 2  # in for the unshare, back to pins
    assert report["clone_into_again"] is False  # ENOSYS: not asked again
    check(report)


def test_a_failed_start_leaves_the_container_cgroups_empty(tree: OwnSubtree) -> None:
    report = start(tree, "deadparent")
    assert report["errno"] == errno.ESRCH
    assert report["moves"] == []
    # The script removed the container's cgroups right after the failure.
    for d in tree.dirs:
        assert not (d / "a").exists()
