/*
 * containerfs-pin: the namespace holder of one container (docs/design.md,
 * "Namespaces: the holder").
 *
 *   containerfs-pin SOCKFD PARENT_PIDFD JOIN_FLAGS UNSHARE_FLAGS MOUNTPOINT
 *
 * SOCKFD is an AF_UNIX SOCK_SEQPACKET socket shared with the daemon.
 * PARENT_PIDFD is an inherited pidfd on the parent container's holder (-1:
 * keep the namespaces we were started in); a pidfd names the process itself,
 * so a reused pid cannot make us join the wrong namespaces.  JOIN_FLAGS are
 * the CLONE_NEW* bits of the parent's namespaces we are not in (the daemon
 * knows both sides; joining one's own user namespace would fail), joined
 * through PARENT_PIDFD.  UNSHARE_FLAGS are the CLONE_NEW* bits the container
 * owns.  Flags are decimal or 0x hex.  MOUNTPOINT is detached from a mount
 * namespace the container owns, so containers do not see the daemon's mount.
 *
 * Protocol: wait for "go" (EOF: exit quietly), build the namespaces, and let the
 * final process (the holder) send "ok".  Any failing process sends
 * "err <errno> <step>" and exits 1.  The daemon learns the holder's pid from the
 * SCM_CREDENTIALS the kernel attaches to "ok".
 *
 * After "ok" the holder keeps the socket and serves sysctl requests, one at a
 * time, one reply per request (so a daemon that gave up waiting can skip late
 * replies by counting):
 *
 *   "r <path>"          -> "ok <content>" | "err <errno>"
 *   "w <path> <value>"  -> "ok" | "err <errno>"   (one write() of <value>)
 *
 * <path> is relative to /proc/sys and resolved beneath it (no "..", no
 * absolute path, no symlink, no other mount).  The holder answers from inside
 * every namespace of the container, which a daemon thread cannot do for
 * sysctls that look at the caller's active pid namespace (kernel.pid_max) or
 * its user namespace (user.max_*_namespaces).  Bad requests get an "err";
 * nothing a request holds can end the holder.  When the daemon's end closes
 * (it exited), the holder stops serving for good and keeps holding: a
 * restarted daemon finds it by pid and has no socket to it (yet).
 *
 * Time namespace: the holder does not run in a time namespace the container
 * owns.  It unshares CLONE_NEWTIME itself, last, so that the container's time
 * namespace is its time_for_children with no process in it yet: its offsets
 * (/proc/HOLDER/timens_offsets) stay writable until the first process enters.
 * Whatever joins it takes the holder's time_for_children, never its active
 * one: so does a nested pin whose container shares the time namespace, and
 * that is an entry too (the parent's offsets are fixed from then on).
 *
 * Process chain: the first process always forks, so the holder is never the
 * daemon's child.  Each process that forked waits until its child reported (a
 * byte on a private pipe) and then exits 0; each forked child sets
 * PR_SET_PDEATHSIG until it reported, so killing the first process tears down a
 * half-built chain.  The holder ignores every signal (SIGCHLD ignored makes the
 * kernel reap orphans of its pid namespace), serves requests until the daemon
 * closes its end, and then pauses forever.
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
#include <sys/wait.h>
#include <unistd.h>

#include <linux/openat2.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

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

#define ALL_NS                                                                  \
	(CLONE_NEWUSER | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET | CLONE_NEWPID | \
	 CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWTIME)

static int sock = -1; /* the daemon's socket */
static int up = -1;   /* pipe to our parent pin process; -1 in the first one */

static void say(const char *msg)
{
	/* MSG_NOSIGNAL: a daemon that went away must not kill us with SIGPIPE. */
	if (sock >= 0)
		(void)send(sock, msg, strlen(msg), MSG_NOSIGNAL);
}

