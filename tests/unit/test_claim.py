"""``container.claim``'s rules on their own (engine/lifecycle.py): who may claim,
which containers, which namespaces, and what a claimed (OCI) container is."""

from __future__ import annotations

import errno

import pytest

from containerfs.engine import lifecycle
from containerfs.engine.catalog import Mode
from containerfs.engine.errors import ContainerError
from containerfs.engine.kinds import NAMESPACE_NAMES, Origin, Release
from containerfs.engine.tree import Container, Engine
from tests.unit.test_engine import make_engine

CONTROLLERS = frozenset({"pids", "memory"})


def oci_web(e: Engine) -> tuple[Container, Container]:
    """``oci`` owning only controllers, and ``oci/web`` below it owning the same
    (the root's subtree is as it was after)."""
    subtree, e.root.subtree = e.root.subtree, CONTROLLERS
    oci = e.commit_mkdir(e.plan_mkdir(e.root, "oci"), {})
    e.root.subtree = subtree
    assert oci.owned == CONTROLLERS
    oci.subtree = CONTROLLERS
    web = e.commit_mkdir(e.plan_mkdir(oci, "web"), {})
    assert web.owned == CONTROLLERS
    return oci, web


def root_inode(e: Engine, kind: str) -> int:
    return int(e.root.ids[kind])


def made(e: Engine, kinds: tuple[str, ...]) -> dict[str, int]:
    """A process's namespaces: new ones (inodes 1000+) for ``kinds``, the root's
    (the daemon's) for the rest."""
    return {k: 1000 + i if k in kinds else root_inode(e, k) for i, k in enumerate(NAMESPACE_NAMES)}


def refused(e: Engine, c: Container, inodes: dict[str, int], anc: dict[str, list[int]]) -> int:
    with pytest.raises(ContainerError) as exc:
        lifecycle.plan_claim(e, c, inodes, anc)
    return exc.value.errno


def test_a_claim_owns_what_differs_from_the_parent() -> None:
    e = make_engine()
    _, web = oci_web(e)
    inodes = made(e, ("ipc", "uts", "net", "pid", "mnt"))
    plan = lifecycle.plan_claim(e, web, inodes, {"pid": [root_inode(e, "pid")]})
    assert plan == {k: str(inodes[k]) for k in ("ipc", "uts", "net", "pid", "mnt")}
    version = e.version
    before = e.files(web)["uts.hostname"]
    assert not before.writable
    lifecycle.commit_claim(e, web, plan)
    assert web.origin == Origin.OCI
    assert web.owned == CONTROLLERS | set(plan)
    assert all(web.instance_id(k) == v for k, v in plan.items())
    assert web.instance_id("user") == e.root.ids["user"]  # still shared
    assert e.version > version  # what the tree derives is made again
    assert e.files(web)["uts.hostname"].writable  # its files are laid out anew
    assert e.views_enforced(web)  # its own mount namespace: the views are bound


def test_only_root_may_claim() -> None:
    lifecycle.check_claim_writer(0)
    with pytest.raises(ContainerError) as exc:
        lifecycle.check_claim_writer(1000)
    assert exc.value.errno == errno.EPERM


def test_the_claim_file_is_roots_and_write_only() -> None:
    e = make_engine()
    _, web = oci_web(e)
    spec = e.files(web)["container.claim"]
    assert spec.writable and spec.entry.mode is Mode.WRITE_ONLY
    assert e.file_owner(web, spec) == (0, 0)
    e.chown(web, 1000, 1000)  # delegated: still root's
    assert e.file_owner(web, spec) == (0, 0)
    assert "container.claim" not in e.files(e.root)


def test_only_a_mkdir_container_owning_no_namespace_and_no_child_is_claimed() -> None:
    e = make_engine()
    oci, web = oci_web(e)
    inodes = made(e, ("ipc",))
    assert refused(e, e.root, inodes, {}) == errno.EPERM
    # ``ns`` owns uts and ipc (the default subtree): it has namespaces already.
    ns = e.commit_mkdir(e.plan_mkdir(e.root, "ns"), {"uts": "77", "ipc": "78"})
    assert refused(e, ns, inodes, {}) == errno.EBUSY
    kid = e.commit_mkdir(e.plan_mkdir(web, "kid"), {})
    assert refused(e, web, inodes, {}) == errno.EBUSY  # has a child
    e.commit_rmdir(kid)
    lifecycle.commit_claim(e, web, lifecycle.plan_claim(e, web, inodes, {}))
    assert refused(e, web, inodes, {}) == errno.EBUSY  # claimed already
    clone = e.commit_mkdir(e.plan_mkdir(oci, "found"), {}, Origin.CLONE)
    assert refused(e, clone, inodes, {}) == errno.EBUSY  # found by discovery


