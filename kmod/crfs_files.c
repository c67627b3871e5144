// SPDX-License-Identifier: GPL-2.0
/*
 * The file table of a task: copy-in and validation of its records, and its restore.
 *
 *   FILE_TABLE_OBJ ::= OBJREF{FILE_TABLE} FILE_TABLE { [OBJECT of a FILE] FILE_DESC }*
 *   FILE_OBJ       ::= OBJREF{FILE} [OBJECT...] FILE [FILE_NAME] [PIPE_BUF]
 *
 * A GENERIC file has a FILE_NAME; a PIPE's FILE (56 bytes) carries pipe_objref, shared
 * by both ends, and the first end seen is followed by PIPE_BUF, the bytes buffered in the
 * pipe; a FIFO is a PIPE with a FILE_NAME. An eventfd, timerfd, signalfd or epoll is the
 * file the restarter hands in (crfs_anonfd.c). Other kinds (sockets, ttys, other crfs
 * extension types from 100) are copied in as their FILE record; their own records
 * are skipped, and RESTART refuses them unless the caller hands in a file for the fd.
 *
 * Restore: every file is opened in the prepare step, with the credentials the task will
 * have, while the caller is intact; the fds are installed by a task_work on the way back
 * to user space (crfs_restore.c), where every fd of the caller is closed first.
 */
#include <linux/cred.h>
#include <linux/fdtable.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/kdev_t.h>
#include <linux/major.h>
#include <linux/mount.h>
#include <linux/mutex.h>
#include <linux/namei.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/string.h>
#include <linux/wait.h>
#include <linux/xarray.h>

#include "crfs.h"

#define BAD_OPEN_FLAGS	(O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY)
/* what a restored file's f_flags keep of the image's (restore_file_common's set) */
#define KEPT_FLAGS	(O_ACCMODE | O_APPEND | O_NONBLOCK | O_DIRECT | O_NOATIME | \
			 O_DIRECTORY | O_PATH | O_SYNC | O_DSYNC | O_LARGEFILE)
#define CANNOT_REOPEN	ENOANO	/* internal, never from the VFS: the fd is handed in */

static int fail(struct crfs_ctx *ctx, const struct crfs_rec *rec,
		const char *what)
{
	return crfs_image_fail(ctx->img, rec, "%s", what);
}

/* ---------------------------------------------------------------- copy-in */

static int load_name(struct crfs_ctx *ctx, struct crfs_file *file)
{
	struct crfs_rec rec;
	u32 len;
	int ret;

	ret = crfs_expect(ctx, &rec, CKPT_HDR_FILE_NAME);
	if (ret)
		return ret;
	len = rec.len - sizeof(struct ckpt_hdr);
	if (!len || len > CRFS_MAX_STRING)
		return crfs_image_fail(ctx->img, &rec, "file name of %u bytes", len);
	file->name = kmalloc(len, GFP_KERNEL_ACCOUNT);
	if (!file->name)
		return -ENOMEM;
	ret = crfs_image_read(ctx->img, rec.pos + sizeof(struct ckpt_hdr),
			      file->name, len);
	if (ret)
		return ret;
	if (!memchr(file->name, '\0', len) || !file->name[0])
		return fail(ctx, &rec, "file name not NUL-terminated or empty");
	return 0;
}

/* A pipe's inode met for the first time: its PIPE_BUF follows. */
static int load_pipe_buf(struct crfs_ctx *ctx, struct crfs_file *file,
			 const struct crfs_rec *frec,
			 const struct ckpt_hdr_file_pipe *h)
{
	struct crfs_plan *plan = ctx->plan;
	struct crfs_object *obj;
	struct crfs_rec rec;
	int ret;

	if (plan->nr_objects >= CRFS_MAX_OBJECTS)
		return fail(ctx, frec, "too many objects");
	obj = kzalloc(sizeof(*obj), GFP_KERNEL_ACCOUNT);
	if (!obj)
		return -ENOMEM;
	obj->objtype = CKPT_OBJ_INODE;
	obj->pipe = kzalloc(sizeof(*obj->pipe), GFP_KERNEL_ACCOUNT);
	ret = obj->pipe ? xa_insert(&plan->objects, file->pipe_objref, obj,
				    GFP_KERNEL_ACCOUNT) : -ENOMEM;
	if (ret) {
		kfree(obj->pipe);
		kfree(obj);
		return ret;
	}
	plan->nr_objects++;
	file->pipe = obj->pipe;
	obj->pipe->flags = h->pipe_flags;
	obj->pipe->size_log2 = h->pipe_size_log2;
	ret = crfs_expect(ctx, &rec, CKPT_HDR_PIPE_BUF);
	if (ret)
		return ret;
	obj->pipe->buf_pos = rec.pos + sizeof(struct ckpt_hdr);
	obj->pipe->buf_len = rec.len - sizeof(struct ckpt_hdr);
	if (obj->pipe->buf_len > crfs_pipe_capacity(obj->pipe))
		return crfs_image_fail(ctx->img, &rec,
				       "PIPE_BUF of %u bytes, at most %u",
				       obj->pipe->buf_len,
				       crfs_pipe_capacity(obj->pipe));
	obj->ready = true;
	return 0;
}

/*
 * A pipe end's pipe_flags and pipe_size_log2: known bits, a size the kernel can give a
 * pipe, and no flag saying that no process had this end open.
 */
static int check_pipe_state(struct crfs_ctx *ctx, const struct crfs_rec *rec,
			    const struct ckpt_hdr_file_pipe *h)
{
	u32 acc = h->common.f_flags & O_ACCMODE;
	u16 flags = h->pipe_flags;

	if (h->pipe_size_log2 &&
	    (h->pipe_size_log2 < PAGE_SHIFT || h->pipe_size_log2 > 31))
		return crfs_image_fail(ctx->img, rec, "pipe_size_log2 %u",
				       h->pipe_size_log2);
	if (flags & ~CRFS_PIPE_FLAGS ||
	    (flags && h->common.f_type != CKPT_FILE_PIPE))
		return crfs_image_fail(ctx->img, rec, "pipe_flags %#x", flags);
	if ((acc != O_WRONLY && (flags & CRFS_PIPE_NO_READER)) ||
	    (acc != O_RDONLY && (flags & CRFS_PIPE_NO_WRITER)))
		return crfs_image_fail(ctx->img, rec,
				       "pipe_flags %#x: no process had this end (f_flags %#o)",
				       flags, h->common.f_flags);
	return 0;
}

