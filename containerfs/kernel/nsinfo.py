"""Read-only monitoring files of namespaces: ``ipc.usage``, ``net.interfaces``,
``net.routes``, ``mnt.mounts`` and ``pid.count`` (issue 3), and ``RENDERERS``,
which names them for the engine's file catalogue.

Each renderer takes a :class:`~containerfs.kernel.holder.Holder` (``None``
means the daemon's own namespaces, i.e. the root container's) and returns the
file's text: newline-terminated lines, whitespace-separated columns, one
record per line, as cgroupfs and util-linux print theirs.  The format of each
file is documented on its renderer.

The module is split in two on purpose:

* pure parsing and formatting (``parse_*``, ``format_*``, :func:`pid_members`,
  :func:`merge_mount_options`) that takes text or bytes and is unit-tested on
  samples without root;
* thin I/O that gathers that text from the kernel.

Why the I/O looks the way it does: most of these kernel interfaces answer for
the namespace of the *calling thread*, not for a process named by path.
``/proc/sysvipc/*`` and a new ``mqueue`` superblock follow the opener's IPC
namespace; netlink sockets belong to the network namespace their creator was
in (``/sys/class/net`` keeps showing the host's, even from inside).  So
network facts are read on a fresh thread that ``setns()``es into the holder's
namespace (:func:`~containerfs.kernel.namespaces.run_in_namespaces`), never on
a pooled one.  IPC facts come from files the holder itself opened in its IPC
namespace and handed over once (``Holder.ipc_fds_async``), which keep that
namespace: no thread at all (a thread remains the way for older holders).
Mount tables and pid namespace membership can be read from the outside through
``/proc`` and need no thread.

Every renderer is blocking; the ``*_async`` variants keep the trio loop free
(the pooled threads they use never change namespace).
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator
from dataclasses import dataclass

import trio

from containerfs.kernel import procfs
from containerfs.kernel import sys as ksys
from containerfs.kernel.holder import Holder
from containerfs.kernel.namespaces import run_in_namespaces, run_in_namespaces_async

# =============================================================================
# ipc.usage
# =============================================================================

IPC_USAGE_KEYS: tuple[str, ...] = (
    "shm_segments",
    "shm_bytes",
    "msg_queues",
    "sem_sets",
    "mq_queues",
)


def parse_sysvipc(text: str) -> list[dict[str, str]]:
    """Rows of a ``/proc/sysvipc/{shm,msg,sem}`` file, keyed by the header's column names.

    Keyed by name rather than position because the kernel has appended
    columns over the years (``rss`` and ``swap`` in shm); the header names the
    ones this kernel prints.  Blank lines are skipped; a row shorter than the
    header raises ``ValueError`` (it would mean the format changed).
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    header = lines[0].split()
    rows = []
    for line in lines[1:]:
        fields = line.split()
        if len(fields) < len(header):
            raise ValueError(f"sysvipc row shorter than its header: {line!r}")
        rows.append(dict(zip(header, fields, strict=False)))
    return rows


@dataclass(frozen=True)
class IpcUsage:
    """Object counts of one IPC namespace."""

    shm_segments: int
    shm_bytes: int
    msg_queues: int
    sem_sets: int
    mq_queues: int


def ipc_usage_from(shm: str, msg: str, sem: str, mq_queues: int) -> IpcUsage:
    """Counts from the three ``/proc/sysvipc`` texts and the number of POSIX queues.

    ``shm_bytes`` sums the segments' ``size`` column: the bytes requested at
    ``shmget``, as ``ipcs -m`` shows them (the kernel's own ``shm_tot``, which
    ``kernel.shmall`` limits, counts the same segments in whole pages).
    """
    segments = parse_sysvipc(shm)
    return IpcUsage(
        shm_segments=len(segments),
        shm_bytes=sum(int(row["size"]) for row in segments),
        msg_queues=len(parse_sysvipc(msg)),
        sem_sets=len(parse_sysvipc(sem)),
        mq_queues=mq_queues,
    )


def format_ipc_usage(usage: IpcUsage) -> str:
    """``KEY VALUE`` lines in :data:`IPC_USAGE_KEYS` order, like ``memory.stat``."""
    return "".join(f"{key} {getattr(usage, key)}\n" for key in IPC_USAGE_KEYS)


def _read_ipc_here() -> IpcUsage:
    """Counts for the calling thread's IPC namespace.

    ``/proc/sysvipc/*`` takes the IPC namespace of the thread that opens it
    (checked on this kernel: a thread setns'd into a container sees only the
    container's objects).  POSIX queues are entries of the namespace's mqueue
    superblock, which no path of ours may show (``/dev/mqueue`` is absent or
    the host's), so a detached, read-only instance is made here and listed.
    """
    texts: dict[str, str] = {}
    for name in ("shm", "msg", "sem"):
        with open(f"/proc/sysvipc/{name}") as f:
            texts[name] = f.read()
    return ipc_usage_from(texts["shm"], texts["msg"], texts["sem"], _count_mqueues_here())


