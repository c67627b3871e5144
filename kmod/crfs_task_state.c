// SPDX-License-Identifier: GPL-2.0
/*
 * A task's state beyond its memory, registers, files and signals.
 *
 * copy-in (validated while read, EINVAL with the record's offset):
 *   OOM_SCORE_ADJ  once a task, OOM_SCORE_ADJ_MIN..OOM_SCORE_ADJ_MAX;
 *   RSEQ           once a task; none (rseq 0), or a struct rseq of its size in user
 *                  space, aligned as rseq(2) requires.
 *   SECCOMP        once a task; SECCOMP_MODE_STRICT only (a filter is not restored).
 *   TASK_MISC      once a task: personality, sched, THP, subreaper (crfs_task_misc.c).
 * prepare (the caller intact, an errno and a reason): an oom_score_adj below the
 *   caller's oom_score_adj_min needs CAP_SYS_RESOURCE, as for /proc/PID/oom_score_adj;
 *   strict mode needs a caller in no seccomp mode (a filter of its own would be lost).
 * act (nothing fails): the process's leader sets oom_score_adj; every thread its rseq
 *   registration (the kernel refreshes the cpu ids in it on the way back to user
 *   space); the last thread of a process that was stopped (TASK.state) stops it again
 *   with a SIGSTOP, as a stop signal would have. At the very end of RESTART, after its
 *   last action, a task whose image says strict enters SECCOMP_MODE_STRICT as
 *   prctl(PR_SET_SECCOMP) would (the mode and the syscall-work bit under siglock; the
 *   speculation mitigation prctl may add is not, arch_seccomp_spec_mitigate() is not
 *   exported): its next syscall is checked.
 */
#include <linux/capability.h>
#include <linux/oom.h>
#include <linux/rseq.h>
#include <linux/seccomp.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/sched/task.h>
#include <linux/slab.h>

#include "crfs.h"

/* TASK.state bit of a stopped task (__TASK_STOPPED, the same in 2.6.33 and 6.1) */
#define CKPT_TASK_STOPPED	0x4
#define CRFS_RSEQ_LEN		32	/* sizeof(struct rseq) before 6.3 */
/* a zombie's TASK.state (as crfs checkpoint's /proc "Z") and exit_state (2.6.33's) */
#define CKPT_TASK_ZOMBIE	0x20
#define CKPT_EXIT_ZOMBIE	16

bool crfs_ts_record(u32 type)
{
	return type == CRFS_HDR_OOM_SCORE_ADJ || type == CRFS_HDR_RSEQ ||
	       type == CRFS_HDR_SECCOMP || type == CRFS_HDR_TASK_MISC;
}

static int load_seccomp(struct crfs_image *img, struct crfs_task *task,
			const struct crfs_rec *rec)
{
	struct crfs_hdr_seccomp h;
	int ret;

	ret = crfs_image_body(img, rec, &h, sizeof(h));
	if (ret)
		return ret;
	if (h.mode == SECCOMP_MODE_FILTER)
		return crfs_image_fail(img, rec, "seccomp filter mode (2) is not restored");
	if (h.mode != SECCOMP_MODE_STRICT)
		return crfs_image_fail(img, rec, "seccomp mode %u", h.mode);
	task->ts.seccomp = h.mode;
	return 0;
}

static unsigned int ts_bit(u32 type)
{
	if (type == CRFS_HDR_RSEQ)
		return CRFS_TS_RSEQ;
	if (type == CRFS_HDR_TASK_MISC)
		return CRFS_TS_MISC;
	return type == CRFS_HDR_SECCOMP ? CRFS_TS_SECCOMP : CRFS_TS_OOM;
}

static int load_oom(struct crfs_image *img, struct crfs_task *task,
		    const struct crfs_rec *rec)
{
	struct crfs_hdr_oom_score_adj h;
	int ret;

	ret = crfs_image_body(img, rec, &h, sizeof(h));
	if (ret)
		return ret;
	if (h.oom_score_adj < OOM_SCORE_ADJ_MIN || h.oom_score_adj > OOM_SCORE_ADJ_MAX)
		return crfs_image_fail(img, rec, "oom_score_adj %d out of [%d, %d]",
				       h.oom_score_adj, OOM_SCORE_ADJ_MIN,
				       OOM_SCORE_ADJ_MAX);
	task->ts.oom_score_adj = h.oom_score_adj;
	return 0;
}

static int load_rseq(struct crfs_image *img, struct crfs_task *task,
		     const struct crfs_rec *rec)
{
	struct crfs_hdr_rseq *h = &task->ts.rseq;
	int ret;

	ret = crfs_image_body(img, rec, h, sizeof(*h));
	if (ret || !h->rseq)
		return ret;
	if (h->rseq_len != CRFS_RSEQ_LEN || !IS_ALIGNED(h->rseq, CRFS_RSEQ_LEN) ||
	    h->rseq >= TASK_SIZE_MAX - CRFS_RSEQ_LEN)
		return crfs_image_fail(img, rec,
				       "RSEQ: a struct rseq of %u bytes at %#llx",
				       h->rseq_len, h->rseq);
	return 0;
}

