/*
 * containerfs-pin: the namespace holder of one container (docs/design.md,
 * "Namespaces: the holder").
 *
 *   containerfs-pin SOCKFD PARENT_PIDFD JOIN_FLAGS UNSHARE_FLAGS MOUNTPOINT [WORD=FD]...
 *
 * SOCKFD is an AF_UNIX SOCK_SEQPACKET socket shared with the daemon.
 * PARENT_PIDFD is an inherited pidfd on the parent container's holder (-1:
 * keep the namespaces we were started in); a pidfd names the process itself,
 * so a reused pid cannot make us join the wrong namespaces.  JOIN_FLAGS are
 * the CLONE_NEW* bits of the parent's namespaces we are not in (the daemon
 * knows both sides; joining one's own user namespace would fail), joined
 * through PARENT_PIDFD.  UNSHARE_FLAGS are the CLONE_NEW* bits the container
 * owns.  Flags are decimal or 0x hex.  MOUNTPOINT is detached from a mount
 * namespace the container owns, so containers do not see the daemon's mount,
 * and so are the ip netns names in /run/netns (see detach_netns_names).
 * Each KIND=FD word (KIND: ipc uts net pid mnt user cgroup time) names an
 * inherited nsfs fd on a namespace to join instead of the parent's of that
 * kind: one that processes of a container made themselves (unshare -n, ip
 * netns add), which the holder then keeps alive.  A KIND may appear once, and
 * not in JOIN_FLAGS or UNSHARE_FLAGS.
 *
 * WORD=FD may also be a placement word (see "Cgroup placement" below):
 * pins=FD, cgdir=FD (each at most once) and tasks=FD (up to 16).
 *
 * Joining order: a time namespace first (the parent's is its
 * time_for_children, see below), then every other non-user kind, the
 * parent's through PARENT_PIDFD and the KIND=FD ones, all while we still have
 * every capability of the daemon's user namespace; then /proc/sys is opened
 * (see open_sysdir), then a user namespace last (a KIND=FD one or the
 * parent's).  A joined pid namespace takes effect in children: the pin forks
 * once after joining, so the holder runs in it (as an ordinary process, or as
 * the init of a pid namespace it owns).  Then the owned kinds are unshared.
 *
 * Startup protocol: wait for "go" (EOF: exit quietly), build the namespaces,
 * and let the final process (the holder) send "ok".  Any failing process sends
 * "err <errno> <step>" and exits 1.  The daemon learns the holder's pid from
 * the SCM_CREDENTIALS the kernel attaches to "ok", and answers "peer" with its
 * own end of the socketpair attached (SCM_RIGHTS).  The holder keeps that copy
 * at fd HOLDER_CHANNEL_FD (3) for as long as it lives and says "kept": its own
 * end then never sees EOF, and a restarted daemon takes fd 3 with
 * pidfd_getfd(2) to talk to it again (no filesystem path involved).  EOF
 * instead of "peer": the daemon went away before it took the holder, which
 * nobody knows then: it exits.
 * The holder's fds: 0-2 /dev/null, 3 the daemon's end, 4 its own end, 5
 * /proc/sys of its own proc instance (see open_sysdir), 6 /proc/sysvipc of
 * that instance (when there is one).
 *
 * After that the holder serves sysctl requests, one at a time, one reply per
 * request, forever:
 *
 *   "<tag> r <path>"          -> "<tag> ok <content>" | "<tag> err <errno>"
 *   "<tag> w <path> <value>"  -> "<tag> ok" | "<tag> err <errno>"
 *                                (one write() of <value>)
 *   "<tag> o <path>"          -> "<tag> ok" with an O_PATH fd (SCM_RIGHTS) on
 *                                /proc/sys/<path> as the holder's mount namespace
 *                                and its other namespaces resolve it | "<tag> err <errno>"
 *   "<tag> n"                 -> "<tag> ok" | "<tag> err <errno>": enter the
 *                                container's final mount namespace (see below)
 *   "<tag> f <path>"          -> "<tag> ok" with an fd (SCM_RIGHTS) on
 *                                /proc/sys/<path> opened read-write, as for "w"
 *                                | "<tag> err <errno>" (see "Sysctl fds" below)
 *   "<tag> i"                 -> "<tag> ok" with four fds: /proc/sysvipc/shm,
 *                                msg and sem opened for reading, and an fs
 *                                context of the namespace's mqueue (see "IPC fds")
 *                                | "<tag> err <errno>"
 *
 * <tag> is 1 to 20 decimal digits chosen by the daemon and echoed verbatim,
 * so a daemon can tell its reply from stale ones: replies to requests that
 * timed out, or that a daemon killed mid-request left queued on its end (the
 * holder's copy keeps them), or to a request the holder was still working on
 * when a new daemon attached.  A message without a well-formed tag gets
 * "0 err 22" (EINVAL; no daemon uses tag 0).  <path> is relative to /proc/sys
 * and resolved beneath it (no "..", no absolute path, no symlink, no other
 * mount); the part after the tag may be at most REQ_MAX bytes (EMSGSIZE).
 * The holder answers from inside every namespace of the container, which a
 * daemon thread cannot do for sysctls that look at the caller's active pid
 * namespace (kernel.pid_max) or its user namespace (user.max_*_namespaces).
 * Bad requests get an "err"; nothing a request holds can end the holder.
 *
 * "o" is how the daemon binds its views over /proc/sys files (docs/design.md,
 * "Internal views inside the container"): a /proc/sys file of a per-namespace
 * sysctl is a different dentry for each ipc, net or active pid namespace that
 * looks it up, so the bind must land on the dentry the container's own
 * processes reach, and only a process in all their namespaces (the holder)
 * can name it.  The daemon then attaches its bind mount on that fd.
 *
 * Deferred mount namespace: when the container owns its mount namespace and
 * will be in another user namespace than the daemon, the holder stays in an
 * intermediate mount namespace of the daemon's user namespace (without the
 * daemon's mount) after unsharing everything else.  The daemon binds its
 * views there, then sends "n": the holder unshares the container's mount
 * namespace from it, and because that copy goes to a less privileged user
 * namespace the kernel locks every mount in it, the binds included (root
 * inside can neither unmount them nor mount a fresh proc that would show
 * what they cover).  "n" for a holder with nothing deferred just says "ok".
 *
 * Sysctl fds ("f"): a sysctl file of a per-namespace table (ipc on kernels
 * that keep ipc sysctls in the namespace, net, pid_max, user) stays bound to
 * the namespace it was looked up in, so the daemon writes it with pwrite(2)
 * at offset 0 without asking us again: the kernel checks the writer's
 * credentials at each write (an ipc sysctl of a user namespace whose root is
 * mapped refuses the daemon: it then sends "w").  The daemon decides which
 * sysctls may go that way; uts ones, for one, answer for the writer's own
 * namespace and never do.
 *
 * IPC fds ("i"): /proc/sysvipc files keep the IPC namespace of their opener
 * (a seq file re-read from offset 0 lists it again), and an mqueue filesystem
 * context made with fsopen takes the opener's IPC namespace: the daemon mounts
 * it with fsmount, attached nowhere, and counts the container's objects from
 * these with no thread joining the namespace.  The sysvipc files come from our own proc
 * instance (see open_sysdir), which nothing inside can mount over; without
 * one, "i" says ENOTSUP and the daemon reads the old way.
 *
 * Requests are served with the effective uid and gid of root of the
 * holder's user namespace once that has them mapped: ipc sysctls give owner
 * permissions only to that euid (ipc/ipc_sysctl.c), not to a capability, so
 * after "0 100000 ..." the holder's host uid 0 would get EACCES.  Its
 * capabilities in that user namespace stay (it never was root there).
 *
 * Security: every pin process is made non-dumpable (PR_SET_DUMPABLE 0) at
 * start and again right before "ok" (a credential change may reset it): a
 * root inside a user namespace the holder is in (or owns) then cannot ptrace
 * it, read its /proc/PID/{environ,mem,fd/...} or take its fds (the daemon's
 * channel, /proc/sys).  That needs CAP_SYS_PTRACE over the user namespace the
 * pin was executed in, which the daemon (root there) has: pidfd_getfd and
 * the /proc/HOLDER/ns files keep working for it.
 *
 * Time namespace: the holder does not run in a time namespace the container
 * owns.  It unshares CLONE_NEWTIME itself, last, so that the container's time
 * namespace is its time_for_children with no process in it yet: its offsets
 * (/proc/HOLDER/timens_offsets) stay writable until the first process enters.
 * Whatever joins it takes the holder's time_for_children, never its active
 * one: so does a nested pin whose container shares the time namespace, and
 * that is an entry too (the parent's offsets are fixed from then on).  A
 * time=FD namespace is joined as it is (the fd names the namespace itself).
 *
 * Cgroup placement: a move by pid (a write to cgroup.procs, by the daemon or
 * by a process writing "0" there) takes the kernel's global
 * cgroup_threadgroup_rwsem for writing, which waits for an RCU grace period
 * unless another move just did (milliseconds on a busy machine).  Two ways
 * around it need no such write: a fork placed by clone3(CLONE_INTO_CGROUP)
 * (cgroup2), and a single thread writing "0" to a v1 tasks file (it moves only
 * itself, without that lock).  With pins=FD (a cgroup2 directory: where
 * holders live) the first process forks the rest of the chain into it.  With
 * cgdir=FD (the container's cgroup2 directory) and/or tasks=FD (its v1 tasks
 * files), the container's cgroup namespace is not unshared by the chain: a
 * helper process is forked at once (before any join, while we have the
 * daemon's credentials and cgroup namespace, which clone3 checks) into cgdir,
 * writes "0" to each tasks file, and waits.  After the chain's unshare the
 * chain sends it a pidfd on itself when its user namespace changed; the
 * helper joins that user namespace (so that the new namespace has the owner
 * an unshare of ours would give it), unshares CLONE_NEWCGROUP (rooted at the
 * helper's cgroups, the container's), sends back an nsfs fd on it and exits;
 * the chain setns()es into it.  The holder itself never enters the
 * container's cgroups.  A clone3 the kernel refuses (ENOSYS/E2BIG before
 * 5.3/5.7, or a cgroup it will not fork into) fails with a step starting with
 * "clone3 into": the daemon then places the pin by pid as before.
 *
 * Process chain: the first process always forks, so the holder is never the
 * daemon's child.  Each process that forked waits until its child reported (a
 * byte on a private pipe) and then exits 0; each forked child sets
 * PR_SET_PDEATHSIG until it reported, so killing the first process tears down a
 * half-built chain.  The holder ignores every signal (SIGCHLD ignored makes the
 * kernel reap orphans of its pid namespace), and serves requests forever.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/openat2.h>
#include <stdint.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

/* clone3(2) with CLONE_INTO_CGROUP (Linux >= 5.7), declared here so that older
 * headers build it too: struct clone_args of linux/sched.h, version 2. */
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#define PIN_CLONE_INTO_CGROUP 0x200000000ULL
struct pin_clone_args {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
	uint64_t set_tid, set_tid_size, cgroup;
};

