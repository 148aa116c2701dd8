"""The hand-written prose of the manual pages, in one place.

``containerfs.manpage`` renders ``containerfs(8)`` and ``containerfs(7)`` from
the argument parser and the file catalogue; what neither of them says (what a
file holds, what a command does) is written here, keyed by file, knob, errno or
argument name.  The renderer refuses to run when a file of the catalogue, an
option of the parser or an errno of the engine has no text here, or when a text
here names nothing that exists, so the pages cannot drift from the code.

Markup (``manpage.roff_blocks``): paragraphs are separated by blank lines;
```code``` is bold, ``*word*`` italic; a paragraph of ``- `` lines is a list;
one whose first line is ``@ TERM`` is a tagged paragraph; lines indented by
four spaces are an example.  The text follows README.md, the user reference.
ASCII only.
"""

from __future__ import annotations

#: The date in the pages' title line: bump it when the prose changes.
PAGE_DATE = "2026-12-06"

# -- containerfs(8) -------------------------------------------------------------

NAME8 = "containerfs \\- mount the container file system; run commands in its containers"

DESCRIPTION8 = """\
The file API itself (every file, its values, who may write it and the errors
it returns) is described in `containerfs`(7).
"""

#: Prose of each subcommand, after the parser's own one-line help.
COMMAND_PROSE: dict[str, str] = {
    "mount": """\
Mounts containerfs at *MOUNTPOINT* (made if missing) and serves it in the
foreground until SIGINT or SIGTERM, which unmount cleanly. It needs root and
`/dev/fuse`. The mount is made with `allow_other` and `default_permissions`.

The root directory is the root container: the daemon's own namespaces and, in
every cgroup hierarchy, the cgroup the daemon was started in. Containers are
made below that cgroup only, so start the daemon in a cgroup delegated to it.
Under systemd, run it in a service with `Delegate=yes`, as the shipped unit
does (see *SYSTEMD* below); on a pure cgroup v2 host it moves itself into the
leaf `.tasks` below its cgroup before enabling any controller.

Stopping the daemon (SIGTERM) or killing it (SIGKILL) loses nothing: the
containers keep their namespaces (their holder processes live on), cgroups and
tasks. The tree, release policies and knob views are saved in the state
directory after every change; a new `containerfs mount` with the same state
directory takes every container back (after checking that each holder is still
the same process), binds the views into the containers again and carries out
the release policy of any container that emptied while no daemon was watching.
Holders and cgroup directories that no saved container accounts for are removed;
a dead mount left by a killed daemon is detached. To remove everything, `rmdir`
the containers before stopping the daemon.

Each container that owns its network namespace is shown to `ip`(8) `netns` as
*PREFIX*`:`*PATH*: the container `/web/db` is `cfs:web:db`, a `:` or `%` in a
name written `%3A` or `%25`. The name is made with the container, moved by
`mv`, and removed with it (and, at the next start, when the container is gone;
names longer than 255 bytes are not made, and logged). Give each daemon running
at once a prefix of its own with `--netns-prefix`: a daemon whose prefix is in
use by another makes no names and says so in its log.
""",
    "exec": """\
Runs *CMD* inside every subsystem of *CONTAINER*, a directory of a mounted
containerfs: joins the container's namespaces (all at once, through a pidfd of
its holder, after checking that the holder's namespaces are the ones the
container lists), starts *CMD* in its pid and time namespaces, and has the
daemon place it in the container's cgroups before it runs. It works for
interactive shells: on a terminal, *CMD* runs in a foreground process group of
its own. Options go before *CONTAINER*: every word after it belongs to *CMD*
(the `--` before *CMD* may be left out).

Who *CMD* runs as, as `nsenter`(1) and `lxc-attach`(1) decide it:

- in a container with a user namespace of its own whose `user.uid_map` and
  `user.gid_map` map uid 0 and gid 0: the container's root (uid and gid 0
  inside), no supplementary groups, every capability in that namespace, kept
  across `execve`(2);
- in the same without those maps: the caller's credentials, unchanged (they show
  as the overflow IDs inside, and *CMD* has no capabilities there);
- in a container sharing the caller's user namespace: the caller's credentials;
- with `--user`: those IDs of the container's user namespace (the host's when it
  has none of its own), no supplementary groups, no capabilities; IDs its maps
  lack are refused before anything runs;
- with `--preserve-credentials`: the caller's credentials, even when entering a
  user namespace.

The supplementary groups are dropped before the user namespace is entered. The
environment is passed on as it is. The waiting `containerfs exec` process keeps
the caller's credentials and is not dumpable: not even the container's root can
`ptrace`(2) it or take its files.
""",
    "tree": """Prints the containers at and below *PATH* (by default the root of the first
mounted containerfs) as `systemd-cgls`(1) draws cgroups: one line each, with
its number of tasks, its release policy and the kinds it owns (`-` for none),
children by name under their parent. With `--json`, a JSON list instead, one
object per container in the same order: `path`, `name`, `depth` (below
*PATH*), `owns`, `shares`, `tasks` and `release` (`null` where a file could not
be read). It reads only the mounted files (`container.subsystems`, `tasks`,
`container.release`), so any user who may read the tree can run it.
""",
    "top": """Shows every container at and below *PATH* in a table refreshed every
*SECONDS*, as `systemd-cgtop`(1) does: its tasks (as its `tasks` file lists
them), its CPU use over the last interval (100% is one CPU busy; the root's
and a parent's figures include their children's), its memory (`memory.current`)
and its pids (`pids.current`), the last two only for containers that own those
controllers. Keys: `p`, `t`, `c`, `m` and `n` sort by path, tasks, CPU, memory
and pids (the largest first), `q` quits. Each refresh is one read of the root's
`metrics` file, so any user who may read that file can run it. With `--batch`
it prints a plain table at each refresh and reads no keys.
""",
    "oci": """\
An OCI runtime with runc's command line, so that podman, conmon and containerd
make their containers as containers of a mounted containerfs: each OCI
container is the container *PARENT*`/`*ID* (`oci/`*ID* by default), with
`container.origin` `oci`. `containerfs-runc` is the same command under an
executable name of its own, for settings that take a runtime's path without
arguments (podman's `[engine.runtimes]`, `ctr run --runc-binary`).

runc (Debian's runc 1.1, found as `/usr/sbin/runc` or on `PATH`, or named by
`$CONTAINERFS_OCI_RUNC`) does every process-level step: root file system,
mounts, capabilities, seccomp, rlimits, user, masked and read-only paths,
console, hooks and `linux.resources`, and it makes the namespaces. For `create`
the front end makes the parent if it is missing (sharing every namespace of the
root, its children owning every available controller), makes *PARENT*`/`*ID*,
hands runc a private copy of `config.json` (`root.path` and bind mount sources
absolute, `linux.cgroupsPath` the container's `container.cgroup`, the
`linux.sysctl` keys containerfs has a namespace knob for taken out), runs
`runc create` as its direct child with its standard input, output and error
and every other descriptor passed through, writes the init's pid to
`container.claim`, and writes the knob values to the container's internal
views. Only then does it exit, so that `start` finds the views bound. A
failure at any step undoes all of them: nothing is left in the tree, in
cgroupfs or in runc's state.

`state` prints runc's state with the caller's bundle; `delete` writes
`container.kill`, removes the directory, then runs `runc delete --force`
(`--force` of an unknown *ID* succeeds). `start`, `kill`, `exec`, `ps`,
`pause`, `resume`, `update`, `events`, `list` and `spec` are runc's own; `run`,
`checkpoint` and `restore` are refused. `features` is runc's answer with the
annotation `io.containerfs.oci.frontend`; `--version` prints a line of its own,
then runc's.

Global options are runc's (`--log`, `--log-format`, `--debug`, `--criu`,
`--rootless`, `--systemd-cgroup`, which is accepted and not passed on: the
cgroup is containerfs's, given by path) and those below. Errors are as runc
gives them: one line in `--log` in its `--log-format` (`text` or `json`), the
message on standard error, exit status 1.
""",
}