/* A PIPE or FIFO: FILE{pipe_objref} [FILE_NAME] [PIPE_BUF if its first end]. */
static int load_pipe(struct crfs_ctx *ctx, struct crfs_file *file,
		     const struct crfs_rec *rec)
{
	struct ckpt_hdr_file_pipe h;
	struct crfs_object *obj;
	int ret;

	if (rec->len != sizeof(h))
		return crfs_image_fail(ctx->img, rec,
				       "pipe FILE of %u bytes, expected %zu",
				       rec->len, sizeof(h));
	ret = crfs_image_body(ctx->img, rec, &h, sizeof(h));
	if (ret)
		return ret;
	if (h.pipe_objref <= 0)
		return crfs_image_fail(ctx->img, rec, "pipe_objref %d",
				       h.pipe_objref);
	ret = check_pipe_state(ctx, rec, &h);
	if (ret)
		return ret;
	file->pipe_objref = h.pipe_objref;
	if (file->h.f_type == CKPT_FILE_FIFO) {
		ret = load_name(ctx, file);
		if (ret)
			return ret;
	}
	obj = xa_load(&ctx->plan->objects, h.pipe_objref);
	if (!obj)
		return load_pipe_buf(ctx, file, rec, &h);
	if (obj->objtype != CKPT_OBJ_INODE || !obj->ready)
		return crfs_image_fail(ctx->img, rec,
				       "pipe_objref %d is not a pipe",
				       h.pipe_objref);
	if (obj->pipe->flags != h.pipe_flags ||
	    obj->pipe->size_log2 != h.pipe_size_log2)
		return crfs_image_fail(ctx->img, rec,
				       "pipe_objref %d: its ends differ in pipe_flags or size",
				       h.pipe_objref);
	file->pipe = obj->pipe;
	return 0;
}

/* An OPAQUE file: only its kind is kept; its STRING is skipped. */
static int load_opaque(struct crfs_ctx *ctx, struct crfs_file *file,
		       const struct crfs_rec *rec)
{
	struct crfs_hdr_file_opaque h;
	int ret;

	if (rec->len != sizeof(h))
		return crfs_image_fail(ctx->img, rec,
				       "opaque FILE of %u bytes, expected %zu",
				       rec->len, sizeof(h));
	ret = crfs_image_body(ctx->img, rec, &h, sizeof(h));
	if (ret)
		return ret;
	if (h.kind > CRFS_OPAQUE_DELETED)
		return crfs_image_fail(ctx->img, rec, "opaque kind %u", h.kind);
	file->opaque_kind = h.kind;
	return 0;
}

static int check_file(struct crfs_ctx *ctx, const struct crfs_rec *rec,
		      const struct ckpt_hdr_file *h)
{
	if (h->f_type == CKPT_FILE_IGNORE ||
	    (h->f_type >= CKPT_FILE_MAX && h->f_type < CRFS_FILE_EXT_FIRST))
		return crfs_image_fail(ctx->img, rec, "unknown f_type %u",
				       h->f_type);
	if (h->f_flags & BAD_OPEN_FLAGS)
		return crfs_image_fail(ctx->img, rec,
				       "f_flags %#o: O_CREAT, O_EXCL, O_TRUNC or O_NOCTTY",
				       h->f_flags);
	return 0;
}

/* The FILE record and the records of its kind (crfs_load_file). */
static int load_file_kind(struct crfs_ctx *ctx, struct crfs_object *obj, int depth)
{
	struct crfs_file *file;
	struct crfs_rec rec;
	int ret;

	file = kzalloc(sizeof(*file), GFP_KERNEL_ACCOUNT);
	if (!file)
		return -ENOMEM;
	obj->file = file;
	ret = crfs_next_of(ctx, &rec, CKPT_HDR_FILE, depth);
	if (!ret)
		ret = crfs_image_body(ctx->img, &rec, &file->h, sizeof(file->h));
	if (!ret)
		ret = check_file(ctx, &rec, &file->h);
	if (ret)
		return ret;
	switch (file->h.f_type) {
	case CKPT_FILE_GENERIC:
		ret = load_name(ctx, file);
		return ret ? ret : crfs_file_id_load(ctx->img, file);
	case CKPT_FILE_PIPE:
	case CKPT_FILE_FIFO:
		return load_pipe(ctx, file, &rec);
	case CRFS_FILE_OPAQUE:
		return load_opaque(ctx, file, &rec);
	case CKPT_FILE_EVENTFD:
	case CKPT_FILE_EPOLL:
	case CRFS_FILE_TIMERFD:
	case CRFS_FILE_SIGNALFD:
		return crfs_anon_load(ctx, file, &rec);	/* crfs_anonfd.c */
	case CRFS_FILE_DELETED:
		return crfs_deleted_load(ctx, file, &rec);
	case CRFS_FILE_UNIX:
		return crfs_unix_load(ctx, file, &rec);	/* crfs_socket.c */
	default:
		return 0;	/* refused by RESTART; its own records are skipped */
	}
}

/*
 * A FILE object: FILE, then FILE_NAME for a generic file, the pipe records for a pipe;
 * then its owner (crfs_fown.c).
 */
int crfs_load_file(struct crfs_ctx *ctx, struct crfs_object *obj, int depth)
{
	int ret = load_file_kind(ctx, obj, depth);

	return ret ? ret : crfs_fown_load(ctx, obj->file);
}

/* Which file tables (processes) hold @file, and which ends of its pipe the image has. */
static void count_use(struct crfs_file *file, const struct crfs_fdtable *fdt)
{
	struct crfs_pipe *p = file->pipe;
	u32 acc = file->h.f_flags & O_ACCMODE;

	if (file->last_table != fdt) {
		file->last_table = fdt;
		file->nr_tables++;
	}
	if (file->inode_owner && file->inode_owner->inode_last_table != fdt) {
		file->inode_owner->inode_last_table = fdt;
		file->inode_owner->inode_tables++;
	}
	if (!p)
		return;
	if (p->last_table != fdt) {
		p->last_table = fdt;
		p->nr_tables++;
	}
	if (file->h.f_type == CKPT_FILE_PIPE) {
		p->reader |= acc != O_WRONLY;
		p->writer |= acc != O_RDONLY;
	}
}