int crfs_ts_load_record(struct crfs_image *img, struct crfs_task *task,
			const struct crfs_rec *rec)
{
	unsigned int bit = ts_bit(rec->type);

	if (task->h.exit_state)
		return crfs_image_fail(img, rec, "a record of a task that has exited");
	if (task->ts.has & bit)
		return crfs_image_fail(img, rec, "second one for pid %d",
				       task->pids.vpid);
	task->ts.has |= bit;
	if (bit == CRFS_TS_RSEQ)
		return load_rseq(img, task, rec);
	if (bit == CRFS_TS_SECCOMP)
		return load_seccomp(img, task, rec);
	if (bit == CRFS_TS_MISC)
		return crfs_tm_load(img, task, rec);
	return load_oom(img, task, rec);
}

static int caller_seccomp(void)
{
#ifdef CONFIG_SECCOMP
	return READ_ONCE(current->seccomp.mode);
#else
	return 0;
#endif
}

/*
 * Only what the caller could do itself through /proc/self/oom_score_adj; strict mode
 * only for a caller in none (a filter it runs under would no longer be applied).
 */
int crfs_ts_prepare(const struct crfs_task *task, bool process, char *err_msg)
{
	s32 min = READ_ONCE(current->signal->oom_score_adj_min);
	int ret = crfs_tm_prepare(task, err_msg);

	if (ret)
		return ret;
	if (task->ts.seccomp && caller_seccomp()) {
		scnprintf(err_msg, CRFS_ERRMSG_LEN,
			  "seccomp strict mode: the caller is in seccomp mode %d itself",
			  caller_seccomp());
		return -EPERM;
	}
	if (!process || !(task->ts.has & CRFS_TS_OOM))
		return 0;
	if (task->ts.oom_score_adj < min && !capable(CAP_SYS_RESOURCE)) {
		scnprintf(err_msg, CRFS_ERRMSG_LEN,
			  "oom_score_adj %d below the caller's minimum %d needs CAP_SYS_RESOURCE",
			  task->ts.oom_score_adj, min);
		return -EACCES;
	}
	return 0;
}

void crfs_ts_act_process(const struct crfs_task *task)
{
	if (!(task->ts.has & CRFS_TS_OOM))
		return;
	task_lock(current);
	WRITE_ONCE(current->signal->oom_score_adj, task->ts.oom_score_adj);
	task_unlock(current);
}

/* After restore_task_fields() dropped the caller's registration. */
void crfs_ts_act_thread(const struct crfs_task *task)
{
	crfs_tm_act_thread(task);
#ifdef CONFIG_RSEQ
	const struct crfs_hdr_rseq *h = &task->ts.rseq;

	if (!(task->ts.has & CRFS_TS_RSEQ) || !h->rseq)
		return;
	current->rseq = (struct rseq __user *)(unsigned long)h->rseq;
	current->rseq_sig = h->rseq_sig;
	current->rseq_event_mask = 0;
	rseq_set_notify_resume(current);
#endif
}

/* The last step of RESTART: strict mode, only for a task whose image says so. */
void crfs_ts_act_seccomp(const struct crfs_task *task)
{
#ifdef CONFIG_SECCOMP
	if (task->ts.seccomp != SECCOMP_MODE_STRICT)
		return;
	spin_lock_irq(&current->sighand->siglock);
	current->seccomp.mode = SECCOMP_MODE_STRICT;
	/* the mode before the work bit, as seccomp_assign_mode() orders them */
	smp_mb__before_atomic();
	set_task_syscall_work(current, SECCOMP);
	spin_unlock_irq(&current->sighand->siglock);
#endif
}

/* The last thread of the process restored: stopped again if a task of it was. */
void crfs_ts_act_last(const struct crfs_plan *plan, u32 index)
{
	s32 tgid = plan->tasks[index].pids.vtgid;
	u32 i;

	crfs_tm_act_last(plan, index);
	for (i = 0; i < plan->nr_tasks; i++) {
		if (plan->tasks[i].pids.vtgid != tgid || plan->tasks[i].h.exit_state ||
		    !(plan->tasks[i].h.state & CKPT_TASK_STOPPED))
			continue;
		kill_pid(task_tgid(current), SIGSTOP, 1);
		return;
	}
}

/* ---------------------------------------------------------------- checkpoint */

/* TASK.state of @t, stopped or not, for CHECKPOINT (whose caller ptrace-stopped it). */
u32 crfs_ts_ckpt_state(struct task_struct *t)
{
	return READ_ONCE(t->signal->flags) & SIGNAL_STOP_STOPPED ? CKPT_TASK_STOPPED : 0;
}

/* SECCOMP when @t is in a seccomp mode (the caller ptrace-stopped it: it cannot change). */
static int ckpt_seccomp(struct crfs_ckpt *ck, struct task_struct *t)
{
	struct crfs_hdr_seccomp h = { 0 };

#ifdef CONFIG_SECCOMP
	h.mode = READ_ONCE(t->seccomp.mode);
#endif
	if (!h.mode)
		return 0;
	return crfs_ck_record(ck, CRFS_HDR_SECCOMP, &h, sizeof(h));
}

