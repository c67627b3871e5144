// SPDX-License-Identifier: GPL-2.0
/*
 * CRFS_HDR_FILE_OWNER: a file's owner for SIGIO (fcntl F_SETOWN, F_SETOWN_EX) and its
 * F_SETSIG signal; O_ASYNC is in the FILE record's f_flags.
 *
 * copy-in (EINVAL with the record's offset): pid_type F_OWNER_TID, F_OWNER_PID or
 *   F_OWNER_PGRP; a pid that is a task (F_OWNER_TID), a process (F_OWNER_PID) or a
 *   process group (F_OWNER_PGRP) of the image, or 0; a valid signal number or 0.
 * prepare (each file as it is opened, before the point of no return, as the restored
 *   credentials): O_ASYNC registers the file for SIGIO (its ->fasync, as F_SETFL does);
 *   the owner is the caller itself, or a process of the restored tree: one in the
 *   caller's process group, which crfs-restart makes the tree's own (EPERM for another
 *   process, EOPNOTSUPP for a process group: pgids are not restored). The owner's uid
 *   and euid, which send_sigio() checks, are the restored task's, as if it had called
 *   F_SETOWN. A file shared by several processes keeps the first owner set.
 * checkpoint: the owner's pid as the caller's pid namespace sees it; an owner outside it
 *   is refused (EOPNOTSUPP).
 */
#include <linux/fcntl.h>
#include <linux/fs.h>
#include <linux/pid.h>
#include <linux/rcupdate.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/signal.h>

#include "crfs.h"

/* the image's pid_type (struct f_owner_ex.type) -> the kernel's */
static enum pid_type fown_type(u32 pid_type)
{
	switch (pid_type) {
	case F_OWNER_TID:
		return PIDTYPE_PID;
	case F_OWNER_PGRP:
		return PIDTYPE_PGID;
	default:
		return PIDTYPE_TGID;
	}
}

/* Is @pid (not 0) of @type a task, process or process group of the image? */
static bool in_image(const struct crfs_plan *plan, s32 pid, u32 type)
{
	u32 i;

	for (i = 0; i < plan->nr_tasks; i++) {
		const struct ckpt_pids *p = &plan->tasks[i].pids;

		if ((type == F_OWNER_TID && p->vpid == pid) ||
		    (type == F_OWNER_PID && p->vpid == pid && p->vtgid == pid) ||
		    (type == F_OWNER_PGRP && p->vpgid == pid))
			return true;
	}
	return false;
}

static int check_owner(struct crfs_ctx *ctx, const struct crfs_rec *rec,
		       const struct crfs_hdr_file_owner *h)
{
	if (h->pid_type > F_OWNER_PGRP)
		return crfs_image_fail(ctx->img, rec, "owner pid_type %u", h->pid_type);
	if (h->signum && !valid_signal(h->signum))
		return crfs_image_fail(ctx->img, rec, "signum %u", h->signum);
	if (h->pid < 0 || (h->pid && !in_image(ctx->plan, h->pid, h->pid_type)))
		return crfs_image_fail(ctx->img, rec,
				       "owner %d is not a %s of the image", h->pid,
				       h->pid_type == F_OWNER_PGRP ? "process group" :
				       h->pid_type == F_OWNER_TID ? "task" : "process");
	return 0;
}

/* At the end of a FILE object: its CRFS_HDR_FILE_OWNER, if the image has one. */
int crfs_fown_load(struct crfs_ctx *ctx, struct crfs_file *f)
{
	struct crfs_image *img = ctx->img;
	struct crfs_rec rec;
	int ret;

	ret = crfs_image_optional(img, CRFS_HDR_FILE_OWNER, &rec, &f->owner,
				  sizeof(f->owner));
	if (ret <= 0)
		return ret;
	ret = check_owner(ctx, &rec, &f->owner);
	if (!ret)
		f->has_owner = true;
	return ret;
}

/*
 * The struct pid (a reference) the owner of @f is now: the caller's own for its image
 * pid, else the task of that pid, in the caller's process group; NULL if none is.
 */
static struct pid *owner_pid(const struct crfs_task *me, const struct crfs_file *f)
{
	const struct crfs_hdr_file_owner *h = &f->owner;
	struct task_struct *t;
	struct pid *pid = NULL;