static int load_fd(struct crfs_ctx *ctx, struct crfs_fd *fd,
		   const struct crfs_fdtable *fdt, int depth)
{
	struct ckpt_hdr_file_desc h;
	struct crfs_object *obj;
	struct crfs_rec rec;
	int ret;

	ret = crfs_next_of(ctx, &rec, CKPT_HDR_FILE_DESC, depth);
	if (!ret)
		ret = crfs_image_body(ctx->img, &rec, &h, sizeof(h));
	if (ret)
		return ret;
	if (h.fd_descriptor < 0 || h.fd_descriptor >= CRFS_MAX_FD_NUMBER)
		return crfs_image_fail(ctx->img, &rec, "fd %d", h.fd_descriptor);
	if (h.fd_close_on_exec > 1)
		return crfs_image_fail(ctx->img, &rec, "fd %d: fd_close_on_exec %u",
				       h.fd_descriptor, h.fd_close_on_exec);
	obj = crfs_lookup(ctx, h.fd_objref, CKPT_OBJ_FILE);
	if (!obj)
		return crfs_image_fail(ctx->img, &rec,
				       "fd %d: fd_objref %d is not a file seen before",
				       h.fd_descriptor, h.fd_objref);
	fd->fd = h.fd_descriptor;
	fd->cloexec = h.fd_close_on_exec;
	fd->objref = h.fd_objref;
	fd->file = obj->file;
	count_use(fd->file, fdt);
	return 0;
}

static int cmp_fd(const void *a, const void *b)
{
	const struct crfs_fd *x = a, *y = b;

	return (x->fd > y->fd) - (x->fd < y->fd);
}

/* A FILE_TABLE object: fdt_nfds descriptors, each fd once; kept sorted by fd. */
int crfs_load_file_table(struct crfs_ctx *ctx, struct crfs_object *obj,
			 int depth)
{
	struct ckpt_hdr_file_table h;
	struct crfs_fdtable *fdt;
	struct crfs_rec rec;
	u32 i;
	int ret;

	ret = crfs_next_of(ctx, &rec, CKPT_HDR_FILE_TABLE, depth);
	if (!ret)
		ret = crfs_image_body(ctx->img, &rec, &h, sizeof(h));
	if (ret)
		return ret;
	if (h.fdt_nfds < 0 || h.fdt_nfds > CRFS_MAX_FDS ||
	    !crfs_fits(ctx, h.fdt_nfds, sizeof(struct ckpt_hdr_file_desc)))
		return crfs_image_fail(ctx->img, &rec, "fdt_nfds %d (at most %d)",
				       h.fdt_nfds, CRFS_MAX_FDS);
	fdt = kvzalloc(struct_size(fdt, fds, h.fdt_nfds), GFP_KERNEL_ACCOUNT);
	if (!fdt)
		return -ENOMEM;
	obj->fdt = fdt;
	for (i = 0; i < h.fdt_nfds; i++) {
		ret = load_fd(ctx, &fdt->fds[i], fdt, depth);
		if (ret)
			return ret;
		fdt->nr++;
		cond_resched();
	}
	sort(fdt->fds, fdt->nr, sizeof(fdt->fds[0]), cmp_fd, NULL);
	for (i = 1; i < fdt->nr; i++)
		if (fdt->fds[i].fd == fdt->fds[i - 1].fd)
			return crfs_image_fail(ctx->img, &rec, "fd %d twice",
					       fdt->fds[i].fd);
	return 0;
}

/* TASK_OBJS.files_objref: 0 (no file table: fds 0-2 kept) or a FILE_TABLE seen before. */
int crfs_load_task_files(struct crfs_ctx *ctx, struct crfs_task *task,
			 const struct crfs_rec *rec, s32 files_objref)
{
	struct crfs_object *obj;

	if (!files_objref)
		return 0;
	obj = crfs_lookup(ctx, files_objref, CKPT_OBJ_FILE_TABLE);
	if (!obj)
		return crfs_image_fail(ctx->img, rec,
				       "files_objref %d is not a file table seen before",
				       files_objref);
	task->files = obj->fdt;
	task->files_objref = files_objref;
	return 0;
}

void crfs_free_file_object(struct crfs_object *obj)
{
	switch (obj->objtype) {
	case CKPT_OBJ_FILE:
		if (obj->file) {
			kfree(obj->file->name);
			kfree(obj->file->unix_h);
			crfs_deleted_free(obj->file);
		}
		kfree(obj->file);
		break;
	case CKPT_OBJ_FILE_TABLE:
		kvfree(obj->fdt);
		break;
	case CKPT_OBJ_INODE:
		kfree(obj->pipe);
		break;
	}
}

/* ---------------------------------------------------------------- restore: prepare */

/* One fd to install: a reference to its file, taken while the caller was intact. */
struct crfs_slot {
	int fd;
	bool cloexec;
	struct file *file;
};

struct crfs_files {
	u32 nr;
	struct crfs_slot slots[];	/* ascending fd */
};

/* The state of the prepare step. */
struct crfs_open {
	struct crfs_plan *plan;
	struct crfs_image *img;
	const struct crfs_fdtable *fdt;
	u32 index;		/* the task being restored */
	struct xarray opened;	/* FILE objref -> struct file (one reference) */
	struct xarray pipes;	/* pipe_objref -> the pipe's O_RDWR file */
	struct xarray inodes;	/* inode_id -> a deleted file's inode, made again */
};

/* A file that only gives a path to dentry_open() the ends of a new pipe. */
static const struct file_operations crfs_path_fops;

static struct vfsmount *crfs_pipe_mnt;
static DEFINE_MUTEX(crfs_pipe_mnt_lock);

__printf(3, 4)
static int refuse(struct crfs_open *op, int err, const char *fmt, ...)
{
	va_list args;

	va_start(args, fmt);
	vscnprintf(op->img->err_msg, sizeof(op->img->err_msg), fmt, args);
	va_end(args);
	return err;
}

