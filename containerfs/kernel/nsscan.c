/*
 * containerfs-nsscan: the /proc walk of kernel/nslist.py, on several threads.
 *
 *   containerfs-nsscan PROC THREADS FDCOUNTS NACTIVE NAME...
 *
 * Why it exists: listing every namespace means reading the links in
 * PROC/PID/ns of every process (ten per process) and the links of its fds.
 * That is kernel time, about 5 us a call here, and the kernel spreads it over
 * CPUs only if the calls come from several threads.  Python threads do not
 * help (the GIL handoff around each short call costs more than it saves), so
 * this walk is in C.  Everything else (grouping, owners, parents, bind
 * mounts) stays in nslist.py, which also keeps a pure-Python walk that gives
 * the same records when this program is missing.
 *
 * NAME... are the ns link names to read, the NACTIVE active kinds first
 * (ipc uts ...), then the *_for_children ones.  FDCOUNTS is 1 when st_size
 * of PROC/PID/fd is the number of open fds (Linux >= 6.2); 2 asks for the
 * links of processes alone ("p" records only, no threads, fds or "n" records);
 * 3 is the listns() path (Linux >= 6.19, root): NAME... are then the kinds
 * to list (NACTIVE of them, no *_for_children), and the output is "l"
 * records only (below).  THREADS: how many threads walk (1 to 64).
 *
 * Output, one record per line, fields separated by one space; a link that
 * cannot be read is "-":
 *
 *   p COUNT PIDS LINK...       COUNT processes with these links; PIDS are up
 *                              to three of them, comma-separated
 *   t PID TID LINK...          a thread other than the main one (only when
 *                              st_nlink of PROC/PID/task says there are several)
 *   f PID FD TARGET            an fd whose link text is an nsfs file's
 *                              ("KIND:[INODE]", KIND one of the active NAMEs)
 *   n LINK OWNER PARENT ID     a namespace of a "p" record, opened from one of
 *                              its processes' ns files and checked to be it:
 *                              the inodes NS_GET_USERNS and NS_GET_PARENT give
 *                              ("-": none for us), and its 64-bit id
 *                              (NS_GET_ID, "-" before Linux 6.18).  A namespace
 *                              that could not be opened so has no "n" record.
 *   l KIND INODE NPROCS OWNER PARENT ID
 *                              FDCOUNTS 3: a namespace listns() handed out
 *                              (opened by its id; see listns_mode()), with
 *                              the processes whose active namespace it is
 *
 * A process, thread or fd that vanishes or may not be inspected (ENOENT,
 * ESRCH, EACCES, EPERM) is left out, as nslist.py's walk does: a process
 * whose active links all fail, or whose task or fd dir cannot be stat()ed.
 * Any other error: a message on stderr and exit status 1; whatever stdout got
 * then is not to be used.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/nsfs.h>

#ifndef NS_GET_ID
#define NS_GET_ID _IOR(NSIO, 13, unsigned long long) /* Linux >= 6.18 */
#endif

#define MAX_THREADS 64
#define MAX_NAMES 16

static const char *proc;
static int nthreads, fdcounts, nactive, nnames;
static const char *names[MAX_NAMES];
static char **pids;
static size_t npids;

struct buf {
	char *buf;
	size_t len, cap;
};

struct out {
	struct buf text;	/* "t" and "f" records */
	struct buf procs;	/* one "LINK... <tab> PID" line per process, grouped by main() */
	int err;		/* first unexpected errno, 0 if none */
	char where[PATH_MAX];	/* and the path it came from */
};

struct job {
	struct out out;
	int index;
	long *counts;		/* FDCOUNTS 3: processes per listed namespace */
};

/* Format a path into BUF (PATH_MAX bytes); a path that does not fit reads as gone. */
static void pathf(char *buf, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, PATH_MAX, fmt, ap);
	va_end(ap);
	if (n < 0 || n >= PATH_MAX)
		strcpy(buf, "/nonexistent/containerfs-nsscan-path-too-long");
}

static int gone(int err)
{
	return err == ENOENT || err == ESRCH || err == EACCES || err == EPERM;
}