/* linux/pidfd.h, Linux >= 6.11: an nsfs fd on the process's namespace. */
#ifndef PIDFD_GET_TIME_FOR_CHILDREN_NAMESPACE
#define PIDFD_GET_TIME_FOR_CHILDREN_NAMESPACE _IO(0xFF, 8)
#endif

#ifndef OPEN_TREE_CLONE /* linux/mount.h, which clashes with sys/mount.h */
#define OPEN_TREE_CLONE 1
#endif
#ifndef OPEN_TREE_CLOEXEC
#define OPEN_TREE_CLOEXEC O_CLOEXEC
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
/* linux/mount.h (fsopen and friends, Linux >= 5.2) */
#ifndef FSOPEN_CLOEXEC
#define FSOPEN_CLOEXEC 0x00000001
#endif
#ifndef FSCONFIG_CMD_CREATE
#define FSCONFIG_CMD_CREATE 6
#endif
#ifndef FSMOUNT_CLOEXEC
#define FSMOUNT_CLOEXEC 0x00000001
#endif
#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
#endif
#ifndef MOUNT_ATTR_NOSUID
#define MOUNT_ATTR_NOSUID 0x00000002
#define MOUNT_ATTR_NODEV 0x00000004
#define MOUNT_ATTR_NOEXEC 0x00000008
#endif

#define ALL_NS                                                                  \
	(CLONE_NEWUSER | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET | CLONE_NEWPID | \
	 CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWTIME)

/* The holder's fds (see the header comment). */
#define HOLDER_CHANNEL_FD 3 /* the daemon's end: a restarted daemon takes it */
#define HOLDER_SOCK_FD 4    /* our end */
#define HOLDER_SYSDIR_FD 5  /* /proc/sys */
#define HOLDER_IPCDIR_FD 6  /* /proc/sysvipc of our own proc instance, if any */

/* Namespace kinds as KIND=FD words name them, in no particular order. */
static const struct {
	const char *name;
	int flag;
} kinds[] = {
	{"ipc", CLONE_NEWIPC}, {"uts", CLONE_NEWUTS},	  {"net", CLONE_NEWNET},
	{"pid", CLONE_NEWPID}, {"mnt", CLONE_NEWNS},	  {"user", CLONE_NEWUSER},
	{"cgroup", CLONE_NEWCGROUP}, {"time", CLONE_NEWTIME},
};
#define NKINDS (sizeof kinds / sizeof kinds[0])

static int joinfd[NKINDS]; /* KIND=FD fds by kinds[] index; -1: none */

/* Placement words (see "Cgroup placement" in the header comment). */
#define MAX_TASKS 16
static int pinsfd = -1;	     /* pins=FD: the v2 holders' cgroup directory */
static int cgdirfd = -1;     /* cgdir=FD: the container's v2 cgroup directory */
static int tasksfd[MAX_TASKS]; /* tasks=FD: v1 tasks files of the container's placement */
static size_t ntasks;
static int place_cgroup;     /* any cgdir= or tasks= word: the helper makes the cgroup ns */