	if (h->pid_type == F_OWNER_TID && h->pid == me->pids.vpid)
		return get_pid(task_pid(current));
	if (h->pid_type == F_OWNER_PID && h->pid == me->pids.vtgid)
		return get_pid(task_tgid(current));
	rcu_read_lock();
	t = pid_task(find_vpid(h->pid), PIDTYPE_PID);
	if (t && task_pgrp(t) == task_pgrp(current) &&
	    (h->pid_type == F_OWNER_TID || thread_group_leader(t)))
		pid = get_pid(task_pid(t));
	rcu_read_unlock();
	return pid;
}

static int set_owner(const struct crfs_task *me, const struct crfs_file *f,
		     struct file *file, int fd, char *err_msg, size_t size)
{
	const struct crfs_hdr_file_owner *h = &f->owner;
	struct pid *pid;

	if (h->pid_type == F_OWNER_PGRP) {
		scnprintf(err_msg, size,
			  "fd %d: owner process group %d: process groups are not restored",
			  fd, h->pid);
		return -EOPNOTSUPP;
	}
	pid = owner_pid(me, f);
	if (!pid) {
		scnprintf(err_msg, size,
			  "fd %d: owner %d is not a process of the restored tree", fd,
			  h->pid);
		return -EPERM;
	}
	__f_setown(file, pid, fown_type(h->pid_type), 0);
	put_pid(pid);
	return 0;
}

/* O_ASYNC of the image: the file gets SIGIO, as fcntl(F_SETFL) would have it. */
static int set_async(struct file *file, int fd)
{
	int ret = 0;

	if (file->f_flags & FASYNC)
		return 0;	/* shared: set by its first fd */
	if (file->f_op->fasync)
		ret = file->f_op->fasync(fd, file, 1);
	if (ret < 0)
		return ret;
	spin_lock(&file->f_lock);
	file->f_flags |= FASYNC;
	spin_unlock(&file->f_lock);
	return 0;
}

/*
 * Fd @cfd of task @index, opened as @file under the restored credentials: its O_ASYNC,
 * owner and signal. An errno and @img->err_msg when the owner is refused.
 */
int crfs_fown_prepare(const struct crfs_plan *plan, struct crfs_image *img,
		      u32 index, const struct crfs_fd *cfd, struct file *file)
{
	const struct crfs_file *f = cfd->file;
	int ret;

	if (f->h.f_flags & FASYNC) {
		ret = set_async(file, cfd->fd);
		if (ret)
			return ret;
	}
	if (!f->has_owner)
		return 0;
	if (f->owner.pid) {
		ret = set_owner(&plan->tasks[index], f, file, cfd->fd,
				img->err_msg, sizeof(img->err_msg));
		if (ret)
			return ret;
	}
	write_lock_irq(&file->f_owner.lock);
	file->f_owner.signum = f->owner.signum;
	write_unlock_irq(&file->f_owner.lock);
	return 0;
}

/* After @file's FILE object: its CRFS_HDR_FILE_OWNER when it has an owner or a signal. */
int crfs_fown_checkpoint(struct crfs_ckpt *ck, struct file *file, int fd)
{
	struct crfs_hdr_file_owner h = { };
	struct fown_struct *fown = &file->f_owner;
	bool owned;

	read_lock_irq(&fown->lock);
	owned = fown->pid;
	h.signum = fown->signum;
	if (owned) {
		h.pid = pid_vnr(fown->pid);
		h.pid_type = fown->pid_type == PIDTYPE_PID ? F_OWNER_TID :
			     fown->pid_type == PIDTYPE_PGID ? F_OWNER_PGRP :
			     F_OWNER_PID;
	}
	read_unlock_irq(&fown->lock);
	if (owned && !h.pid)
		return crfs_ck_fail(ck, -EOPNOTSUPP,
				    "fd %d: its owner for SIGIO is outside the caller's pid namespace",
				    fd);
	if (!owned && !h.signum)
		return 0;
	return crfs_ck_record(ck, CRFS_HDR_FILE_OWNER, &h, sizeof(h));
}