#: Positional arguments the parser gives no help for, by (command, dest).
ARGUMENT_PROSE: dict[tuple[str, str], str] = {
    ("mount", "mountpoint"): "The directory to mount on; made if it does not exist.",
}

EXIT_STATUS8 = """\
@ `containerfs mount`
0 after a clean stop (SIGINT, SIGTERM); 1 when it cannot start, with the reason
on standard error (not root, `/dev/fuse` missing, the state directory unusable,
*MOUNTPOINT* already a mount point, an unknown kind in `--subtree`); 2 for a
usage error.

@ `containerfs oci`
0 on success; 1 with an error in the log and on standard error (for runc's own
commands, runc's status).

@ `containerfs exec`
The exit status of *CMD*, or 128+*N* when it was killed by signal *N*; 126 when
*CMD* cannot be executed, 127 when it is not found; 1 when the container cannot
be entered (the reason on standard error); 2 for a usage error or no *CMD*.
"""

SIGNALS8 = """\
`containerfs mount` unmounts and stops on SIGINT and SIGTERM. The containers stay.

`containerfs exec` passes {forwarded} on to *CMD*, and ignores SIGINT and SIGQUIT
while it waits, as a shell does (on a terminal they reach *CMD* alone). *CMD* is
killed when `containerfs exec` dies.
"""

