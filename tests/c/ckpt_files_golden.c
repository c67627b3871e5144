/*
 * Golden linux-cr ckpt_hdr image (v21) of open files: FILE_TABLE objects, FILE_DESC, the
 * FILE subtypes GENERIC, PIPE, FIFO and EVENTFD with PIPE_BUF, and crfs's extension subtypes
 * TIMERFD, SIGNALFD, DELETED (with the file's content) and OPAQUE (a file recorded but not
 * restorable, followed by its readlink text).
 *
 * Layouts: user-cr include/linux/checkpoint_hdr.h at commit f678773 (v21); write order:
 * linux-cr v20 postings 38, 39, 51, 52 and 83 ("[C/R v20][PATCH nn/96]"): the FILE_TABLE
 * object comes before the MM object, each file's OBJREF{FILE} and records before the first
 * FILE_DESC naming it, the pipe's PIPE_BUF after its first end only.
 *
 * Built with gcc -m32 and -m64: every struct here has the same layout on both (asserted).
 * Writes argv[1] and prints, as JSON, the values it wrote.
 *
 * Image: process 700 (threads 700 and 701 share one file table: /dev/null, a log file
 * opened O_APPEND twice as fd 1 and its dup fd 2, both ends of a pipe with 10 bytes in it,
 * a FIFO, an eventfd, a socket, a directory) and process 800 (its own table sharing the log
 * file's open file description and the pipe's write end with 700, a deleted file saved
 * by name only, a memfd saved with its content and owner, a timerfd, a signalfd and an epoll watching
 * fds 1 and 10: its EPOLL_ITEMS follow the table's last FILE_DESC, and a seqpacket socketpair
 * with two messages queued for one end, the other shut for writing).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IS64 (sizeof(long) == 8)

enum {
	CKPT_HDR_HEADER = 1, CKPT_HDR_HEADER_ARCH, CKPT_HDR_CONTAINER, CKPT_HDR_BUFFER,
	CKPT_HDR_STRING, CKPT_HDR_OBJREF,
	CKPT_HDR_TREE = 101, CKPT_HDR_TASK, CKPT_HDR_TASK_NS, CKPT_HDR_TASK_OBJS,
	CKPT_HDR_RESTART_BLOCK,
	CKPT_HDR_FILE_TABLE = 301, CKPT_HDR_FILE_DESC, CKPT_HDR_FILE_NAME, CKPT_HDR_FILE,
	CKPT_HDR_PIPE_BUF, CKPT_HDR_TTY, CKPT_HDR_TTY_LDISC, CKPT_HDR_EPOLL_ITEMS,
	CKPT_HDR_TAIL = 9001,
};
enum { CKPT_OBJ_FILE_TABLE = 2, CKPT_OBJ_FILE = 3 };
enum file_type {
	CKPT_FILE_IGNORE = 0, CKPT_FILE_GENERIC, CKPT_FILE_PIPE, CKPT_FILE_FIFO,
	CKPT_FILE_SOCKET, CKPT_FILE_TTY, CKPT_FILE_EPOLL, CKPT_FILE_EVENTFD,
	CRFS_FILE_TIMERFD = 100, CRFS_FILE_SIGNALFD,	/* crfs extensions */
	CRFS_FILE_OPAQUE = 110, CRFS_FILE_DELETED, CRFS_FILE_UNIX,
};
enum { CRFS_OPAQUE_OTHER, CRFS_OPAQUE_SOCKET, CRFS_OPAQUE_ANON, CRFS_OPAQUE_DELETED };
#define CRFS_UFLAG_EXT 0x8000
#define CRFS_HDR_DELETED_STAT 8023
#define CRFS_HDR_FILE_OWNER 8009
#define F_OWNER_PID 1
#define FMODE_READ 0x1
#define FMODE_WRITE 0x2
#define FMODE_SEEK 0x1c		/* FMODE_LSEEK | FMODE_PREAD | FMODE_PWRITE */

#include "ckpt_v21.h"

