/*
 * containerfs-exec: `containerfs exec` without starting Python (docs/design.md,
 * "Entering"), the same steps in the same order as containerfs/execute.py.
 *
 *   containerfs exec [-u|--user UID[:GID] | --preserve-credentials] CONTAINER [--] CMD...
 *
 * Two ways in:
 *  - run as `containerfs` (argv[0]'s name: make installs a copy over the
 *    venv's entry script): `exec` is done here; any other command line is
 *    handed to Python, `DIR/python -P -m containerfs ARGS...`, DIR being the
 *    directory of this program's own file (the venv's bin);
 *  - `containerfs-exec PYTHON exec ARGS...`: from the Python command line
 *    (containerfs/fastexec.py), which names its interpreter.
 * A command line not taken as it is here (--help, a usage error, an
 * abbreviated option) goes to PYTHON -P -m containerfs with
 * CONTAINERFS_EXEC_IN_PYTHON=1 set, so argparse answers as it always did and
 * does not hand it back.
 *
 * Steps: open CONTAINER/tasks first (the mount may be invisible once in the
 * container's mount namespace), become non-dumpable, read container.init (the
 * holder's pid) and container.subsystems (the namespace inodes), pick the IDs
 * the command runs as (checked against the user namespace's maps), drop the
 * supplementary groups, check by inode that the holder is in the container's
 * namespaces and join those we differ in with one setns(pidfd) (time first,
 * through an nsfs fd on the holder's time_for_children), fork (pid and time
 * namespaces apply to children), write the child's pid to tasks (the daemon
 * places it in every cgroup), and only then let the child exec.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

#define PROG "containerfs exec"
#define FALLBACK_ENV "CONTAINERFS_EXEC_IN_PYTHON"
#define EXIT_CANNOT_EXECUTE 126
#define EXIT_NOT_FOUND 127
#define ID_MAX 4294967294ULL
/* linux/pidfd.h, Linux >= 6.11: _IO(PIDFS_IOCTL_MAGIC, 8) */
#define PIDFD_GET_TIME_FOR_CHILDREN_NAMESPACE 0xFF08
#define NKINDS 8
#define MAP_MAX 65536

/* nsfs names and CLONE_NEW* flags, as containerfs/nskinds.py lists them. */
static const char *const KINDS[NKINDS] = {"ipc", "uts", "net", "pid",
                                          "mnt", "user", "cgroup", "time"};
static const int FLAGS[NKINDS] = {CLONE_NEWIPC, CLONE_NEWUTS,  CLONE_NEWNET,    CLONE_NEWPID,
                                  CLONE_NEWNS,  CLONE_NEWUSER, CLONE_NEWCGROUP, CLONE_NEWTIME};
enum { K_USER = 5, K_TIME = 7 };

/* Failures of the steps before the command runs: "containerfs exec: ...", status 1. */
__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs(PROG ": ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

/* What Python's repr() shows of a short ASCII text (for the same messages). */
static const char *pyrepr(const char *s, size_t n)
{
	static char out[4 * 64 + 3];
	size_t o = 0, i;
	char q = (memchr(s, '\'', n) && !memchr(s, '"', n)) ? '"' : '\'';
	out[o++] = q;
	for (i = 0; i < n && o < sizeof(out) - 6; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\\' || c == (unsigned char)q)
			o += (size_t)sprintf(out + o, "\\%c", c);
		else if (c == '\t')
			o += (size_t)sprintf(out + o, "\\t");
		else if (c < 32 || c >= 127)
			o += (size_t)sprintf(out + o, "\\x%02x", c);
		else
			out[o++] = (char)c;
	}
	out[o++] = q;
	out[o] = 0;
	return out;
}

/* A decimal number of ASCII digits only, at most `max`; -1 otherwise. */
static int parse_num(const char *s, size_t n, unsigned long long max, unsigned long long *out)
{
	unsigned long long v = 0;
	size_t i;
	if (n == 0)
		return -1;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		if (v > (max - (unsigned long long)(s[i] - '0')) / 10)
			return -1;
		v = v * 10 + (unsigned long long)(s[i] - '0');
	}
	*out = v;
	return 0;
}