static int sock = -1; /* our end of the daemon's socketpair */
static int up = -1;   /* pipe to our parent pin process; -1 in the first one */

static void say(const char *msg)
{
	/* MSG_NOSIGNAL: a daemon that went away must not kill us with SIGPIPE. */
	if (sock >= 0)
		(void)send(sock, msg, strlen(msg), MSG_NOSIGNAL);
}

static void end_cg_helper(void);

/* Report errno and the failed step to the daemon and give up. */
static void __attribute__((noreturn)) fail(const char *step)
{
	char msg[160];
	int err = errno ? errno : EIO;

	/* First, so that the container's cgroups are empty once the daemon
	 * hears of the failure (it removes them). */
	end_cg_helper();
	snprintf(msg, sizeof msg, "err %d %s", err, step);
	say(msg);
	_exit(1);
}

static int pidfd_open(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

static int parse_int(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 0);
	if (errno || end == s || *end || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

/* Tell our parent pin process that the chain below it is complete. */
static void release_parent(void)
{
	if (up < 0)
		return;
	/* Our parent exits right after this byte: do not die with it. */
	(void)prctl(PR_SET_PDEATHSIG, 0);
	if (write(up, "k", 1) != 1) {
		/* the parent is gone; nothing left to tell */
	}
	close(up);
	up = -1;
}

/*
 * fork(), or with CGFD >= 0 clone3(CLONE_INTO_CGROUP): the child starts in
 * that cgroup2 directory, without the cgroup_threadgroup_rwsem write (and its
 * RCU grace period) that a move by cgroup.procs costs.
 */
static pid_t fork_into(int cgfd)
{
	struct pin_clone_args args;

	if (cgfd < 0)
		return fork();
	memset(&args, 0, sizeof args);
	args.flags = PIN_CLONE_INTO_CGROUP;
	args.exit_signal = SIGCHLD;
	args.cgroup = (uint64_t)cgfd;
	return (pid_t)syscall(SYS_clone3, &args, sizeof args);
}

/*
 * Fork (into cgroup2 directory CGFD unless -1).  Returns in the child only:
 * the parent waits until the child (or the chain below it) reported, passes
 * that on and exits.
 */
static void fork_chain(int cgfd)
{
	int pipefd[2], self, status;
	pid_t child;
	char c;
	ssize_t n;

	if (pipe2(pipefd, O_CLOEXEC) < 0)
		fail("pipe");
	/* A pidfd on ourselves lets the child notice if we died before its
	 * PR_SET_PDEATHSIG took effect (getppid() is 0 across a pid namespace). */
	self = pidfd_open(getpid());
	if (self < 0)
		fail("pidfd_open self");
	child = fork_into(cgfd);
	if (child < 0)
		fail(cgfd < 0 ? "fork" : "clone3 into pins cgroup");
	if (child == 0) {
		struct pollfd p = {.fd = self, .events = POLLIN};

		close(pipefd[0]);
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
			fail("prctl PR_SET_PDEATHSIG");
		if (poll(&p, 1, 0) != 0)
			_exit(1);
		close(self);
		if (up >= 0)
			close(up);
		up = pipefd[1];
		return;
	}
	close(self);
	close(pipefd[1]);
	do
		n = read(pipefd[0], &c, 1);
	while (n < 0 && errno == EINTR);
	if (n == 1) {
		release_parent();
		_exit(0);
	}
	/* The child failed.  It reported itself unless a signal killed it. */
	while (waitpid(child, &status, 0) < 0) {
		if (errno != EINTR)
			fail("waitpid");
	}
	if (WIFSIGNALED(status)) {
		char step[64];

		snprintf(step, sizeof step, "child killed by signal %d", WTERMSIG(status));
		errno = ECHILD;
		fail(step);
	}
	_exit(1);
}

/* -- cgroup placement without a move by pid (see the header comment) -------- */

static int cghelper = -1;	/* our end of the cgroup helper's socketpair */
static pid_t cghelper_pid;	/* the helper ... */
static pid_t cghelper_parent; /* ... and the pin process that forked it */

/* Send MSG on socket S with FD attached (none if -1). */
static int send_fd(int s, const char *msg, int fd)
{
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int))];
	} c;
	struct iovec iov = {(void *)msg, strlen(msg)};
	struct msghdr m;
	struct cmsghdr *h;

	memset(&m, 0, sizeof m);
	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	if (fd >= 0) {
		memset(&c, 0, sizeof c);
		m.msg_control = c.b;
		m.msg_controllen = sizeof c.b;
		h = CMSG_FIRSTHDR(&m);
		h->cmsg_level = SOL_SOCKET;
		h->cmsg_type = SCM_RIGHTS;
		h->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(h), &fd, sizeof(int));
	}
	return sendmsg(s, &m, MSG_NOSIGNAL) < 0 ? -1 : 0;
}

/* One message on S into BUF (at most LEN bytes); *FD: the fd it carried, or -1. */
static ssize_t recv_fd(int s, char *buf, size_t len, int *fd)
{
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int))];
	} c;
	struct iovec iov = {buf, len};
	struct msghdr m;
	struct cmsghdr *h;
	ssize_t n;

	*fd = -1;
	do {
		memset(&m, 0, sizeof m);
		m.msg_iov = &iov;
		m.msg_iovlen = 1;
		m.msg_control = c.b;
		m.msg_controllen = sizeof c.b;
		n = recvmsg(s, &m, MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	for (h = n >= 0 ? CMSG_FIRSTHDR(&m) : NULL; h; h = CMSG_NXTHDR(&m, h)) {
		if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS &&
		    h->cmsg_len >= CMSG_LEN(sizeof(int)) && *fd < 0)
			memcpy(fd, CMSG_DATA(h), sizeof(int));
	}
	return n;
}

/*
 * The cgroup helper: a process born in the container's cgroup2 directory,
 * which joins the container's v1 cgroups by writing "0" to their tasks files
 * (a thread moving itself skips the cgroup_threadgroup_rwsem), then, when the
 * chain asks, joins the chain's user namespace (a pidfd sent along) and
 * unshares the cgroup namespace: its root is the helper's cgroups, the
 * container's.  It sends that namespace back and exits.  EOF: the chain gave
 * up.  Its failures go to the daemon like any pin process's.
 */
static void __attribute__((noreturn)) cg_helper(int s)
{
	char buf[4];
	int fd, ns;
	size_t i;
	ssize_t n;

	for (i = 0; i < ntasks; i++) {
		if (write(tasksfd[i], "0", 1) != 1)
			fail("join v1 cgroup");
	}
	n = recv_fd(s, buf, sizeof buf, &fd);
	if (n <= 0)
		_exit(n == 0 ? 0 : 1);
	if (fd >= 0 && setns(fd, CLONE_NEWUSER) < 0)
		fail("cgroup helper: setns user");
	if (unshare(CLONE_NEWCGROUP) < 0)
		fail("unshare cgroup");
	ns = open("/proc/self/ns/cgroup", O_RDONLY | O_CLOEXEC);
	if (ns < 0)
		fail("cgroup helper: open its cgroup namespace");
	if (send_fd(s, "k", ns) < 0)
		_exit(1);
	_exit(0);
}

