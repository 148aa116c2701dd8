/* The least a FUSE filesystem costs here: bench/floorfs.py's two files in C
 * on libfuse's own single-threaded loop.
 *
 * Built and run by bench.control as `floorfs-c MOUNTPOINT`; prints "ready" once
 * mounted and serves until SIGTERM. "value" is opened with keep_cache (read from
 * the page cache, as containerfs serves a limit), "dynamic" with direct_io
 * (every read asks the daemon, as containerfs serves tasks or a counter). Entry
 * and attribute timeouts are containerfs's (1 s); flush is left unimplemented,
 * so libfuse answers ENOSYS once and the kernel stops sending it.
 */
#define FUSE_USE_VERSION 35
#include <errno.h>
#include <fuse_lowlevel.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { VALUE = 2, DYNAMIC = 3 };
static char value[64] = "4096\n";
static size_t value_len = 5;
static struct fuse_session *session;

static void attr_of(fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	if (ino == FUSE_ROOT_ID) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
	} else {
		st->st_mode = S_IFREG | 0644;
		st->st_nlink = 1;
		st->st_size = ino == VALUE ? (off_t)value_len : 0;
	}
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;
	memset(&e, 0, sizeof(e));
	if (parent != FUSE_ROOT_ID) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (strcmp(name, "value") == 0)
		e.ino = VALUE;
	else if (strcmp(name, "dynamic") == 0)
		e.ino = DYNAMIC;
	else {
		fuse_reply_err(req, ENOENT);
		return;
	}
	e.attr_timeout = e.entry_timeout = 1.0;
	attr_of(e.ino, &e.attr);
	fuse_reply_entry(req, &e);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;
	(void)fi;
	attr_of(ino, &st);
	fuse_reply_attr(req, &st, 1.0);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	(void)attr, (void)to_set;
	op_getattr(req, ino, fi); /* O_TRUNC of an echo: the write replaces the value */
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (ino == FUSE_ROOT_ID) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	fi->keep_cache = ino == VALUE;
	fi->direct_io = ino == DYNAMIC;
	fuse_reply_open(req, fi);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	(void)ino, (void)fi;
	if ((size_t)off >= value_len) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (size > value_len - (size_t)off)
		size = value_len - (size_t)off;
	fuse_reply_buf(req, value + off, size);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	(void)off, (void)fi;
	if (size >= sizeof(value)) {
		fuse_reply_err(req, E2BIG);
		return;
	}
	memcpy(value, buf, size);
	value_len = size;
	fuse_reply_write(req, size);
	if (ino == VALUE)
		fuse_lowlevel_notify_inval_inode(session, ino, -1, 0);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino, (void)fi;
	fuse_reply_err(req, 0);
}

static const struct fuse_lowlevel_ops ops = {
	.lookup = op_lookup,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.open = op_open,
	.read = op_read,
	.write = op_write,
	.release = op_release,
};

int main(int argc, char **argv)
{
	char *args[] = {argv[0], "-o", "fsname=cfs-bench-floor-c,default_permissions,allow_other"};
	struct fuse_args fargs = FUSE_ARGS_INIT(3, args);
	struct fuse_session *se;

	int rc;

	if (argc != 2) {
		fprintf(stderr, "usage: %s MOUNTPOINT\n", argv[0]);
		return 2;
	}
	session = se = fuse_session_new(&fargs, &ops, sizeof(ops), NULL);
	if (se == NULL || fuse_set_signal_handlers(se) != 0 || fuse_session_mount(se, argv[1]) != 0)
		return 1;
	printf("ready\n");
	fflush(stdout);
	rc = fuse_session_loop(se);
	fuse_session_unmount(se);
	fuse_remove_signal_handlers(se);
	fuse_session_destroy(se);
	return rc ? 1 : 0;
}
