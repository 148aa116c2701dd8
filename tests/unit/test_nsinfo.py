"""The pure parsing and formatting behind the namespace monitoring files (no root needed).

Samples are real kernel output (6.18) trimmed to a few lines; netlink
messages are packed here field by field from the uapi layouts, so a parser
that misreads an offset fails.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable

import pytest

from containerfs.kernel import nsinfo

# -- ipc.usage -----------------------------------------------------------------

SHM = """\
       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap
 2117404486          0   644                  8192  4242     0      0     0     0     0     0          0          0 1767000000                     0                     0
          0          1   600                   100  4243     0      0     0     0     0     0          0          0 1767000001                     0                     0
"""  # noqa: E501
MSG = """\
       key      msqid perms      cbytes       qnum lspid lrpid   uid   gid  cuid  cgid      stime      rtime      ctime
 1804289383          0   644           0          0     0     0     0     0     0     0          0          0 1767000000
"""  # noqa: E501
SEM_EMPTY = "       key      semid perms      nsems   uid   gid  cuid  cgid      otime      ctime\n"


def test_parse_sysvipc_keys_rows_by_header() -> None:
    rows = nsinfo.parse_sysvipc(SHM)
    assert [r["size"] for r in rows] == ["8192", "100"]
    assert rows[0]["shmid"] == "0" and rows[1]["cpid"] == "4243"
    assert nsinfo.parse_sysvipc(SEM_EMPTY) == []
    assert nsinfo.parse_sysvipc("") == []
    with pytest.raises(ValueError, match="shorter"):
        nsinfo.parse_sysvipc("key shmid size\n1 2\n")


def test_ipc_usage_counts_and_format() -> None:
    usage = nsinfo.ipc_usage_from(SHM, MSG, SEM_EMPTY, 3)
    assert usage == nsinfo.IpcUsage(
        shm_segments=2, shm_bytes=8292, msg_queues=1, sem_sets=0, mq_queues=3
    )
    assert nsinfo.format_ipc_usage(usage) == (
        "shm_segments 2\nshm_bytes 8292\nmsg_queues 1\nsem_sets 0\nmq_queues 3\n"
    )
    empty = nsinfo.ipc_usage_from(SHM.splitlines()[0], MSG.splitlines()[0], SEM_EMPTY, 0)
    text = nsinfo.format_ipc_usage(empty)
    assert [line.split() for line in text.splitlines()] == [
        [key, "0"] for key in nsinfo.IPC_USAGE_KEYS
    ]


# -- net.interfaces ------------------------------------------------------------


def rtattr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def nlmsg(kind: int, payload: bytes, flags: int = 0x2, seq: int = 1) -> bytes:
    length = 16 + len(payload)
    return struct.pack("=IHHII", length, kind, flags, seq, 0) + payload + b"\0" * (-length % 4)


def link_payload(index: int, name: str, flags: int, stats64: tuple[int, int] | None) -> bytes:
    body = struct.pack("=BxHiII", socket.AF_UNSPEC, 772, index, flags, 0)
    body += rtattr(3, name.encode() + b"\0")  # IFLA_IFNAME, odd length: padded
    body += rtattr(4, struct.pack("=I", 65536))  # IFLA_MTU, ignored
    if stats64 is not None:
        rx, tx = stats64
        body += rtattr(23, struct.pack("=24Q", 7, 8, rx, tx, *([0] * 20)))
    return body


def addr_payload(family: int, index: int, prefix: int, local: str | None, address: str) -> bytes:
    body = struct.pack("=BBBBi", family, prefix, 0x80, 0, index)
    body += rtattr(1, socket.inet_pton(family, address))  # IFA_ADDRESS
    if local is not None:
        body += rtattr(2, socket.inet_pton(family, local))  # IFA_LOCAL
    body += rtattr(3, b"d0\0")  # IFA_LABEL, ignored
    return body


def test_split_netlink_and_rtattrs() -> None:
    data = nlmsg(16, link_payload(1, "lo", 0x49, (10, 20))) + nlmsg(3, struct.pack("=i", 0))
    msgs = nsinfo.split_netlink(data)
    assert [(t, f) for t, f, _ in msgs] == [(16, 2), (3, 2)]
    attrs = nsinfo.parse_rtattrs(msgs[0][2][16:])
    assert attrs[3] == b"lo\0" and struct.unpack("=I", attrs[4]) == (65536,)
    with pytest.raises(ValueError, match="length"):
        nsinfo.split_netlink(data[:-4])
    # A truncated attribute tail keeps the whole ones before it.
    assert nsinfo.parse_rtattrs(rtattr(3, b"x\0") + struct.pack("=HH", 40, 9)) == {3: b"x\0"}


def test_parse_link_stats64_then_stats_fallback() -> None:
    assert nsinfo.parse_link(link_payload(1, "lo", 0x49, (5800, 5801))) == nsinfo.Link(
        1, "lo", True, 5800, 5801
    )
    assert nsinfo.parse_link(link_payload(3, "d0", 0x82, None)) == nsinfo.Link(3, "d0", False, 0, 0)
    old = struct.pack("=BxHiII", 0, 1, 4, 0x1, 0) + rtattr(3, b"eth0\0")
    old += rtattr(7, struct.pack("=23I", 1, 2, 300, 400, *([0] * 19)))  # IFLA_STATS
    assert nsinfo.parse_link(old) == nsinfo.Link(4, "eth0", True, 300, 400)
    big = 1 << 40  # past 32 bits: only the 64-bit counters hold it
    assert nsinfo.parse_link(link_payload(2, "e", 1, (big, big + 1))).tx_bytes == big + 1


def test_parse_addr_prefers_local_and_skips_other_families() -> None:
    v4 = addr_payload(socket.AF_INET, 3, 24, "10.200.0.1", "10.200.0.1")
    assert nsinfo.parse_addr(v4) == (3, socket.AF_INET, "10.200.0.1/24")
    ptp = addr_payload(socket.AF_INET, 5, 32, "10.0.0.1", "10.0.0.2")  # IFA_ADDRESS is the peer
    assert nsinfo.parse_addr(ptp) == (5, socket.AF_INET, "10.0.0.1/32")
    v6 = addr_payload(socket.AF_INET6, 3, 64, None, "fd00::1")
    assert nsinfo.parse_addr(v6) == (3, socket.AF_INET6, "fd00::1/64")
    other = struct.pack("=BBBBi", socket.AF_PACKET, 0, 0, 0, 3)
    assert nsinfo.parse_addr(other) is None
    bare = struct.pack("=BBBBi", socket.AF_INET, 8, 0, 0, 3)
    assert nsinfo.parse_addr(bare) is None


def route_payload(
    family: int, dst: str | None, dst_len: int, *attrs: bytes, table: int = 254, rtype: int = 1
) -> bytes:
    body = struct.pack("=BBBBBBBBI", family, dst_len, 0, 0, min(table, 255), 4, 0, rtype, 0)
    body += rtattr(15, struct.pack("=I", table))  # RTA_TABLE: the one read past 255
    if dst is not None:
        body += rtattr(1, socket.inet_pton(family, dst))  # RTA_DST
    return body + b"".join(attrs)


def test_parse_route_keeps_unicast_routes_of_the_main_table() -> None:
    oif = rtattr(4, struct.pack("=i", 3))  # RTA_OIF
    via = rtattr(5, socket.inet_pton(socket.AF_INET, "10.9.8.2"))  # RTA_GATEWAY
    v4 = socket.AF_INET
    assert nsinfo.parse_route(route_payload(v4, "10.7.0.0", 16, oif, via)) == [
        nsinfo.Route(v4, "10.7.0.0/16", "10.9.8.2", 3)
    ]
    assert nsinfo.parse_route(route_payload(v4, None, 0, via)) == [
        nsinfo.Route(v4, "default", "10.9.8.2", 0)
    ]
    v6 = route_payload(socket.AF_INET6, "fe80::", 64, oif)
    assert nsinfo.parse_route(v6) == [nsinfo.Route(socket.AF_INET6, "fe80::/64", None, 3)]
    assert nsinfo.parse_route(route_payload(v4, "10.9.8.1", 32, oif, table=255, rtype=2)) == []
    assert nsinfo.parse_route(route_payload(v4, "10.1.0.0", 16, table=1000)) == []  # not main
    assert nsinfo.parse_route(route_payload(v4, "10.2.0.0", 16, rtype=6)) == []  # blackhole
    hop = struct.pack("=HBBi", 8 + 8, 0, 0, 3) + rtattr(5, socket.inet_pton(v4, "10.0.0.1"))
    hop2 = struct.pack("=HBBi", 8 + 8, 0, 0, 4) + rtattr(5, socket.inet_pton(v4, "10.0.1.1"))
    multi = route_payload(v4, "10.5.0.0", 16, rtattr(9, hop + hop2))  # RTA_MULTIPATH
    assert nsinfo.parse_route(multi) == [
        nsinfo.Route(v4, "10.5.0.0/16", "10.0.0.1", 3),
        nsinfo.Route(v4, "10.5.0.0/16", "10.0.1.1", 4),
    ]


def test_format_routes_puts_ipv4_first_and_names_devices() -> None:
    routes = [
        nsinfo.Route(socket.AF_INET6, "fe80::/64", None, 3),
        nsinfo.Route(socket.AF_INET, "10.9.8.0/24", None, 3),
        nsinfo.Route(socket.AF_INET, "10.7.0.0/16", "10.9.8.2", 9),  # its link went away
    ]
    links = [nsinfo.Link(3, "dummy0", True, 0, 0)]
    assert nsinfo.format_routes(routes, links) == (
        "10.9.8.0/24 - dummy0\n10.7.0.0/16 10.9.8.2 -\nfe80::/64 - dummy0\n"
    )


def test_format_interfaces_orders_and_groups() -> None:
    links = [nsinfo.Link(3, "d0", True, 70, 980), nsinfo.Link(1, "lo", False, 0, 0)]
    addrs = [
        (3, socket.AF_INET6, "fe80::1/64"),
        (3, socket.AF_INET, "10.200.0.1/24"),
        (3, socket.AF_INET6, "fd00::1/64"),
        (3, socket.AF_INET, "10.200.1.1/24"),
        (9, socket.AF_INET, "192.0.2.9/24"),  # an interface gone between the dumps
    ]
    assert nsinfo.format_interfaces(links, addrs) == (
        "lo down - 0 0\nd0 up 10.200.0.1/24,10.200.1.1/24,fe80::1/64,fd00::1/64 70 980\n"
    )
    assert nsinfo.format_interfaces([], addrs) == ""


# -- mnt.mounts ----------------------------------------------------------------

MOUNTINFO = """\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:5 master:2 - proc proc rw
41 22 0:40 / /tmp/a\\040b rw,relatime - tmpfs cfs\\040src rw,size=1024k
42 22 0:41 / /ro-sb rw - squashfs /dev/loop0 ro
43 22 0:42 /sub /mnt/bind ro,nosuid - fuse.sshfs host:/x rw,user_id=0
"""


def test_parse_mountinfo_table() -> None:
    table = nsinfo.parse_mountinfo_table(MOUNTINFO)
    assert table == [
        nsinfo.Mount("/", "ext4", "/dev/vda", "rw,relatime,discard"),
        nsinfo.Mount("/proc", "proc", "proc", "rw,nosuid,nodev,noexec,relatime"),
        nsinfo.Mount("/tmp/a\\040b", "tmpfs", "cfs\\040src", "rw,relatime,size=1024k"),
        nsinfo.Mount("/ro-sb", "squashfs", "/dev/loop0", "ro"),
        nsinfo.Mount("/mnt/bind", "fuse.sshfs", "host:/x", "ro,nosuid,user_id=0"),
    ]
    with pytest.raises(ValueError, match="separator"):
        nsinfo.parse_mountinfo_table("22 1 254:0 / / rw shared:1 ext4 /dev/vda rw\n")
    with pytest.raises(ValueError, match="short"):
        nsinfo.parse_mountinfo_table("22 1 254:0 / / rw - ext4\n")


def test_format_mounts_count_then_lines_without_inner_whitespace() -> None:
    text = nsinfo.format_mounts(nsinfo.parse_mountinfo_table(MOUNTINFO))
    lines = text.splitlines()
    assert text.endswith("\n")
    assert lines[0] == "count 5"
    assert lines[3] == "/tmp/a\\040b tmpfs cfs\\040src rw,relatime,size=1024k"
    assert all(len(line.split()) == 4 for line in lines[1:])
    assert nsinfo.format_mounts([]) == "count 0\n"


def test_merge_mount_options_in_proc_mounts_order() -> None:
    assert nsinfo.merge_mount_options("rw,nosuid", "rw,size=4k") == "rw,nosuid,size=4k"
    assert nsinfo.merge_mount_options("ro,nosuid", "rw") == "ro,nosuid"
    assert nsinfo.merge_mount_options("rw", "ro,errors=continue") == "ro,errors=continue"
    # Superblock flags go between ro/rw and the per-mount flags, as the kernel prints them.
    assert (
        nsinfo.merge_mount_options("rw,nosuid,relatime", "rw,sync,lazytime,size=4k")
        == "rw,sync,lazytime,nosuid,relatime,size=4k"
    )
    assert nsinfo.merge_mount_options("rw", "") == "rw"


# -- pid.count -----------------------------------------------------------------

# Pid namespaces: 1 (ours) > 10 (target) > 20 > 30, and 1 > 11 (a sibling).
PARENT = {10: 1, 20: 10, 30: 20, 11: 1}


def chain_from(ns_of: dict[int, int], calls: list[int]) -> Callable[[int], list[int]]:
    def chain_of(pid: int) -> list[int]:
        calls.append(pid)
        if pid not in ns_of:
            raise ProcessLookupError(pid)
        chain = [ns_of[pid]]
        while chain[-1] in PARENT:
            chain.append(PARENT[chain[-1]])
        return chain

    return chain_of


def test_pid_members_walks_each_namespace_once() -> None:
    ns_of = {100: 1, 101: 1, 200: 10, 201: 10, 300: 20, 301: 30, 302: 30, 400: 11}
    calls: list[int] = []
    chain_of = chain_from(ns_of, calls)
    entries = list(ns_of.items())
    members = nsinfo.pid_members(entries, 10, chain_of, exclude={200})
    assert members == [201, 300, 301, 302]  # not the holder 200
    # Processes in the target itself cost no walk, and each other namespace one
    # at most; namespace 20 was decided by the walk from 30 or the other way round.
    assert 200 not in calls and 201 not in calls
    assert len({ns_of[p] for p in calls}) == len(calls)
    assert len(calls) <= 4
    assert nsinfo.pid_members(entries, 30, chain_of) == [301, 302]
    assert nsinfo.pid_members(entries, 30, chain_of, exclude=(301, 1)) == [302]
    assert nsinfo.pid_members(entries, 11, chain_of) == [400]
    assert nsinfo.pid_members([], 10, chain_of) == []


def test_pid_members_skips_processes_that_exit() -> None:
    calls: list[int] = []
    chain_of = chain_from({5: 20}, calls)
    # 6 exited between the scan and the walk; 5's walk decides namespace 20.
    assert nsinfo.pid_members([(6, 30), (5, 20)], 10, chain_of) == [5]
    assert nsinfo.format_pid_count(4) == "4\n"