static const char *errname(int err)
{
	switch (err) {
	case -ENOENT:
		return "No such file";
	case -EACCES:
	case -EPERM:
		return "Permission denied";
	case -ELOOP:
		return "a symbolic link";
	case -ENOTDIR:
		return "Not a directory";
	case -EISDIR:
		return "Is a directory";
	case -EROFS:
		return "Read-only file system";
	case -ENXIO:
		return "No such device";
	default:
		return "cannot be opened";
	}
}

static struct file *path_error(struct crfs_open *op, const struct crfs_fd *cfd,
			       int err)
{
	return ERR_PTR(refuse(op, err, "fd %d: %.60s: %s", cfd->fd,
			      cfd->file->name, errname(err)));
}

/* The memory devices a program may hold: null, zero, full, random, urandom. */
static bool plain_device(dev_t dev)
{
	if (MAJOR(dev) != MEM_MAJOR)
		return false;
	switch (MINOR(dev)) {
	case 3: case 5: case 7: case 8: case 9:
		return true;
	default:
		return false;
	}
}

static int set_pos_flags(struct crfs_open *op, const struct crfs_fd *cfd,
			 struct file *file)
{
	const struct ckpt_hdr_file *h = &cfd->file->h;
	unsigned int extra = (O_NONBLOCK | O_NOFOLLOW) & ~h->f_flags;
	loff_t pos;

	if (extra) {	/* added by the open, not the image's */
		spin_lock(&file->f_lock);
		file->f_flags &= ~extra;
		spin_unlock(&file->f_lock);
	}
	if (!h->f_pos || !(file->f_mode & FMODE_LSEEK))
		return 0;
	if (h->f_pos > LLONG_MAX)
		return refuse(op, -EINVAL, "fd %d: position %llu", cfd->fd,
			      h->f_pos);
	pos = vfs_llseek(file, h->f_pos, SEEK_SET);
	if (pos < 0)
		return refuse(op, pos, "fd %d: %.60s: cannot seek to %llu",
			      cfd->fd, cfd->file->name, h->f_pos);
	return 0;
}

/* An O_PATH fd: the lookup itself, with the image's O_NOFOLLOW or not. */
static struct file *path_only(struct crfs_open *op, const struct crfs_fd *cfd,
			      struct file *path)
{
	int ret = set_pos_flags(op, cfd, path);

	if (ret) {
		fput(path);
		return ERR_PTR(ret);
	}
	return path;
}

/*
 * A GENERIC file by its path: looked up with O_PATH first (nothing opened: no device's
 * open, no tty made controlling, no FIFO waited on); a regular file, a directory or a
 * memory device; then opened with the image's flags, which must give the same inode.
 */
static struct file *open_generic(struct crfs_open *op, const struct crfs_fd *cfd)
{
	int flags = cfd->file->h.f_flags & KEPT_FLAGS;
	struct file *path, *file;
	struct inode *inode;
	int ret;

	if (cfd->file->name[0] != '/')	/* "net:[4026531840]" */
		return crfs_ns_open(op->img, cfd->file->name, flags & ~O_NOFOLLOW,
				    cfd->fd);
	path = filp_open(cfd->file->name, O_PATH | O_NOFOLLOW, 0);
	if (IS_ERR(path))
		return path_error(op, cfd, PTR_ERR(path));
	inode = file_inode(path);
	if (flags & O_PATH)	/* opens nothing: any kind of file */
		return path_only(op, cfd, path);
	if (S_ISCHR(inode->i_mode) && !plain_device(inode->i_rdev)) {
		fput(path);
		return ERR_PTR(-CANNOT_REOPEN);
	}
	if (!S_ISREG(inode->i_mode) && !S_ISDIR(inode->i_mode) &&
	    !S_ISCHR(inode->i_mode)) {
		fput(path);
		return ERR_PTR(refuse(op, -EINVAL,
				      "fd %d: %.60s is not a regular file, directory or device",
				      cfd->fd, cfd->file->name));
	}
	file = filp_open(cfd->file->name,
			 flags | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_LARGEFILE, 0);
	if (!IS_ERR(file) && file_inode(file) != inode) {
		fput(file);
		file = ERR_PTR(-ENOENT);	/* replaced between the two opens */
	}
	fput(path);
	if (IS_ERR(file))
		return path_error(op, cfd, PTR_ERR(file));
	ret = set_pos_flags(op, cfd, file);
	if (ret) {
		fput(file);
		return ERR_PTR(ret);
	}
	return file;
}

/* ---------------------------------------------------------------- restore: shared */

/*
 * An open file, pipe or shared anonymous segment held by several processes of the image:
 * the first process of the restart to reach it opens (or makes) it and leaves it here for
 * the others (one struct file: one offset, one pipe, one shmem inode). A restart is the
 * image (its inode) and the open image file the callers share (crfs-restart opens it once
 * and forks the tree: its processes may be in several groups and sessions); an entry not
 * taken by all within SHARED_TTL is dropped.
 *
 * The maker works without crfs_shared_lock: making a file may need another shared one
 * (a FILE object's pipe), and the others wait for the entry, not for the lock. Its entry
 * has no file while it is made; the others wait (killable) until it is settled: with the
 * file, or gone because the maker failed, when the next one tries for itself. A maker
 * waits only for makes of another kind (a FILE object for its pipe, never the reverse):
 * no cycle.
 */
struct crfs_shared {
	struct list_head node;
	const struct inode *image;	/* compared, never dereferenced */
	const struct file *restart;	/* the image fd the tree shares: compared only */
	u64 key;			/* objref (u32), CRFS_SHARED_SHM for a segment */
	struct file *file;		/* NULL while its maker makes it */
	u32 left;			/* processes still to take it */
	unsigned long expires;
};

#define SHARED_TTL	(120 * HZ)

static LIST_HEAD(crfs_shared_list);
static DEFINE_MUTEX(crfs_shared_lock);
static DECLARE_WAIT_QUEUE_HEAD(crfs_shared_wq);
static unsigned long crfs_shared_settled;	/* bumped under the lock, with a wake-up */