#: What systemctl does to containers through the shipped unit (README.md,
#: "Running under systemd"; checked by tools/v2vm/systemd-checks).
SYSTEMD8 = """\
`make install` installs the unit `containerfs.service`, which runs
`containerfs mount` with its defaults: `Type=notify` (`systemctl show -p
StatusText containerfs` gives the number of containers), `Delegate=yes`, and
`KillMode=process`, so that systemd signals the daemon alone, never the
containers' processes, which live in the unit's cgroup. Warnings, refused
requests among them, go to the journal at priority warning (`journalctl -u
containerfs -p warning`).

@ `systemctl restart containerfs`
The daemon unmounts and saves the tree; every container keeps its namespaces,
cgroups, limits, views and processes, and the new daemon takes them over.

@ a crash
A `kill -9` of the daemon does the same, a second later, by `Restart=on-failure`.

@ `systemctl stop containerfs`
Only the daemon ends and the mount goes away. The containers stay as they are,
processes running and limits enforced by the kernel, with no release policy
carried out, until the next `systemctl start` takes them over. At shutdown they
end with everything else.

To remove every container, end the processes of each and remove them, children
first, while the service runs; then stop it:

    cd /run/containerfs
    for c in */; do echo 1 > "$c/container.kill"; done
    find . -mindepth 1 -depth -type d -exec rmdir {} +
    systemctl stop containerfs

systemd before 254 ignores the unit's `DelegateSubgroup=supervisor`: once a
container owns a controller, a restart, or the start after a stop or crash,
fails with `status=219/CGROUP` and the containers stay as they are. There,
remove the containers before a restart.
"""

FILES8 = """\
@ `{mountpoint}`
The default mount point.

@ `{state_dir}`
The default state directory: `state.json` (the whole tree) and `state.log` (the
changes since), and `cgroup2`, where the daemon mounts cgroup2 while it runs on a
host that has no cgroup2 mount.

@ `/usr/local/lib/systemd/system/containerfs.service`
The systemd unit, where `make install` puts it (under its `PREFIX`, `/usr/local`
by default).

@ `/run/containerfs-runc`
The default state directory of `containerfs oci` (runc's `--root`), and, beside
it, `/run/containerfs-runc.containerfs`, each OCI container's private
`config.json`.
@ `/run/netns/cfs:`*PATH*
The `ip netns` names of the containers that own their network namespace (see
`--netns-prefix`).

@ `/dev/fuse`
The FUSE device (`modprobe fuse` when it is missing).

@ `containerfs-pin`, `containerfs-nsscan`
The helper programs: the holder of a container's namespaces (the init of its
pid namespace), and the threaded walk of `/proc` behind the `namespaces` file
(without it the daemon walks `/proc` itself, slower).
"""

EXAMPLES8 = """\
Mount, make a container that owns the namespaces and controllers listed in the
root's `container.subtree`, limit it, and run a shell in it:

    containerfs mount &
    mkdir /run/containerfs/web
    echo web-1 > /run/containerfs/web/uts.hostname
    echo 64M > /run/containerfs/web/memory.max
    containerfs exec /run/containerfs/web -- /bin/sh
    rmdir /run/containerfs/web
"""

SEE_ALSO8 = [
    ("containerfs", 7),
    ("cgroups", 7),
    ("namespaces", 7),
    ("user_namespaces", 7),
    ("nsenter", 1),
    ("unshare", 1),
    ("lsns", 8),
    ("systemctl", 1),
    ("journalctl", 1),
    ("systemd.unit", 5),
    ("systemd.service", 5),
    ("systemd.resource-control", 5),
]

# -- containerfs(7) -------------------------------------------------------------

NAME7 = "containerfs \\- namespaces and cgroup controllers as a tree of directories"