/* Kill and reap the cgroup helper if we forked it and it may still be about. */
static void end_cg_helper(void)
{
	int saved = errno;

	if (cghelper_pid > 0 && getpid() == cghelper_parent) {
		(void)kill(cghelper_pid, SIGKILL);
		while (waitpid(cghelper_pid, NULL, 0) < 0 && errno == EINTR)
			;
		cghelper_pid = 0;
	}
	errno = saved;
}

/* Start the cgroup helper, in the container's cgroup2 directory if there is one. */
static void start_cg_helper(void)
{
	int sv[2];
	pid_t child;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		fail("socketpair cgroup helper");
	child = fork_into(cgdirfd);
	if (child < 0)
		fail(cgdirfd < 0 ? "fork cgroup helper" : "clone3 into container cgroup");
	if (child == 0) {
		close(sv[0]);
		cg_helper(sv[1]);
	}
	close(sv[1]);
	cghelper = sv[0];
	cghelper_pid = child;
	cghelper_parent = getpid();
}

/*
 * Enter the cgroup namespace the helper makes, in the user namespace we are
 * in now (SEND_USER: not the one we started in, so the helper joins it first,
 * and the namespace is owned by it as an unshare of ours would be).
 */
static void enter_helper_cgroup_ns(int send_user)
{
	char buf[4];
	int pidfd = -1, ns;
	ssize_t n;

	if (send_user) {
		pidfd = pidfd_open(getpid());
		if (pidfd < 0)
			fail("pidfd_open self");
	}
	if (send_fd(cghelper, "u", pidfd) < 0)
		fail("send to cgroup helper");
	if (pidfd >= 0)
		close(pidfd);
	n = recv_fd(cghelper, buf, sizeof buf, &ns);
	if (n != 1 || buf[0] != 'k' || ns < 0) {
		/* The helper reported its own error to the daemon already. */
		errno = ECHILD;
		fail("cgroup helper");
	}
	if (setns(ns, CLONE_NEWCGROUP) < 0)
		fail("setns cgroup");
	close(ns);
	close(cghelper);
	cghelper = -1;
	end_cg_helper(); /* it exits by itself right after sending */
}

/*
 * An nsfs fd on the time namespace of the parent holder's children: that is
 * the container's (the holder itself is not in a time namespace it owns).
 * setns(pidfd, CLONE_NEWTIME) would take the holder's *active* one instead.
 * Before Linux 6.11 there is no pidfd ioctl for it: open it through /proc by
 * the pidfd's pid and check that the pidfd's process was still alive after the
 * open, so the pid still named it.  Call this before joining a mount
 * namespace, whose /proc may be another.
 */
static int parent_time_ns(int pidfd)
{
	char path[64], buf[512], *pid;
	struct pollfd p = {.fd = pidfd, .events = POLLIN};
	ssize_t n;
	int fd;

	fd = ioctl(pidfd, PIDFD_GET_TIME_FOR_CHILDREN_NAMESPACE, 0);
	if (fd >= 0 || (errno != ENOTTY && errno != EINVAL))
		return fd;
	snprintf(path, sizeof path, "/proc/self/fdinfo/%d", pidfd);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	pid = strstr(buf, "\nPid:\t");
	if (!pid || pid[6] == '-' || pid[6] == '0') { /* -1: exited; 0: not in our pid ns */
		errno = ESRCH;
		return -1;
	}
	snprintf(path, sizeof path, "/proc/%ld/ns/time_for_children", strtol(pid + 6, NULL, 10));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0 && poll(&p, 1, 0) != 0) { /* readable: it exited, the pid may be reused */
		close(fd);
		errno = ESRCH;
		return -1;
	}
	return fd;
}

static int sysdir = -1; /* /proc/sys, see open_sysdir() */
static int ipcdir = -1; /* /proc/sysvipc of the same private instance, or -1 */

/*
 * The sys directory of a proc instance of our own (fsopen, Linux >= 5.8 for
 * one instance per mount), detached from every mount namespace.  Why not
 * the /proc we see: the kernel hashes /proc/sys dentries by parent and name,
 * and every namespace that looked a file up adds one to the same hash chain
 * (proc_sys_compare then skips the others).  With a thousand containers
 * each lookup walked a thousand dentries, and a new holder's reads were most
 * of a mkdir's cost.  Our own instance's dentries are ours alone.  Sysctl
 * files answer for the namespaces of the reader, not of the mount, and
 * nothing mounted over /proc/sys anywhere shows through it.  -1 when the
 * kernel refuses (before 5.2 there is no fsopen; a security module may deny
 * the mount): open_sysdir() then copies the /proc/sys we see.  Checked: a
 * root pin in a mount namespace owned by another user namespace, with a
 * bind over a /proc/sys file there, still gets its instance.
 */