def _count_mqueues_here() -> int:
    """Number of POSIX message queues in the calling thread's IPC namespace.

    ``fsopen("mqueue")`` binds the context to the caller's IPC namespace and
    ``FSCONFIG_CMD_CREATE`` finds that namespace's existing superblock (one per
    namespace, keyed by it); ``fsmount`` gives a mount attached nowhere, which
    goes away with its fd.  The fsmount fd is ``O_PATH``-like (``getdents``
    refuses it), hence the ``openat(".")``.
    """
    dir_fd = _open_mqueue_dir()
    try:
        return len(os.listdir(dir_fd))
    finally:
        os.close(dir_fd)


def _open_mqueue_dir() -> int:
    """The calling thread's IPC namespace's mqueue directory, on a detached
    read-only mount (see :func:`_count_mqueues_here`); the caller's to close."""
    fs_fd = ksys.fsopen("mqueue")
    try:
        ksys.fsconfig_create(fs_fd)
        mnt_fd = ksys.fsmount(
            fs_fd, ksys.MOUNT_ATTR_RDONLY | ksys.MOUNT_ATTR_NOSUID | ksys.MOUNT_ATTR_NODEV
        )
    finally:
        os.close(fs_fd)
    try:
        return os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=mnt_fd)
    finally:
        os.close(mnt_fd)


def ipc_usage(holder: Holder | None) -> str:
    """The ``ipc.usage`` file of ``holder``'s IPC namespace (``None``: the daemon's).

    Format, one ``KEY VALUE`` pair per line, always these five in this order::

        shm_segments N    System V shared memory segments (ipcs -m)
        shm_bytes N       their sizes summed, in bytes
        msg_queues N      System V message queues (ipcs -q)
        sem_sets N        System V semaphore sets (ipcs -s)
        mq_queues N       POSIX message queues (mq_open)

    Read on a fresh thread that joins only the holder's IPC namespace.
    ``ProcessLookupError`` once the holder is gone.
    """
    if holder is None:
        return format_ipc_usage(_read_ipc_here())
    return format_ipc_usage(run_in_namespaces(holder, ["ipc"], _read_ipc_here))


async def ipc_usage_async(holder: Holder | None) -> str:
    """:func:`ipc_usage` without blocking the trio loop.

    A container's is read from the fds its holder opened in the IPC namespace
    once (``Holder.ipc_fds_async``: the sysvipc files and the mqueue
    directory), inline: a few reads of memory, cheaper than any thread hop.
    For a holder that cannot give them (older than this, without a private
    proc, or in a user namespace whose mount namespace it may not mount in) a
    fresh thread in its IPC namespace opens the same files once; where even
    that fails, every read is made there, as before.
    """
    if holder is None:
        return format_ipc_usage(await trio.to_thread.run_sync(_read_ipc_here))
    if not await holder.ipc_fds_async():
        # A holder that cannot give them: a fresh thread in its IPC namespace
        # opens the same files once (what every read used to do).
        try:
            fds = await run_in_namespaces_async(holder, ["ipc"], _open_ipc_here)
        except ProcessLookupError:
            raise
        except OSError:
            fds = []
        if fds:
            holder.keep_ipc_fds(fds)
    kept = holder.with_ipc_fds(_read_ipc_fds_small)
    if kept is _LARGE:  # a tenant's thousands of objects: not on the event loop
        kept = await trio.to_thread.run_sync(holder.with_ipc_fds, _read_ipc_fds)
    if isinstance(kept, IpcUsage):
        return format_ipc_usage(kept)
    usage = await run_in_namespaces_async(holder, ["ipc"], _read_ipc_here)
    return format_ipc_usage(usage)


def _open_ipc_here() -> list[int]:
    """The calling thread's IPC namespace's ``/proc/sysvipc/{shm,msg,sem}`` and
    mqueue directory, open (the caller's to close): what ``Holder.ipc_fds_async``
    keeps."""
    fds: list[int] = []
    try:
        for name in ("shm", "msg", "sem"):
            fds.append(os.open(f"/proc/sysvipc/{name}", os.O_RDONLY | os.O_CLOEXEC))
        fds.append(_open_mqueue_dir())
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return fds