/* ---- the command line ---------------------------------------------------- */

static char *python;     /* the interpreter of the fall-back */
static char **orig_args; /* the words after the program, "exec" first */

/* Hand the whole command line to Python's containerfs: --help, usage errors. */
__attribute__((noreturn)) static void to_python(int exec_line)
{
	int n = 0, i;
	char **av;
	while (orig_args[n])
		n++;
	av = calloc((size_t)n + 5, sizeof(*av));
	if (!av)
		die("%s", strerror(ENOMEM));
	av[0] = python;
	av[1] = "-P";
	av[2] = "-m";
	av[3] = "containerfs";
	for (i = 0; i < n; i++)
		av[4 + i] = orig_args[i];
	if (exec_line)
		setenv(FALLBACK_ENV, "1", 1);
	execv(python, av);
	die("cannot run %s: %s", python, strerror(errno));
}

/* ``UID[:GID]`` as containerfs.execute.parse_user takes it; -1 when not. */
static int parse_user(const char *text, uid_t *uid, gid_t *gid)
{
	const char *colon = strchr(text, ':');
	size_t un = colon ? (size_t)(colon - text) : strlen(text);
	const char *g = colon ? colon + 1 : text;
	unsigned long long u, gg;
	if (parse_num(text, un, ID_MAX, &u) || parse_num(g, colon ? strlen(g) : un, ID_MAX, &gg))
		return -1;
	*uid = (uid_t)u;
	*gid = (gid_t)gg;
	return 0;
}

/* ---- reading the container ----------------------------------------------- */

/* The whole of a small file; NULL with errno set. */
static char *slurp_fd(int fd, size_t *len)
{
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap + 1);
	ssize_t r;
	if (!buf) {
		errno = ENOMEM;
		return NULL;
	}
	for (;;) {
		if (n == cap) {
			char *more = cap < (1u << 24) ? realloc(buf, cap * 2 + 1) : NULL;
			if (!more) {
				free(buf);
				errno = ENOMEM;
				return NULL;
			}
			buf = more;
			cap *= 2;
		}
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			free(buf);
			errno = e;
			return NULL;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	buf[n] = 0;
	*len = n;
	return buf;
}