static void fail(struct out *o, const char *path, int err)
{
	if (!o->err) {
		o->err = err;
		snprintf(o->where, sizeof o->where, "%s", path);
	}
}

/* After a failed call on PATH: record errno unless the process or fd is just gone. */
static void unless_gone(struct out *o, const char *path)
{
	if (!gone(errno))
		fail(o, path, errno);
}

/* opendir(PATH), or NULL (errno recorded unless gone). */
static DIR *open_dir(struct out *o, const char *path)
{
	DIR *d = opendir(path);

	if (!d)
		unless_gone(o, path);
	return d;
}

static void put(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			perror("containerfs-nsscan");
			exit(1);
		}
		if ((size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		b->cap = b->cap * 2 + (size_t)n + 4096;
		b->buf = realloc(b->buf, b->cap);
		if (!b->buf) {
			perror("containerfs-nsscan");
			exit(1);
		}
	}
}

/*
 * Read DIR/ns/NAME for every name into LINKS ("-" when unreadable).  Returns
 * 0 when at least one active link was read, -1 when none was (gone).
 */
static int read_links(struct out *o, const char *dir, char links[][64])
{
	char path[PATH_MAX];
	int i, any = 0;
	ssize_t n;

	for (i = 0; i < nnames; i++) {
		pathf(path, "%s/ns/%s", dir, names[i]);
		n = readlink(path, links[i], 63);
		if (n < 0) {
			unless_gone(o, path);
			strcpy(links[i], "-");
			continue;
		}
		links[i][n] = '\0';
		if (i < nactive)
			any = 1;
	}
	return any ? 0 : -1;
}

static void put_links(struct buf *b, char links[][64])
{
	int i;

	for (i = 0; i < nnames; i++)
		put(b, i ? " %s" : "%s", links[i]);
}

/*
 * Whether an fd's link text reads as an nsfs file's, "KIND:[DIGITS]" with
 * KIND one of the NAMEs (pipes and sockets read "pipe:[N]", "socket:[N]").
 */
static int ns_link(const char *target)
{
	const char *bracket = strstr(target, ":[");
	const char *p;
	int i;

	if (!bracket || bracket[2] == ']')
		return 0;
	for (p = bracket + 2; *p >= '0' && *p <= '9'; p++)
		;
	if (p[0] != ']' || p[1] != '\0')
		return 0;
	for (i = 0; i < nactive; i++) {
		if (strlen(names[i]) == (size_t)(bracket - target) &&
		    !strncmp(target, names[i], (size_t)(bracket - target)))
			return 1;
	}
	return 0;
}

/* One fd's link text, recorded if it is an nsfs fd's; -1 if the fd is gone. */
static int one_fd(struct out *o, const char *pid, const char *fd_dir, const char *fd)
{
	char path[PATH_MAX], target[PATH_MAX];
	ssize_t n;

	pathf(path, "%s/%s", fd_dir, fd);
	n = readlink(path, target, sizeof target - 1);
	if (n < 0) {
		unless_gone(o, path);
		return -1;
	}
	target[n] = '\0';
	if (ns_link(target))
		put(&o->text, "f %s %s %s\n", pid, fd, target);
	return 0;
}

/* fds 0..COUNT-1 straight away (most processes have no gap), then the dir. */
static void scan_fds(struct out *o, const char *pid, const char *base, long long count)
{
	char fd_dir[PATH_MAX], name[32];
	long long fd, start = 0;
	struct dirent *e;
	DIR *d;

	pathf(fd_dir, "%s/fd", base);
	if (count > 0) {
		for (fd = 0; fd < count; fd++) {
			snprintf(name, sizeof name, "%lld", fd);
			if (one_fd(o, pid, fd_dir, name) < 0)
				break; /* a gap: list the directory for the rest */
			start = fd + 1;
		}
		if (fd == count)
			return;
	}
	d = open_dir(o, fd_dir);
	if (!d)
		return;
	while ((e = readdir(d))) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9' || atoll(e->d_name) < start)
			continue;
		(void)one_fd(o, pid, fd_dir, e->d_name); /* closed meanwhile: skipped */
	}
	closedir(d);
}

