"""Who ``containerfs exec`` runs a command as: credentials in user-namespaced containers.

The kernel's truth: ``id`` and ``/proc/self/status`` inside, the same process's
``Uid``/``Gid``/``Groups`` lines read from the host (where a user namespace's
IDs show as the host IDs they map to), and the kernel accepting or refusing
what only a capable process may do (setting the hostname).
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from containerfs.kernel.enter import holder_id_maps

from .conftest import CONTAINERFS, Mounted, on_terminal, wait_for

pytestmark = pytest.mark.root

#: A supplementary group the caller has and no container maps.
STRAY_GROUP = 4321


def user_container(m: Mounted, name: str, maps: str | None = "0 100000 65536") -> int:
    """A container with its own user namespace (and every other kind), mapped by
    ``maps`` unless None; its holder's pid."""
    m.sh(f"echo +user > container.subtree && mkdir {name}")
    if maps is not None:
        m.sh(f"echo '{maps}' > {name}/user.uid_map && echo '{maps}' > {name}/user.gid_map")
    return int(m.read(f"{name}/container.init"))


def exec_as(
    m: Mounted, container: str, *argv: str, opts: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """``containerfs exec [OPTS] C -- ARGV`` by a caller with a supplementary group."""
    return subprocess.run(
        [*CONTAINERFS, "exec", *opts, str(m.mnt / container), "--", *argv],
        capture_output=True,
        text=True,
        timeout=30,
        extra_groups=[0, STRAY_GROUP],
    )


def inside(m: Mounted, container: str, *opts: str) -> dict[str, str]:
    """uid, gid, groups and capabilities of a command, as it sees them itself."""
    script = (
        "echo uid=$(id -u) gid=$(id -g) groups=$(id -G | tr ' ' ,);"
        " grep -E '^Cap(Eff|Bnd)' /proc/self/status | tr -d '\\t' | tr : ="
    )
    r = exec_as(m, container, "sh", "-c", script, opts=opts)
    assert r.returncode == 0, r.stderr
    return dict(kv.split("=", 1) for kv in r.stdout.split())


def seen_from_host(m: Mounted, container: str, *opts: str) -> dict[str, list[str]]:
    """Uid, Gid and Groups of a command, read from the host's /proc while it runs."""
    proc = subprocess.Popen(
        [*CONTAINERFS, "exec", *opts, str(m.mnt / container), "--", "sleep", "300"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        extra_groups=[0, STRAY_GROUP],
    )
    m.started.append(proc)
    wait_for(lambda: m.read(f"{container}/tasks") != "", what="the command to be placed")
    pid = int(m.read(f"{container}/tasks").split()[0])
    wait_for(  # placed before it runs: wait until it is sleep, past the switch
        lambda: Path(f"/proc/{pid}/comm").read_text() == "sleep\n", what="the command to run"
    )
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    proc.kill()
    proc.wait()
    wait_for(lambda: m.read(f"{container}/tasks") == "", what="the command to end")
    fields = dict(line.split(":", 1) for line in status)
    return {k: fields[k].split() for k in ("Uid", "Gid", "Groups")}


def test_exec_runs_as_the_containers_root_with_its_capabilities(cfs: Mounted) -> None:
    user_container(cfs, "u")
    me = inside(cfs, "u")
    assert (me["uid"], me["gid"], me["groups"]) == ("0", "0", "0")
    assert int(me["CapEff"], 16) != 0 and me["CapEff"] == me["CapBnd"]
    # what only root of the namespace may do, done by the command
    cfs.exec("u", "hostname", "rooted")
    assert cfs.read("u/uts.hostname") == "rooted\n"
    # the host sees container root as the ID it maps to, without the caller's groups
    host = seen_from_host(cfs, "u")
    assert host == {"Uid": ["100000"] * 4, "Gid": ["100000"] * 4, "Groups": []}


def test_exec_user_picks_other_mapped_ids(cfs: Mounted) -> None:
    user_container(cfs, "u")
    me = inside(cfs, "u", "--user", "1000:1001")
    assert (me["uid"], me["gid"], me["groups"]) == ("1000", "1001", "1001")
    assert int(me["CapEff"], 16) == 0
    refused = exec_as(cfs, "u", "hostname", "nope", opts=("-u", "1000"))
    assert refused.returncode != 0
    assert cfs.read("u/uts.hostname") != "nope\n"
    host = seen_from_host(cfs, "u", "--user", "1000")  # GID defaults to UID
    assert host == {"Uid": ["101000"] * 4, "Gid": ["101000"] * 4, "Groups": []}
    # IDs the maps lack: refused before anything runs
    for opts, what in [(("--user", "70000"), "uid 70000"), (("--user", "0:65536"), "gid 65536")]:
        bad = exec_as(cfs, "u", "true", opts=opts)
        assert bad.returncode == 1, bad.stderr
        assert (
            bad.stderr
            == f"containerfs exec: {what} is not mapped in the container's user namespace\n"
        )
    assert cfs.read("u/tasks") == ""
    # not numbers: a usage error
    for text in ["root", "1000:", "-1", "4294967295"]:
        assert exec_as(cfs, "u", "true", opts=("--user", text)).returncode == 2, text


def test_exec_preserve_credentials_keeps_the_callers(cfs: Mounted) -> None:
    user_container(cfs, "u")
    me = inside(cfs, "u", "--preserve-credentials")
    # host root is not mapped inside: the overflow IDs, no capabilities once it runs
    assert (me["uid"], me["gid"]) == ("65534", "65534")
    assert int(me["CapEff"], 16) == 0
    host = seen_from_host(cfs, "u", "--preserve-credentials")
    assert host["Uid"] == ["0"] * 4 and host["Groups"] == ["0", str(STRAY_GROUP)]
    both = exec_as(cfs, "u", "true", opts=("--preserve-credentials", "--user", "0"))
    assert both.returncode == 2


def test_exec_without_maps_keeps_the_callers_and_refuses_user(cfs: Mounted) -> None:
    user_container(cfs, "u", maps=None)
    # no root to become: the caller's credentials, shown as the overflow IDs
    me = inside(cfs, "u")
    assert (me["uid"], me["gid"]) == ("65534", "65534")
    assert int(me["CapEff"], 16) == 0
    assert seen_from_host(cfs, "u")["Uid"] == ["0"] * 4
    bad = exec_as(cfs, "u", "true", opts=("--user", "0"))
    assert bad.returncode == 1
    assert "uid 0 is not mapped in the container's user namespace" in bad.stderr


def test_exec_drops_groups_where_the_namespace_denies_setgroups(cfs: Mounted) -> None:
    holder = user_container(cfs, "u", maps=None)
    # allowed to the host's root before the gid map is written
    Path(f"/proc/{holder}/setgroups").write_text("deny")
    cfs.sh("echo '0 100000 65536' > u/user.uid_map && echo '0 100000 65536' > u/user.gid_map")
    assert cfs.exec("u", "sh", "-c", "setpriv --groups 5 true", check=False).returncode != 0
    me = inside(cfs, "u")
    assert (me["uid"], me["gid"], me["groups"]) == ("0", "0", "0")
    assert seen_from_host(cfs, "u")["Groups"] == []


def test_exec_user_in_a_container_sharing_the_hosts_user_namespace(cfs: Mounted) -> None:
    cfs.sh("mkdir box")
    # by default the caller's credentials, as ever
    me = inside(cfs, "box")
    assert (me["uid"], me["groups"]) == ("0", f"0,{STRAY_GROUP}")
    assert int(me["CapEff"], 16) != 0
    # --user: host IDs, no groups, no capabilities
    me = inside(cfs, "box", "--user", "1000:1000")
    assert (me["uid"], me["gid"], me["groups"]) == ("1000", "1000", "1000")
    assert int(me["CapEff"], 16) == 0
    host = seen_from_host(cfs, "box", "--user", "1000:1000")
    assert host == {"Uid": ["1000"] * 4, "Gid": ["1000"] * 4, "Groups": []}


#: Run inside as the container's root: take fds 0-19 of process argv[1] with
#: pidfd_getfd (what ptrace allows); prints "took N" or the errors.
GRAB = """
import ctypes, errno, os, sys
libc = ctypes.CDLL(None, use_errno=True)
pidfd = os.pidfd_open(int(sys.argv[1]))
errs = set()
for fd in range(20):
    got = libc.syscall(438, pidfd, fd, 0)
    if got >= 0:
        print("took", fd)
        break
    errs.add(errno.errorcode[ctypes.get_errno()])
else:
    print(" ".join(sorted(errs)))
"""


def test_the_container_cannot_reach_into_the_exec_client(cfs: Mounted) -> None:
    # The client keeps the caller's credentials and its open `tasks` while it
    # waits, inside the container's user namespace, where the command is root
    # with every capability: it must not be able to take the client's fds.
    # (It shares the host's pid namespace, so that it can name the client.)
    cfs.sh("echo '+user -pid' > container.subtree && mkdir u")
    cfs.sh("echo '0 100000 65536' > u/user.uid_map && echo '0 100000 65536' > u/user.gid_map")
    client = cfs.spawn("u", "sleep", "300")
    wait_for(lambda: cfs.read("u/tasks") != "", what="the command to be placed")
    r = cfs.exec("u", "python3", "-c", GRAB, str(client.pid))
    assert r.stdout == "EPERM\n"


def test_an_interactive_shell_runs_as_the_containers_root_on_a_terminal(cfs: Mounted) -> None:
    user_container(cfs, "tty")
    text, status = on_terminal(
        [*CONTAINERFS, "exec", str(cfs.mnt / "tty"), "--", "sh", "-i"],
        b"tty -s && echo on-a-tty; echo me=$(id -u); sleep 0.2; echo done; exit 3\n",
    )
    assert "on-a-tty" in text and "me=0" in text and "done" in text, text
    assert status == 3, text


def test_holder_id_maps_reads_the_containers_maps_only(cfs: Mounted) -> None:
    holder = user_container(cfs, "u", maps=None)
    for name in ("uid_map", "gid_map"):  # two lines, in the one write the kernel takes
        (cfs.mnt / "u" / f"user.{name}").write_text("0 100000 65536\n70000 300000 1\n")
    ino = os.stat(f"/proc/{holder}/ns/user").st_ino
    uid_map, gid_map = holder_id_maps(holder, ino)
    assert uid_map == gid_map == Path(f"/proc/{holder}/uid_map").read_text()
    assert [line.split() for line in uid_map.splitlines()] == [
        ["0", "100000", "65536"],
        ["70000", "300000", "1"],
    ]
    # another user namespace than the container's: the pid no longer names its holder
    with pytest.raises(OSError) as info:
        holder_id_maps(holder, ino + 1)
    assert info.value.errno == errno.ESRCH and "not in the container's user namespace" in str(
        info.value
    )