#: DESCRIPTION of containerfs(7): (subsection title or "", text).
DESCRIPTION7: list[tuple[str, str]] = [
    (
        "",
        """\
containerfs shows Linux namespaces and cgroup controllers as one file system,
mounted by `containerfs mount` (see `containerfs`(8)). A directory is a
*container*: `mkdir`(2) creates real namespaces and cgroups, `rmdir`(2) frees
them, writing a PID to its `tasks` file moves a process in, and control files
such as `uts.hostname` or `pids.max` set what the kernel enforces.
""",
    ),
    (
        "Subsystem kinds",
        """\
Every namespace kind ({namespaces}) and every cgroup controller the host offers
is a *subsystem kind*. For each kind a container either *owns* an instance or
*shares* the instance of its nearest ancestor that owns one. The root directory
is the root container: the daemon's own namespaces and, in every cgroup
hierarchy, the cgroup the daemon was started in. The daemon only ever creates,
moves into or writes cgroups below that one.

A kind's *enter* property is `migrate` when a running process can be moved in
(`{movable}` and every controller; `mnt` only for single-threaded processes) and
`spawn` when only a new process can start inside (`{spawn}`): `containerfs
exec` starts one. Its *release* property is its natural behaviour when an
instance empties.
""",
    ),
    (
        "Containers",
        """\
`mkdir` creates a child that owns the kinds listed in its parent's
`container.subtree` and shares the rest. The root's starts as every available
kind except `user` (a user namespace without an ID map runs everything as
`nobody`); a new container's own starts empty, as `cgroup.subtree_control` does.
A name may not contain `/`, whitespace or control characters, nor begin with a dot.
`rmdir` removes a container that has no task and no child; `mv`(1) renames one
within its parent.

Containers persist with no process inside: a small holder process keeps the
namespaces alive and is the init (pid 1) of the container's pid namespace. It is
not listed in `tasks`, is not counted in `pids.current` and does not make the
container populated, but it counts against `container.max.descendants` and, for
a `mkdir` that needs one, against an ancestor's `pids.max`.

A process inside a container that makes new namespaces itself (`unshare`(1),
`clone`(2) with `CLONE_NEW*` flags, `ip netns add`) shows up within a second as
a child container whose `container.origin` is `clone`, named `COMM-PID` after
the process that made it, or after the file its namespace is bound to. It owns
the kinds where its processes differ from their container, its release policy
is `delete`, and at most 1024 exist at once. Names of the form `cfs...:...` in
`/run/netns` are containerfs's own and never taken for such a file.

Each container that owns its network namespace has an `ip`(8) `netns` name,
`cfs:` and its path with `/` written `:` (`/web/db` is `cfs:web:db`; a `:` or
`%` in a name is written `%3A` or `%25`; the prefix is set by `containerfs
mount --netns-prefix`). It is made with the container, follows `mv` and goes
with `rmdir`.

Inside a container that owns its mount namespace the tree is not there: the
daemon's mount point and the host's `/run/netns` names are detached, and only
the container's own knob views are bound in, over `/proc/sys`.
""",
    ),
    (
        "Ownership and delegation",
        """\
Anyone may look; the kernel checks every access against the owners and modes
containerfs shows, as on cgroupfs. Directories are 0755, writable files 0644,
read-only ones 0444, all root's at first. Modes never change.

`chown USER DIR` by root *delegates* a container, as cgroup v2 delegation does:
the directory, its `tasks` and its `container.subtree` become USER's; its other
files (its limits, its release policy) stay its parent administrator's. USER may
then `mkdir`, `rmdir` and `mv` inside it (what USER makes is wholly USER's),
write `container.subtree`, and move processes with `tasks` when their real and
effective uid are USER's and they are in the same delegated subtree already.
`chown root DIR` takes a delegation back. An ordinary user's process cannot
`setns`(2), so a delegated user can only make containers that own controllers:
write `-ipc -uts -net -pid -mnt -cgroup -time` to `container.subtree` first.

A container delegated while its `container.max.depth` is `max` gets 32, and
while its `container.max.descendants` is `max` gets 256; root may write others
after the `chown`.
""",
    ),
    (
        "Internal, external and effective views",
        """\
A namespace knob has two writers. The container sets its own value through the
normal kernel interface (its *internal* view: `/proc/sys/kernel/shmmni`
inside); its parent sets a limit through containerfs (the *external* view). The
kernel holds one value, the *effective* one: the tighter of the two. Each knob
has three files:

@ *KIND.KNOB*
The external view: the parent's limit, `max` for none (the default).

@ *KIND.KNOB*`.internal`
The internal view: what the container set for itself (at first, the new
namespace's default). Owned by the host IDs that root inside the container maps
to, so root inside may write it.

@ *KIND.KNOB*`.effective`
What the kernel enforces, read-only: the lower of the two (for `ipc.sem` per
field; for a port range the intersection, or the external range if they do not
meet).

Writing either view applies the new effective value at once; a value the kernel
refuses leaves everything as it was. When a container owns its mount namespace
as well as the knob's kind, each knob's `.internal` file is bound over the
knob's `/proc/sys` file inside it: every process of the container reads and
writes its internal value at the usual path, and the kernel enforces the
effective one. With a user namespace of its own the bound files are locked:
root inside cannot unmount them. Without its own mount namespace nothing could
stand between the container and the real `/proc/sys` file, so an external view
other than `max` is refused there with EOPNOTSUPP.

A container that shares the kind shows its owner's views, read-only; the root's
are the host's own, read-only. Root inside a container without its own user
namespace is root on the host and can unmount the bound file: there the views
guard against mistakes, not against root inside.
""",
    ),
    (
        "Release",
        """\
A container is *released* when it empties: it has had tasks or child containers
since its last release, and now has no task (in it or below) and no child
container. The daemon learns it from the kernel within milliseconds and acts on
`container.release`: `ignore` does nothing (the holder keeps the namespaces
alive), `notify` runs the `release_agent` program with the container's path
(`/web/db`) as its only argument, `delete` removes the container and looks at
its parent in turn. A `tasks` move that fails is not an emptying.

The release agent runs as root with only `HOME=/` and
`PATH=/sbin:/bin:/usr/sbin:/usr/bin` in its environment, `/` as working
directory, standard input `/dev/null`, its output in the daemon's log, in a
session of its own; it is killed after 30 seconds. At most 4 run at once, a
path already waiting is not queued again, and at most 1024 paths wait (past
that a notification is dropped and logged).
""",
    ),
    (
        "Writing to tasks",
        """\
A write names one PID, in the writer's pid namespace. The process, every thread
of it, is moved in every subsystem where it differs from the container, all or
nothing: its cgroups first, then its namespaces; if a step fails it is put back
where it was. `echo $$ > tasks` works from a shell. The daemon has the process
call `setns`(2) itself under `ptrace`(2), so only a writer that could ptrace the
process may move it, and the process must itself be allowed to `setns`.

What moves: `uts` at once; `ipc` for new `shmget`(2), `msgget`(2) and
`mq_open`(3) calls (attached segments and open queues stay); `net` for new
sockets (open ones stay in the old namespace); `cgroup` the root shown in
`/proc/self/cgroup`; `mnt` the mount table, root and working directory
(single-threaded processes only; open files stay); controllers the cgroups.
A process that differs in a `spawn` kind cannot be moved: start it inside with
`containerfs exec`.
""",
    ),
    (
        "Caching",
        """\
Files whose value changes only through containerfs are served from the kernel's
page cache: `stat`(2) shows their length, and an `open`(2) of an unchanged value
costs one round trip to the daemon and no read. A write through containerfs
shows at once; a value changed behind the daemon's back (a direct write to
cgroupfs) shows within one second. They are: {cached}, the writable controller
files (not in an `oci` container, whose runtime writes them too), and the knob
views of a container that owns its mount namespace.
Everything else is read from the kernel at every read and shows size 0.
""",
    ),
    (
        "Limits on a subtree",
        """\
`container.max.depth` and `container.max.descendants` limit what may be made
below a container, as `cgroup.max.depth` and `cgroup.max.descendants` do: a
`mkdir` that would pass an ancestor's limit is refused with EAGAIN, for root
too, and so is one whose holder would take the tasks and holders of an
ancestor's subtree past its `pids.max`. Lowering a limit under what exists
removes nothing. A container whose cgroup path would leave its files no room
below `PATH_MAX` is refused with ENAMETOOLONG.
""",
    ),
]