static void scan_threads(struct out *o, const char *pid, const char *base)
{
	char task_dir[PATH_MAX], dir[PATH_MAX], links[MAX_NAMES][64];
	struct dirent *e;
	DIR *d;

	pathf(task_dir, "%s/task", base);
	d = open_dir(o, task_dir);
	if (!d)
		return;
	while ((e = readdir(d))) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9' || !strcmp(e->d_name, pid))
			continue;
		pathf(dir, "%s/%s", task_dir, e->d_name);
		if (read_links(o, dir, links) < 0)
			continue;
		put(&o->text, "t %s %s ", pid, e->d_name);
		put_links(&o->text, links);
		put(&o->text, "\n");
	}
	closedir(d);
}

static void scan_one(struct out *o, const char *pid)
{
	char base[PATH_MAX], path[PATH_MAX], links[MAX_NAMES][64];
	struct stat task, fds;

	pathf(base, "%s/%s", proc, pid);
	if (read_links(o, base, links) < 0)
		return;
	if (fdcounts == 2) { /* links only */
		put_links(&o->procs, links);
		put(&o->procs, "\t%s\n", pid);
		return;
	}
	pathf(path, "%s/task", base);
	if (stat(path, &task) < 0) {
		unless_gone(o, path);
		return;
	}
	fds.st_size = -1;
	if (fdcounts) {
		pathf(path, "%s/fd", base);
		if (stat(path, &fds) < 0) {
			unless_gone(o, path);
			return;
		}
	}
	put_links(&o->procs, links);
	put(&o->procs, "\t%s\n", pid);
	if (task.st_nlink > 3) /* 2 + the number of threads */
		scan_threads(o, pid, base);
	if (fds.st_size != 0) /* 0 for kernel threads */
		scan_fds(o, pid, base, (long long)fds.st_size);
}

static void *run(void *arg)
{
	struct job *j = arg;
	size_t i;

	for (i = (size_t)j->index; i < npids; i += (size_t)nthreads)
		scan_one(&j->out, pids[i]);
	return NULL;
}

/*
 * The namespaces of the "p" records and where to open each: the ns files of
 * up to three of their processes (the oldest first).  Filled by main() after
 * the walk, then shared out among the threads.
 */
struct cand {
	const char *link;	/* "net:[4026531840]", NUL-terminated */
	const char *pid;
	int name;		/* index into names */
};

static struct cand *cands;
static size_t ncands, capcands;
static dev_t nsfs_dev;

/* Each link of one "LINK... <tab> PID" line (cut into strings in place). */
static void add_candidates(char *line)
{
	char *tab = strchr(line, '\t'), *p = line, *end;
	int i;

	*tab = '\0';
	for (i = 0; i < nnames && p; i++, p = end ? end + 1 : NULL) {
		end = strchr(p, ' ');
		if (end)
			*end = '\0';
		if (!strcmp(p, "-"))
			continue;
		if (ncands == capcands) {
			capcands = capcands * 2 + 1024;
			cands = realloc(cands, capcands * sizeof *cands);
			if (!cands) {
				perror("containerfs-nsscan");
				exit(1);
			}
		}
		cands[ncands].link = p;
		cands[ncands].pid = tab + 1;
		cands[ncands].name = i;
		ncands++;
	}
}

static int by_link(const void *a, const void *b)
{
	return strcmp(((const struct cand *)a)->link, ((const struct cand *)b)->link);
}

/* The inode an nsfs ioctl's namespace has: 0 for none for us, -1 on error. */
static long long relative(struct out *o, int fd, unsigned long request, const char *path)
{
	struct stat st;
	int rel = ioctl(fd, request);

	if (rel < 0) {
		if (errno == EPERM || errno == EINVAL || errno == ENOTTY)
			return 0;
		fail(o, path, errno);
		return -1;
	}
	if (fstat(rel, &st) < 0) {
		fail(o, path, errno);
		close(rel);
		return -1;
	}
	close(rel);
	return (long long)st.st_ino;
}