struct ckpt_hdr_restart_block {
	struct ckpt_hdr h;
	uint64_t function_type, arg_0, arg_1, arg_2, arg_3, arg_4;
} __attribute__((aligned(8)));
/* ---- the records of this image, as in checkpoint_hdr.h at f678773 ---- */
struct ckpt_hdr_file_table { struct ckpt_hdr h; int32_t fdt_nfds; } __attribute__((aligned(8)));
struct ckpt_hdr_file_desc {
	struct ckpt_hdr h;
	int32_t fd_objref, fd_descriptor;
	uint32_t fd_close_on_exec;
} __attribute__((aligned(8)));
struct ckpt_hdr_file {
	struct ckpt_hdr h;
	uint32_t f_type, f_mode, f_flags;
	int32_t f_credref;
	uint64_t f_pos, f_version;
	int32_t f_secref;
} __attribute__((aligned(8)));
struct ckpt_hdr_file_pipe {
	struct ckpt_hdr_file common;
	int32_t pipe_objref;
	uint16_t pipe_flags;	/* crfs, in linux-cr v21's padding */
	uint8_t pipe_size_log2;
} __attribute__((aligned(8)));
struct ckpt_hdr_file_eventfd {
	struct ckpt_hdr_file common;
	uint64_t count;
	uint32_t flags;
} __attribute__((aligned(8)));
/* crfs extension (docs/format-ckpt.md), then STRING{readlink text} */
struct crfs_hdr_file_opaque {
	struct ckpt_hdr_file common;
	uint32_t kind, st_mode;
} __attribute__((aligned(8)));

/* crfs extension, then STRING{readlink text} BUFFER{size bytes of content} */
struct crfs_hdr_file_deleted {
	struct ckpt_hdr_file common;
	uint64_t size;
	uint32_t st_mode;
} __attribute__((aligned(8)));

/* crfs extension, the last record of a FILE object: its F_SETOWN_EX and F_SETSIG */
struct crfs_hdr_file_owner {
	struct ckpt_hdr h;
	int32_t pid;
	uint32_t pid_type;
	uint32_t signum;
	uint8_t __padding[4];
} __attribute__((aligned(8)));

/* crfs extension, after a DELETED file's BUFFER: the owner of its inode */
struct crfs_hdr_deleted_stat {
	struct ckpt_hdr h;
	uint32_t uid, gid;
	int64_t atime_ns, mtime_ns;	/* since the epoch */
} __attribute__((aligned(8)));

struct crfs_hdr_file_timerfd {
	struct ckpt_hdr_file common;
	int32_t clockid;
	uint32_t tfd_flags;
	uint64_t value_ns, interval_ns, ticks;
} __attribute__((aligned(8)));
struct crfs_hdr_file_signalfd {
	struct ckpt_hdr_file common;
	uint64_t sigmask;	/* struct ckpt_sigset: bit n-1 = signal n */
	uint32_t sfd_flags;
} __attribute__((aligned(8)));

/* crfs extension: a UNIX socket; then iff nr_msgs BUFFER{u32 len[nr_msgs], the bytes} */
struct crfs_hdr_file_unix {
	struct ckpt_hdr_file common;
	int32_t sock_objref, peer_objref;	/* a pair: two FILEs naming each other */
	uint64_t ino;
	uint16_t family, sock_type;
	uint32_t state, shutdown, backlog;
	uint32_t nr_msgs, data_len, addr_len, flags;
	char addr[108];
	uint32_t mode, uid, gid;	/* a path-bound socket's file */
} __attribute__((aligned(8)));

struct ckpt_hdr_eventpoll_items {
	struct ckpt_hdr h;
	int32_t epfile_objref;
	uint32_t num_items;
} __attribute__((aligned(8)));
struct ckpt_eventpoll_item {
	uint64_t data;
	uint32_t fd;
	int32_t file_objref;
	uint32_t events;
} __attribute__((aligned(8)));

