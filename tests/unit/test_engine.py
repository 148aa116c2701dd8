"""The state engine on its own: no root, no kernel."""

from __future__ import annotations

import errno

import pytest

from containerfs.engine.catalog import Role, parse_hostname
from containerfs.engine.errors import ContainerError, InvalidInput
from containerfs.engine.kinds import NAMESPACE_NAMES, all_kinds
from containerfs.engine.tree import (
    Engine,
    check_not_internal,
    parse_kill,
    parse_pid,
    parse_release,
    validate_name,
)

CONTROLLERS = ["cpu", "memory", "pids", "hugetlb"]


def make_engine(
    subtree: frozenset[str] = frozenset({"uts", "ipc", "pids"}),
    reserved_cgnames: frozenset[str] = frozenset(),
) -> Engine:
    available: dict[str, str | None] = {k: None for k in NAMESPACE_NAMES + tuple(CONTROLLERS)}
    available["hugetlb"] = "not-delegated"
    controller_files = {
        "pids": {"pids.max": True, "pids.current": False},
        "memory": {"memory.max": True},
        "hugetlb": {"hugetlb.2MB.max": True},
    }
    root_ids = {k: str(4026531830 + i) for i, k in enumerate(NAMESPACE_NAMES)}
    root_ids |= {"pids": "/base", "memory": "/base", "cpu": "/base"}
    return Engine(
        all_kinds(CONTROLLERS),
        available,
        controller_files,
        root_ids,
        subtree,
        reserved_cgnames=reserved_cgnames,
    )


def errno_of(exc: pytest.ExceptionInfo[ContainerError]) -> int:
    return exc.value.errno


def test_subsystems_lists_every_kind_with_its_properties() -> None:
    lines = make_engine().render_subsystems().splitlines()
    assert len(lines) == 8 + len(CONTROLLERS)
    rows = {line.split()[0]: line.split() for line in lines}
    assert rows["ipc"] == ["ipc", "namespace", "migrate", "mkdir,clone", "delete", "yes"]
    assert rows["pid"][2] == rows["time"][2] == rows["user"][2] == "spawn"
    assert rows["pids"] == ["pids", "controller", "migrate", "mkdir", "ignore", "yes"]
    assert rows["hugetlb"][-1] == "no:not-delegated"
    assert all(len(r) == 6 for r in rows.values())


def test_mkdir_owns_parent_subtree_and_shares_the_rest() -> None:
    e = make_engine()
    plan = e.plan_mkdir(e.root, "web")
    assert plan.owned == {"uts", "ipc", "pids"}
    web = e.commit_mkdir(plan, {"uts": "111", "ipc": "222", "pids": "/base/web"})
    lines = dict(line.split(" ", 1) for line in e.render_container_subsystems(web).splitlines())
    assert lines["uts"] == "own 111"
    assert lines["net"] == "shared " + e.root.ids["net"]
    assert lines["pids"] == "own /base/web"
    assert lines["memory"] == "shared /base"
    assert "hugetlb" not in lines  # unavailable kinds are not listed per container
    # a child's own subtree starts empty, as cgroup.subtree_control does
    assert e.render_subtree(web) == "\n"
    inner = e.commit_mkdir(e.plan_mkdir(web, "inner"), {})
    assert inner.owned == frozenset()
    assert inner.owner("uts") is web
    assert inner.instance_id("uts") == "111"
    assert inner.path == ("web", "inner")


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("", errno.EINVAL),
        (".hidden", errno.EINVAL),
        ("a/b", errno.EINVAL),
        ("a\nb", errno.EINVAL),
        ("two words", errno.EINVAL),
        ("tab\tx", errno.EINVAL),
        ("x" * 256, errno.ENAMETOOLONG),
    ],
)
def test_invalid_names(name: str, code: int) -> None:
    with pytest.raises(ContainerError) as exc:
        validate_name(name)
    assert errno_of(exc) == code


def test_mkdir_clashes() -> None:
    e = make_engine()
    e.commit_mkdir(e.plan_mkdir(e.root, "a"), {})
    with pytest.raises(ContainerError) as exc:
        e.plan_mkdir(e.root, "a")
    assert errno_of(exc) == errno.EEXIST
    with pytest.raises(ContainerError) as exc:
        e.plan_mkdir(e.root, "tasks")
    assert errno_of(exc) == errno.EEXIST
    # a name being created is reserved until committed or aborted
    plan = e.plan_mkdir(e.root, "b")
    with pytest.raises(ContainerError):
        e.plan_mkdir(e.root, "b")
    e.abort_mkdir(plan)
    e.plan_mkdir(e.root, "b")


def test_rmdir_rules() -> None:
    e = make_engine()
    a = e.commit_mkdir(e.plan_mkdir(e.root, "a"), {})
    e.commit_mkdir(e.plan_mkdir(a, "b"), {})
    for c, ntasks, code in [(a, 0, errno.EBUSY), (e.root, 0, errno.EPERM)]:
        with pytest.raises(ContainerError) as exc:
            e.check_rmdir(c, ntasks)
        assert errno_of(exc) == code
    b = a.children["b"]
    with pytest.raises(ContainerError) as exc:
        e.check_rmdir(b, 2)
    assert errno_of(exc) == errno.EBUSY
    e.check_rmdir(b, 0)
    e.commit_rmdir(b)
    assert b.removed and not a.children


def test_subtree_writes_are_all_or_nothing() -> None:
    e = make_engine(frozenset())
    e.set_subtree(e.root, "+net +pid")
    assert e.render_subtree(e.root) == "net pid\n"
    e.set_subtree(e.root, "-pid +memory")
    assert e.root.subtree == {"net", "memory"}
    for bad in ["+bogus", "+hugetlb", "net", "+", "", "+uts -uts", "+uts +bogus"]:
        with pytest.raises(ContainerError) as exc:
            e.set_subtree(e.root, bad)
        assert errno_of(exc) == errno.EINVAL
        assert e.root.subtree == {"net", "memory"}