static char *slurp_at(int dirfd, const char *name, size_t *len)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	char *text;
	int e;
	if (fd < 0)
		return NULL;
	text = slurp_fd(fd, len);
	e = errno;
	close(fd);
	errno = e;
	return text;
}

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* The holder pid from container.init; 0 (absent or "0") for the root container. */
static long read_init(const char *dir)
{
	size_t len, a = 0;
	unsigned long long pid;
	char *text, path[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s/container.init", dir) >= (int)sizeof(path))
		die("%s", strerror(ENAMETOOLONG));
	text = slurp_at(AT_FDCWD, path, &len);
	if (!text) {
		if (errno == ENOENT)
			return 0;
		die("%s", strerror(errno));
	}
	while (a < len && is_space(text[a]))
		a++;
	while (len > a && is_space(text[len - 1]))
		len--;
	if (parse_num(text + a, len - a, INT_MAX, &pid))
		die("%s: bad container.init: %s", dir, pyrepr(text + a, len - a < 40 ? len - a : 40));
	free(text);
	return (long)pid;
}

/* Namespace kind -> inode (0: not listed) from container.subsystems lines
 * "name own|shared ID"; controller lines (ID a cgroup path) are skipped. */
static void read_subsystems(const char *dir, unsigned long long inodes[NKINDS])
{
	char path[PATH_MAX], *text, *line, *next;
	size_t len;
	if (snprintf(path, sizeof(path), "%s/container.subsystems", dir) >= (int)sizeof(path))
		die("%s", strerror(ENAMETOOLONG));
	text = slurp_at(AT_FDCWD, path, &len);
	if (!text)
		die("cannot read %s: %s", dir, strerror(errno));
	for (line = text; line && *line; line = next) {
		char *f[4];
		size_t fl[4];
		int nf = 0, k;
		char *p = line, *end;
		next = strchr(line, '\n');
		end = next ? next : line + strlen(line);
		if (next)
			*next++ = 0;
		while (p < end) {
			while (p < end && is_space(*p))
				p++;
			if (p == end)
				break;
			if (nf < 4) {
				f[nf] = p;
				fl[nf] = 0;
			}
			while (p < end && !is_space(*p)) {
				p++;
				if (nf < 4)
					fl[nf]++;
			}
			nf++;
		}
		if (nf == 0)
			continue;
		if (nf != 3 || !((fl[1] == 3 && !strncmp(f[1], "own", 3)) ||
		                 (fl[1] == 6 && !strncmp(f[1], "shared", 6)))) {
			size_t n = (size_t)(end - line);
			die("bad container.subsystems line: %s", pyrepr(line, n < 60 ? n : 60));
		}
		for (k = 0; k < NKINDS; k++) {
			if (strlen(KINDS[k]) == fl[0] && !strncmp(f[0], KINDS[k], fl[0])) {
				unsigned long long ino;
				if (parse_num(f[2], fl[2], ULLONG_MAX, &ino))
					die("bad namespace id for %s: %s", KINDS[k],
					    pyrepr(f[2], fl[2] < 40 ? fl[2] : 40));
				inodes[k] = ino;
			}
		}
	}
	free(text);
}

/* ---- the holder ---------------------------------------------------------- */

static long holder;

__attribute__((noreturn)) static void holder_gone(void)
{
	die("container holder %ld is gone", holder);
}

static int pidfd_alive(int pidfd)
{
	return syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) == 0;
}

/* Inode of /proc/PID/ns/NAME; 0 with errno set. */
static unsigned long long ns_inode_of(const char *pid, const char *name)
{
	char path[64];
	struct stat st;
	snprintf(path, sizeof(path), "/proc/%s/ns/%s", pid, name);
	if (stat(path, &st) < 0)
		return 0;
	return (unsigned long long)st.st_ino;
}

/* The container's namespace of kind k as this pid shows it: time (and pid) for
 * children, as containerfs.kernel.holder.holder_inode / ns_inode_for_children. */
static unsigned long long inode_for(const char *pid, int k, int for_children_pid)
{
	char name[32];
	if (k == K_TIME || (for_children_pid && !strcmp(KINDS[k], "pid")))
		snprintf(name, sizeof(name), "%s_for_children", KINDS[k]);
	else
		snprintf(name, sizeof(name), "%s", KINDS[k]);
	return ns_inode_of(pid, name);
}

/* Open /proc/HOLDER/NAME and check the pidfd is still alive after (the pid still
 * named it); -1 when the holder is gone. */
static int open_proc_checked(int pidfd, const char *name)
{
	char path[64];
	int fd;
	snprintf(path, sizeof(path), "/proc/%ld/%s", holder, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT || errno == ESRCH)
			holder_gone();
		die("%s", strerror(errno));
	}
	if (!pidfd_alive(pidfd)) {
		if (errno == ESRCH)
			holder_gone();
		die("%s", strerror(errno));
	}
	return fd;
}

static int holder_pidfd(void)
{
	int fd = (int)syscall(SYS_pidfd_open, (pid_t)holder, 0);
	if (fd < 0) {
		if (errno == ESRCH)
			holder_gone();
		die("%s", strerror(errno));
	}
	return fd;
}

/* "holder N is not in the container's a, b namespace: ...": the kinds in the
 * mask, sorted by name as check_same_namespaces sorts them. */
