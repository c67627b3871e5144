/*
 * Golden linux-cr ckpt_hdr image (v21) of open files: FILE_TABLE objects, FILE_DESC, the
 * FILE subtypes GENERIC, PIPE, FIFO and EVENTFD with PIPE_BUF, and crfs's extension subtype
 * CRFS_FILE_OPAQUE (a file recorded but not restorable, followed by its readlink text).
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
 * file's open file description and the pipe's write end with 700, and a deleted file).
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
	CKPT_HDR_PIPE_BUF,
	CKPT_HDR_TAIL = 9001,
};
enum { CKPT_OBJ_FILE_TABLE = 2, CKPT_OBJ_FILE = 3 };
enum file_type {
	CKPT_FILE_IGNORE = 0, CKPT_FILE_GENERIC, CKPT_FILE_PIPE, CKPT_FILE_FIFO,
	CKPT_FILE_SOCKET, CKPT_FILE_TTY, CKPT_FILE_EPOLL, CKPT_FILE_EVENTFD,
	CRFS_FILE_OPAQUE = 110,		/* crfs extension */
};
enum { CRFS_OPAQUE_OTHER, CRFS_OPAQUE_SOCKET, CRFS_OPAQUE_ANON, CRFS_OPAQUE_DELETED };
#define CRFS_UFLAG_EXT 0x8000
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

_Static_assert(sizeof(struct ckpt_hdr_file_table) == 16, "FILE_TABLE");
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
	const char *buf;	/* PIPE_BUF of the first end, NULL for the other */
	uint64_t count;
	uint32_t eventfd_flags, opaque_kind, st_mode;
	int written;
};

static void common(struct ckpt_hdr_file *h, const struct file_desc *f)
{
	*h = (struct ckpt_hdr_file){ .f_type = f->f_type, .f_mode = f->f_mode,
		.f_flags = f->f_flags, .f_credref = 0, .f_pos = f->f_pos,
		.f_version = f->f_version, .f_secref = 0 };
}

static void write_file(struct file_desc *f)
{
	if (f->written)
		return;
	f->written = 1;
	emit_objref(CKPT_OBJ_FILE, f->objref);
	if (f->f_type == CKPT_FILE_PIPE || f->f_type == CKPT_FILE_FIFO) {
		struct ckpt_hdr_file_pipe p = { .pipe_objref = f->pipe_objref };
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
	printf(", \"count\": ");
	if (f->f_type == CKPT_FILE_EVENTFD)
		printf("%llu", U(f->count));
	else
		printf("null");
	printf(", \"eventfd_flags\": %u, \"st_mode\": %u}", f->eventfd_flags, f->st_mode);
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
		02001 /* O_WRONLY|O_APPEND */, 1234, 7, "/var/log/golden app.log", "file" };
	static struct file_desc rd = { 4, CKPT_FILE_PIPE, FMODE_READ, 04000 /* O_NONBLOCK */,
		0, 0, NULL, "pipe", .pipe_objref = 5, .buf = "0123456789" };
	static struct file_desc wr = { 6, CKPT_FILE_PIPE, FMODE_WRITE, 01, 0, 0, NULL, "pipe",
		.pipe_objref = 5 };
	static struct file_desc fifo = { 7, CKPT_FILE_FIFO, FMODE_READ | FMODE_WRITE, 02,
		0, 0, "/run/golden.fifo", "fifo", .pipe_objref = 8, .buf = "" };
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

	static struct task_desc t[3] = {
		{ { 700, 1, 700, 700, 700, 0 }, "files-main", 1, 1, {
			{ 0, &null, 0 }, { 1, &log, 0 }, { 2, &log, 0 }, { 3, &rd, 1 },
			{ 4, &wr, 0 }, { 5, &fifo, 0 }, { 7, &efd, 1 }, { 9, &sock, 1 },
			{ 10, &dir, 0 } }, 9 },
		{ { 701, 1, 700, 700, 700, 0 }, "files-thread", 1, 0, { { 0 } }, 0 },
		{ { 800, 700, 800, 700, 700, 0 }, "files-child", 12, 1, {
			{ 0, &log, 0 }, { 1, &wr, 0 }, { 6, &gone, 1 } }, 3 },
	};
	memcpy(t[1].fds, t[0].fds, sizeof(t[0].fds));	/* the same table, for the JSON */
	t[1].nfds = t[0].nfds;

	struct ckpt_hdr_header header = { .magic = CHECKPOINT_MAGIC_HEAD,
		.arch_id = IS64 ? 2 : 1, .major = 2, .minor = 6, .patch = 34, .rev = 6,
		.constants = { 16, 38, 64, 65, 65, 65, 65, 65, 65, 16, 4096, 8 },
		.time = 1276732800, .uflags = CRFS_UFLAG_EXT };
	struct ckpt_hdr_header_arch arch = { .has_fxsr = 1, .xstate_size = 512 };

	emit(&header, CKPT_HDR_HEADER, sizeof(header));
	char uts[65];
	const char *strings[3] = { "2.6.34-crfs-files", "#21 SMP", IS64 ? "x86_64" : "i686" };
	for (int i = 0; i < 3; i++) {
		memset(uts, 0, sizeof(uts));
		strcpy(uts, strings[i]);
		emit_raw(CKPT_HDR_BUFFER, uts, sizeof(uts));
	}
	emit(&arch, CKPT_HDR_HEADER_ARCH, sizeof(arch));
	struct ckpt_hdr_tree tree = { .nr_tasks = 3 };
	struct ckpt_pids pids[3] = { t[0].pids, t[1].pids, t[2].pids };
	emit(&tree, CKPT_HDR_TREE, sizeof(tree));
	emit_raw(CKPT_HDR_BUFFER, pids, sizeof(pids));
	for (int i = 0; i < 3; i++)
		write_task(&t[i]);
	struct ckpt_hdr_tail tail = { .magic = CHECKPOINT_MAGIC_TAIL };
	emit(&tail, CKPT_HDR_TAIL, sizeof(tail));
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