static int private_sysdir(void)
{
	int fsfd, mfd, fd;

	fsfd = (int)syscall(SYS_fsopen, "proc", FSOPEN_CLOEXEC);
	if (fsfd < 0)
		return -1;
	if (syscall(SYS_fsconfig, fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
		close(fsfd);
		return -1;
	}
	mfd = (int)syscall(SYS_fsmount, fsfd, FSMOUNT_CLOEXEC,
			   MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
	close(fsfd);
	if (mfd < 0)
		return -1;
	fd = openat(mfd, "sys", O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	/* Without System V IPC in the kernel there is none: "i" says ENOTSUP. */
	ipcdir = openat(mfd, "sysvipc", O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	close(mfd); /* fd keeps the detached mount */
	return fd;
}

/*
 * /proc/sys for the holder's sysctl requests: a private instance (above), or
 * else a private copy of the mount we see, detached from every mount
 * namespace (open_tree, Linux >= 5.2): what is later mounted over /proc/sys
 * inside the container (containerfs binds its views there) does not show
 * through it, and ".." from its root leads nowhere, should the fd ever leak.
 * Non-recursive first; EINVAL means locked mounts below it (in a mount
 * namespace owned by a container's user namespace), which only a recursive
 * copy may take along (they are other mounts, so open_sysctl() refuses
 * them).  Without CAP_SYS_ADMIN over the mount namespace's owner, fall back
 * to a plain open: mounts over parts of /proc/sys then get EXDEV.
 */
static int open_sysdir(void)
{
	int fd;

	fd = private_sysdir();
	if (fd >= 0)
		return fd;
	fd = (int)syscall(SYS_open_tree, AT_FDCWD, "/proc/sys", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
	if (fd < 0 && errno == EINVAL)
		fd = (int)syscall(SYS_open_tree, AT_FDCWD, "/proc/sys",
				  OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
	if (fd < 0)
		fd = open("/proc/sys", O_PATH | O_DIRECTORY | O_CLOEXEC);
	return fd;
}

/*
 * Join the namespace behind nsfs FD as kind I, then close FD.  Joining a
 * time namespace is entering it: its offsets cannot be changed any more.
 */
static void join_fd(size_t i)
{
	char step[32];

	if (setns(joinfd[i], kinds[i].flag) < 0) {
		snprintf(step, sizeof step, "setns %s", kinds[i].name);
		fail(step);
	}
	close(joinfd[i]);
	joinfd[i] = -1;
}

static size_t kind_index(int flag)
{
	size_t i;

	for (i = 0; i < NKINDS && kinds[i].flag != flag; i++)
		;
	return i;
}

/* Where iproute2 keeps its names (kernel/netns.py NETNS_DIR). */
#define NETNS_DIR "/run/netns"

/*
 * Detach the ip netns names (/run/netns/NAME, bind mounts of network
 * namespaces) copied into a new mount namespace: each copy would keep its
 * namespace alive for as long as this container lives, a removed
 * container's among them, and a name bound on the host before the mkdir
 * would show up as a clone of this container.  /run/netns is a mount of its
 * own wherever iproute2 or the daemon made a name (kernel/netns.py), so one
 * lazy unmount takes every name below it.  Errors are ignored (EINVAL: no
 * names here, as in a parent container's namespace that had them detached).
 */
static void detach_netns_names(void)
{
	int n = 0;

	while (n++ < 8 && umount2(NETNS_DIR, MNT_DETACH) == 0)
		;
}

/*
 * Undo the kernel's \NNN escapes of a mountinfo field in place.
 */
static void unescape_field(char *s)
{
	char *out = s;

	while (*s) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*out++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 4;
		} else {
			*out++ = *s++;
		}
	}
	*out = '\0';
}

/*
 * Detach every nsfs mount (an `ip netns add` name, a runtime's netns file)
 * that the new mount namespace copied from the one it was made from.  They
 * were made outside the container: kept, they would hold those namespaces
 * alive as long as the container, and clone discovery would take each for a
 * namespace made inside it.  Best effort: a mount that cannot be detached
 * (locked) stays, and discovery then adopts it as before.
 */
static void drop_copied_nsfs(void)
{
	char *buf = NULL, *line, *next;
	size_t len = 0, cap = 0;
	ssize_t n;
	int fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	for (;;) {
		if (cap - len < 4096) {
			char *grown = realloc(buf, cap + 65536);

			if (grown == NULL)
				goto out;
			buf = grown;
			cap += 65536;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	if (buf == NULL)
		goto out;
	buf[len] = '\0';
	for (line = buf; line != NULL && *line; line = next) {
		char *sep, *point, *end;
		int i;

		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		sep = strstr(line, " - ");
		if (sep == NULL || strncmp(sep + 3, "nsfs ", 5) != 0)
			continue;
		/* id parent major:minor root MOUNTPOINT ... */
		point = line;
		for (i = 0; i < 4 && point != NULL; i++) {
			point = strchr(point, ' ');
			if (point != NULL)
				point++;
		}
		if (point == NULL)
			continue;
		end = strchr(point, ' ');
		if (end == NULL)
			continue;
		*end = '\0';
		unescape_field(point);
		(void)umount2(point, MNT_DETACH | UMOUNT_NOFOLLOW);
	}
out:
	free(buf);
	close(fd);
}

/*
 * In a new mount namespace, make every mount private and detach MOUNTPOINT
 * (the daemon's mount), the ip netns names and the other nsfs mounts copied
 * with it from it.  EINVAL: not a mount point here, or locked because the
 * mount namespace was copied from one owned by another user namespace: see
 * join_all() for how a user-namespaced container avoids that.
 */
static void unshare_mnt_without(const char *mountpoint, int unshared)
{
	if (!unshared && unshare(CLONE_NEWNS) < 0)
		fail("unshare mnt");
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		fail("make / rprivate");
	if (umount2(mountpoint, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
		fail("detach mountpoint");
	detach_netns_names();
	drop_copied_nsfs();
}

/*
 * Join every namespace we were asked to, in the order of the header comment:
 * the parent holder's of JOIN_FLAGS through PARENTFD (then closed: no later
 * process of the chain keeps it), the KIND=FD ones.  Time first, while we
 * still have every capability over its owner (the parent's is its
 * time_for_children, opened by parent_time_ns() before any mount namespace
 * changes /proc); user last, so that every other join is checked with the
 * daemon's credentials; /proc/sys is opened in between, in the final mount
 * namespace and before any user namespace: open_tree() needs CAP_SYS_ADMIN
 * over the owner of the mount namespace we are in, and no process of the
 * container exists yet that could have mounted over /proc/sys (a joined
 * mount namespace may have some: see open_sysdir()).  A parent that has
 * exited fails with ESRCH.
 *
 * DETACH (not NULL: the container owns a mount namespace and will be in
 * another user namespace than now): right before the user namespace changes,
 * a mount namespace of our own without the daemon's mount at DETACH.  The
 * container's mount namespace is then copied from that one: a mount copied
 * into a mount namespace owned by another user namespace is locked and
 * cannot be detached there any more.
 */
static void join_all(int parentfd, int join, const char *detach)
{
	size_t i, t = kind_index(CLONE_NEWTIME), u = kind_index(CLONE_NEWUSER);

	if (joinfd[t] >= 0) {
		join_fd(t);
	} else if (join & CLONE_NEWTIME) {
		int timefd = parent_time_ns(parentfd);

		if (timefd < 0)
			fail("open parent time namespace");
		if (setns(timefd, CLONE_NEWTIME) < 0)
			fail("setns parent time");
		close(timefd);
	}
	if ((join & ~(CLONE_NEWTIME | CLONE_NEWUSER)) &&
	    setns(parentfd, join & ~(CLONE_NEWTIME | CLONE_NEWUSER)) < 0)
		fail("setns parent");
	for (i = 0; i < NKINDS; i++) {
		if (i != t && i != u && joinfd[i] >= 0)
			join_fd(i);
	}
	sysdir = open_sysdir();
	if (sysdir < 0)
		fail("open /proc/sys");
	if (detach != NULL)
		unshare_mnt_without(detach, 0);
	if (joinfd[u] >= 0)
		join_fd(u);
	else if ((join & CLONE_NEWUSER) && setns(parentfd, CLONE_NEWUSER) < 0)
		fail("setns parent user");
	if (parentfd >= 0)
		close(parentfd);
}

/* -- the holder's sysctl service -------------------------------------------- */

#define TAG_MAX 20    /* digits of a request's tag: a 64-bit number */
#define REQ_MAX 8192  /* a path and a value; sysctl writes take at most a page */
#define REPLY_MAX 65536

static char msg[TAG_MAX + 1 + REQ_MAX + 1]; /* one request, and room for a NUL */
static char tag[TAG_MAX + 1];		    /* its tag and a space */
static size_t taglen;
static char reply[3 + REPLY_MAX];

/* Send the reply to the current request: its tag, then MSG. */
static void answer(const char *text, size_t len)
{
	struct iovec iov[2] = {{tag, taglen}, {(void *)text, len}};
	struct msghdr m = {.msg_iov = iov, .msg_iovlen = 2};

	while (sendmsg(sock, &m, MSG_NOSIGNAL) < 0) {
		if (errno == EINTR)
			continue;
		if (errno == EMSGSIZE || errno == ENOBUFS || errno == ENOMEM) {
			/* Still exactly one reply to this request. */
			char err[16];

			snprintf(err, sizeof err, "err %d", errno);
			iov[1].iov_base = err;
			iov[1].iov_len = strlen(err);
			(void)sendmsg(sock, &m, MSG_NOSIGNAL);
		}
		return; /* nobody to tell: drop it */
	}
}

static void answer_err(int err)
{
	char text[16];

	snprintf(text, sizeof text, "err %d", err);
	answer(text, strlen(text));
}

/* A relative path of plain components: no "", ".", ".." and no NUL. */
static int good_path(const char *path, size_t len)
{
	size_t i, start = 0;

	if (len == 0 || len >= PATH_MAX || memchr(path, '\0', len) || path[0] == '/')
		return 0;
	for (i = 0; i <= len; i++) {
		if (i == len || path[i] == '/') {
			size_t n = i - start;

			if (n == 0 || (n == 1 && path[start] == '.') ||
			    (n == 2 && path[start] == '.' && path[start + 1] == '.'))
				return 0;
			start = i + 1;
		}
	}
	return 1;
}

/* Open PATH beneath /proc/sys, never leaving it (openat2, Linux >= 5.6). */
static int open_sysctl(const char *path, int flags)
{
	struct open_how how;

	memset(&how, 0, sizeof how);
	how.flags = (unsigned long long)(flags | O_CLOEXEC | O_NOCTTY);
	how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
		      RESOLVE_NO_XDEV;
	return (int)syscall(SYS_openat2, sysdir, path, &how, sizeof how);
}

static int deferred_mnt; /* see "Deferred mount namespace" in the header comment */

/* Enter the container's mount namespace, copied from the intermediate one. */
static int enter_final_mnt(void)
{
	if (!deferred_mnt)
		return 0;
	if (unshare(CLONE_NEWNS) < 0)
		return -1;
	deferred_mnt = 0;
	/* Private already (copied from an rprivate namespace): to be sure. */
	(void)mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
	return 0;
}

/*
 * Act as root of our user namespace when its uid 0 (and gid 0) are mapped
 * and we are not it yet; nothing changes while there is no map.  Only the
 * effective IDs change (what sysctl permissions look at): the real and saved
 * ones stay the daemon's, so a host process of the namespace root's uid
 * still may not signal the holder.  A credential change resets
 * dumpability: made non-dumpable again.
 */
static void become_ns_root(void)
{
	if (geteuid() == 0)
		return;
	if (setresgid(-1, 0, -1) < 0) {
		/* gid 0 not mapped (yet): the uid alone gives owner permissions */
	}
	if (setresuid(-1, 0, -1) == 0)
		(void)prctl(PR_SET_DUMPABLE, 0);
}

/* Reply "ok" with the N fds at FDS attached (SCM_RIGHTS). */
static void answer_fds(const int *fds, size_t n)
{
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(4 * sizeof(int))];
	} c;
	char text[2] = {'o', 'k'};
	struct iovec iov[2] = {{tag, taglen}, {text, 2}};
	struct msghdr m = {.msg_iov = iov, .msg_iovlen = 2};
	struct cmsghdr *h;

	memset(&c, 0, sizeof c);
	m.msg_control = c.b;
	m.msg_controllen = CMSG_SPACE(n * sizeof(int));
	h = CMSG_FIRSTHDR(&m);
	h->cmsg_level = SOL_SOCKET;
	h->cmsg_type = SCM_RIGHTS;
	h->cmsg_len = CMSG_LEN(n * sizeof(int));
	memcpy(CMSG_DATA(h), fds, n * sizeof(int));
	while (sendmsg(sock, &m, MSG_NOSIGNAL) < 0) {
		if (errno != EINTR) {
			answer_err(errno);
			return;
		}
	}
}

static void answer_fd(int fd)
{
	answer_fds(&fd, 1);
}

/*
 * "i": this IPC namespace's /proc/sysvipc/{shm,msg,sem}, open for reading,
 * and a filesystem context of its mqueue superblock (fsopen + CREATE, which
 * take our IPC namespace): the daemon makes the detached mount (fsmount wants
 * CAP_SYS_ADMIN over the owner of the caller's mount namespace, which we lack
 * in a user namespace of our own until the deferred one; see "IPC fds").
 */
static void open_ipc(void)
{
	static const char *const names[] = {"shm", "msg", "sem"};
	int fds[4] = {-1, -1, -1, -1}, err = 0;
	size_t i;

	if (ipcdir < 0) {
		answer_err(ENOTSUP);
		return;
	}
	for (i = 0; i < 3 && !err; i++) {
		fds[i] = openat(ipcdir, names[i], O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fds[i] < 0)
			err = errno;
	}
	if (!err) {
		fds[3] = (int)syscall(SYS_fsopen, "mqueue", FSOPEN_CLOEXEC);
		if (fds[3] < 0 ||
		    syscall(SYS_fsconfig, fds[3], FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
			err = errno;
	}
	if (err)
		answer_err(err);
	else
		answer_fds(fds, 4);
	for (i = 0; i < 4; i++) {
		if (fds[i] >= 0)
			close(fds[i]);
	}
}

/* "o": an O_PATH fd on /proc/sys/PATH in our mount namespace (mounts crossed,
 * no symlinks), for the daemon to attach a bind mount on. */
static void open_target(const char *path)
{
	char full[PATH_MAX + 16];
	struct open_how how;
	int fd;

	if ((size_t)snprintf(full, sizeof full, "/proc/sys/%s", path) >= sizeof full) {
		answer_err(ENAMETOOLONG);
		return;
	}
	memset(&how, 0, sizeof how);
	how.flags = (unsigned long long)(O_PATH | O_CLOEXEC | O_NOFOLLOW);
	how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
	fd = (int)syscall(SYS_openat2, AT_FDCWD, full, &how, sizeof how);
	if (fd < 0) {
		answer_err(errno);
		return;
	}
	answer_fd(fd);
	close(fd);
}

/* Handle one request, the LEN bytes at REQ (after the tag); REQ[LEN] is ours. */
static void serve_one(char *req, size_t len)
{
	char *path = req + 2, *value = NULL;
	size_t plen, vlen = 0, got = 0;
	ssize_t n;
	int fd, err;

	if (len == 1 && req[0] == 'n') {
		if (enter_final_mnt() < 0)
			answer_err(errno);
		else
			answer("ok", 2);
		return;
	}
	if (len == 1 && req[0] == 'i') {
		open_ipc();
		return;
	}
	if (len < 2 || !strchr("rwof", req[0]) || req[0] == '\0' || req[1] != ' ') {
		answer_err(EINVAL);
		return;
	}
	plen = len - 2;
	if (req[0] == 'w') {
		char *space = memchr(path, ' ', plen);

		if (!space) {
			answer_err(EINVAL);
			return;
		}
		value = space + 1;
		vlen = len - (size_t)(value - req);
		plen = (size_t)(space - path);
	}
	if (!good_path(path, plen)) {
		answer_err(EINVAL);
		return;
	}
	path[plen] = '\0';
	if (req[0] == 'o') {
		open_target(path);
		return;
	}
	become_ns_root();

	if (req[0] == 'f') {
		fd = open_sysctl(path, O_RDWR);
		if (fd < 0) {
			answer_err(errno);
			return;
		}
		answer_fd(fd);
		close(fd);
		return;
	}
	fd = open_sysctl(path, value ? O_WRONLY : O_RDONLY);
	if (fd < 0) {
		answer_err(errno);
		return;
	}
	if (value) {
		do
			n = write(fd, value, vlen);
		while (n < 0 && errno == EINTR);
		err = n < 0 ? errno : (size_t)n != vlen ? EIO : 0;
		close(fd);
		if (err)
			answer_err(err);
		else
			answer("ok", 2);
		return;
	}
	memcpy(reply, "ok ", 3);
	for (;;) {
		if (got == REPLY_MAX) {
			char extra;

			n = read(fd, &extra, 1);
			err = n < 0 ? errno : n > 0 ? EFBIG : 0;
			break;
		}
		n = read(fd, reply + 3 + got, REPLY_MAX - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			err = n < 0 ? errno : 0;
			break;
		}
		got += (size_t)n;
	}
	close(fd);
	if (err)
		answer_err(err);
	else
		answer(reply, 3 + got);
}

/*
 * Serve forever: we hold a copy of the daemon's end, so ours never sees EOF
 * (a daemon that goes away leaves it to the next one).  Each message gets
 * exactly one reply, bad ones an "err <errno>"; nothing a request holds can
 * end the holder.
 */
static void __attribute__((noreturn)) serve(void)
{
	size_t len, d;
	ssize_t n;

	for (;;) {
		n = recv(sock, msg, sizeof msg - 1, MSG_TRUNC);
		if (n < 0) {
			if (errno != EINTR)
				(void)poll(NULL, 0, 100); /* should not happen: do not spin */
			continue;
		}
		len = (size_t)n < sizeof msg - 1 ? (size_t)n : sizeof msg - 1;
		for (d = 0; d < len && d <= TAG_MAX && msg[d] >= '0' && msg[d] <= '9'; d++)
			;
		if (d == 0 || d > TAG_MAX || d == len || msg[d] != ' ') {
			memcpy(tag, "0 ", 2);
			taglen = 2;
			answer_err(EINVAL);
			continue;
		}
		memcpy(tag, msg, d + 1);
		taglen = d + 1;
		if ((size_t)n - taglen > REQ_MAX) /* (what did not fit was dropped) */
			answer_err(EMSGSIZE);
		else
			serve_one(msg + taglen, (size_t)n - taglen);
	}
}

/* Close every fd but the N in KEEP (-1: none), which are all above 2. */
static void close_all_but(int *keep, int n)
{
	int i, j, t;
	unsigned int from = 0;

	for (i = 0; i < n; i++) { /* sort */
		for (j = i + 1; j < n; j++) {
			if (keep[j] < keep[i]) {
				t = keep[i];
				keep[i] = keep[j];
				keep[j] = t;
			}
		}
	}
	for (i = 0; i < n; i++) {
		if (keep[i] < 0)
			continue;
		if ((unsigned int)keep[i] > from)
			(void)close_range(from, (unsigned int)keep[i] - 1, 0);
		from = (unsigned int)keep[i] + 1;
	}
	(void)close_range(from, ~0U, 0);
}

/*
 * Keep only our socket, /proc/sys, /proc/sysvipc and the pipe to our parent,
 * at the holder's fd numbers: 0-2 /dev/null (so that the holder holds no
 * terminal or log pipe of whoever started the daemon), HOLDER_SOCK_FD,
 * HOLDER_SYSDIR_FD, HOLDER_IPCDIR_FD (when there is one), the pipe at 10 or
 * above (it goes once we reported), HOLDER_CHANNEL_FD left free.
 */
static void settle_fds(void)
{
	int s, d, p = -1, u = -1, fd, i, keep[4];

	s = fcntl(sock, F_DUPFD_CLOEXEC, 10);
	d = fcntl(sysdir, F_DUPFD_CLOEXEC, 10);
	if (ipcdir >= 0)
		p = fcntl(ipcdir, F_DUPFD_CLOEXEC, 10); /* -1: "i" says ENOTSUP */
	if (up >= 0)
		u = fcntl(up, F_DUPFD_CLOEXEC, 10);
	if (s < 0 || d < 0 || (up >= 0 && u < 0))
		fail("dup holder fds");
	keep[0] = s;
	keep[1] = d;
	keep[2] = p;
	keep[3] = u;
	close_all_but(keep, 4);
	sock = s;
	sysdir = d;
	up = u;
	fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		for (i = 0; i <= 2; i++) {
			if (fd != i)
				(void)dup2(fd, i);
		}
		if (fd > 2)
			close(fd);
	}
	if (dup2(s, HOLDER_SOCK_FD) < 0 || dup2(d, HOLDER_SYSDIR_FD) < 0)
		fail("dup2 holder fds");
	close(s);
	close(d);
	sock = HOLDER_SOCK_FD;
	sysdir = HOLDER_SYSDIR_FD;
	ipcdir = -1;
	if (p >= 0) {
		if (dup2(p, HOLDER_IPCDIR_FD) == HOLDER_IPCDIR_FD)
			ipcdir = HOLDER_IPCDIR_FD;
		close(p);
	}
}

/*
 * Wait for the daemon's "peer": its end of the socketpair, which we keep at
 * HOLDER_CHANNEL_FD, and say "kept".  EOF: the daemon went away before it took us (it never
 * returned us to anyone), so nobody will ever know us: exit.
 */
static void take_peer(void)
{
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(4 * sizeof(int))];
	} c;
	char buf[8];
	struct iovec iov = {buf, sizeof buf};
	struct msghdr m;
	struct cmsghdr *h;
	int fd = -1, *fds;
	size_t i, nfds;
	ssize_t n;

	do {
		memset(&m, 0, sizeof m);
		m.msg_iov = &iov;
		m.msg_iovlen = 1;
		m.msg_control = c.b;
		m.msg_controllen = sizeof c.b;
		n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	for (h = n >= 0 ? CMSG_FIRSTHDR(&m) : NULL; h; h = CMSG_NXTHDR(&m, h)) {
		if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
			continue;
		fds = (int *)CMSG_DATA(h);
		nfds = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < nfds; i++) {
			if (fd < 0)
				fd = fds[i];
			else
				close(fds[i]);
		}
	}
	if (n != 4 || memcmp(buf, "peer", 4) != 0 || fd < 0 || (m.msg_flags & MSG_CTRUNC))
		_exit(n == 0 ? 0 : 1); /* the daemon is gone, or broken: nobody to serve */
	if (fd != HOLDER_CHANNEL_FD) {
		if (dup2(fd, HOLDER_CHANNEL_FD) < 0)
			_exit(1);
		close(fd);
	}
	/* From now on a daemon may look for it there. */
	if (send(sock, "kept", 4, MSG_NOSIGNAL) != 4)
		_exit(1);
}

static void __attribute__((noreturn)) hold(void)
{
	struct sigaction ign;
	int s;

	memset(&ign, 0, sizeof ign);
	ign.sa_handler = SIG_IGN;
	for (s = 1; s < NSIG; s++) {
		if (s != SIGKILL && s != SIGSTOP)
			(void)sigaction(s, &ign, NULL); /* glibc-reserved ones fail: fine */
	}
	if (setsid() < 0)
		fail("setsid");
	settle_fds();
	if (chdir("/") < 0)
		fail("chdir /");
	/* Again: joining or making a user namespace may have reset it. */
	if (prctl(PR_SET_DUMPABLE, 0) < 0)
		fail("prctl PR_SET_DUMPABLE");
	(void)prctl(PR_SET_PDEATHSIG, 0);
	if (send(sock, "ok", 2, MSG_NOSIGNAL) != 2)
		_exit(1);
	release_parent();
	take_peer();
	serve();
}

/* Parse a placement word (pins=FD, cgdir=FD, tasks=FD); 1 if WORD is none. */
static int parse_place_word(const char *word, long parentfd)
{
	const char *eq = strchr(word, '=');
	long fd;

	if (!eq || parse_int(eq + 1, 0, INT_MAX, &fd) < 0 || fd == sock || fd == parentfd)
		return 1;
	if (strncmp(word, "pins=", 5) == 0 && pinsfd < 0) {
		pinsfd = (int)fd;
	} else if (strncmp(word, "cgdir=", 6) == 0 && cgdirfd < 0) {
		cgdirfd = (int)fd;
		place_cgroup = 1;
	} else if (strncmp(word, "tasks=", 6) == 0) {
		if (ntasks == MAX_TASKS)
			return -1;
		tasksfd[ntasks++] = (int)fd;
		place_cgroup = 1;
	} else {
		return 1;
	}
	return 0;
}

/* Parse a KIND=FD word into joinfd[]. */
static int parse_join_word(const char *word, long parentfd)
{
	const char *eq = strchr(word, '=');
	size_t i;
	long fd;
	int r = parse_place_word(word, parentfd);

	if (r <= 0)
		return r;
	if (!eq)
		return -1;
	for (i = 0; i < NKINDS; i++) {
		if (strlen(kinds[i].name) == (size_t)(eq - word) &&
		    memcmp(kinds[i].name, word, (size_t)(eq - word)) == 0)
			break;
	}
	if (i == NKINDS || joinfd[i] >= 0 || parse_int(eq + 1, 0, INT_MAX, &fd) < 0 ||
	    fd == sock || fd == parentfd)
		return -1;
	joinfd[i] = (int)fd;
	return 0;
}

int main(int argc, char **argv)
{
	long sockfd, parentfd, join, flags, userns;
	int joined = 0, i;
	char buf[16];
	ssize_t n;

	/* First of all: a root inside a user namespace we join must not be
	 * able to ptrace us or take our fds (see the header comment). */
	(void)prctl(PR_SET_DUMPABLE, 0);
	if (argc < 6 || parse_int(argv[1], 0, INT_MAX, &sockfd) < 0) {
		fprintf(stderr, "usage: containerfs-pin SOCKFD PARENT_PIDFD JOIN_FLAGS "
				"UNSHARE_FLAGS MOUNTPOINT [WORD=FD]...\n");
		return 2;
	}
	sock = (int)sockfd;
	for (i = 0; i < (int)NKINDS; i++)
		joinfd[i] = -1;
	if (parse_int(argv[2], -1, INT_MAX, &parentfd) < 0 || parentfd == sock) {
		errno = EINVAL;
		fail("bad PARENT_PIDFD");
	}
	if (parse_int(argv[3], 0, LONG_MAX, &join) < 0 || (join & ~(long)ALL_NS) ||
	    (join && parentfd < 0)) {
		errno = EINVAL;
		fail("bad JOIN_FLAGS");
	}
	if (parse_int(argv[4], 0, LONG_MAX, &flags) < 0 || (flags & ~(long)ALL_NS)) {
		errno = EINVAL;
		fail("bad UNSHARE_FLAGS");
	}
	for (i = 6; i < argc; i++) {
		if (parse_join_word(argv[i], parentfd) < 0) {
			errno = EINVAL;
			fail("bad KIND=FD");
		}
	}
	for (i = 0; i < (int)NKINDS; i++) {
		if (joinfd[i] >= 0)
			joined |= kinds[i].flag;
	}
	if ((joined & join) || (joined & flags)) {
		errno = EINVAL;
		fail("KIND=FD also in JOIN_FLAGS or UNSHARE_FLAGS");
	}
	if (place_cgroup && !(flags & CLONE_NEWCGROUP)) {
		errno = EINVAL;
		fail("cgdir= or tasks= without a cgroup namespace to unshare");
	}

	do
		n = recv(sock, buf, sizeof buf, 0);
	while (n < 0 && errno == EINTR);
	if (n == 0)
		return 0; /* the daemon gave up on us */
	if (n != 2 || memcmp(buf, "go", 2) != 0) {
		errno = n < 0 ? errno : EPROTO;
		fail("read go");
	}

	/* Placed by the kernel at fork, before any namespace or credential
	 * changes (clone3 checks both): the chain in the holders' cgroup, the
	 * cgroup helper in the container's. */
	if (pinsfd >= 0)
		fork_chain(pinsfd);
	if (place_cgroup) {
		start_cg_helper();
		flags &= ~(long)CLONE_NEWCGROUP;
	}

	/* Our user namespace changes (see join_all): detach the daemon's mount
	 * before, while a copy of it is still ours to change. */
	userns = (flags | join | joined) & CLONE_NEWUSER;
	deferred_mnt = (flags & CLONE_NEWNS) && userns;
	join_all((int)parentfd, (int)join, deferred_mnt ? argv[5] : NULL);
	if (deferred_mnt) /* the holder unshares it on "n", see the header comment */
		flags &= ~(long)CLONE_NEWNS;
	/* A process only unshares a pid namespace from its active one, and
	 * setns(CLONE_NEWPID) only changes the namespace of our children. */
	if ((join | joined) & CLONE_NEWPID)
		fork_chain(-1);

	/* Everything but time now: a time namespace is unshared by the holder. */
	if ((flags & ~CLONE_NEWTIME) && unshare((int)(flags & ~CLONE_NEWTIME)) < 0)
		fail("unshare");
	if (place_cgroup)
		enter_helper_cgroup_ns(userns != 0);
	if (flags & CLONE_NEWNS)
		unshare_mnt_without(argv[5], 1);

	/* A pid namespace takes effect in children only; the first process
	 * always forks so that the holder is not the daemon's child. */
	if ((flags & CLONE_NEWPID) || up < 0)
		fork_chain(-1);
	/* The container's time namespace becomes our time_for_children, which
	 * nothing has entered yet: its offsets can still be set (once a process
	 * enters, the kernel refuses).  The holder itself never enters it. */
	if ((flags & CLONE_NEWTIME) && unshare(CLONE_NEWTIME) < 0)
		fail("unshare time");
	hold();
}