#: What each file of the catalogue holds and takes, by name (user.max_KIND_namespaces:
#: one text for all). The renderer adds the mode, where the file is shown and its owner.
FILE_PROSE: dict[str, str] = {
    "subsystems": """\
One line per subsystem kind: `NAME CLASS ENTER CREATE RELEASE AVAILABLE`, for
example `pid namespace spawn mkdir,clone delete yes` or `hugetlb controller
migrate mkdir ignore no:not-delegated`. No header.
""",
    "release_agent": """\
The absolute path of the program the `notify` release policy runs; empty for
none. A write must name an executable regular file (a symlink to one is taken
and followed at each run), else EINVAL.
""",
    "namespaces": """\
Every namespace on the host, one per line: `TYPE INODE NPROCS OWNER_USERNS
PARENT CONTAINER NSID`, `-` where there is none; `PARENT` for pid and user
namespaces, `CONTAINER` the path of the container whose instance it is, `NSID`
the namespace's 64-bit id (`NS_GET_ID`, Linux 6.18; `nsenter --net=:NSID` of
newer util-linux takes it). Namespaces kept alive only by a bind mount, a file
descriptor or as `pid_for_children` are listed with `NPROCS` 0. Root's listing
comes from `listns`(2) where the kernel has it (6.19), else from a walk of
`/proc`. A user other than root sees what its own `lsns`(8) shows: the daemon
walks `/proc` with the reader's uid and gid. Readers at once share walks.
""",
    "metrics": """\
The tree's figures in Prometheus's text format (version 0.0.4), at every read:
per container (labels `container`, its path, and `id`, its cgroup as
`/proc/PID/cgroup` shows it) `containerfs_cpu_usage_seconds_total`,
`containerfs_memory_usage_bytes`, `containerfs_memory_limit_bytes`,
`containerfs_pids_current`, `containerfs_pids_limit` (memory and pids where it
owns those controllers; `+Inf` for `max`), `containerfs_processes`,
`containerfs_populated` and `containerfs_released_total`; per namespace knob
(`containerfs_ipc_shm_mni` and so on) its three views (label `view`, and
`field` for a knob of several numbers); `containerfs_namespaces` by `kind` (from
the walk behind `namespaces`, at most ten seconds old); the daemon's FUSE
requests by `operation` (`containerfs_requests_total`,
`containerfs_request_errors_total`, `containerfs_request_duration_seconds`). The
same text is served over HTTP with `containerfs mount --metrics-listen`.
""",
    "tasks": """\
The PIDs in the container, in the daemon's pid namespace, one per line. Writing
a PID moves that process, every thread of it, in (see *Writing to tasks*).
""",
    "container.subsystems": """\
One line per available kind: `NAME own|shared ID`, where ID is the namespace's
inode (as in `/proc/PID/ns/*`) or the cgroup path (as in `/proc/PID/cgroup`).
""",
    "container.subtree": """\
The kinds a child made by `mkdir` owns, one line, space-separated. A write of
`+KIND` and `-KIND` words adds and removes kinds, as with
`cgroup.subtree_control`; all words are valid or nothing changes (EINVAL: an
unknown or unavailable kind, a kind both added and removed).
""",
    "container.release": """\
What happens when the container empties: `ignore`, `notify` or `delete` (see
*Release*). Default `ignore` for a container made by `mkdir`, `delete` for one
made by `clone`. A new policy applies from the next emptying.
""",
    "container.events": """\
`populated 0|1` (1 while the container or a descendant has tasks) and
`released N` (times it emptied and its policy ran). A change wakes `poll`(2)
(POLLPRI) and `inotify`(7) (IN_MODIFY) watchers, as `cgroup.events` does.
""",
    "container.init": """\
The PID of the holder of the container's namespaces (its own, or its nearest
ancestor's); `0` in the root.
""",
    "container.origin": """\
`mkdir`, `clone` for a container found from namespaces a process inside made
itself, or `oci` for one that claimed an OCI runtime's namespaces
(`container.claim`).
""",
    "container.max.depth": """\
How many levels of containers may be made below this one: a number from 0, or
`max` (the default) for no limit. As `cgroup.max.depth`.
""",
    "container.max.descendants": """\
How many containers may be below this one, all levels: a number from 0, or `max`
(the default). As `cgroup.max.descendants`.
""",
    "container.kill": """\
Writing `1` sends SIGKILL to every task of the container and its descendants
(through `cgroup.kill`, or one signal per process before Linux 5.14); the write
returns once they are gone. Reads are empty.
""",
    "container.claim": """\
For an OCI runtime front end: writing a PID (in the writer's pid namespace) of a
process in the container's cgroup makes the container own each namespace of that
process that differs from its parent's, held by a holder that joins them; its
`container.origin` becomes `oci`. The write returns once the namespaces are held
and the knob views bound. Only root may write; a container that owns namespaces
already, has children, or a process outside it, is refused and nothing changes.
""",
    "container.cgroup": """\
The container's cgroup as one absolute path, the same in every hierarchy the
daemon uses (what an OCI runtime's `linux.cgroupsPath` takes), or `-` when the
daemon's cgroups are not at one path in every hierarchy (the daemon logs them once).
""",
    "uts.hostname": """\
The UTS namespace's host name: at most 64 bytes, printable, no spaces.
""",
    "uts.domainname": """\
The UTS namespace's NIS domain name: at most 64 bytes, printable, no spaces.
""",
    "user.uid_map": """\
The user namespace's uid map: `INSIDE OUTSIDE COUNT` lines, empty until written.
The kernel takes one write; the next is EPERM.
""",
    "user.gid_map": """\
The user namespace's gid map, as `user.uid_map`.
""",
    "user.max_KIND_namespaces": """\
The user namespace's own limit on namespaces of each kind made inside it, *KIND*
one of {kinds}: a number. Past it `unshare`(2) fails with ENOSPC.
""",
    "time.offsets": """\
`monotonic S NS` and `boottime S NS`. Write `CLOCK SECONDS [NANOSECONDS]`
lines; EBUSY once a process has entered the time namespace (a child container
sharing it counts).
""",
    "ipc.usage": """\
`shm_segments N`, `shm_bytes N`, `msg_queues N`, `sem_sets N` and `mq_queues
N`: the IPC objects in the namespace.
""",
    "net.interfaces": """\
One line per interface: `NAME up|down ADDRESSES RX_BYTES TX_BYTES`, addresses
as comma-separated CIDRs, IPv4 first, or `-`.
""",
    "net.routes": """\
One line per route of the main table (a multipath route: one per next hop):
`DESTINATION GATEWAY DEVICE`, the destination a CIDR or `default`, `-` for no
gateway or device; IPv4 first.
""",
    "mnt.mounts": """\
`count N`, then `MOUNT_POINT FSTYPE SOURCE OPTIONS` for each mount the namespace
sees, with the kernel's octal escapes.
""",
    "pid.count": """\
The number of processes in the pid namespace and its descendants, never the
holder.
""",
    "cgroupns.root": """\
One line per cgroup hierarchy: the cgroup directory that a process inside sees as
`/`.
""",
}