static void drop_shared(struct crfs_shared *s)
{
	list_del(&s->node);
	if (s->file)
		fput(s->file);
	kfree(s);
}

/* Under crfs_shared_lock: the entry of @key in this restart; expired ones go. */
static struct crfs_shared *find_shared(const struct inode *image,
				       const struct file *restart, u64 key)
{
	struct crfs_shared *s, *tmp, *found = NULL;

	list_for_each_entry_safe(s, tmp, &crfs_shared_list, node) {
		if (s->file && time_after(jiffies, s->expires))
			drop_shared(s);
		else if (s->image == image && s->restart == restart &&
			 s->key == key)
			found = s;
	}
	return found;
}

/*
 * Under crfs_shared_lock, released: the entry being made by another process is settled
 * (0, the lock taken again) or this one was killed (-EINTR, without the lock).
 */
static int wait_shared(void)
{
	unsigned long seen = crfs_shared_settled;

	mutex_unlock(&crfs_shared_lock);
	if (wait_event_killable(crfs_shared_wq,
				READ_ONCE(crfs_shared_settled) != seen))
		return -EINTR;
	mutex_lock(&crfs_shared_lock);
	return 0;
}

/* @s made: its @file for the other @users - 1 (or it goes, on an error); waiters woken. */
static struct file *settle_shared(struct crfs_shared *s, struct file *file, u32 users)
{
	mutex_lock(&crfs_shared_lock);
	if (IS_ERR(file)) {
		drop_shared(s);
	} else {
		s->file = get_file(file);
		s->left = users - 1;
		s->expires = jiffies + SHARED_TTL;
	}
	WRITE_ONCE(crfs_shared_settled, crfs_shared_settled + 1);
	mutex_unlock(&crfs_shared_lock);
	wake_up_all(&crfs_shared_wq);
	return file;
}

/*
 * @make(@arg), or the file another of the @users processes of the restart of @img made
 * for @key: the first maker leaves it for the others.
 */
struct file *crfs_shared_file(struct crfs_image *img, u64 key, u32 users,
			      crfs_maker make, void *arg)
{
	const struct inode *image = file_inode(img->file);
	struct crfs_shared *s;
	struct file *file;

	if (users < 2)
		return make(arg);
	mutex_lock(&crfs_shared_lock);
	while ((s = find_shared(image, img->file, key)) && !s->file)
		if (wait_shared())
			return ERR_PTR(-EINTR);
	if (s) {
		file = get_file(s->file);
		if (--s->left == 0)
			drop_shared(s);
		mutex_unlock(&crfs_shared_lock);
		return file;
	}
	s = kzalloc(sizeof(*s), GFP_KERNEL);
	if (!s) {
		mutex_unlock(&crfs_shared_lock);
		return ERR_PTR(-ENOMEM);
	}
	s->image = image;
	s->restart = img->file;
	s->key = key;
	list_add(&s->node, &crfs_shared_list);
	mutex_unlock(&crfs_shared_lock);
	return settle_shared(s, make(arg), users);
}

typedef struct file *(*crfs_opener)(struct crfs_open *op,
				    const struct crfs_fd *cfd);

struct crfs_open_call {
	struct crfs_open *op;
	const struct crfs_fd *cfd;
	crfs_opener open;
};

static struct file *call_opener(void *arg)
{
	struct crfs_open_call *call = arg;

	return call->open(call->op, call->cfd);
}

/* @open(@cfd), or the file another process of the restart opened for @key. */
static struct file *shared_open(struct crfs_open *op, s32 key, u32 users,
				crfs_opener open, const struct crfs_fd *cfd)
{
	struct crfs_open_call call = { .op = op, .cfd = cfd, .open = open };

	return crfs_shared_file(op->img, (u32)key, users, call_opener, &call);
}

/* ---------------------------------------------------------------- restore: pipes */

/* The module's own pipefs instance, mounted on first use: pipes are made on it. */
static struct vfsmount *pipe_mnt(void)
{
	struct file_system_type *type;
	struct vfsmount *mnt;

	mutex_lock(&crfs_pipe_mnt_lock);
	mnt = crfs_pipe_mnt;
	if (!mnt) {
		type = get_fs_type("pipefs");
		mnt = type ? kern_mount(type) : ERR_PTR(-ENODEV);
		if (!IS_ERR(mnt))
			crfs_pipe_mnt = mnt;
	}
	mutex_unlock(&crfs_pipe_mnt_lock);
	return mnt;
}

/*
 * A new pipe, as its O_RDWR file: an inode of pipefs made a FIFO (its i_fop the
 * kernel's pipe operations), opened by dentry_open(); on pipefs nothing waits for a
 * partner. The ends are opened from its path.
 */
static struct file *new_pipe(void)
{
	struct vfsmount *mnt = pipe_mnt();
	struct file *path, *file;
	struct inode *inode;

	if (IS_ERR(mnt))
		return ERR_CAST(mnt);
	inode = new_inode(mnt->mnt_sb);
	if (!inode)
		return ERR_PTR(-ENOMEM);
	inode->i_ino = get_next_ino();
	init_special_inode(inode, S_IFIFO | 0600, 0);
	inode->i_state = I_DIRTY;	/* as get_pipe_inode(): never on a dirty list */
	inode->i_uid = current_fsuid();
	inode->i_gid = current_fsgid();
	inode->i_atime = current_time(inode);
	inode->i_mtime = inode->i_atime;
	inode->i_ctime = inode->i_atime;
	path = alloc_file_pseudo(inode, mnt, "", O_RDONLY, &crfs_path_fops);
	if (IS_ERR(path)) {
		iput(inode);
		return path;
	}
	file = dentry_open(&path->f_path, O_RDWR, current_cred());
	fput(path);
	return file;
}

/* The bytes buffered in the pipe, written back without blocking. */
static int fill_pipe(struct crfs_open *op, const struct crfs_fd *cfd,
		     struct file *pipe)
{
	const struct crfs_pipe *p = cfd->file->pipe;
	loff_t pos = 0;
	ssize_t n;
	void *buf;
	int ret;