def _pread_all(fd: int) -> str:
    """A seq file's whole text, read from offset 0 again: the kernel lists it anew
    (a ``/proc/sysvipc`` file shows its opener's IPC namespace as it is now)."""
    chunks: list[bytes] = []
    offset = 0
    while True:
        chunk = os.pread(fd, 65536, offset)
        if not chunk:
            return b"".join(chunks).decode()
        chunks.append(chunk)
        offset += len(chunk)


#: What ``_read_ipc_fds_small`` answers for a table too long to read inline.
_LARGE = object()
#: Bytes of a sysvipc file read on the event loop; longer ones go to a thread.
_INLINE_IPC = 16384


def _read_ipc_fds_small(fds: tuple[int, ...]) -> IpcUsage | object:
    """``_read_ipc_fds`` when every table is short (a few dozen objects), else
    ``_LARGE``: the event loop serves every FUSE request, and a container's root
    may make tens of thousands of objects."""
    shm, msg, sem, mqueue = fds
    texts = []
    for fd in (shm, msg, sem):
        data = os.pread(fd, _INLINE_IPC, 0)
        if len(data) >= _INLINE_IPC:
            return _LARGE
        texts.append(data.decode())
    return ipc_usage_from(texts[0], texts[1], texts[2], len(os.listdir(mqueue)))


def _read_ipc_fds(fds: tuple[int, ...]) -> IpcUsage:
    """Counts from kept fds: ``/proc/sysvipc/{shm,msg,sem}`` and an mqueue
    directory, all of one IPC namespace (``os.listdir`` on an fd rewinds it)."""
    shm, msg, sem, mqueue = fds
    return ipc_usage_from(
        _pread_all(shm), _pread_all(msg), _pread_all(sem), len(os.listdir(mqueue))
    )


# =============================================================================
# net.interfaces
# =============================================================================

# linux/netlink.h, linux/rtnetlink.h, linux/if_link.h, linux/if_addr.h
_NLMSG_ERROR = 2
_NLMSG_DONE = 3
_NLM_F_REQUEST = 0x1
_NLM_F_DUMP_INTR = 0x10
_NLM_F_DUMP = 0x300
_RTM_NEWLINK = 16
_RTM_GETLINK = 18
_RTM_NEWADDR = 20
_RTM_GETADDR = 22
_IFLA_IFNAME = 3
_IFLA_STATS = 7
_IFLA_STATS64 = 23
_IFA_ADDRESS = 1
_IFA_LOCAL = 2
_IFF_UP = 0x1

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBi")  # family, prefixlen, flags, scope, index
_RTATTR = struct.Struct("=HH")  # len, type
_NLMSGERR = struct.Struct("=i")  # error, then the offending header


def _align4(n: int) -> int:
    return (n + 3) & ~3


def split_netlink(data: bytes) -> list[tuple[int, int, bytes]]:
    """``(type, flags, payload)`` of each netlink message in one datagram.

    A length that runs past the datagram or below the header raises
    ``ValueError`` rather than misreading the rest.
    """
    out = []
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, mtype, flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            raise ValueError(f"bad netlink message length {length} at offset {offset}")
        out.append((mtype, flags, data[offset + _NLMSGHDR.size : offset + length]))
        offset += _align4(length)
    return out


def parse_rtattrs(data: bytes) -> dict[int, bytes]:
    """Route attributes by type (the first of each type), payloads without padding."""
    attrs: dict[int, bytes] = {}
    offset = 0
    while offset + _RTATTR.size <= len(data):
        length, atype = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size or offset + length > len(data):
            break  # a truncated tail: keep what was whole
        attrs.setdefault(atype, data[offset + _RTATTR.size : offset + length])
        offset += _align4(length)
    return attrs


@dataclass(frozen=True)
class Link:
    """One network interface from an ``RTM_NEWLINK`` message."""

    index: int
    name: str
    up: bool
    rx_bytes: int
    tx_bytes: int


def parse_link(payload: bytes) -> Link:
    """An ``RTM_NEWLINK`` payload: ``ifinfomsg`` then attributes.

    Byte counters come from ``IFLA_STATS64`` (``rtnl_link_stats64``: rx_packets,
    tx_packets, rx_bytes, tx_bytes, ...), falling back to the 32-bit
    ``IFLA_STATS`` with the same field order, then to 0.  ``up`` is the
    administrative ``IFF_UP`` flag, as ``ip link set ... up`` sets it.
    """
    _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(payload)
    attrs = parse_rtattrs(payload[_IFINFOMSG.size :])
    name = attrs.get(_IFLA_IFNAME, b"").split(b"\0", 1)[0].decode(errors="replace")
    rx = tx = 0
    if len(attrs.get(_IFLA_STATS64, b"")) >= 32:
        rx, tx = struct.unpack_from("=QQ", attrs[_IFLA_STATS64], 16)
    elif len(attrs.get(_IFLA_STATS, b"")) >= 16:
        rx, tx = struct.unpack_from("=II", attrs[_IFLA_STATS], 8)
    return Link(index, name, bool(flags & _IFF_UP), rx, tx)


