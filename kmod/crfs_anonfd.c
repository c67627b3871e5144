// SPDX-License-Identifier: GPL-2.0
/*
 * Anon-inode files of a file table: eventfd, timerfd, signalfd, epoll; and the pipes
 * an epoll watches.
 *
 * Debian 6.1's kernel exports no constructor for them (their file operations and
 * do_eventfd(), do_timerfd_settime()... are static), so the restarting process makes
 * them itself, as CRIU does: eventfd(2) with the count, timerfd_create(2) and
 * timerfd_settime(2), signalfd(2), epoll_create1(2) and epoll_ctl(2) once the watched
 * files exist. CRFS_IOC_RESTART_FILES hands them in as (objref, fd) pairs. A pipe an
 * epoll watches is made by the restarter too (epoll_ctl(2) needs it), with its bytes:
 * then every end of that pipe in the image is handed in, all of one pipe.
 *
 *   copy-in:	the table, bounded by CRFS_MAX_HANDED, each objref once, each fd taken
 *   validate:	each objref is a FILE of the image of a kind handed in, and the file is
 *		an anon inode of that kind ("[eventfd]"...) or a pipe end of the image's
 *		access mode, with the image's O_NONBLOCK; the ends of a pipe_objref are
 *		all handed in, all ends of one pipe
 *   act:	crfs_files.c installs it at every fd naming the objref; shared with other
 *		processes through its shared-file list like any other file
 *
 * The records themselves (the FILE subtypes' lengths and fields) are checked at copy-in
 * by crfs_anon_load(); the values are the restarter's to apply.
 */
#include <linux/eventfd.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <linux/pipe_fs_i.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/string.h>
#include <linux/time.h>
#include <linux/uaccess.h>

#include "crfs.h"

#define EFD_FLAGS	(O_NONBLOCK | O_CLOEXEC | 1)	/* EFD_SEMAPHORE is 1 */
#define TFD_SETTIME	3	/* TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET */
#define SFD_FLAGS	(O_NONBLOCK | O_CLOEXEC)

struct crfs_handed_one {
	s32 objref;
	s32 fd;
	struct file *file;
};

struct crfs_handed {
	u32 nr;
	struct crfs_handed_one e[];	/* ascending objref */
};

bool crfs_anon_kind(u32 f_type)
{
	switch (f_type) {
	case CKPT_FILE_EVENTFD:
	case CKPT_FILE_EPOLL:
	case CRFS_FILE_TIMERFD:
	case CRFS_FILE_SIGNALFD:
		return true;
	default:
		return false;
	}
}

/* The name of the anon inode file of @f_type, as anon_inode_getfile() gives it. */
static const char *anon_name(u32 f_type)
{
	switch (f_type) {
	case CKPT_FILE_EVENTFD:
		return "[eventfd]";
	case CKPT_FILE_EPOLL:
		return "[eventpoll]";
	case CRFS_FILE_TIMERFD:
		return "[timerfd]";
	default:
		return "[signalfd]";
	}
}

/* ---------------------------------------------------------------- copy-in: records */

static bool timer_clock(s32 clockid)
{
	return clockid == CLOCK_REALTIME || clockid == CLOCK_MONOTONIC ||
	       clockid == CLOCK_BOOTTIME || clockid == CLOCK_REALTIME_ALARM ||
	       clockid == CLOCK_BOOTTIME_ALARM;
}

static int load_timerfd(struct crfs_ctx *ctx, const struct crfs_rec *rec)
{
	struct crfs_hdr_file_timerfd h;
	int ret;

	ret = crfs_image_body(ctx->img, rec, &h, sizeof(h));
	if (ret)
		return ret;
	if (!timer_clock(h.clockid))
		return crfs_image_fail(ctx->img, rec, "timerfd clockid %d", h.clockid);
	if (h.tfd_flags & ~TFD_SETTIME)
		return crfs_image_fail(ctx->img, rec, "timerfd settime flags %#x",
				       h.tfd_flags);
	if (h.value_ns > KTIME_MAX || h.interval_ns > KTIME_MAX)
		return crfs_image_fail(ctx->img, rec, "timerfd time out of range");
	return 0;
}

static int load_eventfd(struct crfs_ctx *ctx, const struct crfs_rec *rec)
{
	struct ckpt_hdr_file_eventfd h;
	int ret;

	ret = crfs_image_body(ctx->img, rec, &h, sizeof(h));
	if (ret)
		return ret;
	if (h.flags & ~EFD_FLAGS)
		return crfs_image_fail(ctx->img, rec, "eventfd flags %#x", h.flags);
	if (h.count == ULLONG_MAX)
		return crfs_image_fail(ctx->img, rec, "eventfd count %llu", h.count);
	return 0;
}

static int load_signalfd(struct crfs_ctx *ctx, const struct crfs_rec *rec)
{
	struct crfs_hdr_file_signalfd h;
	int ret;

	ret = crfs_image_body(ctx->img, rec, &h, sizeof(h));
	if (ret)
		return ret;
	if (h.sfd_flags & ~SFD_FLAGS)
		return crfs_image_fail(ctx->img, rec, "signalfd flags %#x", h.sfd_flags);
	return 0;
}