def test_namespaces_of_another_container_are_not_claimed() -> None:
    e = make_engine()
    _, web = oci_web(e)
    other = e.commit_mkdir(e.plan_mkdir(e.root, "other"), {"uts": "555", "ipc": "556"})
    assert other.owned >= {"uts", "ipc"}
    inodes = made(e, ("net",)) | {"ipc": 556}  # joined other's ipc namespace
    assert refused(e, web, inodes, {}) == errno.EINVAL
    assert web.origin == Origin.MKDIR and not web.owned - CONTROLLERS


def test_a_pid_or_user_namespace_must_be_below_the_parents() -> None:
    e = make_engine()
    _, web = oci_web(e)
    for kind in ("pid", "user"):
        inodes = made(e, (kind,))
        # Not below the container's (the root's): elsewhere in the kernel's tree.
        assert refused(e, web, inodes, {kind: [12345]}) == errno.EINVAL
        assert refused(e, web, inodes, {}) == errno.EINVAL
        # A grandchild of it is fine.
        plan = lifecycle.plan_claim(e, web, inodes, {kind: [999, root_inode(e, kind)]})
        assert plan == {kind: str(inodes[kind])}
    # Kinds that do not nest need no ancestry.
    assert lifecycle.plan_claim(e, web, made(e, ("net",)), {}) == {"net": "1002"}


def test_a_parent_owning_namespaces_is_named_in_the_refusal() -> None:
    """runc runs in the host's namespaces: below a parent that owns some, its init is
    in the root's where the container shares the parent's, which no claim can mend."""
    e = make_engine()
    parent = e.commit_mkdir(e.plan_mkdir(e.root, "p"), {"uts": "555", "ipc": "556"})
    parent.subtree = CONTROLLERS
    web = e.commit_mkdir(e.plan_mkdir(parent, "web"), {})
    inodes = made(e, ("net", "mnt"))  # uts and ipc: the root's, as runc's own
    with pytest.raises(ContainerError) as exc:
        lifecycle.plan_claim(e, web, inodes, {})
    assert exc.value.errno == errno.EINVAL
    assert "parent must own no namespace kind" in exc.value.message


def test_a_process_in_the_parents_namespaces_claims_nothing_new() -> None:
    e = make_engine()
    _, web = oci_web(e)
    assert lifecycle.plan_claim(e, web, made(e, ()), {}) == {}


def test_an_oci_container_is_never_released_by_a_policy() -> None:
    e = make_engine()
    _, web = oci_web(e)
    lifecycle.commit_claim(e, web, lifecycle.plan_claim(e, web, made(e, ("ipc",)), {}))
    lifecycle.observe_populated(web, True)
    lifecycle.observe_populated(web, False)  # its init exited
    assert lifecycle.take_release(web) is None
    assert web.released == 0
    with pytest.raises(ContainerError) as exc:
        e.set_release(web, "delete")
    assert exc.value.errno == errno.EINVAL
    assert web.release == Release.IGNORE


def test_the_origin_survives_a_save_and_a_restore() -> None:
    e = make_engine()
    _, web = oci_web(e)
    lifecycle.commit_claim(e, web, lifecycle.plan_claim(e, web, made(e, ("net",)), {}))
    records = [lifecycle.record(c, None) for c in e.root.walk()]
    e2 = make_engine()
    for rec in records:
        lifecycle.restore(e2, rec)
    back = e2.lookup(("oci", "web"))
    assert back.origin == Origin.OCI and back.ids["net"] == web.ids["net"]


def test_a_claimed_containers_controller_settings_are_never_page_cached() -> None:
    """runc writes an OCI container's cgroup settings itself (``runc update``): a read
    right after ``podman update`` must ask the kernel, not the page cache."""
    e = make_engine()
    _, web = oci_web(e)
    inodes = made(e, ("ipc", "uts", "net", "pid", "mnt"))
    assert e.page_cached(web, e.files(web)["pids.max"])  # a mkdir container's limit
    plan = lifecycle.plan_claim(e, web, inodes, {"pid": [root_inode(e, "pid")]})
    lifecycle.commit_claim(e, web, plan)
    files = e.files(web)
    assert not e.page_cached(web, files["pids.max"])
    assert not e.page_cached(web, files["memory.max"])
    assert e.page_cached(web, files["container.subtree"])  # changed through containerfs only