def parse_addr(payload: bytes) -> tuple[int, int, str] | None:
    """``(ifindex, family, "ADDRESS/PREFIXLEN")`` of an ``RTM_NEWADDR`` payload.

    The interface's own address is ``IFA_LOCAL`` when present (on a
    point-to-point link ``IFA_ADDRESS`` is the peer), else ``IFA_ADDRESS``, as
    ``ip addr`` prints it.  ``None`` for families other than IPv4 and IPv6.
    """
    family, prefixlen, _flags, _scope, index = _IFADDRMSG.unpack_from(payload)
    if family not in (socket.AF_INET, socket.AF_INET6):
        return None
    attrs = parse_rtattrs(payload[_IFADDRMSG.size :])
    raw = attrs.get(_IFA_LOCAL) or attrs.get(_IFA_ADDRESS)
    if raw is None:
        return None
    return index, family, f"{socket.inet_ntop(family, raw)}/{prefixlen}"


def format_interfaces(links: Iterable[Link], addrs: Iterable[tuple[int, int, str]]) -> str:
    """``NAME STATE ADDRESSES RX_BYTES TX_BYTES`` lines, by interface index.

    Addresses of an interface are IPv4 first, then IPv6, each in the kernel's
    order, joined with ``,``; ``-`` when it has none.  Addresses of an index
    with no link (removed between the two dumps) are dropped.
    """
    by_index: dict[int, list[tuple[int, str]]] = {}
    for index, family, cidr in addrs:
        by_index.setdefault(index, []).append((0 if family == socket.AF_INET else 1, cidr))
    lines = []
    for link in sorted(links, key=lambda link: link.index):
        cidrs = [cidr for _, cidr in sorted(by_index.get(link.index, []), key=lambda a: a[0])]
        state = "up" if link.up else "down"
        lines.append(
            f"{link.name} {state} {','.join(cidrs) or '-'} {link.rx_bytes} {link.tx_bytes}\n"
        )
    return "".join(lines)


class _DumpInterrupted(Exception):
    """The kernel flagged a dump as inconsistent (the table changed meanwhile)."""


def _netlink_dump(
    sock: socket.socket, mtype: int, body: bytes, seq: int, answer: int
) -> list[bytes]:
    """Payloads of the ``answer``-type messages of one ``NLM_F_DUMP`` request.

    Raises :class:`_DumpInterrupted` when the kernel marked the dump as
    inconsistent, ``OSError`` with the kernel's errno for an error message.
    """
    header = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), mtype, _NLM_F_REQUEST | _NLM_F_DUMP, seq, 0)
    sock.send(header + body)
    payloads: list[bytes] = []
    interrupted = False
    while True:
        data, _anc, msg_flags, _addr = sock.recvmsg(1 << 16)
        if msg_flags & socket.MSG_TRUNC:
            raise OSError(errno.EMSGSIZE, "netlink answer larger than the receive buffer")
        for rtype, flags, payload in split_netlink(data):
            if flags & _NLM_F_DUMP_INTR:
                interrupted = True
            if rtype == _NLMSG_DONE:
                if interrupted:
                    raise _DumpInterrupted()
                return payloads
            if rtype == _NLMSG_ERROR:
                (error,) = _NLMSGERR.unpack_from(payload)
                if error:
                    raise OSError(-error, f"netlink: {os.strerror(-error)}")
                continue
            if rtype == answer:
                payloads.append(payload)


def _links_and(kind: int, request: bytes, reply: int, what: str) -> tuple[list[bytes], list[bytes]]:
    """A link dump, then a dump of ``kind`` (``request`` its header, ``reply`` the
    message type it answers with), on one ``NETLINK_ROUTE`` socket made on this
    thread, so that it belongs to this thread's network namespace.  A dump the
    kernel marks as interrupted is retried; ``what`` names the table in the
    error when it kept changing."""
    sock = socket.socket(
        socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE
    )
    with sock:
        sock.settimeout(5.0)
        sock.bind((0, 0))
        link_req = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        for attempt in range(1, 6):
            try:
                links = _netlink_dump(sock, _RTM_GETLINK, link_req, 2 * attempt, _RTM_NEWLINK)
                others = _netlink_dump(sock, kind, request, 2 * attempt + 1, reply)
            except _DumpInterrupted:
                continue
            return links, others
    raise OSError(errno.EAGAIN, f"{what} kept changing during the netlink dump")