static size_t record_size(u32 f_type)
{
	switch (f_type) {
	case CKPT_FILE_EVENTFD:
		return sizeof(struct ckpt_hdr_file_eventfd);
	case CRFS_FILE_TIMERFD:
		return sizeof(struct crfs_hdr_file_timerfd);
	case CRFS_FILE_SIGNALFD:
		return sizeof(struct crfs_hdr_file_signalfd);
	default:
		return sizeof(struct ckpt_hdr_file);
	}
}

/* The FILE record @rec of an anon kind: its length and its fields. */
int crfs_anon_load(struct crfs_ctx *ctx, const struct crfs_file *file,
		   const struct crfs_rec *rec)
{
	size_t size = record_size(file->h.f_type);

	if (rec->len != size)
		return crfs_image_fail(ctx->img, rec, "%s FILE of %u bytes, expected %zu",
				       anon_name(file->h.f_type), rec->len, size);
	if ((file->h.f_flags & O_ACCMODE) != O_RDWR)
		return crfs_image_fail(ctx->img, rec, "%s FILE not O_RDWR",
				       anon_name(file->h.f_type));
	switch (file->h.f_type) {
	case CKPT_FILE_EVENTFD:
		return load_eventfd(ctx, rec);
	case CRFS_FILE_TIMERFD:
		return load_timerfd(ctx, rec);
	case CRFS_FILE_SIGNALFD:
		return load_signalfd(ctx, rec);
	default:
		return 0;
	}
}

/* ---------------------------------------------------------------- copy-in: the table */

void crfs_handed_free(struct crfs_handed *handed)
{
	u32 i;

	if (!handed)
		return;
	for (i = 0; i < handed->nr; i++)
		if (handed->e[i].file)
			fput(handed->e[i].file);
	kvfree(handed);
}

static int cmp_objref(const void *a, const void *b)
{
	const struct crfs_handed_one *x = a, *y = b;

	return (x->objref > y->objref) - (x->objref < y->objref);
}

/* Each objref positive and once, each fd open: a reference to each file. */
static int take_files(struct crfs_handed *handed, u32 nr, char *why)
{
	u32 i;

	sort(handed->e, nr, sizeof(handed->e[0]), cmp_objref, NULL);
	for (i = 0; i < nr; i++) {
		if (handed->e[i].objref <= 0 ||
		    (i && handed->e[i].objref == handed->e[i - 1].objref)) {
			snprintf(why, CRFS_ERRMSG_LEN, "handed objref %d: not positive or twice",
				 handed->e[i].objref);
			return -EINVAL;
		}
	}
	for (i = 0; i < nr; i++) {
		handed->e[i].file = fget(handed->e[i].fd);
		if (!handed->e[i].file) {
			snprintf(why, CRFS_ERRMSG_LEN, "handed fd %d (objref %d) is not open",
				 handed->e[i].fd, handed->e[i].objref);
			return -EBADF;
		}
	}
	return 0;
}

static int copy_handed(const struct crfs_restart_args *args,
		       struct crfs_handed **out, char *why)
{
	const struct crfs_handed_file __user *u = u64_to_user_ptr(args->handed);
	struct crfs_handed_file one;
	struct crfs_handed *handed;
	u32 i;
	int ret;

	if (args->__reserved || args->nr_handed > CRFS_MAX_HANDED) {
		snprintf(why, CRFS_ERRMSG_LEN, "nr_handed %u (at most %u) or __reserved %u",
			 args->nr_handed, CRFS_MAX_HANDED, args->__reserved);
		return -EINVAL;
	}
	handed = kvzalloc(struct_size(handed, e, args->nr_handed), GFP_KERNEL);
	if (!handed)
		return -ENOMEM;
	for (i = 0; i < args->nr_handed; i++) {
		if (copy_from_user(&one, &u[i], sizeof(one))) {
			kvfree(handed);
			return -EFAULT;
		}
		handed->e[i].objref = one.objref;
		handed->e[i].fd = one.fd;
	}
	ret = take_files(handed, args->nr_handed, why);
	handed->nr = args->nr_handed;
	if (ret) {
		crfs_handed_free(handed);
		return ret;
	}
	*out = handed;
	return 0;
}

long crfs_ioctl_restart_files(struct crfs_restart_args __user *uargs)
{
	struct crfs_restart_args args;
	struct crfs_handed *handed = NULL;
	long ret;

	if (copy_from_user(&args, uargs, sizeof(args)))
		return -EFAULT;
	memset(args.image.err_msg, 0, sizeof(args.image.err_msg));
	ret = copy_handed(&args, &handed, args.image.err_msg);
	if (ret) {	/* the out fields, as for an image error */
		args.image.err_offset = -1;
		args.image.err_type = 0;
		args.image.err_msg[CRFS_ERRMSG_LEN - 1] = '\0';
		if (copy_to_user(&uargs->image, &args.image, sizeof(args.image)))
			return -EFAULT;
		return ret;
	}
	ret = crfs_image_ioctl(&uargs->image, true, handed);
	crfs_handed_free(handed);
	return ret;
}