#: Each knob's meaning, by its external file name; the renderer adds the sysctl and range.
KNOB_PROSE: dict[str, str] = {
    "ipc.shm_mni": "the most System V shared memory segments",
    "ipc.shm_max": "the largest shared memory segment, in bytes",
    "ipc.shm_all": "the most shared memory in all, in pages",
    "ipc.msg_mni": "the most System V message queues",
    "ipc.msg_max": "the largest message, in bytes",
    "ipc.msg_mnb": "the most bytes in one message queue",
    "ipc.sem": "`SEMMSL SEMMNS SEMOPM SEMMNI`, the most semaphores per set, in all, per "
    "`semop`(2) call, and sets",
    "ipc.mq_queues_max": "the most POSIX message queues",
    "ipc.mq_msg_max": "the most messages in a POSIX message queue",
    "ipc.mq_msgsize_max": "the largest POSIX message, in bytes",
    "net.somaxconn": "the longest accept queue `listen`(2) allows",
    "net.ip_local_port_range": "`LOW HIGH`, the ephemeral ports",
    "net.ip_forward": "IPv4 forwarding (the parent's 0 forbids it, effective 0; its 1 or `max` "
    "leaves the container's own)",
    "pid.max": "the highest PID (per pid namespace since Linux 6.14; no view before)",
}