/* Owner and parent of the distinct namespace starting at cands[first]. */
static void one_namespace(struct out *o, size_t first, size_t end)
{
	char path[PATH_MAX], owner[32], parent[32], id[32];
	const char *link = cands[first].link, *bracket = strchr(link, '[');
	unsigned long long inode = bracket ? strtoull(bracket + 1, NULL, 10) : 0;
	int hierarchical = !strncmp(link, "pid:", 4) || !strncmp(link, "user:", 5);
	size_t i;

	for (i = first; i < end && i < first + 3; i++) {
		struct stat st;
		long long own, par = 0;
		unsigned long long nsid;
		int fd;

		pathf(path, "%s/%s/ns/%s", proc, cands[i].pid, names[cands[i].name]);
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
		if (fd < 0)
			continue; /* gone, not ours: the next process */
		if (fstat(fd, &st) < 0 || st.st_dev != nsfs_dev || st.st_ino != inode) {
			close(fd); /* the pid was reused meanwhile */
			continue;
		}
		own = relative(o, fd, NS_GET_USERNS, path);
		if (own >= 0 && hierarchical)
			par = relative(o, fd, NS_GET_PARENT, path);
		if (ioctl(fd, NS_GET_ID, &nsid) == 0)
			snprintf(id, sizeof id, "%llu", nsid);
		else
			strcpy(id, "-"); /* ENOTTY: a kernel before 6.18 */
		close(fd);
		if (own < 0 || par < 0)
			return;
		snprintf(owner, sizeof owner, own ? "%lld" : "-", own);
		snprintf(parent, sizeof parent, par ? "%lld" : "-", par);
		put(&o->text, "n %s %s %s %s\n", link, owner, parent, id);
		return;
	}
}

/* Start of each distinct link in the sorted cands; filled by main(). */
static size_t *starts;
static size_t nstarts;

static void *run_namespaces(void *arg)
{
	struct job *j = arg;
	size_t i;

	for (i = (size_t)j->index; i < nstarts; i += (size_t)nthreads)
		one_namespace(&j->out, starts[i], i + 1 < nstarts ? starts[i + 1] : ncands);
	return NULL;
}

/* "LINK... <tab> PID" lines by links, then by pid: the oldest processes first. */
static int by_links_then_pid(const void *a, const void *b)
{
	const char *x = *(char *const *)a, *y = *(char *const *)b;
	const char *tx = strchr(x, '\t'), *ty = strchr(y, '\t');
	size_t nx = (size_t)(tx - x), ny = (size_t)(ty - y);
	int c = strncmp(x, y, nx < ny ? nx : ny);
	long px, py;

	if (c)
		return c;
	if (nx != ny)
		return nx < ny ? -1 : 1;
	px = atol(tx + 1);
	py = atol(ty + 1);
	return (px > py) - (px < py);
}

/*
 * One "p COUNT PIDS LINK..." record per distinct tuple of links, PIDS being
 * up to three of its processes, comma-separated: most processes share all
 * their links with many others, so the caller parses a few hundred records
 * instead of a line per process.
 */
static void emit_groups(struct job *jobs, int n)
{
	size_t count = 0, i, j, k;
	char **lines, *p;
	int t;

	for (t = 0; t < n; t++) {
		for (p = jobs[t].out.procs.buf; p && p < jobs[t].out.procs.buf + jobs[t].out.procs.len; p++)
			count += *p == '\n';
	}
	lines = malloc((count + 1) * sizeof *lines);
	if (!lines) {
		perror("containerfs-nsscan");
		exit(1);
	}
	count = 0;
	for (t = 0; t < n; t++) {
		struct buf *b = &jobs[t].out.procs;
		char *line = b->buf;

		for (p = b->buf; p && p < b->buf + b->len; p++) {
			if (*p == '\n') {
				*p = '\0';
				lines[count++] = line;
				line = p + 1;
			}
		}
	}
	qsort(lines, count, sizeof *lines, by_links_then_pid);
	for (i = 0; i < count; i = j) {
		char *tab = strchr(lines[i], '\t');
		size_t key = (size_t)(tab - lines[i]);

		for (j = i + 1; j < count && !strncmp(lines[j], lines[i], key) && lines[j][key] == '\t'; j++)
			;
		printf("p %zu ", j - i);
		for (k = i; k < j && k < i + 3; k++)
			printf(k > i ? ",%s" : "%s", strchr(lines[k], '\t') + 1);
		printf(" %.*s\n", (int)key, lines[i]);
		for (k = i; k < j && k < i + 3; k++)
			add_candidates(lines[k]); /* cuts the line up */
	}
	/* lines stay: the candidates point into them */
}