/* ---------------------------------------------------------------- validate */

/* Is @file an anon inode file of @f_type? */
static bool is_anon_of(struct file *file, u32 f_type)
{
	struct eventfd_ctx *ctx;

	if (file_inode(file)->i_sb->s_magic != ANON_INODE_FS_MAGIC ||
	    strcmp(file->f_path.dentry->d_name.name, anon_name(f_type)))
		return false;
	if (f_type != CKPT_FILE_EVENTFD)
		return true;
	ctx = eventfd_ctx_fileget(file);
	if (IS_ERR(ctx))
		return false;
	eventfd_ctx_put(ctx);
	return true;
}

/* The FILE object @objref of the plan, or NULL. */
static const struct crfs_file *file_of(struct crfs_plan *plan, s32 objref)
{
	struct crfs_object *obj = xa_load(&plan->objects, objref);

	if (!obj || obj->objtype != CKPT_OBJ_FILE || !obj->ready)
		return NULL;
	return obj->file;
}

static const struct crfs_handed_one *handed_one(const struct crfs_handed *handed,
						s32 objref)
{
	u32 lo = 0, hi = handed ? handed->nr : 0;

	while (lo < hi) {
		u32 mid = lo + (hi - lo) / 2;

		if (handed->e[mid].objref == objref)
			return &handed->e[mid];
		if (handed->e[mid].objref < objref)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/*
 * A pipe end handed in: a pipe (not a FIFO) of the image's access mode; every FILE of
 * its pipe_objref in the image is handed in, and they are ends of one pipe.
 */
static int check_pipe(struct crfs_plan *plan, struct crfs_image *img,
		      const struct crfs_handed_one *e, const struct crfs_file *cf)
{
	const struct crfs_handed_one *other;
	struct crfs_object *obj;
	unsigned long index;

	if (!S_ISFIFO(file_inode(e->file)->i_mode) ||
	    file_inode(e->file)->i_sb->s_magic != PIPEFS_MAGIC ||
	    (e->file->f_flags & O_ACCMODE) != (cf->h.f_flags & O_ACCMODE))
		return crfs_image_fail(img, NULL,
				       "handed fd %d (objref %d) is not a pipe end of its mode",
				       e->fd, e->objref);
	xa_for_each(&plan->objects, index, obj) {
		cond_resched();
		if (obj->objtype != CKPT_OBJ_FILE || !obj->ready ||
		    obj->file->h.f_type != CKPT_FILE_PIPE ||
		    obj->file->pipe_objref != cf->pipe_objref)
			continue;
		other = handed_one(plan->handed, index);
		if (!other)
			return crfs_image_fail(img, NULL,
					       "pipe_objref %d: its end objref %lu not handed in",
					       cf->pipe_objref, index);
		if (file_inode(other->file) != file_inode(e->file))
			return crfs_image_fail(img, NULL,
					       "pipe_objref %d: ends of two pipes handed in",
					       cf->pipe_objref);
	}
	return 0;
}

static int check_one(struct crfs_plan *plan, struct crfs_image *img,
		     const struct crfs_handed_one *e)
{
	const struct crfs_file *cf = file_of(plan, e->objref);
	int ret;

	if (!cf)
		return crfs_image_fail(img, NULL, "handed objref %d is not a file of the image",
				       e->objref);
	if (cf->h.f_type == CKPT_FILE_PIPE || cf->h.f_type == CRFS_FILE_UNIX) {
		ret = cf->h.f_type == CKPT_FILE_PIPE ? check_pipe(plan, img, e, cf) :
		      crfs_unix_check(plan, img, e->file, cf, e->fd);
		if (ret)
			return ret;
	} else if (!crfs_anon_kind(cf->h.f_type)) {
		return crfs_image_fail(img, NULL,
				       "handed objref %d: its file (f_type %u) is not handed in",
				       e->objref, cf->h.f_type);
	} else if (!is_anon_of(e->file, cf->h.f_type)) {
		return crfs_image_fail(img, NULL, "handed fd %d (objref %d) is not an %s file",
				       e->fd, e->objref, anon_name(cf->h.f_type));
	}
	if ((e->file->f_flags ^ cf->h.f_flags) & O_NONBLOCK)
		return crfs_image_fail(img, NULL, "handed fd %d (objref %d): O_NONBLOCK differs",
				       e->fd, e->objref);
	return 0;
}

/* Every file handed in against the plan: EINVAL (err_msg says) before anything changes. */
int crfs_handed_check(struct crfs_plan *plan, struct crfs_image *img)
{
	const struct crfs_handed *handed = plan->handed;
	u32 i;
	int ret;

	for (i = 0; handed && i < handed->nr; i++) {
		ret = check_one(plan, img, &handed->e[i]);
		if (ret)
			return ret;
	}
	return 0;
}

/* ---------------------------------------------------------------- act */

/* The file handed in for @objref (a new reference), or NULL. */
struct file *crfs_handed_file(const struct crfs_plan *plan, s32 objref)
{
	const struct crfs_handed_one *e = handed_one(plan->handed, objref);

	return e ? get_file(e->file) : NULL;
}