__attribute__((noreturn)) static void not_in(unsigned changed)
{
	static const int by_name[NKINDS] = {6, 0, 4, 2, 3, 7, 5, 1}; /* cgroup ipc mnt ... */
	char list[128] = "";
	int i;
	for (i = 0; i < NKINDS; i++) {
		if (changed & (1u << by_name[i])) {
			if (list[0])
				strcat(list, ", ");
			strcat(list, KINDS[by_name[i]]);
		}
	}
	die("holder %ld is not in the container's %s namespace: pid reused or container changed",
	    holder, list);
}

/* The uid_map and gid_map of the holder's user namespace, checked to be the
 * container's (containerfs.kernel.enter.holder_id_maps). */
static void holder_id_maps(unsigned long long user_inode, char **uid_map, char **gid_map)
{
	int pidfd = holder_pidfd(), fd;
	size_t len;
	struct stat st;
	char **out[2] = {uid_map, gid_map};
	const char *names[2] = {"uid_map", "gid_map"};
	int i;
	for (i = 0; i < 2; i++) {
		fd = open_proc_checked(pidfd, names[i]);
		*out[i] = slurp_fd(fd, &len);
		if (!*out[i])
			die("%s", strerror(errno));
		close(fd);
	}
	fd = open_proc_checked(pidfd, "ns/user");
	if (fstat(fd, &st) < 0)
		die("%s", strerror(errno));
	close(fd);
	close(pidfd);
	if ((unsigned long long)st.st_ino != user_inode)
		not_in(1u << K_USER);
}

/* Whether `id` is inside one of the map's ranges; a malformed map is an error. */
static int is_mapped(const char *map, unsigned long long id)
{
	const char *line = map, *next;
	int found = 0;
	for (; *line; line = next) {
		unsigned long long v[3];
		int nf = 0;
		const char *p = line, *end;
		next = strchr(line, '\n');
		end = next ? next : line + strlen(line);
		next = next ? next + 1 : end;
		while (p < end) {
			const char *w;
			while (p < end && is_space(*p))
				p++;
			if (p == end)
				break;
			w = p;
			while (p < end && !is_space(*p))
				p++;
			if (nf < 3 && parse_num(w, (size_t)(p - w), ULLONG_MAX, &v[nf]))
				nf = 4;
			nf = nf < 4 ? nf + 1 : 4;
		}
		if (nf == 0)
			continue;
		if (nf != 3) {
			size_t n = (size_t)(end - line);
			die("bad ID map line: %s", pyrepr(line, n < 60 ? n : 60));
		}
		if (v[0] <= id && id < v[0] + v[2])
			found = 1;
	}
	return found;
}

/* Join the holder's namespaces we are not in, after checking them by inode
 * (containerfs.kernel.enter.enter_holder). */
static void enter_holder(const unsigned long long expected[NKINDS])
{
	char hp[24];
	int pidfd = holder_pidfd(), time_fd = -1, k, flags = 0;
	unsigned changed = 0;
	char cwd[PATH_MAX];
	int have_cwd;
	snprintf(hp, sizeof(hp), "%ld", holder);
	for (k = 0; k < NKINDS; k++) {
		unsigned long long ino;
		if (!expected[k])
			continue;
		ino = inode_for(hp, k, 0);
		if (!ino) {
			if (errno == ENOENT || errno == ESRCH)
				holder_gone();
			die("%s", strerror(errno));
		}
		if (ino != expected[k])
			changed |= 1u << k;
	}
	/* Still alive after the reads: the inodes are this pidfd's process. */
	if (!pidfd_alive(pidfd)) {
		if (errno == ESRCH)
			holder_gone();
		die("%s", strerror(errno));
	}
	if (changed)
		not_in(changed);
	for (k = 0; k < NKINDS; k++)
		if (expected[k] && inode_for("self", k, 1) != expected[k])
			flags |= FLAGS[k];
	if (!flags) {
		close(pidfd);
		return;
	}
	if (flags & CLONE_NEWTIME) {
		/* setns(pidfd) would take the holder's active time namespace, not
		 * the container's (its time_for_children). */
		struct stat st;
		time_fd = ioctl(pidfd, PIDFD_GET_TIME_FOR_CHILDREN_NAMESPACE, 0);
		if (time_fd < 0) {
			if (errno == ESRCH)
				holder_gone();
			if (errno != ENOTTY && errno != EINVAL)
				die("%s", strerror(errno));
			time_fd = open_proc_checked(pidfd, "ns/time_for_children");
		}
		if (fstat(time_fd, &st) < 0)
			die("%s", strerror(errno));
		if ((unsigned long long)st.st_ino != expected[K_TIME])
			not_in(1u << K_TIME);
	}
	have_cwd = getcwd(cwd, sizeof(cwd)) != NULL;
	/* Time first, while we have every capability over its owner. */
	if ((time_fd >= 0 && setns(time_fd, CLONE_NEWTIME) < 0) ||
	    ((flags & ~CLONE_NEWTIME) && setns(pidfd, flags & ~CLONE_NEWTIME) < 0))
		die("cannot enter namespaces of holder %ld: %s", holder, strerror(errno));
	if ((flags & CLONE_NEWNS) && (!have_cwd || chdir(cwd) < 0) && chdir("/") < 0)
		die("%s", strerror(errno));
	if (time_fd >= 0)
		close(time_fd);
	close(pidfd);
}