/*
 * The pids in PROC, but our own when PROC is our procfs (its "self" is us):
 * the walk lists what its caller would have seen without us.
 */
static int list_pids(void)
{
	char self[32], path[PATH_MAX], mine[32];
	struct dirent *e;
	size_t cap = 1024;
	ssize_t n;
	DIR *d = opendir(proc);

	if (!d)
		return -1;
	snprintf(mine, sizeof mine, "%d", (int)getpid());
	pathf(path, "%s/self", proc);
	n = readlink(path, self, sizeof self - 1);
	self[n > 0 ? n : 0] = '\0';
	if (strcmp(self, mine) != 0)
		self[0] = '\0'; /* not our procfs: skip nothing */
	pids = malloc(cap * sizeof *pids);
	while (pids && (e = readdir(d))) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9' || (self[0] && !strcmp(e->d_name, self)))
			continue;
		if (npids == cap) {
			cap *= 2;
			pids = realloc(pids, cap * sizeof *pids);
			if (!pids)
				break;
		}
		pids[npids] = strdup(e->d_name);
		if (!pids[npids++])
			break;
	}
	closedir(d);
	if (!pids || (npids && !pids[npids - 1])) {
		errno = ENOMEM;
		return -1;
	}
	return 0;
}

/* FN on every job, one thread each (the caller's for job 0); -1 if one failed. */
static int run_all(struct job *jobs, void *(*fn)(void *))
{
	pthread_t tids[MAX_THREADS];
	int started[MAX_THREADS] = {0};
	int i;

	for (i = 0; i < nthreads; i++) {
		jobs[i].index = i;
		started[i] = i > 0 && pthread_create(&tids[i], NULL, fn, &jobs[i]) == 0;
	}
	for (i = 0; i < nthreads; i++) {
		if (!started[i]) /* job 0, and any whose thread could not start */
			fn(&jobs[i]);
	}
	for (i = 1; i < nthreads; i++) {
		if (started[i])
			pthread_join(tids[i], NULL);
	}
	for (i = 0; i < nthreads; i++) {
		if (jobs[i].out.err) {
			fprintf(stderr, "containerfs-nsscan: %s: %s\n", jobs[i].out.where,
				strerror(jobs[i].out.err));
			return -1;
		}
	}
	return 0;
}

/* Sort the candidates and mark where each distinct link starts. */
static int namespaces_phase(void)
{
	struct stat st;
	size_t i;

	if (stat("/proc/thread-self/ns/user", &st) < 0)
		return 0; /* no nsfs to check against: leave it all to nslist.py */
	nsfs_dev = st.st_dev;
	qsort(cands, ncands, sizeof *cands, by_link);
	starts = malloc((ncands + 1) * sizeof *starts);
	if (!starts) {
		perror("containerfs-nsscan");
		exit(1);
	}
	for (i = 0; i < ncands; i++) {
		if (i == 0 || strcmp(cands[i].link, cands[i - 1].link))
			starts[nstarts++] = i;
	}
	return 1;
}

/* ------------------------------------------------------------------ listns() */

/*
 * FDCOUNTS 3, the listns() path (Linux >= 6.19; nslist.py asks for it only
 * for root's listing of the real /proc, once listns() answered).
 *
 * 1. listns() hands out the id of every active namespace; each is opened by
 *    its id (open_by_handle_at on an nsfs handle) and its kind, inode, owner
 *    and parent read from that fd, on the threads.
 * 2. NPROCS: the kernel counts no processes per namespace, so the processes'
 *    links are still read, but only of the kinds that have more than one
 *    namespace.  A kind with one namespace holds every process that has a
 *    link of that kind: for the kinds kept in a task's nsproxy (all but pid
 *    and user) every process but a zombie, for pid and user every process
 *    (a zombie keeps those two, as lsns counts).  Which of the two a process
 *    is shows in its first nsproxy link (read anyway for a kind with several
 *    namespaces, else one is read to tell); a process whose nsproxy links
 *    fail has its pid and user links read.  A process we may not inspect
 *    (EACCES) counts nowhere, as in the walk.  That shortcut needs listns()
 *    to show every namespace: only when we are in the initial user namespace
 *    with CAP_SYS_ADMIN; else every kind is read per process.
 *
 * The listing comes first, the counting after: a process's namespace made
 * after listns() answered is not listed and the process counts nowhere for
 * that kind, as if the listing had been taken when listns() ran.
 */