_Static_assert(CKPT_HDR_EPOLL_ITEMS == 308, "EPOLL_ITEMS");
_Static_assert(sizeof(struct ckpt_hdr_eventpoll_items) == 16, "EPOLL_ITEMS");
_Static_assert(sizeof(struct ckpt_eventpoll_item) == 24, "eventpoll item");
_Static_assert(sizeof(struct ckpt_hdr_file_table) == 16, "FILE_TABLE");
_Static_assert(sizeof(struct crfs_hdr_file_timerfd) == 80, "FILE timerfd");
_Static_assert(sizeof(struct crfs_hdr_file_signalfd) == 64, "FILE signalfd");
_Static_assert(sizeof(struct crfs_hdr_file_deleted) == 64, "FILE deleted");
_Static_assert(sizeof(struct crfs_hdr_file_unix) == 216, "FILE unix");
_Static_assert(sizeof(struct crfs_hdr_deleted_stat) == 32, "DELETED_STAT");
_Static_assert(sizeof(struct crfs_hdr_file_owner) == 24, "FILE_OWNER");
_Static_assert(sizeof(struct ckpt_hdr_file_desc) == 24, "FILE_DESC");
_Static_assert(sizeof(struct ckpt_hdr_file) == 48, "FILE");
_Static_assert(sizeof(struct ckpt_hdr_file_pipe) == 56, "FILE pipe");
_Static_assert(sizeof(struct ckpt_hdr_file_eventfd) == 64, "FILE eventfd");
_Static_assert(sizeof(struct crfs_hdr_file_opaque) == 56, "FILE opaque");
_Static_assert(sizeof(struct ckpt_hdr_task_objs) == 32, "TASK_OBJS");

#define U(x) ((unsigned long long)(x))

/* ---- open files ---- */

struct file_desc {
	int32_t objref;
	uint32_t f_type, f_mode, f_flags;
	uint64_t f_pos, f_version;
	const char *path;	/* FILE_NAME (generic, FIFO) or the readlink text (opaque) */
	const char *kind;	/* what crfs's model calls it */
	int32_t pipe_objref;
	uint16_t pipe_flags;
	uint8_t pipe_size_log2;
	const char *buf;	/* PIPE_BUF of the first end, NULL for the other; deleted: content */
	uint64_t count;
	uint32_t eventfd_flags, opaque_kind, st_mode;
	struct crfs_hdr_file_timerfd timer;	/* timerfd: its fields after common */
	uint64_t sigmask;
	uint32_t sfd_flags;
	struct ckpt_eventpoll_item items[2];	/* epoll: its watches */
	uint32_t nitems;
	struct crfs_hdr_file_unix sock;	/* UNIX socket: its fields after common */
	const char *msgs[2];	/* ... the messages queued for it */
	int has_owner;		/* deleted: DELETED_STAT{uid, gid, times} follows */
	uint32_t uid, gid;
	struct crfs_hdr_file_owner owner;	/* written when owner.pid or owner.signum */
	int written;
};

static void common(struct ckpt_hdr_file *h, const struct file_desc *f)
{
	*h = (struct ckpt_hdr_file){ .f_type = f->f_type, .f_mode = f->f_mode,
		.f_flags = f->f_flags, .f_credref = 0, .f_pos = f->f_pos,
		.f_version = f->f_version, .f_secref = 0 };
}

static void write_unix(const struct file_desc *f)
{
	struct crfs_hdr_file_unix u = f->sock;
	char buf[64];
	uint32_t n = 0, len, off;

	common(&u.common, f);
	while (n < 2 && f->msgs[n])
		n++;
	off = 4 * n;
	for (uint32_t i = 0; i < n; i++) {
		len = strlen(f->msgs[i]);
		memcpy(buf + 4 * i, &len, 4);
		memcpy(buf + off, f->msgs[i], len);
		off += len;
	}
	u.nr_msgs = n;
	u.data_len = off - 4 * n;
	emit(&u, CKPT_HDR_FILE, sizeof(u));
	if (n)
		emit_raw(CKPT_HDR_BUFFER, buf, off);
}