/* ---- running the command ------------------------------------------------- */

static volatile pid_t child_pid;

static void forward(int sig)
{
	int e = errno;
	kill(child_pid, sig);
	errno = e;
}

/* The forked child: wait for the go-ahead, then become the command. */
__attribute__((noreturn)) static void child(char **argv, int gate, const sigset_t *saved,
                                            int own_group, int have_ids, uid_t uid, gid_t gid)
{
	static const int dfl[] = {SIGINT, SIGQUIT, SIGPIPE, SIGXFSZ};
	char c;
	ssize_t r;
	size_t i;
	if (own_group && setpgid(0, 0) < 0)
		_exit(1);
	if (have_ids) {
		/* Before the death signal: a change of IDs clears it. */
		if (setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0) {
			fprintf(stderr, PROG ": cannot switch to %u:%u: %s\n", (unsigned)uid,
			        (unsigned)gid, strerror(errno));
			_exit(1);
		}
	}
	/* The command lives as long as `containerfs exec` does, even if SIGKILLed. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
		_exit(1);
	for (i = 0; i < sizeof(dfl) / sizeof(dfl[0]); i++)
		signal(dfl[i], SIG_DFL);
	sigprocmask(SIG_SETMASK, saved, NULL);
	do
		r = read(gate, &c, 1);
	while (r < 0 && errno == EINTR);
	if (r != 1 || c != 'g')
		_exit(1); /* the parent gave up; it kills us anyway */
	close(gate);
	execvp(argv[0], argv);
	fprintf(stderr, PROG ": failed to execute %s: %s\n", argv[0], strerror(errno));
	_exit(errno == ENOENT ? EXIT_NOT_FOUND : EXIT_CANNOT_EXECUTE);
}

/* Standard input, when it is a terminal whose foreground we are; else -1. */
static int foreground_tty(void)
{
	pid_t fg;
	if (!isatty(0))
		return -1;
	fg = tcgetpgrp(0);
	return fg >= 0 && fg == getpgrp() ? 0 : -1;
}

/* Make pgrp the terminal's foreground process group (a shell in the container's
 * pid namespace cannot see ours); errors are ignored, as in execute.py. */
static void give_terminal(int tty, pid_t pgrp)
{
	struct sigaction ign = {.sa_handler = SIG_IGN}, old;
	sigaction(SIGTTOU, &ign, &old);
	tcsetpgrp(tty, pgrp);
	sigaction(SIGTTOU, &old, NULL);
}

/* Fork argv, write the child's pid to tasks, let it run: its exit status
 * (128+N when killed by signal N). containerfs.execute.spawn_and_register. */