def _read_net_here() -> str:
    """``net.interfaces`` of the calling thread's network namespace: the links
    (name, flags and byte counters in one message per interface, as
    ``/proc/net/dev`` shows them), then the addresses of both families."""
    link_msgs, addr_msgs = _links_and(
        _RTM_GETADDR,
        _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0),
        _RTM_NEWADDR,
        "interface table",
    )
    links = [parse_link(p) for p in link_msgs]
    addrs = [a for a in map(parse_addr, addr_msgs) if a is not None]
    return format_interfaces(links, addrs)


def net_interfaces(holder: Holder | None) -> str:
    """The ``net.interfaces`` file of ``holder``'s network namespace (``None``: the daemon's).

    Format, one interface per line, ordered by interface index::

        NAME STATE ADDRESSES RX_BYTES TX_BYTES
        lo up 127.0.0.1/8,::1/128 5800 5800
        d0 down - 0 0

    ``STATE`` is ``up`` when the interface is administratively up (``IFF_UP``),
    else ``down``.  ``ADDRESSES`` lists every address as ``ADDRESS/PREFIXLEN``
    (IPv4 first, then IPv6, link-local ones included), comma-separated, or
    ``-``.  ``RX_BYTES``/``TX_BYTES`` are the byte counters ``/proc/net/dev``
    shows.  No header line.  Read through netlink on a fresh thread that joins
    only the holder's network namespace.  ``ProcessLookupError`` once the
    holder is gone.
    """
    if holder is None:
        return _read_net_here()
    return run_in_namespaces(holder, ["net"], _read_net_here)


async def net_interfaces_async(holder: Holder | None) -> str:
    """:func:`net_interfaces` without blocking the trio loop."""
    if holder is None:
        return await trio.to_thread.run_sync(_read_net_here)
    return await run_in_namespaces_async(holder, ["net"], _read_net_here)


# =============================================================================
# mnt.mounts
# =============================================================================


@dataclass(frozen=True)
class Mount:
    """One line of the mount table; paths keep mountinfo's octal escapes."""

    mount_point: str
    fstype: str
    source: str
    options: str


#: Superblock flags that ``/proc/mounts`` prints before the per-mount options.
_SB_FLAG_OPTIONS = frozenset({"sync", "dirsync", "mand", "lazytime"})


def merge_mount_options(mount_opts: str, super_opts: str) -> str:
    """The options ``/proc/mounts`` shows for a mountinfo line's two option fields.

    The kernel prints there ``ro`` when the mount or its superblock is
    read-only (else ``rw``), the superblock flags (``sync``, ``dirsync``,
    ``mand``, ``lazytime``), the per-mount flags, then the filesystem's own
    options; mountinfo splits the same tokens into per-mount options and
    superblock options (each led by its own ``ro``/``rw``).  Rebuilt in that
    order, nothing dropped or added, so the result equals ``/proc/mounts``.
    """
    mnt = [o for o in mount_opts.split(",") if o]
    sb = [o for o in super_opts.split(",") if o]
    merged = ["ro" if "ro" in mnt[:1] + sb[:1] else "rw"]
    merged += [o for o in sb[1:] if o in _SB_FLAG_OPTIONS]
    merged += mnt[1:]
    merged += [o for o in sb[1:] if o not in _SB_FLAG_OPTIONS]
    return ",".join(merged)


def parse_mountinfo_table(text: str) -> list[Mount]:
    """Every line of a ``/proc/PID/mountinfo`` text, in the kernel's (mount) order.

    A line is ``ID PARENT MAJ:MIN ROOT MOUNT_POINT MOUNT_OPTS [OPTIONAL...] -
    FSTYPE SOURCE SUPER_OPTS``; the optional fields end at the lone ``-``.
    Escapes (``\\040`` for a space, ...) are kept so that every column stays
    free of whitespace.  A malformed line raises ``ValueError``.
    """
    return [
        Mount(
            m.mount_point, m.fstype, m.source, merge_mount_options(m.mount_options, m.super_options)
        )
        for m in procfs.parse_mountinfo(text)
    ]


def format_mounts(mounts: list[Mount]) -> str:
    """``count N`` and then ``MOUNT_POINT FSTYPE SOURCE OPTIONS`` per mount."""
    lines = [f"count {len(mounts)}\n"]
    lines += [f"{m.mount_point} {m.fstype} {m.source} {m.options}\n" for m in mounts]
    return "".join(lines)