#ifndef SYS_listns
#define SYS_listns 470
#endif
#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#define FD_NSFS_ROOT -10003		/* linux/fcntl.h, 6.18 */
#define FILEID_NSFS 0xf1		/* linux/exportfs.h */
#define INIT_USER_NS_LINK "user:[4026531837]" /* PROC_USER_INIT_INO */
#define LISTNS_BATCH 1024

struct ns_id_req0 {
	unsigned int size, spare;
	unsigned long long ns_id;
	unsigned int ns_type, spare2;
	unsigned long long user_ns_id;
};

static const struct {
	const char *name;
	unsigned int flag;
	int nsproxy;		/* kept in the task's nsproxy (gone in a zombie) */
} known_kinds[] = {
	{"ipc", CLONE_NEWIPC, 1}, {"uts", CLONE_NEWUTS, 1}, {"net", CLONE_NEWNET, 1},
	{"pid", CLONE_NEWPID, 0}, {"mnt", CLONE_NEWNS, 1}, {"user", CLONE_NEWUSER, 0},
	{"cgroup", CLONE_NEWCGROUP, 1}, {"time", CLONE_NEWTIME, 1},
};

struct listed {
	unsigned long long id, inode, owner, parent; /* owner, parent 0: none for us */
	int kind;		/* index into names; -1: gone, or a kind not asked for */
};

static struct listed *listed;
static size_t nlisted;
static unsigned int flag_of[MAX_NAMES];
static int nsproxy_of[MAX_NAMES];
static int multi[MAX_NAMES];	/* read this kind's link of every process */
static long sole[MAX_NAMES];	/* else the index of its one namespace, or -1 */
static int probe = -1;		/* an nsproxy kind read only to tell live from zombie */

static int collect_ids(void)
{
	struct ns_id_req0 req = {.size = sizeof req};
	unsigned long long ids[LISTNS_BATCH];
	size_t cap = 0;
	long n, i;

	for (;;) {
		n = syscall(SYS_listns, &req, ids, (size_t)LISTNS_BATCH, 0);
		if (n < 0)
			return -1;
		if (nlisted + (size_t)n > cap) {
			cap = cap * 2 + (size_t)n + LISTNS_BATCH;
			listed = realloc(listed, cap * sizeof *listed);
			if (!listed) {
				perror("containerfs-nsscan");
				exit(1);
			}
		}
		for (i = 0; i < n; i++) {
			memset(&listed[nlisted], 0, sizeof *listed);
			listed[nlisted++].id = ids[i];
		}
		if (n < LISTNS_BATCH)
			return 0;
		req.ns_id = ids[n - 1];
	}
}

/* Kind, inode, owner and parent of one listed id; kind -1 when it is gone. */
static void list_one(struct out *o, struct listed *l)
{
	union {
		struct file_handle fh;
		char bytes[sizeof(struct file_handle) + 16];
	} h;
	struct {
		unsigned long long id;
		unsigned int type, inum;	/* 0: any */
	} payload = {l->id, 0, 0};
	char what[64];
	struct stat st;
	long long own, par = 0;
	int fd, type, k;

	l->kind = -1;
	snprintf(what, sizeof what, "namespace id %llu", l->id);
	h.fh.handle_bytes = sizeof payload;
	h.fh.handle_type = FILEID_NSFS;
	memcpy(h.fh.f_handle, &payload, sizeof payload);
	fd = open_by_handle_at(FD_NSFS_ROOT, &h.fh, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno != ESTALE)
			unless_gone(o, what); /* its last reference went after listns() */
		return;
	}
	type = ioctl(fd, NS_GET_NSTYPE);
	for (k = 0; type >= 0 && k < nactive && flag_of[k] != (unsigned int)type; k++)
		;
	if (type < 0 || (k < nactive && fstat(fd, &st) < 0)) {
		fail(o, what, errno);
	} else if (k < nactive) {
		own = relative(o, fd, NS_GET_USERNS, what);
		if (own >= 0 && !nsproxy_of[k])
			par = relative(o, fd, NS_GET_PARENT, what);
		if (own >= 0 && par >= 0) {
			l->kind = k;
			l->inode = (unsigned long long)st.st_ino;
			l->owner = (unsigned long long)own;
			l->parent = (unsigned long long)par;
		}
	}
	close(fd);
}