def test_files_and_their_modes() -> None:
    e = make_engine()
    web = e.commit_mkdir(e.plan_mkdir(e.root, "web"), {})
    root_files = e.files(e.root)
    assert root_files["subsystems"].role is Role.SUBSYSTEMS
    # the root's objects belong to the host: shown, not written
    assert not root_files["uts.hostname"].writable
    assert not root_files["pids.max"].writable
    files = e.files(web)
    assert "subsystems" not in files
    assert files["tasks"].writable and files["container.subtree"].writable
    assert not files["container.events"].writable
    assert files["uts.hostname"].writable and files["pids.max"].writable
    assert not files["pids.current"].writable
    assert not files["memory.max"].writable  # shared with the root
    assert "hugetlb.2MB.max" not in files
    with pytest.raises(ContainerError) as exc:
        e.check_knob_write(web, "memory.max")
    assert errno_of(exc) == errno.EACCES
    with pytest.raises(ContainerError) as exc:
        e.check_knob_write(web, "no.such")
    assert errno_of(exc) == errno.ENOENT


def test_enter_moves_migrate_kinds_and_refuses_spawn_kinds() -> None:
    e = make_engine()
    web = e.commit_mkdir(e.plan_mkdir(e.root, "web"), {"uts": "111", "ipc": "222"})
    host = {k: int(v) for k, v in e.root.ids.items() if k in NAMESPACE_NAMES}
    # uts and ipc are `migrate`: a running process can be moved into them
    assert sorted(e.check_enter(web, host)) == ["ipc", "uts"]
    # one already in web's namespaces only moves cgroups
    inside = host | {"uts": 111, "ipc": 222}
    assert e.check_enter(web, inside) == []
    # the root shares nothing: a host process enters it freely
    assert e.check_enter(e.root, host) == []
    # pid is `spawn`: refused, and the error says which kind and what to do instead
    web.owned = web.owned | {"pid", "mnt"}
    web.ids |= {"pid": "333", "mnt": "444"}
    with pytest.raises(ContainerError) as exc:
        e.check_enter(web, host)
    assert errno_of(exc) == errno.EINVAL
    assert "pid (enter=spawn)" in str(exc.value) and "containerfs exec" in str(exc.value)
    # mnt: single-threaded processes only
    no_pid = host | {"pid": 333}
    assert sorted(e.check_enter(web, no_pid)) == ["ipc", "mnt", "uts"]
    with pytest.raises(ContainerError) as exc:
        e.check_enter(web, no_pid, threads=4)
    assert "4 threads" in str(exc.value)


@pytest.mark.parametrize("text", ["", "abc", "1 2", "-5", "0", "99999999", "1.5"])
def test_parse_pid_rejects(text: str) -> None:
    with pytest.raises(ContainerError):
        parse_pid(text)


def test_parse_values() -> None:
    assert parse_pid("42\n") == 42
    assert parse_release("delete\n") == "delete"
    with pytest.raises(ContainerError):
        parse_release("forever")
    assert parse_hostname("web-1\n") == "web-1"
    for bad in ["", "a b", "x" * 65, "tab\there"]:
        with pytest.raises(ContainerError):
            parse_hostname(bad)


def test_the_daemons_own_processes_are_never_tasks() -> None:
    internal = {10: "the namespace holder of web", 20: "the containerfs daemon"}
    check_not_internal(11, internal)
    for pid in internal:
        with pytest.raises(ContainerError) as exc:
            check_not_internal(pid, internal)
        assert errno_of(exc) == errno.EINVAL
        assert internal[pid] in str(exc.value)
    with pytest.raises(ContainerError) as exc:  # init: refused by name, not by chance
        check_not_internal(1, {})
    assert errno_of(exc) == errno.EINVAL and "init" in str(exc.value)


def test_mkdir_under_a_removed_parent_is_refused() -> None:
    e = make_engine()
    a = e.commit_mkdir(e.plan_mkdir(e.root, "a"), {})
    e.commit_rmdir(a)
    with pytest.raises(ContainerError) as exc:
        e.plan_mkdir(a, "late")
    assert errno_of(exc) == errno.ENOENT


def test_container_kill_is_in_every_container_but_the_root_and_takes_only_1() -> None:
    e = make_engine()
    c = e.commit_mkdir(e.plan_mkdir(e.root, "web"), {"uts": "9", "ipc": "8", "pids": "/b/web"})
    assert "container.kill" not in e.files(e.root)
    assert e.files(c)["container.kill"].writable
    parse_kill("1\n")
    for bad in ("0", "", "1 1", "yes", "11"):
        with pytest.raises(InvalidInput):
            parse_kill(bad)


def test_a_top_container_named_supervisor_keeps_out_of_systemds_leaf() -> None:
    """``supervisor`` beside the containers is where systemd starts the daemon
    (DelegateSubgroup=): a container by that name gets another cgroup directory
    at the top, the plain one further down. Only a leaf the unit names is kept free."""
    assert make_engine().plan_mkdir(make_engine().root, "supervisor").cgname == "supervisor"
    e = make_engine(reserved_cgnames=frozenset({"supervisor"}))
    top = e.commit_mkdir(e.plan_mkdir(e.root, "supervisor"), {})
    assert top.name == "supervisor" and top.cgname == "supervisor~2"
    below = e.commit_mkdir(e.plan_mkdir(top, "supervisor"), {})
    assert (below.cgname or below.name) == "supervisor"