def _check_alive(pidfd: int, pid: int) -> None:
    """``ProcessLookupError`` unless the process behind ``pidfd`` is still running.

    ``/proc/PID`` names a number that another process may take once the
    holder exited; if the pidfd's process still runs after an open of
    ``/proc/PID/...``, that open reached the holder (a pid is not reused while
    its process lives).  A pidfd turns readable at exit, zombie or not
    (``pidfd_send_signal(fd, 0)`` would still succeed on a zombie).
    """
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    if poller.poll(0):
        raise ProcessLookupError(errno.ESRCH, f"holder {pid} is gone")


def _read_mounts(holder: Holder | None) -> str:
    if holder is None:
        with open("/proc/self/mountinfo") as f:
            return format_mounts(parse_mountinfo_table(f.read()))
    pidfd = holder.dup_pidfd()
    try:
        try:
            f = open(f"/proc/{holder.pid}/mountinfo")  # noqa: SIM115 - closed just below
        except OSError:
            # ENOENT once reaped, EINVAL for a zombie (it has no mount namespace).
            _check_alive(pidfd, holder.pid)
            raise
        with f:
            _check_alive(pidfd, holder.pid)
            # The open file holds the mount namespace and root: reading later is safe.
            return format_mounts(parse_mountinfo_table(f.read()))
    finally:
        os.close(pidfd)


def mounts(holder: Holder | None) -> str:
    """The ``mnt.mounts`` file of ``holder``'s mount namespace (``None``: the daemon's).

    Format: a first line ``count N`` (the number of mounts), then one line per
    mount, in mount order, as the namespace sees its table::

        count 2
        / ext4 /dev/sda1 rw,relatime
        /tmp/a\\040b tmpfs scratch rw,nosuid,size=1024k

    Columns: ``MOUNT_POINT FSTYPE SOURCE OPTIONS``.  Mount points are relative
    to the holder's root directory (the kernel prints them from the root of
    the process whose ``mountinfo`` is read) and, like the source, keep the
    kernel's octal escapes for space, tab, newline and backslash, so no column
    contains whitespace.  ``FSTYPE`` may carry a subtype (``fuse.sshfs``).
    ``OPTIONS`` are the per-mount and per-superblock options merged exactly as
    ``/proc/mounts`` shows them.  Read from ``/proc/HOLDER/mountinfo``: no thread joins
    the namespace.  ``ProcessLookupError`` once the holder is gone.
    """
    return _read_mounts(holder)


async def mounts_async(holder: Holder | None) -> str:
    """:func:`mounts` without blocking the trio loop."""
    return await trio.to_thread.run_sync(_read_mounts, holder)


# =============================================================================
# pid.count
# =============================================================================


def pid_members(
    entries: Iterable[tuple[int, int]],
    target: int,
    chain_of: Callable[[int], list[int]],
    exclude: Collection[int] = (),
) -> list[int]:
    """The pids of ``entries`` (pid, pid-namespace inode) that live in ``target`` or below it.

    ``chain_of(pid)`` gives the inodes of the process's pid namespace and its
    ancestors, innermost first, as far up as the caller can see; it is called
    at most once per namespace not decided yet (processes in ``target``
    itself, the common case, need no call), and a verdict is recorded for
    every namespace on the chain.  A ``chain_of`` that raises
    ``ProcessLookupError`` (the process exited) skips that entry.
    Pids in ``exclude`` are never members (holders).
    """
    inside: dict[int, bool] = {target: True}
    members = []
    for pid, inode in entries:
        if pid in exclude:
            continue
        verdict = inside.get(inode)
        if verdict is None:
            try:
                chain = chain_of(pid)
            except ProcessLookupError:
                continue
            # Namespaces below the target on the chain are inside it; above, not.
            cut = chain.index(target) if target in chain else -1
            for i, ns in enumerate(chain):
                inside.setdefault(ns, i <= cut)
            verdict = inside[inode] = target in chain
        if verdict:
            members.append(pid)
    return members


def format_pid_count(count: int) -> str:
    """One decimal number and a newline, like ``pids.current``."""
    return f"{count}\n"


