"""The OCI front end without root: runc's command line, the bundle rewrite, errors
as runc gives them, and ``create``/``delete``/``state`` against a fake runc and a
fake tree (the claim is a recorded write here; tests/integration/test_oci.py runs
the real ones)."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from containerfs.oci import args, bundle, frontend, log, tree

# -- the command line --------------------------------------------------------------


def test_global_flags_as_go_parses_them() -> None:
    p = args.parse(["--log-format=json", "--log", "/x/oci-log", "create", "--bundle", "B", "ID"])
    assert p.globals == {"log-format": "json", "log": "/x/oci-log"}
    assert p.command == "create"
    assert p.rest == ["--bundle", "B", "ID"]
    p = args.parse(["-root", "/r", "--systemd-cgroup", "--debug=false", "kill", "ID", "9"])
    assert p.globals == {"root": "/r", "systemd-cgroup": True, "debug": False}
    assert (p.command, p.rest) == ("kill", ["ID", "9"])
    # a value is the next word even when it starts with a dash
    assert args.parse(["--log", "-weird", "state", "x"]).globals == {"log": "-weird"}
    # the last of a repeated flag wins (a wrapper's --root, then the caller's)
    assert args.parse(["--root", "/a", "--root=/b", "list"]).globals["root"] == "/b"


def test_bad_command_lines_are_refused_as_runc_refuses_them() -> None:
    with pytest.raises(args.UsageError, match="flag provided but not defined: -bogus"):
        args.parse(["--bogus", "state", "x"])
    with pytest.raises(args.UsageError, match="flag needs an argument: -root"):
        args.parse(["--root"])
    with pytest.raises(args.UsageError, match="invalid boolean value"):
        args.parse(["--debug=maybe", "list"])
    with pytest.raises(args.UsageError, match="requires exactly 1 argument"):
        args.container_id("state", [])
    with pytest.raises(args.UsageError, match="requires exactly 1 argument"):
        args.container_id("delete", ["a", "b"])


def test_command_flags_may_follow_the_id_until_a_double_dash() -> None:
    flags, pos = args.parse_command("delete", ["ID", "--force"])
    assert flags == {"force": True} and pos == ["ID"]
    flags, pos = args.parse_command("delete", ["-f", "--", "--force"])
    assert flags == {"force": True} and pos == ["--force"]
    flags, pos = args.parse_command(
        "create",
        ["--bundle", "/b", "--pid-file=/p", "--console-socket", "/s", "--no-pivot",
         "--preserve-fds", "2", "ID"],
    )  # fmt: skip
    assert flags == {
        "bundle": "/b",
        "pid-file": "/p",
        "console-socket": "/s",
        "no-pivot": True,
        "preserve-fds": "2",
    }
    assert pos == ["ID"]
    assert args.parse_command("create", ["-b", "/b", "ID"])[0] == {"bundle": "/b"}


def test_runc_gets_the_callers_globals_but_ours_and_systemd_cgroup() -> None:
    values = args.parse(
        ["--root", "/r", "--log=/l", "--log-format", "json", "--systemd-cgroup",
         "--mount", "/m", "--parent", "p", "--debug", "start", "x"]
    ).globals  # fmt: skip
    assert args.global_words(values) == ["--debug", "--log=/l", "--log-format=json", "--root=/r"]


# -- the bundle ------------------------------------------------------------------------

KNOBS = {
    "kernel.shmmni": ("ipc", "ipc.shm_mni"),
    "net.core.somaxconn": ("net", "net.somaxconn"),
    "kernel.pid_max": ("pid", "pid.max"),
}


def _config(**linux: Any) -> dict[str, Any]:
    return {
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs", "readonly": True},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/data", "type": "bind", "source": "data", "options": ["rbind"]},
            {"destination": "/etc/hosts", "type": "none", "source": "hosts", "options": ["bind"]},
            {"destination": "/abs", "type": "bind", "source": "/srv/x", "options": ["bind"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
        ],
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "mount"},
                           {"type": "network", "path": "/run/netns/x"}],
            "cgroupsPath": "/libpod_parent/libpod-abc",
            **linux,
        },
    }  # fmt: skip


def test_rewrite_makes_paths_absolute_and_sets_the_cgroup() -> None:
    original = _config()
    done = bundle.rewrite(original, "/b/x", "/base/oci/ID", KNOBS)
    c = done.config
    assert c["root"] == {"path": "/b/x/rootfs", "readonly": True}
    sources = {m["destination"]: m["source"] for m in c["mounts"]}
    assert sources == {
        "/proc": "proc",  # no path: not a bind mount
        "/data": "/b/x/data",
        "/etc/hosts": "/b/x/hosts",
        "/abs": "/srv/x",
        "/dev": "tmpfs",
    }
    assert c["linux"]["cgroupsPath"] == "/base/oci/ID"
    assert original["root"]["path"] == "rootfs"  # the caller's config is not touched
    assert original["linux"]["cgroupsPath"] == "/libpod_parent/libpod-abc"
    with pytest.raises(bundle.BundleError, match="absolute"):
        bundle.rewrite(original, "/b/x", "base/oci/ID", KNOBS)
    with pytest.raises(bundle.BundleError, match="root.path"):
        bundle.rewrite({"linux": {}}, "/b/x", "/c", KNOBS)


def test_knob_sysctls_of_namespaces_runc_makes_become_views() -> None:
    c = _config(
        sysctl={
            "kernel.shmmni": "4096",
            "kernel/pid_max": " 5000 ",  # runc takes slashes too
            "net.core.somaxconn": "100",  # the network namespace is joined, not made
            "net.ipv4.ping_group_range": "0 0",  # no knob: runc's
        }
    )
    done = bundle.rewrite(c, "/b", "/c", KNOBS)
    assert done.views == {"ipc.shm_mni.internal": "4096", "pid.max.internal": "5000"}
    assert done.config["linux"]["sysctl"] == {
        "net.core.somaxconn": "100",
        "net.ipv4.ping_group_range": "0 0",
    }


def test_a_knob_of_a_shared_namespace_stays_with_runc() -> None:
    c = _config(sysctl={"kernel.shmmni": "4096"})
    c["linux"]["namespaces"] = [{"type": "pid"}, {"type": "mount"}]  # host ipc
    done = bundle.rewrite(c, "/b", "/c", KNOBS)
    assert done.views == {}
    assert done.config["linux"]["sysctl"] == {"kernel.shmmni": "4096"}


def test_the_knob_table_is_the_catalogues() -> None:
    table = bundle.knob_table()
    assert table["kernel.shmmni"] == ("ipc", "ipc.shm_mni")
    assert table["net.ipv4.ip_local_port_range"] == ("net", "net.ip_local_port_range")
    assert "kernel.pid_max" not in bundle.knob_table(frozenset({"ipc.shm_mni.internal"}))


def test_ids_follow_runc_and_containerfs_names() -> None:
    for good in ("abc", "a.b-c_d+e", "0" * 64):
        bundle.check_id(good)
    for bad in ("", "a/b", "a b", ".", "..", ".hidden", "x" * 256, "é"):
        with pytest.raises(bundle.BundleError, match="invalid container ID format"):
            bundle.check_id(bad)


# -- errors ------------------------------------------------------------------------


def test_log_lines_are_logrus_lines() -> None:
    when = "2026-12-06T07:31:53Z"
    assert (
        log.format_line("error", "container does not exist", "json", when)
        == '{"level": "error", "msg": "container does not exist", "time": "2026-12-06T07:31:53Z"}\n'
    )
    assert (
        log.format_line("error", "container does not exist", "text", when)
        == 'time="2026-12-06T07:31:53Z" level=error msg="container does not exist"\n'
    )
    assert log.format_line("error", "plain", "text", when).endswith(" msg=plain\n")


def test_an_error_goes_to_the_log_file_and_bare_to_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "oci-log"
    log.Log(str(path), "json").error("it broke")
    (line,) = path.read_text().splitlines()
    assert json.loads(line)["msg"] == "it broke" and json.loads(line)["level"] == "error"
    assert capsys.readouterr().err == "it broke\n"
    log.Log(None, "text").error("on stderr")
    assert 'level=error msg="on stderr"' in capsys.readouterr().err


# -- the tree's files ----------------------------------------------------------------

SUBSYSTEMS = """\
ipc namespace migrate mkdir,clone delete yes
pid namespace spawn mkdir,clone delete yes
cpu controller migrate mkdir ignore yes
memory controller migrate mkdir ignore yes
hugetlb controller migrate mkdir ignore no:not-delegated
"""


def test_the_cgroup_path_is_one_path_or_refused() -> None:
    assert tree.parse_subsystems(SUBSYSTEMS) == (["ipc", "pid"], ["cpu", "memory"])
    one = tree.parse_container_subsystems(
        "ipc shared 4026531839\ncpu own /b/oci/x\nmemory own /b/oci/x\n"
    )
    assert tree.one_cgroup_path(one, ["cpu", "memory"]) == "/b/oci/x"
    two = tree.parse_container_subsystems("cpu own /oci/x\nmemory own /p/a/oci/x\n")
    with pytest.raises(tree.TreeError, match="not at one path"):
        tree.one_cgroup_path(two, ["cpu", "memory"])
    with pytest.raises(tree.TreeError, match="no cgroup controller"):
        tree.one_cgroup_path(tree.parse_container_subsystems("cpu shared /\n"), ["cpu"])
    with pytest.raises(tree.TreeError, match="--parent"):
        tree.Tree("/m", "../x")


# -- create, state, delete against a fake runc and tree -------------------------------

FAKE_RUNC = """\
#!{python}
import json, os, sys
argv = sys.argv[1:]
with open(os.environ["FAKE_RUNC_CALLS"], "a") as f:
    f.write(json.dumps(argv) + "\\n")