static void *run_list(void *arg)
{
	struct job *j = arg;
	size_t i;

	for (i = (size_t)j->index; i < nlisted; i += (size_t)nthreads)
		list_one(&j->out, &listed[i]);
	return NULL;
}

static int by_kind_inode(const void *a, const void *b)
{
	const struct listed *x = a, *y = b;

	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	return (x->inode > y->inode) - (x->inode < y->inode);
}

/* One process's link of kind K, counted to its namespace if that was listed. */
static void count_link(struct job *j, int k, const char *link)
{
	const char *bracket = strchr(link, '[');
	struct listed key = {.kind = k}, *l;

	if (!bracket)
		return;
	key.inode = strtoull(bracket + 1, NULL, 10);
	l = bsearch(&key, listed, nlisted, sizeof *listed, by_kind_inode);
	if (l) /* else made after listns() answered */
		j->counts[l - listed]++;
}

/* readlink of PROC/PID/ns/NAME into LINK (64 bytes): 0, or -1 with errno. */
static int ns_link_of(const char *pid, int k, char *link)
{
	char path[PATH_MAX];
	ssize_t n;

	pathf(path, "%s/%s/ns/%s", proc, pid, names[k]);
	n = readlink(path, link, 63);
	if (n < 0)
		return -1;
	link[n] = '\0';
	return 0;
}

static void count_one(struct job *j, const char *pid)
{
	char link[64];
	int k, live = 0;

	for (k = 0; k < nactive; k++) {
		if (!multi[k] && k != probe)
			continue;
		if (ns_link_of(pid, k, link) < 0) {
			if (errno == EACCES || errno == EPERM)
				return; /* not ours to inspect: none of its links is */
			if (!gone(errno))
				fail(&j->out, pid, errno);
			continue;
		}
		if (nsproxy_of[k])
			live = 1;
		if (multi[k])
			count_link(j, k, link);
	}
	for (k = 0; k < nactive; k++) {
		if (multi[k] || sole[k] < 0)
			continue;
		if (live)
			j->counts[sole[k]]++;
		else if (!nsproxy_of[k] && ns_link_of(pid, k, link) == 0)
			j->counts[sole[k]]++; /* a zombie's pid and user */
	}
}

static void *run_count(void *arg)
{
	struct job *j = arg;
	size_t i;

	for (i = (size_t)j->index; i < npids; i += (size_t)nthreads)
		count_one(j, pids[i]);
	return NULL;
}