	if (!p->buf_len)
		return 0;
	buf = kvmalloc(p->buf_len, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	ret = crfs_image_read(op->img, p->buf_pos, buf, p->buf_len);
	if (!ret) {
		spin_lock(&pipe->f_lock);
		pipe->f_flags |= O_NONBLOCK;
		spin_unlock(&pipe->f_lock);
		n = kernel_write(pipe, buf, p->buf_len, &pos);
		if (n != p->buf_len)
			ret = refuse(op, n < 0 ? n : -ENOSPC,
				     "fd %d: %u bytes buffered do not fit in the pipe",
				     cfd->fd, p->buf_len);
	}
	kvfree(buf);
	return ret;
}

/* A FIFO by its path, O_RDWR: the FIFO must still be one, the same when opened. */
static struct file *open_fifo_path(struct crfs_open *op,
				   const struct crfs_fd *cfd)
{
	struct file *path, *file;

	path = filp_open(cfd->file->name, O_PATH | O_NOFOLLOW, 0);
	if (IS_ERR(path))
		return path_error(op, cfd, PTR_ERR(path));
	if (!S_ISFIFO(file_inode(path)->i_mode)) {
		fput(path);
		return ERR_PTR(refuse(op, -EINVAL, "fd %d: %.60s is not a FIFO",
				      cfd->fd, cfd->file->name));
	}
	file = filp_open(cfd->file->name,
			 O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_LARGEFILE, 0);
	if (!IS_ERR(file) && file_inode(file) != file_inode(path)) {
		fput(file);
		file = ERR_PTR(-ENOENT);
	}
	fput(path);
	if (IS_ERR(file))
		return path_error(op, cfd, PTR_ERR(file));
	return file;
}

/* A new pipe, or the FIFO at its path, with the bytes it had. */
static struct file *make_pipe(struct crfs_open *op, const struct crfs_fd *cfd)
{
	struct file *pipe;
	int ret;

	if (cfd->file->h.f_type == CKPT_FILE_PIPE)
		pipe = new_pipe();
	else
		pipe = open_fifo_path(op, cfd);
	if (IS_ERR(pipe))
		return pipe;
	ret = fill_pipe(op, cfd, pipe);
	if (ret) {
		fput(pipe);
		return ERR_PTR(ret);
	}
	return pipe;
}

/* The pipe or FIFO of @cfd, made (and filled) by its first end in the restart. */
static struct file *pipe_of(struct crfs_open *op, const struct crfs_fd *cfd)
{
	const struct crfs_file *cf = cfd->file;
	struct file *pipe;
	int ret;

	pipe = xa_load(&op->pipes, cf->pipe_objref);
	if (pipe)
		return pipe;
	pipe = shared_open(op, cf->pipe_objref, cf->pipe->nr_tables, make_pipe,
			   cfd);
	if (IS_ERR(pipe))
		return pipe;
	ret = xa_err(xa_store(&op->pipes, cf->pipe_objref, pipe, GFP_KERNEL));
	if (ret) {
		fput(pipe);
		return ERR_PTR(ret);
	}
	return pipe;
}

static struct file *open_pipe(struct crfs_open *op, const struct crfs_fd *cfd)
{
	const struct crfs_file *cf = cfd->file;
	struct file *pipe, *file;
	int ret;

	if (cf->h.f_type == CKPT_FILE_PIPE &&
	    !((cf->pipe->reader || cf->pipe->flags & CRFS_PIPE_NO_READER) &&
	      (cf->pipe->writer || cf->pipe->flags & CRFS_PIPE_NO_WRITER)))
		return ERR_PTR(-CANNOT_REOPEN);
	if (cf->h.f_type == CKPT_FILE_PIPE &&
	    cf->pipe->size_log2 > CRFS_PIPE_DEF_LOG2)
		return ERR_PTR(refuse(op, -EOPNOTSUPP,
				      "fd %d: a pipe of %lu bytes not handed in (F_SETPIPE_SZ)",
				      cfd->fd, 1UL << cf->pipe->size_log2));
	pipe = pipe_of(op, cfd);
	if (IS_ERR(pipe))
		return pipe;
	file = dentry_open(&pipe->f_path, (cf->h.f_flags & KEPT_FLAGS) | O_NONBLOCK,
			   current_cred());
	if (IS_ERR(file))
		return ERR_PTR(refuse(op, PTR_ERR(file),
				      "fd %d: the pipe's end cannot be opened",
				      cfd->fd));
	ret = set_pos_flags(op, cfd, file);
	if (ret) {
		fput(file);
		return ERR_PTR(ret);
	}
	return file;
}

/* A deleted file that shares its inode with other FILE objects of the image. */
static bool shares_inode(const struct crfs_file *file)
{
	return file->inode_owner && file->inode_owner->inode_members > 1;
}

struct crfs_inode_call {
	struct crfs_image *img;
	const struct crfs_file *owner;
	int fd;
};

static struct file *make_inode(void *arg)
{
	struct crfs_inode_call *call = arg;

	return crfs_deleted_inode(call->img, call->owner, call->fd);
}

/*
 * The inode @cfd's file shares, made again by the first process of the restart that holds
 * one of its files and taken by the others: once per process, before any of its files is
 * opened or taken from another process, so that every holder takes it (inode_tables).
 */
static int take_inode(struct crfs_open *op, const struct crfs_fd *cfd)
{
	const struct crfs_file *owner = cfd->file->inode_owner;
	struct crfs_inode_call call = { .img = op->img, .owner = owner, .fd = cfd->fd };
	struct file *inode;
	int ret;

	if (xa_load(&op->inodes, owner->inode_id))
		return 0;
	inode = crfs_shared_file(op->img, CRFS_SHARED_INODE | owner->inode_id,
				 owner->inode_tables, make_inode, &call);
	if (IS_ERR(inode))
		return PTR_ERR(inode);
	ret = xa_err(xa_store(&op->inodes, owner->inode_id, inode, GFP_KERNEL));
	if (ret)
		fput(inode);
	return ret;
}

/* A file deleted while open, recreated unlinked (crfs_deleted.c), at its position. */
static struct file *open_deleted(struct crfs_open *op, const struct crfs_fd *cfd)
{
	struct file *inode = NULL, *file;
	int ret;