static void write_file(struct file_desc *f)
{
	if (f->written)
		return;
	f->written = 1;
	emit_objref(CKPT_OBJ_FILE, f->objref);
	if (f->f_type == CKPT_FILE_PIPE || f->f_type == CKPT_FILE_FIFO) {
		struct ckpt_hdr_file_pipe p = { .pipe_objref = f->pipe_objref,
			.pipe_flags = f->pipe_flags, .pipe_size_log2 = f->pipe_size_log2 };
		common(&p.common, f);
		emit(&p, CKPT_HDR_FILE, sizeof(p));
		if (f->f_type == CKPT_FILE_FIFO)
			emit_raw(CKPT_HDR_FILE_NAME, f->path, strlen(f->path) + 1);
		if (f->buf)
			emit_raw(CKPT_HDR_PIPE_BUF, f->buf, strlen(f->buf));
	} else if (f->f_type == CKPT_FILE_EVENTFD) {
		struct ckpt_hdr_file_eventfd e = { .count = f->count, .flags = f->eventfd_flags };
		common(&e.common, f);
		emit(&e, CKPT_HDR_FILE, sizeof(e));
	} else if (f->f_type == CKPT_FILE_EPOLL) {
		struct ckpt_hdr_file e;		/* its items are deferred: write_task() */
		common(&e, f);
		emit(&e, CKPT_HDR_FILE, sizeof(e));
	} else if (f->f_type == CRFS_FILE_TIMERFD) {
		struct crfs_hdr_file_timerfd t = f->timer;
		common(&t.common, f);
		emit(&t, CKPT_HDR_FILE, sizeof(t));
	} else if (f->f_type == CRFS_FILE_SIGNALFD) {
		struct crfs_hdr_file_signalfd sfd = { .sigmask = f->sigmask,
			.sfd_flags = f->sfd_flags };
		common(&sfd.common, f);
		emit(&sfd, CKPT_HDR_FILE, sizeof(sfd));
	} else if (f->f_type == CRFS_FILE_DELETED) {
		struct crfs_hdr_file_deleted d = { .size = strlen(f->buf), .st_mode = f->st_mode };
		common(&d.common, f);
		emit(&d, CKPT_HDR_FILE, sizeof(d));
		emit_raw(CKPT_HDR_STRING, f->path, strlen(f->path) + 1);
		emit_raw(CKPT_HDR_BUFFER, f->buf, strlen(f->buf));
		if (f->has_owner) {
			struct crfs_hdr_deleted_stat o = { .uid = f->uid, .gid = f->gid,
				.atime_ns = 1276732800123456789LL, .mtime_ns = -1000000001LL };
			emit(&o, CRFS_HDR_DELETED_STAT, sizeof(o));
		}
	} else if (f->f_type == CRFS_FILE_UNIX) {
		write_unix(f);
	} else if (f->f_type == CRFS_FILE_OPAQUE) {
		struct crfs_hdr_file_opaque o = { .kind = f->opaque_kind, .st_mode = f->st_mode };
		common(&o.common, f);
		emit(&o, CKPT_HDR_FILE, sizeof(o));
		emit_raw(CKPT_HDR_STRING, f->path, strlen(f->path) + 1);
	} else {
		struct ckpt_hdr_file g;
		common(&g, f);
		emit(&g, CKPT_HDR_FILE, sizeof(g));
		emit_raw(CKPT_HDR_FILE_NAME, f->path, strlen(f->path) + 1);
	}
	if (f->owner.pid || f->owner.signum) {
		struct crfs_hdr_file_owner o = f->owner;
		emit(&o, CRFS_HDR_FILE_OWNER, sizeof(o));
	}
}

struct fd_desc { int32_t fd; struct file_desc *file; uint32_t cloexec; };

struct task_desc {
	struct ckpt_pids pids;
	const char *comm;
	int32_t table_ref;
	int table_new;
	struct fd_desc fds[12];
	int32_t nfds;
};