#: v1 sources of controller files whose value is translated (the same-named ones
#: come from the cgroup backend's table).
V1_TRANSLATED: dict[str, str] = {
    "memory.max": "`memory.limit_in_bytes` (a raise past `memory.memsw.limit_in_bytes` "
    "raises that first by as much)",
    "cpu.max": "`cpu.cfs_quota_us` and `cpu.cfs_period_us`",
    "cpu.weight": "`cpu.shares`, converted as runc and systemd do",
    "cpu.stat": "the cpu and cpuacct controllers' counters",
    "io.max": "the `blkio.throttle.*_device` files",
}

#: Controller files the cgroup backend knows: their values, by v2 name.
CONTROLLER_PROSE: dict[str, str] = {
    "memory.max": "bytes (`K`, `M`, `G` suffixes taken) or `max`",
    "memory.high": "bytes or `max`: the throttling limit",
    "memory.low": "bytes: best-effort protection",
    "memory.min": "bytes: hard protection",
    "memory.swap.max": "bytes or `max`",
    "memory.current": "bytes in use",
    "memory.peak": "the most bytes used",
    "memory.stat": "`KEY VALUE` lines, as cgroup v2 shows them",
    "memory.events": "`KEY COUNT` lines, as cgroup v2 shows them",
    "pids.max": "a number or `max`",
    "pids.current": "the number of tasks",
    "pids.peak": "the most tasks at once",
    "pids.events": "`max N`: forks refused by `pids.max`",
    "cpu.max": "`QUOTA PERIOD` or `max PERIOD`, in microseconds",
    "cpu.weight": "1 to 10000",
    "cpu.stat": "`usage_usec`, `user_usec`, `system_usec` and throttling counters",
    "cpuset.cpus": "a CPU list such as `0-3,5`",
    "cpuset.mems": "a memory node list such as `0`",
    "cpuset.cpus.effective": "the CPUs granted",
    "cpuset.mems.effective": "the memory nodes granted",
    "io.max": "`MAJOR:MINOR rbps=N wbps=N riops=N wiops=N`, each a number or `max`",
    "io.weight": "`[default|MAJOR:MINOR] WEIGHT`, 1 to 10000",
    "io.stat": "per device counters, as cgroup v2 shows them",
}

