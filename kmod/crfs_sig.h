/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Signal state, limits and fs_struct of a restored task (crfs_signal.c, crfs_fs.c):
 * what the plan keeps of the SIGHAND, SIGNAL, SIGPENDING, SIGNAL_TASK, SIGALTSTACK, FS
 * and FS_EXT records, and what a restore prepares from them before the point of no
 * return.
 */
#ifndef CRFS_SIG_H
#define CRFS_SIG_H

#include <linux/path.h>
#include <linux/types.h>

#include "crfs_image.h"

#define CRFS_MAX_PENDING	1024	/* siginfo entries per SIGPENDING */

struct crfs_image;
struct crfs_plan;
struct crfs_rec;
struct crfs_object;
struct crfs_task;

/* A SIGPENDING: the pending mask and the queued siginfo, in order. */
struct crfs_pending {
	u64 mask;
	u32 nr;
	kernel_siginfo_t *raw;		/* CRFS_SIGINFO_RAW's nr, or NULL */
	struct ckpt_siginfo info[];
};

/* A SIGNAL and the SIGPENDING{shared} after it: per thread group. */
struct crfs_signal {
	struct ckpt_hdr_signal h;
	struct crfs_pending *shared;
	const struct crfs_task *owner;		/* the task that read it */
	struct crfs_hdr_posix_timer *timers;	/* POSIX_TIMERs, ids increasing */
	u32 nr_timers;
};

/* An FS object: cwd and root by path, the umask when the image has it. */
struct crfs_fs {
	char *pwd;
	char *root;
	u32 umask;
	bool has_umask;
};

#define CRFS_SIG_BLOCKED	BIT(0)
#define CRFS_SIG_ALTSTACK	BIT(1)

/* What a task's records say about its signals and fs (pointers into plan objects). */
struct crfs_task_sig {
	struct ckpt_hdr_sighand *sighand;	/* or NULL: the caller's stay */
	struct crfs_signal *signal;		/* or NULL */
	struct crfs_fs *fs;			/* or NULL */
	struct crfs_pending *pending;		/* private; owned by the task */
	struct crfs_pending *last;		/* the SIGPENDING read last, or NULL */
	s32 signal_ref;				/* TASK_OBJS signal_objref */
	unsigned int has;			/* CRFS_SIG_* */
	u64 blocked;
	struct crfs_hdr_sigaltstack altstack;
};

/* What a restore prepared: applied after the point of no return, where nothing fails. */
struct crfs_sig_restore {
	const struct crfs_task_sig *sig;
	bool process;				/* the leader: shared state too */
	struct rlimit rlim[CKPT_RLIM_NLIMITS];
	bool set_rlim;
	int pdeath_signal;			/* 0: the caller's stays */
	struct path pwd;			/* .mnt NULL: not set */
	struct path root;
	char *err_msg;				/* the image's err_msg */
};

/* copy-in (crfs_signal.c, crfs_fs.c) */
__printf(3, 4)
int crfs_sig_refuse(struct crfs_sig_restore *sr, int err, const char *fmt, ...);
int crfs_sig_load_sighand(struct crfs_image *img, struct crfs_object *obj);
int crfs_sig_task_objs(struct crfs_plan *plan, struct crfs_image *img,
		       struct crfs_task *task, const struct crfs_rec *rec,
		       const struct ckpt_hdr_task_objs *objs);
bool crfs_sig_record(u32 type);
int crfs_sig_load_record(struct crfs_plan *plan, struct crfs_image *img,
			 struct crfs_task *task, const struct crfs_rec *rec);
void crfs_sig_free_object(struct crfs_object *obj);
void crfs_sig_free_task(struct crfs_task *task);
int crfs_fs_load(struct crfs_image *img, struct crfs_object *obj);

/* prepare and act (crfs_signal.c, crfs_fs.c) */
int crfs_sig_prepare(struct crfs_sig_restore *sr, const struct crfs_task *task,
		     bool process, const struct cred *cred, char *err_msg);
void crfs_sig_act_process(struct crfs_sig_restore *sr);
int crfs_sig_act_thread(struct crfs_sig_restore *sr);
void crfs_sig_act_shared(struct crfs_sig_restore *sr);
void crfs_sig_release(struct crfs_sig_restore *sr);
void crfs_queue_shared(int sig, kernel_siginfo_t *info);	/* crfs_sigqueue.c */
int crfs_fs_prepare(struct crfs_sig_restore *sr, const struct crfs_fs *fs);
void crfs_fs_act(struct crfs_sig_restore *sr, const struct crfs_fs *fs);

/* crfs_timers.c: POSIX timers */
struct crfs_ckpt;
struct task_struct;
int crfs_timers_load_record(struct crfs_image *img, struct crfs_task *task,
			    const struct crfs_rec *rec);
void crfs_timers_free(struct crfs_signal *s);
bool crfs_timers_queued(const struct crfs_signal *s, s32 id, int signo);
int crfs_timers_prepare(const struct crfs_signal *s, char *err_msg);
void crfs_timers_flush_signals(void);
int crfs_timers_checkpoint(struct crfs_ckpt *ck, struct task_struct *t);

#endif /* CRFS_SIG_H */
