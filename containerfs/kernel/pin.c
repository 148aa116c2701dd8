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
 * Process chain: the first process always forks, so the holder is never the
 * daemon's child.  Each process that forked waits until its child reported (a
 * byte on a private pipe) and then exits 0; each forked child sets
 * PR_SET_PDEATHSIG until it reported, so killing the first process tears down a
 * half-built chain.  The holder ignores every signal (SIGCHLD ignored makes the
 * kernel reap orphans of its pid namespace) and pauses forever.
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
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
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
 * Join the parent holder's namespaces of JOIN_FLAGS through its pidfd, then
 * drop the pidfd (no later process of the chain keeps it).  One call: the
 * kernel joins the user namespace first and checks the rest with the
 * credentials gained there.  A parent that has exited fails with ESRCH.
 */
static void join_parent(int pidfd, int flags)
{
	if (flags && setns(pidfd, flags) < 0)
		fail("setns parent");
	close(pidfd);
}

static void __attribute__((noreturn)) hold(void)
{
	struct sigaction ign;
	int s, lo, hi, fd;

	memset(&ign, 0, sizeof ign);
	ign.sa_handler = SIG_IGN;
	for (s = 1; s < NSIG; s++) {
		if (s != SIGKILL && s != SIGSTOP)
			(void)sigaction(s, &ign, NULL); /* glibc-reserved ones fail: fine */
	}
	if (setsid() < 0)
		fail("setsid");
	/* Keep only the socket and the pipe; 0-2 become /dev/null so that the
	 * holder holds no terminal or log pipe of whoever started the daemon. */
	lo = sock < up ? sock : up;
	hi = sock < up ? up : sock;
	if (lo > 0)
		(void)close_range(0, (unsigned int)lo - 1, 0);
	if (hi > lo + 1)
		(void)close_range((unsigned int)lo + 1, (unsigned int)hi - 1, 0);
	(void)close_range((unsigned int)hi + 1, ~0U, 0);
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
	close(sock);
	sock = -1;
	release_parent();
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
	if (parentfd >= 0)
		join_parent((int)parentfd, (int)join);
	if (join & CLONE_NEWPID)
		fork_chain();

	if (flags && unshare((int)flags) < 0)
		fail("unshare");
	if (flags & CLONE_NEWNS) {
		if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
			fail("make / rprivate");
		/* EINVAL: not a mount point here, or locked because the mount
		 * namespace belongs to a new user namespace. */
		if (umount2(argv[5], MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
			fail("detach mountpoint");
	}

	/* pid and time namespaces take effect in children only; the first
	 * process always forks so that the holder is not the daemon's child. */
	if ((flags & (CLONE_NEWPID | CLONE_NEWTIME)) || up < 0)
		fork_chain();
	hold();
}