/*
 * After SIGNAL_TASK [SIGALTSTACK]: OOM_SCORE_ADJ at the first task of a process (when
 * not 0), RSEQ when the task registered one, SECCOMP when it is in a seccomp mode.
 */
int crfs_ts_checkpoint(struct crfs_ckpt *ck, struct task_struct *t, bool new_group)
{
	struct crfs_hdr_oom_score_adj oom = { 0 };
	struct crfs_hdr_rseq rseq = { 0 };
	int ret = 0;

	oom.oom_score_adj = READ_ONCE(t->signal->oom_score_adj);
	if (new_group && oom.oom_score_adj)
		ret = crfs_ck_record(ck, CRFS_HDR_OOM_SCORE_ADJ, &oom, sizeof(oom));
#ifdef CONFIG_RSEQ
	if (!ret && t->rseq) {
		rseq.rseq = (unsigned long)t->rseq;
		rseq.rseq_len = CRFS_RSEQ_LEN;
		rseq.rseq_sig = t->rseq_sig;
		ret = crfs_ck_record(ck, CRFS_HDR_RSEQ, &rseq, sizeof(rseq));
	}
#endif
	if (!ret)
		ret = ckpt_seccomp(ck, t);
	return ret ? ret : crfs_tm_checkpoint(ck, t);
}

/*
 * Zombies: children of a checkpointed process that exited and wait for it. Their parent
 * is ptrace-stopped by the caller, so it cannot reap them meanwhile: what they are is
 * copied when they are met, and they are written after the live tasks, as a TASK (with
 * exit_state, exit_code, exit_signal) and its comm, nothing else (as linux-cr did).
 */
struct crfs_ck_zombie {
	struct ckpt_pids pids;
	u32 exit_code;
	u32 exit_signal;
	char comm[TASK_COMM_LEN];
};

struct crfs_ck_zombies {
	u32 nr;
	struct crfs_ck_zombie z[CRFS_MAX_TASKS];
};

struct crfs_ck_zombies *crfs_ts_zombies_alloc(void)
{
	return kvzalloc(sizeof(struct crfs_ck_zombies), GFP_KERNEL);
}

void crfs_ts_zombies_free(struct crfs_ck_zombies *zs)
{
	kvfree(zs);
}

u32 crfs_ts_nr_zombies(const struct crfs_ck_zombies *zs)
{
	return zs ? zs->nr : 0;
}

/*
 * @c, a child of a process checkpointed, when it is a zombie process (not a leader
 * whose threads go on): 1 if kept, 0 if not a zombie. @used: the other tasks met.
 * Under rcu_read_lock().
 */
int crfs_ts_add_zombie(struct crfs_ckpt *ck, struct crfs_ck_zombies *zs,
		       struct task_struct *c, u32 used)
{
	struct crfs_ck_zombie *z;

	if (READ_ONCE(c->exit_state) != EXIT_ZOMBIE || !thread_group_empty(c))
		return 0;
	if (used + zs->nr >= CRFS_MAX_TASKS)
		return crfs_ck_fail(ck, -EOPNOTSUPP, "more than %d tasks", CRFS_MAX_TASKS);
	z = &zs->z[zs->nr++];
	z->pids.vpid = task_pid_vnr(c);
	z->pids.vtgid = z->pids.vpid;
	z->pids.vppid = task_tgid_vnr(rcu_dereference(c->real_parent));
	z->pids.vpgid = task_pgrp_vnr(c);
	z->pids.vsid = task_session_vnr(c);
	z->exit_code = c->exit_code;
	z->exit_signal = c->exit_signal;
	get_task_comm(z->comm, c);
	return 1;
}

/* Their ckpt_pids, after the live tasks' in the TREE's BUFFER. */
int crfs_ts_write_zombie_pids(struct crfs_ckpt *ck, const struct crfs_ck_zombies *zs)
{
	u32 i;
	int ret = 0;

	for (i = 0; !ret && zs && i < zs->nr; i++)
		ret = crfs_ck_write(ck, &zs->z[i].pids, sizeof(zs->z[i].pids));
	return ret;
}

/* TASK STRING{comm} of each zombie, after the live tasks. */
int crfs_ts_write_zombies(struct crfs_ckpt *ck, const struct crfs_ck_zombies *zs)
{
	struct ckpt_hdr_task h;
	u32 i;
	int ret = 0;

	for (i = 0; !ret && zs && i < zs->nr; i++) {
		memset(&h, 0, sizeof(h));
		h.state = CKPT_TASK_ZOMBIE;
		h.exit_state = CKPT_EXIT_ZOMBIE;
		h.exit_code = zs->z[i].exit_code;
		h.exit_signal = zs->z[i].exit_signal;
		ret = crfs_ck_record(ck, CKPT_HDR_TASK, &h, sizeof(h));
		if (!ret)
			ret = crfs_ck_frame(ck, CKPT_HDR_STRING, TASK_COMM_LEN);
		if (!ret)
			ret = crfs_ck_write(ck, zs->z[i].comm, TASK_COMM_LEN);
	}
	return ret;
}