	if (shares_inode(cfd->file))	/* taken by open_fd() */
		inode = xa_load(&op->inodes, cfd->file->inode_owner->inode_id);
	if (inode)
		file = crfs_deleted_reopen(cfd->file, inode);
	else
		file = crfs_deleted_open(op->img, cfd->file, cfd->fd);
	if (IS_ERR(file))
		return file;
	ret = set_pos_flags(op, cfd, file);
	if (ret) {
		fput(file);
		return ERR_PTR(ret);
	}
	return file;
}

/* ---------------------------------------------------------------- restore: the table */

static const char *opaque_name(u32 kind)
{
	switch (kind) {
	case CRFS_OPAQUE_SOCKET:
		return "a socket";
	case CRFS_OPAQUE_ANON:
		return "an anon inode file (epoll, timerfd...)";
	case CRFS_OPAQUE_DELETED:
		return "a file deleted while open";
	default:
		return "a file of a kind crfs does not restore";
	}
}

static const char *kind_name(const struct crfs_file *file)
{
	if (file->h.f_type == CRFS_FILE_OPAQUE)
		return opaque_name(file->opaque_kind);
	switch (file->h.f_type) {
	case CKPT_FILE_GENERIC:
		return "a character device";
	case CKPT_FILE_PIPE:
		return "a pipe whose other end is not in the process";
	case CKPT_FILE_SOCKET:
		return "a socket";
	case CKPT_FILE_TTY:
		return "a terminal";
	case CKPT_FILE_EPOLL:
		return "an epoll file";
	case CKPT_FILE_EVENTFD:
		return "an eventfd";
	case CRFS_FILE_TIMERFD:
		return "a timerfd";
	case CRFS_FILE_SIGNALFD:
		return "a signalfd";
	case CRFS_FILE_DELETED:
		return "a file deleted while open";
	case CRFS_FILE_UNIX:
		return "a socket";
	default:
		return "a crfs extension file";
	}
}

/* The caller's file at @fd, when it hands it in: open and not close-on-exec. */
static struct file *caller_file(struct crfs_open *op, unsigned int fd)
{
	struct files_struct *files = current->files;
	struct file *file;
	bool cloexec;

	spin_lock(&files->file_lock);
	cloexec = fd >= files_fdtable(files)->max_fds ||
		  close_on_exec(fd, files_fdtable(files));
	spin_unlock(&files->file_lock);
	if (cloexec)
		return NULL;
	file = fget(fd);
	if (file == op->img->file) {
		fput(file);
		return NULL;
	}
	return file;
}

/* An fd whose file cannot be reopened: the caller's, with CRFS_RESTART_INHERIT. */
static struct file *inherit(struct crfs_open *op, const struct crfs_fd *cfd)
{
	struct file *file = NULL;

	if (op->plan->flags & (CRFS_RESTART_INHERIT | CRFS_RESTART_REPLACE))
		file = caller_file(op, cfd->fd);
	if (file)
		return file;
	if (cfd->file->name)
		return ERR_PTR(refuse(op, -EOPNOTSUPP,
				      "fd %d: %.40s: %s not handed in (-i)",
				      cfd->fd, cfd->file->name,
				      kind_name(cfd->file)));
	return ERR_PTR(refuse(op, -EOPNOTSUPP, "fd %d: %s not handed in (-i)",
			      cfd->fd, kind_name(cfd->file)));
}

/* An eventfd, timerfd, signalfd or epoll: the file handed in (crfs_anonfd.c). */
static struct file *handed_anon(struct crfs_open *op, const struct crfs_fd *cfd)
{
	struct file *file = crfs_handed_file(op->plan, cfd->objref);

	if (file)
		return file;
	return ERR_PTR(refuse(op, -EOPNOTSUPP, "fd %d: %s not handed in (objref %d)",
			      cfd->fd, kind_name(cfd->file), cfd->objref));
}

static struct file *open_object(struct crfs_open *op, const struct crfs_fd *cfd)
{
	struct file *handed;

	if (cfd->file->h.f_type == CKPT_FILE_PIPE) {	/* an epoll's target */
		handed = crfs_handed_file(op->plan, cfd->objref);
		if (handed)
			return handed;
	}
	switch (cfd->file->h.f_type) {
	case CKPT_FILE_GENERIC:
		return open_generic(op, cfd);
	case CKPT_FILE_PIPE:
	case CKPT_FILE_FIFO:
		return open_pipe(op, cfd);
	case CKPT_FILE_SOCKET:
	case CKPT_FILE_TTY:
		return ERR_PTR(-CANNOT_REOPEN);
	case CRFS_FILE_DELETED:
		return open_deleted(op, cfd);
	case CRFS_FILE_UNIX:	/* made by the restarter (crfs_socket.c) */
		if (crfs_unix_outside(op->plan, cfd->file))
			return ERR_PTR(-CANNOT_REOPEN);
		return handed_anon(op, cfd);
	case CRFS_FILE_OPAQUE:
		if (cfd->file->opaque_kind == CRFS_OPAQUE_SOCKET)
			return ERR_PTR(-CANNOT_REOPEN);
		fallthrough;
	default:
		if (crfs_anon_kind(cfd->file->h.f_type))
			return handed_anon(op, cfd);
		return ERR_PTR(refuse(op, -EOPNOTSUPP, "fd %d: %s is not restored",
				      cfd->fd, kind_name(cfd->file)));
	}
}

/* The file of @cfd (a new reference): one struct file per FILE object. */
static struct file *open_fd(struct crfs_open *op, const struct crfs_fd *cfd)
{
	struct file *file;
	int ret;