static void write_task(struct task_desc *t)
{
	struct ckpt_hdr_task task = { .state = 1, .exit_signal = 17 };
	emit(&task, CKPT_HDR_TASK, sizeof(task));
	char comm[16] = { 0 };
	strncpy(comm, t->comm, sizeof(comm) - 1);
	emit_raw(CKPT_HDR_STRING, comm, sizeof(comm));
	struct ckpt_hdr_restart_block rb = { .function_type = 1 };	/* skipped by crfs */
	emit(&rb, CKPT_HDR_RESTART_BLOCK, sizeof(rb));
	if (t->table_new) {	/* checkpoint_obj(files) -> checkpoint_file_table() */
		struct ckpt_hdr_file_table table = { .fdt_nfds = t->nfds };
		emit_objref(CKPT_OBJ_FILE_TABLE, t->table_ref);
		emit(&table, CKPT_HDR_FILE_TABLE, sizeof(table));
		for (int i = 0; i < t->nfds; i++) {
			struct fd_desc *d = &t->fds[i];
			write_file(d->file);
			struct ckpt_hdr_file_desc fd = { .fd_objref = d->file->objref,
				.fd_descriptor = d->fd, .fd_close_on_exec = d->cloexec };
			emit(&fd, CKPT_HDR_FILE_DESC, sizeof(fd));
		}
		/* deferqueue_run(): the epolls first written in this table, in that order */
		for (int i = 0; i < t->nfds; i++) {
			struct file_desc *f = t->fds[i].file;
			if (f->f_type != CKPT_FILE_EPOLL || f->nitems == UINT32_MAX)
				continue;
			struct ckpt_hdr_eventpoll_items items = { .epfile_objref = f->objref,
				.num_items = f->nitems };
			emit(&items, CKPT_HDR_EPOLL_ITEMS, sizeof(items));
			if (f->nitems)
				emit_raw(CKPT_HDR_BUFFER, f->items, f->nitems * sizeof(f->items[0]));
			f->nitems = UINT32_MAX;		/* written */
		}
	}
	struct ckpt_hdr_task_objs objs = { .files_objref = t->table_ref };
	emit(&objs, CKPT_HDR_TASK_OBJS, sizeof(objs));
}

/* ---- JSON ---- */

static void print_file(const struct file_desc *f)
{
	printf("{\"objref\": %d, \"kind\": \"%s\", \"path\": \"%s\", \"flags\": %u, "
	       "\"mode\": %u, \"pos\": %llu, \"f_version\": %llu, \"pipe\": ", f->objref,
	       f->kind, f->path ? f->path : "", f->f_flags, f->f_mode, U(f->f_pos),
	       U(f->f_version));
	if (f->pipe_objref)
		printf("%d", f->pipe_objref);
	else
		printf("null");
	printf(", \"pipe_flags\": %u, \"pipe_size\": %u", f->pipe_flags,
	       f->pipe_size_log2 ? 1u << f->pipe_size_log2 : 0);
	printf(", \"count\": ");
	if (f->f_type == CKPT_FILE_EVENTFD)
		printf("%llu", U(f->count));
	else
		printf("null");
	printf(", \"eventfd_flags\": %u, \"st_mode\": %u, \"data\": ", f->eventfd_flags,
	       f->st_mode);
	if (f->buf)
		printf("\"%s\"", f->buf);
	else
		printf("null");
	printf(", \"timer\": ");
	if (f->f_type == CRFS_FILE_TIMERFD)
		printf("[%d, %llu, %llu, %llu, %u]", f->timer.clockid, U(f->timer.value_ns),
		       U(f->timer.interval_ns), U(f->timer.ticks), f->timer.tfd_flags);
	else
		printf("null");
	printf(", \"watches\": ");
	if (f->f_type == CKPT_FILE_EPOLL) {
		printf("[");
		for (uint32_t i = 0; i < 2 && f->items[i].file_objref; i++)
			printf("%s[%u, %d, %u, %llu]", i ? ", " : "", f->items[i].fd,
			       f->items[i].file_objref, f->items[i].events, U(f->items[i].data));
		printf("]");
	} else {
		printf("null");
	}
	if (f->owner.pid || f->owner.signum)
		printf(", \"owner\": [%d, %u, %u]", f->owner.pid, f->owner.pid_type,
		       f->owner.signum);
	else
		printf(", \"owner\": null");
	printf(", \"sigmask\": ");
	if (f->f_type == CRFS_FILE_SIGNALFD)
		printf("%llu, \"sfd_flags\": %u}", U(f->sigmask), f->sfd_flags);
	else
		printf("null, \"sfd_flags\": null}");
}