words = [w for w in argv if not w.startswith("--root") and not w.startswith("--log")]
cmd = words[0]
cid = argv[-1]
states = os.environ["FAKE_RUNC_STATES"]
known = os.path.join(states, cid)
if cmd == "create":
    if os.environ.get("FAKE_RUNC_FAIL"):
        for w in argv:
            if w.startswith("--log="):
                open(w[6:], "a").write(json.dumps({{"level": "error", "msg": "runc failed",
                                                   "time": "t"}}) + "\\n")
        sys.stderr.write("runc failed\\n")
        sys.exit(1)
    pid_file = argv[argv.index("--pid-file") + 1]
    open(pid_file, "w").write("4242")
    open(known, "w").write("created")
elif cmd == "state":
    if not os.path.exists(known):
        sys.stderr.write("container does not exist\\n")
        sys.exit(1)
    print(json.dumps({{"ociVersion": "1.0.2", "id": cid, "pid": 4242,
                      "status": open(known).read(), "bundle": "/private/" + cid}}))
elif cmd == "delete":
    if os.path.exists(known):
        os.unlink(known)
"""


class FakeTree:
    """``Tree`` with every write recorded; ``claim`` fails when told to."""

    calls: list[tuple[str, ...]] = []
    claim_fails = False

    def __init__(self, mount: str, parent: str) -> None:
        self.made: set[str] = set()

    def ensure_parent(self) -> None:
        self.calls.append(("ensure_parent",))

    def make(self, cid: str) -> None:
        self.calls.append(("make", cid))

    def cgroups_path(self, cid: str) -> str:
        return f"/base/oci/{cid}"

    def offered(self) -> frozenset[str]:
        return frozenset({"ipc.shm_mni.internal"})

    def claim(self, cid: str, pid: int) -> None:
        self.calls.append(("claim", cid, str(pid)))
        if self.claim_fails:
            raise tree.TreeError(f"claim of the namespaces of pid {pid}: Operation not permitted")

    def write_view(self, cid: str, name: str, value: str) -> None:
        self.calls.append(("view", cid, name, value))

    def kill(self, cid: str) -> None:
        self.calls.append(("kill", cid))

    def remove(self, cid: str) -> None:
        self.calls.append(("remove", cid))


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    runc = tmp_path / "runc"
    runc.write_text(FAKE_RUNC.format(python=sys.executable))
    runc.chmod(runc.stat().st_mode | stat.S_IXUSR)
    (tmp_path / "states").mkdir()
    monkeypatch.setenv("CONTAINERFS_OCI_RUNC", str(runc))
    monkeypatch.setenv("FAKE_RUNC_CALLS", str(tmp_path / "calls"))
    monkeypatch.setenv("FAKE_RUNC_STATES", str(tmp_path / "states"))
    monkeypatch.setattr(frontend, "Tree", FakeTree)
    FakeTree.calls = []
    FakeTree.claim_fails = False
    b = tmp_path / "bundle"
    (b / "rootfs").mkdir(parents=True)
    config = _config(sysctl={"kernel.shmmni": "64", "net.ipv4.ping_group_range": "0 0"})
    (b / "config.json").write_text(json.dumps(config))
    return tmp_path


def _calls(tmp: Path) -> list[list[str]]:
    path = tmp / "calls"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_create_runs_runc_on_the_private_bundle_then_claims(fake: Path) -> None:
    root = fake / "root"
    status = frontend.main(
        ["--root", str(root), "--log-format=json", "--log", str(fake / "oci-log"),
         "--systemd-cgroup", "create", "--bundle", str(fake / "bundle"),
         "--pid-file", str(fake / "pidfile"), "c1"]
    )  # fmt: skip
    assert status == 0
    (call,) = _calls(fake)
    private = f"{root}.containerfs/c1"
    assert call == [
        f"--log={fake}/oci-log", "--log-format=json", f"--root={root}",
        "create", "--bundle", private, "--pid-file", str(fake / "pidfile"), "--", "c1",
    ]  # fmt: skip
    config = json.loads(Path(private, "config.json").read_text())
    assert config["root"]["path"] == f"{fake}/bundle/rootfs"
    assert config["linux"]["cgroupsPath"] == "/base/oci/c1"
    assert config["linux"]["sysctl"] == {"net.ipv4.ping_group_range": "0 0"}
    assert Path(private, "bundle").read_text() == f"{fake}/bundle"
    assert FakeTree.calls == [
        ("ensure_parent",),
        ("make", "c1"),
        ("claim", "c1", "4242"),
        ("view", "c1", "ipc.shm_mni.internal", "64"),
    ]
    assert not (fake / "oci-log").exists()  # nothing said on success


def test_a_failed_claim_leaves_nothing_and_logs_one_line(
    fake: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    FakeTree.claim_fails = True
    root = fake / "root"
    status = frontend.main(
        ["--root", str(root), "--log-format=json", "--log", str(fake / "oci-log"),
         "create", "--bundle", str(fake / "bundle"), "c2"]
    )  # fmt: skip
    assert status == 1
    (line,) = (fake / "oci-log").read_text().splitlines()  # one object: podman reads it whole
    assert "Operation not permitted" in json.loads(line)["msg"]
    assert "Operation not permitted" in capsys.readouterr().err
    assert FakeTree.calls[-2:] == [("kill", "c2"), ("remove", "c2")]
    assert _calls(fake)[-1][-4:] == ["delete", "--force", "--", "c2"]
    assert not os.listdir(fake / "states")  # runc's container is gone
    assert not Path(f"{root}.containerfs/c2").exists()


def test_a_failed_runc_create_leaves_nothing_and_adds_no_line(
    fake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_RUNC_FAIL", "1")
    root = fake / "root"
    status = frontend.main(
        ["--root", str(root), "--log-format=json", "--log", str(fake / "oci-log"),
         "create", "--bundle", str(fake / "bundle"), "c3"]
    )  # fmt: skip
    assert status == 1
    (line,) = (fake / "oci-log").read_text().splitlines()
    assert json.loads(line)["msg"] == "runc failed"
    assert ("claim", "c3", "4242") not in FakeTree.calls
    assert FakeTree.calls[-2:] == [("kill", "c3"), ("remove", "c3")]
    assert not Path(f"{root}.containerfs/c3").exists()


def test_an_existing_id_is_refused_before_anything_is_made(fake: Path) -> None:
    root = fake / "root"
    (root / "c4").mkdir(parents=True)  # runc's state of a container c4
    status = frontend.main(["--root", str(root), "create", "--bundle", str(fake / "bundle"), "c4"])
    assert status == 1
    assert FakeTree.calls == [] and _calls(fake) == []


def test_state_shows_the_callers_bundle(fake: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = fake / "root"
    assert (
        frontend.main(["--root", str(root), "create", "--bundle", str(fake / "bundle"), "c5"]) == 0
    )
    capsys.readouterr()
    assert frontend.main(["--root", str(root), "state", "c5"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["bundle"] == str(fake / "bundle") and st["status"] == "created"


def test_delete_removes_the_tree_first_then_runcs_state(fake: Path) -> None:
    root = fake / "root"
    assert (
        frontend.main(["--root", str(root), "create", "--bundle", str(fake / "bundle"), "c6"]) == 0
    )
    FakeTree.calls = []
    assert frontend.main(["--root", str(root), "delete", "c6"]) == 0
    assert FakeTree.calls == [("kill", "c6"), ("remove", "c6")]
    assert _calls(fake)[-1][-4:] == ["delete", "--force", "--", "c6"]
    assert not Path(f"{root}.containerfs/c6").exists()


def test_delete_of_a_running_container_needs_force(fake: Path) -> None:
    root = fake / "root"
    assert (
        frontend.main(["--root", str(root), "create", "--bundle", str(fake / "bundle"), "c7"]) == 0
    )
    (fake / "states" / "c7").write_text("running")
    FakeTree.calls = []
    assert frontend.main(["--root", str(root), "delete", "c7"]) == 1
    assert FakeTree.calls == []
    assert frontend.main(["--root", str(root), "delete", "c7", "--force"]) == 0
    assert FakeTree.calls == [("kill", "c7"), ("remove", "c7")]


def test_delete_force_of_an_unknown_id_succeeds(fake: Path) -> None:
    root = fake / "root"
    assert frontend.main(["--root", str(root), "delete", "--force", "nope"]) == 0
    assert frontend.main(["--root", str(root), "delete", "nope"]) == 1
    assert FakeTree.calls == []


def test_run_and_checkpoint_are_refused_clearly(
    fake: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert frontend.main(["run", "x"]) == 1
    assert "run is not supported" in capsys.readouterr().err
    assert frontend.main(["checkpoint", "x"]) == 1
    assert _calls(fake) == []


def test_containerfs_oci_is_the_front_end_and_exec_is_untouched(
    fake: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from containerfs import cli

    assert cli.main(["oci", "--root", str(fake / "root"), "delete", "--force", "x"]) == 0
    assert cli.main(["oci", "run", "x"]) == 1
    assert "containerfs oci run is not supported" in capsys.readouterr().err
    parsed = cli.build_parser().parse_args(["exec", "/c", "--", "true"])
    assert (parsed.command, parsed.container, parsed.argv) == ("exec", "/c", ["true"])