static int spawn_and_register(char **argv, int tasks_fd, int have_ids, uid_t uid, gid_t gid)
{
	static const int interactive[] = {SIGINT, SIGQUIT};
	static const int forwarded[] = {SIGTERM, SIGHUP, SIGUSR1, SIGUSR2};
	struct sigaction saved_int[2], saved_fwd[4], ign = {.sa_handler = SIG_IGN}, fwd;
	sigset_t block, saved_mask;
	int gate[2], tty, status, i;
	char line[24];
	pid_t pid;
	ssize_t w;
	if (pipe2(gate, O_CLOEXEC) < 0)
		die("%s", strerror(errno));
	tty = foreground_tty();
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGQUIT);
	/* Blocked across fork so that neither side can die of ^C before it is ready. */
	sigprocmask(SIG_BLOCK, &block, &saved_mask);
	pid = fork();
	if (pid < 0)
		die("%s", strerror(errno));
	if (pid == 0) {
		close(gate[1]);
		child(argv, gate[0], &saved_mask, tty >= 0, have_ids, uid, gid);
	}
	child_pid = pid;
	close(gate[0]);
	if (tty >= 0)
		setpgid(pid, pid); /* whichever of us runs first does it */
	for (i = 0; i < 2; i++)
		sigaction(interactive[i], &ign, &saved_int[i]);
	memset(&fwd, 0, sizeof(fwd));
	fwd.sa_handler = forward;
	fwd.sa_flags = SA_RESTART;
	/* Signals sent to `containerfs exec` alone (kill PID) are meant for the command. */
	for (i = 0; i < 4; i++)
		sigaction(forwarded[i], &fwd, &saved_fwd[i]);
	/* As Python does: a dead reader is an error (EPIPE), not a death. */
	signal(SIGPIPE, SIG_IGN);
	sigprocmask(SIG_SETMASK, &saved_mask, NULL);
	snprintf(line, sizeof(line), "%d\n", (int)pid);
	do
		w = write(tasks_fd, line, strlen(line));
	while (w < 0 && errno == EINTR);
	if (w < 0) {
		int e = errno;
		close(gate[1]); /* the child reads EOF and exits; make sure of it */
		kill(pid, SIGKILL);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		if (tty >= 0)
			give_terminal(tty, getpgrp());
		die("cannot add process to the container: %s", strerror(e));
	}
	if (tty >= 0)
		give_terminal(tty, pid);
	do /* EPIPE: killed before it ran, its status says so */
		w = write(gate[1], "g", 1);
	while (w < 0 && errno == EINTR);
	close(gate[1]);
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			die("%s", strerror(errno));
	}
	if (tty >= 0)
		give_terminal(tty, getpgrp());
	for (i = 0; i < 4; i++)
		sigaction(forwarded[i], &saved_fwd[i], NULL);
	for (i = 0; i < 2; i++)
		sigaction(interactive[i], &saved_int[i], NULL);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