static void print_task(const struct task_desc *t)
{
	printf("{\"pid\": %d, \"tgid\": %d, \"comm\": \"%s\", \"files_objref\": %d, \"fds\": [",
	       t->pids.vpid, t->pids.vtgid, t->comm, t->table_ref);
	for (int i = 0; i < t->nfds; i++) {
		printf("%s{\"fd\": %d, \"cloexec\": %s, \"file\": ", i ? ", " : "", t->fds[i].fd,
		       t->fds[i].cloexec ? "true" : "false");
		print_file(t->fds[i].file);
		printf("}");
	}
	printf("]}");
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s IMAGE\n", argv[0]);
		return 2;
	}
	img = fopen(argv[1], "wb");
	if (!img) {
		perror(argv[1]);
		return 1;
	}

	/* objrefs in first-use order, as the kernel's objhash gives them: the table, then each
	 * file as its first fd is written, a pipe's inode right after its first end. */
	static struct file_desc null = { 2, CKPT_FILE_GENERIC, FMODE_READ | FMODE_SEEK, 00,
		0, 0, "/dev/null", "file" };
	static struct file_desc log = { 3, CKPT_FILE_GENERIC, FMODE_WRITE | FMODE_SEEK,
		022001 /* O_WRONLY|O_APPEND|O_ASYNC */, 1234, 7, "/var/log/golden app.log", "file",
		.owner = { .pid = 4242, .pid_type = F_OWNER_PID, .signum = 29 } };
	static struct file_desc rd = { 4, CKPT_FILE_PIPE, FMODE_READ, 04000 /* O_NONBLOCK */,
		0, 0, NULL, "pipe", .pipe_objref = 5, .buf = "0123456789",
		.pipe_size_log2 = 20 };
	static struct file_desc wr = { 6, CKPT_FILE_PIPE, FMODE_WRITE, 01, 0, 0, NULL, "pipe",
		.pipe_objref = 5, .pipe_size_log2 = 20 };
	static struct file_desc fifo = { 7, CKPT_FILE_FIFO, FMODE_READ | FMODE_WRITE, 02,
		0, 0, "/run/golden.fifo", "fifo", .pipe_objref = 8, .buf = "",
		.pipe_flags = 3, .pipe_size_log2 = 12 };
	static struct file_desc efd = { 9, CKPT_FILE_EVENTFD, FMODE_READ | FMODE_WRITE, 02,
		0, 0, "anon_inode:[eventfd]", "eventfd", .count = 0x100000005ULL,
		.eventfd_flags = 1 /* EFD_SEMAPHORE */ };
	static struct file_desc sock = { 10, CRFS_FILE_OPAQUE, FMODE_READ | FMODE_WRITE, 02,
		0, 0, "socket:[4242]", "socket", .opaque_kind = CRFS_OPAQUE_SOCKET,
		.st_mode = 0140777 };
	static struct file_desc dir = { 11, CKPT_FILE_GENERIC, FMODE_READ | FMODE_SEEK,
		0200000 /* O_DIRECTORY */, 3, 0, "/home/golden dir", "file" };
	static struct file_desc gone = { 13, CRFS_FILE_OPAQUE, FMODE_READ | FMODE_SEEK, 0,
		42, 0, "/tmp/scratch (deleted)", "deleted",
		.opaque_kind = CRFS_OPAQUE_DELETED, .st_mode = 0100600 };
	static struct file_desc memfd = { 14, CRFS_FILE_DELETED, FMODE_READ | FMODE_WRITE |
		FMODE_SEEK, 02, 6, 0, "/memfd:golden (deleted)", "deleted",
		.buf = "kept bytes", .st_mode = 0100777, .has_owner = 1, .uid = 1000,
		.gid = 100 };
	static struct file_desc tfd = { 15, CRFS_FILE_TIMERFD, FMODE_READ, 04000, 0, 0,
		"anon_inode:[timerfd]", "timerfd", .timer = { .clockid = 1, .tfd_flags = 1,
		.value_ns = 4999936421ULL, .interval_ns = 1000000000, .ticks = 3 } };
	static struct file_desc sfd = { 16, CRFS_FILE_SIGNALFD, FMODE_READ, 04000, 0, 0,
		"anon_inode:[signalfd]", "signalfd", .sigmask = (1ULL << 9) | (1ULL << 63),
		.sfd_flags = 04000 };
	/* watches the pipe's write end (fd 1) and the signalfd (fd 10) of process 800 */
	static struct file_desc ep = { 17, CKPT_FILE_EPOLL, FMODE_READ, 02000000, 0, 0,
		"anon_inode:[eventpoll]", "epoll", .nitems = 2, .items = {
		{ .data = 0x1122334455667788ULL, .fd = 1, .file_objref = 6, .events = 0x19 },
		{ .data = 10, .fd = 10, .file_objref = 16, .events = 0x80000001 } } };

	/* objrefs: the FILE, then its socket and its peer's, by first use */
	static struct file_desc spa = { 18, CRFS_FILE_UNIX, FMODE_READ | FMODE_WRITE, 02, 0, 0,
		"socket:[4343]", "socket", .sock = { .sock_objref = 19, .peer_objref = 20,
		.ino = 4343, .family = 1, .sock_type = 5, .state = 1 },
		.msgs = { "hi", "there" } };
	static struct file_desc spb = { 21, CRFS_FILE_UNIX, FMODE_READ | FMODE_WRITE, 04002, 0,
		0, "socket:[4344]", "socket", .sock = { .sock_objref = 20, .peer_objref = 19,
		.ino = 4344, .family = 1, .sock_type = 5, .state = 1, .shutdown = 2,
		.mode = 0140640, .uid = 18943, .gid = 58467 } };	/* its file's */

	static struct task_desc t[3] = {
		{ { 700, 1, 700, 700, 700, 0 }, "files-main", 1, 1, {
			{ 0, &null, 0 }, { 1, &log, 0 }, { 2, &log, 0 }, { 3, &rd, 1 },
			{ 4, &wr, 0 }, { 5, &fifo, 0 }, { 7, &efd, 1 }, { 9, &sock, 1 },
			{ 10, &dir, 0 } }, 9 },
		{ { 701, 1, 700, 700, 700, 0 }, "files-thread", 1, 0, { { 0 } }, 0 },
		{ { 800, 700, 800, 700, 700, 0 }, "files-child", 12, 1, {
			{ 0, &log, 0 }, { 1, &wr, 0 }, { 6, &gone, 1 }, { 8, &memfd, 0 },
			{ 9, &tfd, 0 }, { 10, &sfd, 1 }, { 11, &ep, 1 }, { 12, &spa, 0 },
			{ 13, &spb, 1 } }, 9 },
	};
	memcpy(t[1].fds, t[0].fds, sizeof(t[0].fds));	/* the same table, for the JSON */
	t[1].nfds = t[0].nfds;

	struct ckpt_hdr_header header = { .magic = CHECKPOINT_MAGIC_HEAD,
		.arch_id = IS64 ? 2 : 1, .major = 2, .minor = 6, .patch = 34, .rev = 6,
		.constants = { 16, 38, 64, 65, 65, 65, 65, 65, 65, 16, 4096, 8 },
		.time = 1276732800, .uflags = CRFS_UFLAG_EXT };
	struct ckpt_hdr_header_arch arch = { .has_fxsr = 1, .xstate_size = 512 };

	emit_head(&header, &arch, "2.6.34-crfs-files", "#21 SMP");
	struct ckpt_pids pids[3] = { t[0].pids, t[1].pids, t[2].pids };
	emit_tree(pids, 3);
	for (int i = 0; i < 3; i++)
		write_task(&t[i]);
	emit_tail();
	if (fclose(img)) {
		perror("close");
		return 1;
	}

	printf("{\"arch\": \"%s\", \"pipe_data\": \"%s\", \"tasks\": [", IS64 ? "x86_64" : "i386",
	       rd.buf);
	for (int i = 0; i < 3; i++) {
		printf("%s", i ? ", " : "");
		print_task(&t[i]);
	}
	printf("]}\n");
	return 0;
}