/* Whether listns() shows us every namespace: initial user namespace, CAP_SYS_ADMIN. */
static int sees_all(void)
{
	char link[64], line[256];
	unsigned long long eff = 0;
	ssize_t n = readlink("/proc/self/ns/user", link, sizeof link - 1);
	FILE *f;

	if (n < 0)
		return 0;
	link[n] = '\0';
	if (strcmp(link, INIT_USER_NS_LINK) != 0)
		return 0;
	f = fopen("/proc/self/status", "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "CapEff: %llx", &eff) == 1)
			break;
	fclose(f);
	return (eff >> 21) & 1; /* CAP_SYS_ADMIN */
}

static int listns_mode(struct job *jobs)
{
	size_t i, kept = 0, of_kind[MAX_NAMES] = {0};
	int k, t, shortcut = sees_all(), any_nsproxy_multi = 0;

	for (k = 0; k < nactive; k++) {
		size_t m;

		for (m = 0; m < sizeof known_kinds / sizeof *known_kinds; m++)
			if (!strcmp(names[k], known_kinds[m].name))
				break;
		if (m == sizeof known_kinds / sizeof *known_kinds) {
			fprintf(stderr, "containerfs-nsscan: unknown kind %s\n", names[k]);
			return 2;
		}
		flag_of[k] = known_kinds[m].flag;
		nsproxy_of[k] = known_kinds[m].nsproxy;
	}
	if (collect_ids() < 0) {
		fprintf(stderr, "containerfs-nsscan: listns: %s\n", strerror(errno));
		return 1;
	}
	if (run_all(jobs, run_list) < 0)
		return 1;
	for (i = 0; i < nlisted; i++)
		if (listed[i].kind >= 0)
			listed[kept++] = listed[i];
	nlisted = kept;
	qsort(listed, nlisted, sizeof *listed, by_kind_inode);
	for (i = 0; i < nlisted; i++)
		of_kind[listed[i].kind]++;
	for (k = 0; k < nactive; k++) {
		multi[k] = !shortcut || of_kind[k] > 1;
		sole[k] = -1;
		any_nsproxy_multi |= multi[k] && nsproxy_of[k];
	}
	for (i = 0; i < nlisted; i++)
		if (!multi[listed[i].kind])
			sole[listed[i].kind] = (long)i;
	for (k = 0; k < nactive && !any_nsproxy_multi; k++) {
		if (nsproxy_of[k]) {
			probe = k;
			break;
		}
	}
	for (t = 0; t < nthreads; t++) {
		jobs[t].counts = calloc(nlisted + 1, sizeof *jobs[t].counts);
		if (!jobs[t].counts) {
			perror("containerfs-nsscan");
			exit(1);
		}
	}
	if (run_all(jobs, run_count) < 0)
		return 1;
	for (i = 0; i < nlisted; i++) {
		const struct listed *l = &listed[i];
		char owner[32] = "-", parent[32] = "-";
		long count = 0;

		for (t = 0; t < nthreads; t++)
			count += jobs[t].counts[i];
		if (l->owner)
			snprintf(owner, sizeof owner, "%llu", l->owner);
		if (l->parent)
			snprintf(parent, sizeof parent, "%llu", l->parent);
		printf("l %s %llu %ld %s %s %llu\n", names[l->kind], l->inode, count, owner,
		       parent, l->id);
	}
	return fflush(stdout) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	static struct job jobs[MAX_THREADS];
	int i;

	if (argc < 6 || argc - 5 > MAX_NAMES) {
		fprintf(stderr, "usage: containerfs-nsscan PROC THREADS FDCOUNTS NACTIVE NAME...\n");
		return 2;
	}
	proc = argv[1];
	nthreads = atoi(argv[2]);
	fdcounts = atoi(argv[3]);
	nactive = atoi(argv[4]);
	nnames = argc - 5;
	for (i = 0; i < nnames; i++)
		names[i] = argv[5 + i];
	if (nthreads < 1 || nthreads > MAX_THREADS || nactive < 1 || nactive > nnames ||
	    fdcounts < 0 || fdcounts > 3) {
		fprintf(stderr, "containerfs-nsscan: bad THREADS, FDCOUNTS or NACTIVE\n");
		return 2;
	}
	if (list_pids() < 0) {
		fprintf(stderr, "containerfs-nsscan: %s: %s\n", proc, strerror(errno));
		return 1;
	}
	if ((size_t)nthreads > npids / 64 + 1)
		nthreads = (int)(npids / 64 + 1); /* a thread per 64 processes at most */
	if (fdcounts == 3)
		return listns_mode(jobs);
	if (run_all(jobs, run) < 0)
		return 1;
	emit_groups(jobs, nthreads);
	if (fdcounts != 2 && namespaces_phase() && run_all(jobs, run_namespaces) < 0)
		return 1;
	for (i = 0; i < nthreads; i++) {
		struct buf *b = &jobs[i].out.text;

		if (b->len && fwrite(b->buf, 1, b->len, stdout) != b->len)
			return 1;
	}
	return fflush(stdout) == 0 ? 0 : 1;
}