/* Report errno and the failed step to the daemon and give up. */
static void __attribute__((noreturn)) fail(const char *step)
{
	char msg[160];
	int err = errno ? errno : EIO;

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
 * Fork.  Returns in the child only: the parent waits until the child (or the
 * chain below it) reported, passes that on and exits.
 */
static void fork_chain(void)
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
	child = fork();
	if (child < 0)
		fail("fork");
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

/*
 * Join the parent holder's namespaces of JOIN_FLAGS through its pidfd, then
 * drop the pidfd (no later process of the chain keeps it).  The time
 * namespace comes first, through TIMEFD, while we still have every capability
 * over its owner; the rest in one call: the kernel joins the user namespace
 * first and checks the rest with the credentials gained there.  A parent that
 * has exited fails with ESRCH.  Joining a time namespace is entering it: its
 * offsets cannot be changed any more.
 */
static void join_parent(int pidfd, int flags, int timefd)
{
	if (timefd >= 0) {
		if (setns(timefd, CLONE_NEWTIME) < 0)
			fail("setns parent time");
		close(timefd);
	}
	flags &= ~CLONE_NEWTIME;
	if (flags && setns(pidfd, flags) < 0)
		fail("setns parent");
	close(pidfd);
}

/* -- the holder's sysctl service -------------------------------------------- */

#define REQ_MAX 8192  /* a path and a value; sysctl writes take at most a page */
#define REPLY_MAX 65536

static int sysdir = -1; /* /proc/sys, see open_sysdir() */
static char req[REQ_MAX + 1];
static char reply[3 + REPLY_MAX];

/*
 * /proc/sys as a private copy of its mount, detached from every mount
 * namespace (open_tree, Linux >= 5.2): what is later mounted over /proc/sys
 * inside the container (containerfs binds its views there) does not show
 * through it, and ".." from its root leads nowhere, should the fd ever leak.
 * Sysctl files answer for the namespaces of the reader, not of the mount.
 * Non-recursive first; EINVAL means locked mounts below it (in a mount
 * namespace owned by a container's user namespace), which only a recursive
 * copy may take along (they are other mounts, so open_sysctl() refuses
 * them).  Without CAP_SYS_ADMIN over the mount namespace's owner, fall back
 * to a plain open: mounts over parts of /proc/sys then get EXDEV.
 */
static int open_sysdir(void)
{
	int fd;

	fd = (int)syscall(SYS_open_tree, AT_FDCWD, "/proc/sys", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
	if (fd < 0 && errno == EINVAL)
		fd = (int)syscall(SYS_open_tree, AT_FDCWD, "/proc/sys",
				  OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
	if (fd < 0)
		fd = open("/proc/sys", O_PATH | O_DIRECTORY | O_CLOEXEC);
	return fd;
}

/* Send a reply; 0 once the daemon is gone. */
static int answer(const char *msg, size_t len)
{
	while (send(sock, msg, len, MSG_NOSIGNAL) < 0) {
		if (errno == EINTR)
			continue;
		if (errno == EMSGSIZE || errno == ENOBUFS || errno == ENOMEM) {
			/* Still exactly one reply to this request. */
			char err[16];

			snprintf(err, sizeof err, "err %d", errno);
			msg = err;
			len = strlen(err);
			if (send(sock, msg, len, MSG_NOSIGNAL) >= 0)
				return 1;
		}
		return 0;
	}
	return 1;
}

static int answer_err(int err)
{
	char msg[16];

	snprintf(msg, sizeof msg, "err %d", err);
	return answer(msg, strlen(msg));
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

/* Handle one request of LEN bytes in req[]; 0 once the daemon is gone. */
static int serve_one(size_t len)
{
	char *path = req + 2, *value = NULL;
	size_t plen, vlen = 0, got = 0;
	ssize_t n;
	int fd, err;

	if (len < 2 || (req[0] != 'r' && req[0] != 'w') || req[1] != ' ')
		return answer_err(EINVAL);
	plen = len - 2;
	if (req[0] == 'w') {
		char *space = memchr(path, ' ', plen);

		if (!space)
			return answer_err(EINVAL);
		value = space + 1;
		vlen = len - (size_t)(value - req);
		plen = (size_t)(space - path);
	}
	if (!good_path(path, plen))
		return answer_err(EINVAL);
	path[plen] = '\0'; /* req has room for one more byte */

	fd = open_sysctl(path, value ? O_WRONLY : O_RDONLY);
	if (fd < 0)
		return answer_err(errno);
	if (value) {
		do
			n = write(fd, value, vlen);
		while (n < 0 && errno == EINTR);
		err = n < 0 ? errno : (size_t)n != vlen ? EIO : 0;
		close(fd);
		return err ? answer_err(err) : answer("ok", 2);
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
	return err ? answer_err(err) : answer(reply, 3 + got);
}

/*
 * Serve until the daemon closes its end (or our reply cannot reach it).  Bad
 * requests get "err <errno>"; nothing a request holds can end the holder.
 */
static void serve(void)
{
	ssize_t n;

	for (;;) {
		n = recv(sock, req, REQ_MAX, MSG_TRUNC);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		if (n == 0) {
			/* An empty message, or the end: only the end hangs up. */
			struct pollfd p = {.fd = sock, .events = POLLRDHUP};

			if (poll(&p, 1, 0) != 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)))
				return;
			if (!answer_err(EINVAL))
				return;
			continue;
		}
		if ((size_t)n > REQ_MAX) { /* the rest of it was dropped */
			if (!answer_err(EMSGSIZE))
				return;
			continue;
		}
		if (!serve_one((size_t)n))
			return;
	}
}

/* Close every fd but the given ones (-1: none), which are all above 2. */
static void close_all_but(int a, int b, int c)
{
	int keep[3] = {a, b, c}, i, j, t;
	unsigned int from = 0;

	for (i = 0; i < 3; i++) { /* sort */
		for (j = i + 1; j < 3; j++) {
			if (keep[j] < keep[i]) {
				t = keep[i];
				keep[i] = keep[j];
				keep[j] = t;
			}
		}
	}
	for (i = 0; i < 3; i++) {
		if (keep[i] < 0)
			continue;
		if ((unsigned int)keep[i] > from)
			(void)close_range(from, (unsigned int)keep[i] - 1, 0);
		from = (unsigned int)keep[i] + 1;
	}
	(void)close_range(from, ~0U, 0);
}

static void __attribute__((noreturn)) hold(void)
{
	struct sigaction ign;
	int s, fd;

	memset(&ign, 0, sizeof ign);
	ign.sa_handler = SIG_IGN;
	for (s = 1; s < NSIG; s++) {
		if (s != SIGKILL && s != SIGSTOP)
			(void)sigaction(s, &ign, NULL); /* glibc-reserved ones fail: fine */
	}
	if (setsid() < 0)
		fail("setsid");
	/* Keep only the socket, the pipe and /proc/sys; 0-2 become /dev/null so
	 * that the holder holds no terminal or log pipe of whoever started the
	 * daemon. */
	close_all_but(sock, up, sysdir);
	fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		for (s = 0; s <= 2; s++) {
			if (fd != s)
				(void)dup2(fd, s);
		}
		if (fd > 2)
			close(fd);
	}
	if (chdir("/") < 0)
		fail("chdir /");
	(void)prctl(PR_SET_PDEATHSIG, 0);
	if (send(sock, "ok", 2, MSG_NOSIGNAL) != 2)
		_exit(1);
	release_parent();
	serve();
	/*
	 * The daemon is gone (or dropped us).  The container outlives it, so we
	 * keep holding its namespaces; but nothing can reach this service again:
	 * a restarted daemon attaches by pid and has no socket to us (yet).
	 */
	close(sock);
	sock = -1;
	close(sysdir);
	sysdir = -1;
	for (;;)
		pause();
}

int main(int argc, char **argv)
{
	long sockfd, parentfd, join, flags;
	char buf[16];
	ssize_t n;

	if (argc != 6 || parse_int(argv[1], 0, INT_MAX, &sockfd) < 0) {
		fprintf(stderr, "usage: containerfs-pin SOCKFD PARENT_PIDFD JOIN_FLAGS "
				"UNSHARE_FLAGS MOUNTPOINT\n");
		return 2;
	}
	sock = (int)sockfd;
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

	do
		n = recv(sock, buf, sizeof buf, 0);
	while (n < 0 && errno == EINTR);
	if (n == 0)
		return 0; /* the daemon gave up on us */
	if (n != 2 || memcmp(buf, "go", 2) != 0) {
		errno = n < 0 ? errno : EPROTO;
		fail("read go");
	}

	/* A process only unshares a pid namespace from its active one, and
	 * setns(CLONE_NEWPID) only changes the namespace of our children. */
	if (parentfd >= 0) {
		int timefd = -1;

		if ((join & CLONE_NEWTIME) && (timefd = parent_time_ns((int)parentfd)) < 0)
			fail("open parent time namespace");
		join_parent((int)parentfd, (int)join, timefd);
	}
	if (join & CLONE_NEWPID)
		fork_chain();

	/* In the container's mount namespace or its parent's, before any new
	 * user namespace: open_tree() needs CAP_SYS_ADMIN over the owner of the
	 * mount namespace we are in, and no process of the container exists yet
	 * that could have mounted over /proc/sys. */
	sysdir = open_sysdir();
	if (sysdir < 0)
		fail("open /proc/sys");

	/* Everything but time now: a time namespace is unshared by the holder. */
	if ((flags & ~CLONE_NEWTIME) && unshare((int)(flags & ~CLONE_NEWTIME)) < 0)
		fail("unshare");
	if (flags & CLONE_NEWNS) {
		if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
			fail("make / rprivate");
		/* EINVAL: not a mount point here, or locked because the mount
		 * namespace belongs to a new user namespace. */
		if (umount2(argv[5], MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
			fail("detach mountpoint");
	}

	/* A pid namespace takes effect in children only; the first process
	 * always forks so that the holder is not the daemon's child. */
	if ((flags & CLONE_NEWPID) || up < 0)
		fork_chain();
	/* The container's time namespace becomes our time_for_children, which
	 * nothing has entered yet: its offsets can still be set (once a process
	 * enters, the kernel refuses).  The holder itself never enters it. */
	if ((flags & CLONE_NEWTIME) && unshare(CLONE_NEWTIME) < 0)
		fail("unshare time");
	hold();
}