def _pid_ns_chain(pid: int) -> list[int]:
    """Inodes of ``pid``'s pid namespace and its ancestors up to our own.

    ``NS_GET_PARENT`` refuses (EPERM) past the caller's own pid namespace,
    which ends the walk.  ``ProcessLookupError`` (the entry is skipped) when
    the process is gone or its namespace file is hidden from us.
    """
    try:
        fd = os.open(f"/proc/{pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, PermissionError):
        raise ProcessLookupError(errno.ESRCH, f"no readable process {pid}") from None
    chain = []
    try:
        while True:
            chain.append(os.fstat(fd).st_ino)
            try:
                parent = ksys.ns_get_parent(fd)
            except PermissionError:
                return chain
            os.close(fd)
            fd = parent
    finally:
        os.close(fd)


def _proc_pids() -> Iterator[int]:
    for name in os.listdir("/proc"):
        if name.isdigit():
            yield int(name)


def _proc_pid_namespaces() -> Iterator[tuple[int, int]]:
    """``(pid, pid-namespace inode)`` of every process in /proc, skipping ones that exit.

    Processes whose namespace files the kernel's ptrace access check hides
    from us are skipped too: for a daemon that is root with
    ``CAP_SYS_PTRACE`` those belong to a user namespace above its own (here:
    the sandbox's pid 1), outside any pid namespace the daemon made unless
    they ``setns()`` into one from beyond our reach.
    """
    for pid in _proc_pids():
        try:
            yield pid, os.stat(f"/proc/{pid}/ns/pid").st_ino
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue


def _living(pid: int) -> bool:
    """``pid`` is there and neither a zombie nor being reaped (state Z or X).

    Raw ``os.read`` of the head of ``/proc/PID/stat``: the state follows the
    command name (at most 16 bytes), and this halves the cost of a buffered
    text ``open`` (about 15 us against 30 here), which counts for the root
    container where every process is checked.
    """
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        return False
    try:
        return procfs.parse_stat_state(os.read(fd, 512)) not in ("Z", "X")
    except (ProcessLookupError, ValueError):
        return False
    finally:
        os.close(fd)


def _count_pids(holder: Holder | None, exclude: Iterable[int]) -> str:
    own = os.stat("/proc/self/ns/pid").st_ino
    target = own if holder is None else holder.inodes["pid"]
    skip = frozenset(exclude) | ({holder.pid} if holder is not None else set())
    if target == own:
        # Fast path: every process /proc lists is in our pid namespace or below.
        members = [pid for pid in _proc_pids() if pid not in skip]
    else:
        members = pid_members(_proc_pid_namespaces(), target, _pid_ns_chain, skip)
    count = sum(1 for pid in members if _living(pid))
    if holder is not None and not holder.alive():
        raise ProcessLookupError(errno.ESRCH, f"holder {holder.pid} is gone")
    return format_pid_count(count)


def pid_count(holder: Holder | None, exclude: Iterable[int] = ()) -> str:
    """The ``pid.count`` file of ``holder``'s pid namespace (``None``: the daemon's).

    Format: one decimal number and a newline: the living processes (not
    threads) whose active pid namespace is the holder's or a descendant of it,
    not counting the holder itself nor the pids in ``exclude`` (pids in the
    daemon's pid namespace).  Holders of other containers are processes of
    the namespace like any other unless the caller lists them in ``exclude``,
    which lets the daemon hide all of its plumbing.  For a container that
    shares its parent's pid namespace, pass the holder of the container that
    owns it, so that both show the same value.

    Zombies are left out, unlike ``pids.current``: they have exited, and the
    holder's setup leaves short-lived ones behind (the pin's intermediate
    processes, adopted by the host's init, which may reap late; seen here for
    seconds), which would make the count of a quiet container flicker.

    Counted by scanning ``/proc`` (mounted for the daemon's pid namespace):
    one ``stat`` of ``/proc/PID/ns/pid`` per process, one ``NS_GET_PARENT``
    walk per distinct other namespace, one read of ``/proc/PID/stat`` per
    member.  ``ProcessLookupError`` once the holder is gone.
    """
    return _count_pids(holder, exclude)


async def pid_count_async(holder: Holder | None, exclude: Iterable[int] = ()) -> str:
    """:func:`pid_count` without blocking the trio loop."""
    return await trio.to_thread.run_sync(_count_pids, holder, exclude)


def time_offsets(holder: Holder | None) -> str:
    """The time namespace's clock offsets, as /proc/PID/timens_offsets shows them
    (``CLOCK SECONDS NANOSECONDS`` lines)."""
    if holder is not None:
        return holder.time_offsets()
    with open("/proc/self/timens_offsets") as f:
        return f.read()


# =============================================================================
# net.routes
# =============================================================================

# linux/rtnetlink.h
_RTM_NEWROUTE = 24
_RTM_GETROUTE = 26
_RTA_DST = 1
_RTA_OIF = 4
_RTA_GATEWAY = 5
_RTA_MULTIPATH = 9
_RTA_TABLE = 15
_RT_TABLE_MAIN = 254
_RTN_UNICAST = 1
_RTM_F_CLONED = 0x200
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol,
# scope, type, flags
_RTNEXTHOP = struct.Struct("=HBBi")  # len, flags, hops, ifindex


@dataclass(frozen=True)
class Route:
    """One next hop of a route of the main table."""

    family: int
    destination: str  # "ADDRESS/PREFIXLEN", or "default"
    gateway: str | None
    ifindex: int  # 0: none


def parse_route(payload: bytes) -> list[Route]:
    """The next hops of an ``RTM_NEWROUTE`` payload, as ``ip route`` lists the main
    table: unicast routes only (no local, broadcast, blackhole...), none cloned;
    a multipath route gives one per next hop. Other tables and families: none."""
    family, dst_len, _src, _tos, table, _proto, _scope, rtype, flags = _RTMSG.unpack_from(payload)
    attrs = parse_rtattrs(payload[_RTMSG.size :])
    if len(attrs.get(_RTA_TABLE, b"")) == 4:
        (table,) = struct.unpack("=I", attrs[_RTA_TABLE])
    if (
        family not in (socket.AF_INET, socket.AF_INET6)
        or table != _RT_TABLE_MAIN
        or rtype != _RTN_UNICAST
        or flags & _RTM_F_CLONED
    ):
        return []
    dst = attrs.get(_RTA_DST)
    destination = "default" if dst_len == 0 else f"{socket.inet_ntop(family, dst or b'')}/{dst_len}"

    def gateway(a: dict[int, bytes]) -> str | None:
        raw = a.get(_RTA_GATEWAY)
        return None if raw is None else socket.inet_ntop(family, raw)

    nexthops = attrs.get(_RTA_MULTIPATH)
    if nexthops is None:
        oif = struct.unpack("=i", attrs[_RTA_OIF])[0] if len(attrs.get(_RTA_OIF, b"")) == 4 else 0
        return [Route(family, destination, gateway(attrs), oif)]
    out = []
    offset = 0
    while offset + _RTNEXTHOP.size <= len(nexthops):
        length, _flags, _hops, ifindex = _RTNEXTHOP.unpack_from(nexthops, offset)
        if length < _RTNEXTHOP.size or offset + length > len(nexthops):
            break
        hop = parse_rtattrs(nexthops[offset + _RTNEXTHOP.size : offset + length])
        out.append(Route(family, destination, gateway(hop), ifindex))
        offset += _align4(length)
    return out


def format_routes(routes: Iterable[Route], links: Iterable[Link]) -> str:
    """``DESTINATION GATEWAY DEVICE`` lines: IPv4 routes first, then IPv6, each in
    the kernel's order; ``-`` for no gateway (a directly reached network) or no
    device."""
    names = {link.index: link.name for link in links}
    ordered = sorted(routes, key=lambda r: 0 if r.family == socket.AF_INET else 1)
    return "".join(
        f"{r.destination} {r.gateway or '-'} {names.get(r.ifindex, '-')}\n" for r in ordered
    )


def _read_routes_here() -> str:
    """``net.routes`` of the calling thread's network namespace: a link dump (for
    the interface names), then a route dump of both families."""
    link_msgs, route_msgs = _links_and(
        _RTM_GETROUTE,
        _RTMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0, 0, 0, 0, 0),
        _RTM_NEWROUTE,
        "routing table",
    )
    routes = [r for p in route_msgs for r in parse_route(p)]
    return format_routes(routes, [parse_link(p) for p in link_msgs])