	if (op->plan->flags & CRFS_RESTART_REPLACE) {
		file = caller_file(op, cfd->fd);
		if (file)
			return file;	/* handed in: replaces the image's */
	}
	file = xa_load(&op->opened, cfd->objref);
	if (file)
		return get_file(file);
	if (shares_inode(cfd->file)) {
		ret = take_inode(op, cfd);
		if (ret)
			return ERR_PTR(ret);
	}
	file = shared_open(op, cfd->objref, cfd->file->nr_tables, open_object, cfd);
	if (file == ERR_PTR(-CANNOT_REOPEN))
		return inherit(op, cfd);	/* per fd: never shared by objref */
	if (IS_ERR(file))
		return file;
	ret = xa_err(xa_store(&op->opened, cfd->objref, file, GFP_KERNEL));
	if (ret) {
		fput(file);
		return ERR_PTR(ret);
	}
	return get_file(file);
}

/*
 * The threads of the process share its file table, and no other process does
 * (CLONE_FILES without CLONE_VM; unshare(CLONE_FILES) in a thread).
 */
static int check_table(struct crfs_open *op, u32 index)
{
	const struct crfs_task *me = &op->plan->tasks[index];
	unsigned long nofile = rlimit(RLIMIT_NOFILE);
	u32 i;

	for (i = 0; i < op->plan->nr_tasks; i++) {
		const struct crfs_task *t = &op->plan->tasks[i];
		bool thread = t->pids.vtgid == me->pids.vtgid;
		bool same = t->files == me->files;

		if (thread != same)
			return refuse(op, -EOPNOTSUPP,
				      "pids %d and %d: a file table shared across processes or not by threads",
				      me->pids.vpid, t->pids.vpid);
	}
	if (op->fdt->nr && op->fdt->fds[op->fdt->nr - 1].fd >= nofile)
		return refuse(op, -EMFILE, "fd %d: not below RLIMIT_NOFILE %lu",
			      op->fdt->fds[op->fdt->nr - 1].fd, nofile);
	return 0;
}

static int open_all(struct crfs_open *op, struct crfs_files *files)
{
	const struct crfs_fdtable *fdt = op->fdt;
	struct file *file;
	u32 i;
	int ret;

	for (i = 0; i < fdt->nr; i++) {
		if (fatal_signal_pending(current))
			return -EINTR;
		file = open_fd(op, &fdt->fds[i]);
		if (IS_ERR(file))
			return PTR_ERR(file);
		files->slots[i].fd = fdt->fds[i].fd;
		files->slots[i].cloexec = fdt->fds[i].cloexec;
		files->slots[i].file = file;
		files->nr++;
		ret = crfs_fown_prepare(op->plan, op->img, op->index,
					&fdt->fds[i], file);
		if (ret)
			return ret;
		cond_resched();
	}
	return 0;
}

static void put_files(struct xarray *xa)
{
	struct file *file;
	unsigned long index;

	xa_for_each(xa, index, file)
		fput(file);
	xa_destroy(xa);
}

/*
 * Open every file of task @index's file table, as @cred (NULL: the caller's), into
 * *@out; *@out stays NULL when the image has no file table (the caller's fds 0-2 are
 * kept then). Returns an errno, img->err_msg saying why, while nothing has changed.
 */
int crfs_files_prepare(struct crfs_plan *plan, struct crfs_image *img,
		       u32 index, const struct cred *cred,
		       struct crfs_files **out)
{
	struct crfs_open op = { .plan = plan, .img = img, .index = index };
	const struct cred *old = NULL;
	struct crfs_files *files;
	int ret;

	*out = NULL;
	op.fdt = plan->tasks[index].files;
	if (!op.fdt) {
		crfs_deleted_forget();
		return 0;
	}
	ret = check_table(&op, index);
	if (ret)
		return ret;
	files = kvzalloc(struct_size(files, slots, op.fdt->nr), GFP_KERNEL);
	if (!files)
		return -ENOMEM;
	xa_init(&op.opened);
	xa_init(&op.pipes);
	xa_init(&op.inodes);
	if (cred)
		old = override_creds(cred);
	ret = open_all(&op, files);
	crfs_deleted_forget();	/* the cwd was looked up before */
	if (old)
		revert_creds(old);
	put_files(&op.opened);
	put_files(&op.pipes);
	put_files(&op.inodes);
	if (ret)
		crfs_files_free(files);
	else
		*out = files;
	return ret;
}

void crfs_files_free(struct crfs_files *files)
{
	u32 i;

	if (!files)
		return;
	for (i = 0; i < files->nr; i++)
		if (files->slots[i].file)
			fput(files->slots[i].file);
	kvfree(files);
}

/* ---------------------------------------------------------------- restore: install */

static void close_all_fds(void)
{
	unsigned int fd, max_fds;

	rcu_read_lock();
	max_fds = files_fdtable(current->files)->max_fds;
	rcu_read_unlock();
	for (fd = 0; fd < max_fds; fd++)
		close_fd(fd);
}

/* Fd @slot->fd, the lowest free one once the fds below it are taken (the holes too). */
static int install_slot(struct crfs_slot *slot)
{
	int fd;

	for (;;) {
		fd = get_unused_fd_flags(slot->cloexec ? O_CLOEXEC : 0);
		if (fd < 0 || fd == slot->fd)
			break;
		if (fd > slot->fd) {	/* taken meanwhile by another thread */
			put_unused_fd(fd);
			return -EBUSY;
		}
	}
	if (fd < 0)
		return fd;
	fd_install(fd, slot->file);
	slot->file = NULL;
	return 0;
}

/*
 * In the restored task, on its way back to user space (after the point of no return):
 * close every fd of the caller, then install the image's at their numbers. Consumes
 * @files. A failure kills the task.
 */
void crfs_files_install(struct crfs_files *files)
{
	int ret = 0, top = -1, fd;
	u32 i, j = 0;

	close_all_fds();
	for (i = 0; !ret && i < files->nr; i++) {
		ret = install_slot(&files->slots[i]);
		if (!ret)
			top = files->slots[i].fd;
	}
	/* give back the holes reserved between the fds */
	for (fd = 0; fd < top; fd++) {
		if (j < files->nr && files->slots[j].fd == fd)
			j++;
		else
			put_unused_fd(fd);
	}
	if (ret) {
		pr_warn_ratelimited("crfs: pid %d: installing the fds failed (%d): killed\n",
				    task_pid_nr(current), ret);
		force_sig(SIGKILL);
	}
	crfs_files_free(files);
}

void crfs_files_exit(void)
{
	struct crfs_shared *s, *tmp;

	list_for_each_entry_safe(s, tmp, &crfs_shared_list, node)
		drop_shared(s);
	crfs_deleted_exit();
	if (crfs_pipe_mnt)
		kern_unmount(crfs_pipe_mnt);
}