/* containerfs.execute.run, with the options parsed. */
static int run(const char *dir, char **argv, int have_user, uid_t uid, gid_t gid,
               int preserve)
{
	char tasks[PATH_MAX];
	unsigned long long expected[NKINDS] = {0};
	int tasks_fd, enters_user_ns, have_ids = 0, groups_errno = 0;
	if (snprintf(tasks, sizeof(tasks), "%s/tasks", dir) >= (int)sizeof(tasks))
		die("cannot open %s: %s", tasks, strerror(ENAMETOOLONG));
	tasks_fd = open(tasks, O_WRONLY | O_CLOEXEC);
	if (tasks_fd < 0)
		die("cannot open %s: %s", tasks, strerror(errno));
	/* We hold host credentials and an open `tasks`: once in the container's
	 * namespaces, nothing in there may ptrace us or open our fds. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		die("%s", strerror(errno));
	holder = read_init(dir);
	if (holder)
		read_subsystems(dir, expected);
	enters_user_ns = expected[K_USER] && inode_for("self", K_USER, 1) != expected[K_USER];
	if (!preserve && (have_user || enters_user_ns)) {
		/* The maps of the user namespace the command will run in. */
		char *uid_map, *gid_map;
		size_t len;
		if (!expected[K_USER]) {
			uid_map = slurp_at(AT_FDCWD, "/proc/self/uid_map", &len);
			gid_map = uid_map ? slurp_at(AT_FDCWD, "/proc/self/gid_map", &len) : NULL;
			if (!gid_map)
				die("%s", strerror(errno));
		} else {
			holder_id_maps(expected[K_USER], &uid_map, &gid_map);
		}
		if (have_user) {
			if (!is_mapped(uid_map, uid))
				die("uid %u is not mapped in the container's user namespace",
				    (unsigned)uid);
			if (!is_mapped(gid_map, gid))
				die("gid %u is not mapped in the container's user namespace",
				    (unsigned)gid);
			have_ids = 1;
		} else if (enters_user_ns && is_mapped(uid_map, 0) && is_mapped(gid_map, 0)) {
			uid = 0;
			gid = 0;
			have_ids = 1;
		}
		free(uid_map);
		free(gid_map);
	}
	/* Before joining, while we may; again after, if the namespace allows it. */
	if (have_ids && setgroups(0, NULL) < 0)
		groups_errno = errno;
	if (holder)
		enter_holder(expected);
	if (groups_errno && (!enters_user_ns || setgroups(0, NULL) < 0))
		die("cannot drop supplementary groups: %s", strerror(groups_errno));
	return spawn_and_register(argv, tasks_fd, have_ids, uid, gid);
}

int main(int argc, char **argv)
{
	char self[PATH_MAX], *slash, **a;
	const char *name = strrchr(argv[0], '/');
	const char *container = NULL, *user_text = NULL;
	int preserve = 0;
	uid_t uid = 0;
	gid_t gid = 0;
	ssize_t n;
	name = name ? name + 1 : argv[0];
	if (!strcmp(name, "containerfs")) {
		/* The `containerfs` command: Python beside our own file. */
		n = readlink("/proc/self/exe", self, sizeof(self) - 8);
		if (n < 0)
			die("cannot find the interpreter: %s", strerror(errno));
		self[n] = 0;
		slash = strrchr(self, '/');
		strcpy(slash ? slash + 1 : self, "python");
		python = self;
		orig_args = argv + 1;
		if (argc < 2 || strcmp(argv[1], "exec"))
			to_python(0);
	} else {
		if (argc < 3 || strcmp(argv[2], "exec")) {
			fprintf(stderr, "usage: containerfs-exec PYTHON exec [OPTIONS] CONTAINER -- CMD...\n"
			                "(the `containerfs exec` command's own program)\n");
			return 2;
		}
		python = argv[1];
		orig_args = argv + 2;
	}
	/* Options before CONTAINER, as argparse takes them; anything else is Python's. */
	for (a = orig_args + 1; *a; a++) {
		if (!strcmp(*a, "--preserve-credentials") && !preserve)
			preserve = 1;
		else if ((!strcmp(*a, "--user") || !strcmp(*a, "-u")) && a[1] && !user_text)
			user_text = *++a;
		else if (!strncmp(*a, "--user=", 7) && !user_text)
			user_text = *a + 7;
		else if (!strncmp(*a, "-u", 2) && (*a)[2] && (*a)[2] != '=' && !user_text)
			user_text = *a + 2;
		else if ((*a)[0] == '-' && (*a)[1])
			to_python(1);
		else
			break;
	}
	if ((user_text && (preserve || parse_user(user_text, &uid, &gid))) || !*a)
		to_python(1);
	container = *a++;
	if (*a && !strcmp(*a, "--"))
		a++;
	if (!*a) {
		fputs(PROG ": no command given\n", stderr);
		return 2;
	}
	return run(container, a, user_text != NULL, uid, gid, preserve);
}