async def net_routes_async(holder: Holder | None) -> str:
    """The ``net.routes`` file of ``holder``'s network namespace (``None``: the daemon's).

    Format, one route (one next hop) a line, the main table as ``ip route`` and
    ``ip -6 route`` show it, unicast routes only::

        DESTINATION GATEWAY DEVICE
        default 10.0.0.1 eth0
        10.0.0.0/24 - eth0
        fe80::/64 - eth0

    ``-``: no gateway (the network is reached directly) or no device. No header.
    """
    if holder is None:
        return await trio.to_thread.run_sync(_read_routes_here)
    return await run_in_namespaces_async(holder, ["net"], _read_routes_here)


# =============================================================================
# Renderers by name
# =============================================================================

#: A monitoring file's renderer: (holder, None for the daemon's own namespaces;
#: a function giving the daemon's own pids, which are never counted) -> its text.
Renderer = Callable[[Holder | None, Callable[[], Collection[int]]], Awaitable[str]]

#: The renderers by the name the engine's file catalogue gives them (its INFO
#: lines' ``key``; the daemon checks at start that each has one here).
RENDERERS: dict[str, Renderer] = {
    "ipc.usage": lambda holder, _: ipc_usage_async(holder),
    "net.interfaces": lambda holder, _: net_interfaces_async(holder),
    "net.routes": lambda holder, _: net_routes_async(holder),
    "mnt.mounts": lambda holder, _: mounts_async(holder),
    "pid.count": lambda holder, internal: pid_count_async(holder, exclude=internal()),
}