CONTROLLERS7 = """\
Each controller the host offers shows its files in the containers that own it,
by their cgroup v2 names and with v2 syntax on every host: on a cgroup v1
hierarchy containerfs translates. Which files exist depends on the controllers
the host offers and on its cgroup version: `ls` a container to see them. The
files containerfs knows:
"""

#: ERRORS of containerfs(7): errno name -> when. Every errno the engine's errors
#: carry must be here.
ERRORS7: list[tuple[str, str]] = [
    (
        "EINVAL",
        "A malformed write (the old value stays; the daemon logs why); `mv` of a "
        "container to another parent; an invalid container name; a `tasks` write "
        "that needs a `spawn` kind, moves a multithreaded process into `mnt`, or names "
        "one of the daemon's own processes or pid 1.",
    ),
    ("ENAMETOOLONG", "A name longer than 255 bytes, or a cgroup path that would reach PATH_MAX."),
    (
        "E2BIG",
        "A write of more than a page to a control file, as cgroupfs: nothing of it is applied.",
    ),
    ("EEXIST", "`mkdir` of a name already used by a container or a file."),
    ("ENOENT", "No such container or file."),
    (
        "EBUSY",
        "`rmdir` of a container with tasks or children; a `tasks` write naming a "
        "process already traced; a write to `time.offsets` after a process entered.",
    ),
    (
        "EACCES",
        "Writing a read-only file (a shared kind, the root's own objects, a status "
        "file); any write, `mkdir`, `rmdir` or `mv` that a file's or directory's "
        "owner and mode do not allow.",
    ),
    (
        "EPERM",
        "Creating or removing files (`touch`, `mknod`, `rm`, `ln`); `rmdir` or `mv` "
        "of the root; `mv` of a control file; `chmod`; `chown` by anyone but root, "
        "of a file or of the root; a second write to an ID map. A `tasks` write "
        "whose writer may not ptrace the process, whose process may not `setns`, "
        "or that a delegated user aims at "
        "another user's process or one outside the delegated subtree.",
    ),
    ("ESRCH", "A `tasks` write naming no process, or one that exited meanwhile."),
    (
        "EAGAIN",
        "A `tasks` write whose process did not stop within 2 seconds, or is frozen; a "
        "`mkdir` past an ancestor's `container.max.depth` or "
        "`container.max.descendants`, or whose holder would pass an ancestor's "
        "`pids.max`.",
    ),
    (
        "ENOSPC",
        "A `tasks` write into a container whose `cpuset.cpus` or `cpuset.mems` is empty.",
    ),
    (
        "EOPNOTSUPP",
        "An external knob view other than `max` in a container that does not own its "
        "mount namespace.",
    ),
    ("EIO", "An internal error of the daemon, logged with its traceback."),
]

SEE_ALSO7 = [
    ("containerfs", 8),
    ("cgroups", 7),
    ("namespaces", 7),
    ("user_namespaces", 7),
    ("ipc_namespaces", 7),
    ("network_namespaces", 7),
    ("pid_namespaces", 7),
    ("time_namespaces", 7),
    ("setns", 2),
    ("proc", 5),
    ("lsns", 8),
]
