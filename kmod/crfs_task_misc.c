// SPDX-License-Identifier: GPL-2.0
/*
 * TASK_MISC: a task's personality and scheduling, its process's THP disable and child
 * subreaper (the record is optional: without it none of them changes).
 *
 * copy-in (EINVAL with the record's offset): once a task; personality not 0xffffffff
 *   (personality(2)'s query); flags only CRFS_TASK_*; policy SCHED_NORMAL, BATCH or IDLE
 *   with rt_priority 0, or FIFO or RR with rt_priority 1..99 (SCHED_DEADLINE is not
 *   restored); nice MIN_NICE..MAX_NICE.
 * prepare (the caller intact, EPERM and a reason): what sched_setattr(2) would ask of the
 *   caller for itself, without CAP_SYS_NICE: a nice below its own within RLIMIT_NICE
 *   (can_nice()), an RT policy within RLIMIT_RTPRIO, leaving SCHED_IDLE as can_nice().
 * act (nothing fails): each thread its personality (as personality(2)), its nice and
 *   policy (sched_setattr_nocheck(), checked above; the LSM hook of sched_setattr(2) is
 *   not run: it is not exported); the last thread of a process its mm's MMF_DISABLE_THP
 *   (as PR_SET_THP_DISABLE) and is_child_subreaper (PR_SET_CHILD_SUBREAPER), and
 *   has_child_subreaper when a process above it in the image is a subreaper (what
 *   PR_SET_CHILD_SUBREAPER propagates to the descendants).
 *
 * Also here: ITIMER_VIRTUAL and ITIMER_PROF of SIGNAL, written by CHECKPOINT, armed by
 * crfs-restart and checked by RESTART (below).
 */
#include <linux/capability.h>
#include <linux/mm_types.h>
#include <linux/mmap_lock.h>
#include <linux/personality.h>
#include <linux/posix-timers.h>
#include <linux/sched.h>
#include <linux/sched/coredump.h>
#include <linux/sched/mm.h>
#include <linux/sched/prio.h>
#include <linux/sched/signal.h>
#include <uapi/linux/sched/types.h>

#include "crfs.h"

static const char *bad_sched(const struct crfs_hdr_task_misc *h)
{
	switch (h->policy) {
	case SCHED_NORMAL:
	case SCHED_BATCH:
	case SCHED_IDLE:
		return h->rt_priority ? "bad rt_priority" : NULL;
	case SCHED_FIFO:
	case SCHED_RR:
		return h->rt_priority < 1 || h->rt_priority >= MAX_RT_PRIO ?
		       "bad rt_priority" : NULL;
	case SCHED_DEADLINE:
		return "SCHED_DEADLINE is not restored";
	default:
		return "unknown policy";
	}
}

int crfs_tm_load(struct crfs_image *img, struct crfs_task *task, const struct crfs_rec *rec)
{
	struct crfs_hdr_task_misc *h = &task->ts.misc;
	const char *bad;
	int ret;

	ret = crfs_image_body(img, rec, h, sizeof(*h));
	if (ret)
		return ret;
	if (h->personality == 0xffffffff)
		return crfs_image_fail(img, rec, "personality 0xffffffff");
	if (h->flags & ~CRFS_TASK_FLAGS)
		return crfs_image_fail(img, rec, "flags %#x", h->flags);
	bad = bad_sched(h);
	if (bad)
		return crfs_image_fail(img, rec, "%s: policy %u rt_priority %u", bad,
				       h->policy, h->rt_priority);
	if (h->nice < MIN_NICE || h->nice > MAX_NICE)
		return crfs_image_fail(img, rec, "nice %d out of [%d, %d]", h->nice,
				       MIN_NICE, MAX_NICE);
	return 0;
}

static bool rt(u32 policy)
{
	return policy == SCHED_FIFO || policy == SCHED_RR;
}

/*
 * As __sched_setscheduler() checks a caller without CAP_SYS_NICE changing itself: true
 * with the reason in @why when it would be refused.
 */
static bool sched_refused(const struct crfs_hdr_task_misc *h, char *why)
{
	unsigned long rtprio = task_rlimit(current, RLIMIT_RTPRIO);

	if (h->nice < task_nice(current) && !can_nice(current, h->nice))
		scnprintf(why, CRFS_ERRMSG_LEN,
			  "nice %d below the caller's %d needs CAP_SYS_NICE or RLIMIT_NICE",
			  h->nice, task_nice(current));
	else if (rt(h->policy) && h->policy != current->policy && !rtprio)
		scnprintf(why, CRFS_ERRMSG_LEN,
			  "policy %u needs CAP_SYS_NICE or RLIMIT_RTPRIO", h->policy);
	else if (rt(h->policy) && h->rt_priority > current->rt_priority &&
		 h->rt_priority > rtprio)
		scnprintf(why, CRFS_ERRMSG_LEN,
			  "rt_priority %u above RLIMIT_RTPRIO %lu needs CAP_SYS_NICE",
			  h->rt_priority, rtprio);
	else if (current->policy == SCHED_IDLE && h->policy != SCHED_IDLE &&
		 !can_nice(current, task_nice(current)))
		scnprintf(why, CRFS_ERRMSG_LEN,
			  "leaving SCHED_IDLE needs CAP_SYS_NICE or RLIMIT_NICE");
	else
		return false;
	return true;
}

int crfs_tm_prepare(const struct crfs_task *task, char *err_msg)
{
	if (!(task->ts.has & CRFS_TS_MISC))
		return 0;
	if (!sched_refused(&task->ts.misc, err_msg))
		return 0;
	if (!capable(CAP_SYS_NICE))
		return -EPERM;
	err_msg[0] = '\0';
	return 0;
}

/* The thread's personality and scheduling. */
void crfs_tm_act_thread(const struct crfs_task *task)
{
	const struct crfs_hdr_task_misc *h = &task->ts.misc;
	struct sched_attr attr = {
		.size = sizeof(attr),
		.sched_policy = h->policy,
		.sched_priority = h->rt_priority,
		.sched_nice = h->nice,
	};
	int ret;

	if (!(task->ts.has & CRFS_TS_MISC))
		return;
	current->personality = h->personality;
	set_user_nice(current, h->nice);	/* kept under an RT policy too */
	ret = sched_setattr_nocheck(current, &attr);
	if (ret)
		pr_notice_ratelimited("crfs: pid %d: policy %u not restored: %d\n",
				      task_pid_nr(current), h->policy, ret);
}

static const struct crfs_task *leader_of(const struct crfs_plan *plan, s32 tgid)
{
	u32 i;

	for (i = 0; i < plan->nr_tasks; i++)
		if (plan->tasks[i].pids.vpid == tgid && plan->tasks[i].pids.vtgid == tgid)
			return &plan->tasks[i];
	return NULL;
}

static bool subreaper(const struct crfs_task *t)
{
	return t && (t->ts.has & CRFS_TS_MISC) &&
	       (t->ts.misc.flags & CRFS_TASK_CHILD_SUBREAPER);
}

/* Whether a process above @t in the image's tree is a child subreaper. */
static bool subreaper_above(const struct crfs_plan *plan, const struct crfs_task *t)
{
	u32 n;

	for (n = 0; t && n < plan->nr_tasks; n++) {
		t = leader_of(plan, t->pids.vppid);
		if (subreaper(t))
			return true;
	}
	return false;
}

/* The last thread of the process: its mm's THP disable and its subreaper flags. */
void crfs_tm_act_last(const struct crfs_plan *plan, u32 index)
{
	const struct crfs_task *leader = leader_of(plan, plan->tasks[index].pids.vtgid);
	struct mm_struct *mm = current->mm;

	if (!leader || !(leader->ts.has & CRFS_TS_MISC))
		return;
	mmap_write_lock(mm);
	if (leader->ts.misc.flags & CRFS_TASK_THP_DISABLE)
		set_bit(MMF_DISABLE_THP, &mm->flags);
	else
		clear_bit(MMF_DISABLE_THP, &mm->flags);
	mmap_write_unlock(mm);
	current->signal->is_child_subreaper = subreaper(leader);
	if (subreaper_above(plan, leader))
		current->signal->has_child_subreaper = 1;
}

/* TASK_MISC of @t (ptrace-stopped by the caller: none of it changes meanwhile). */
int crfs_tm_checkpoint(struct crfs_ckpt *ck, struct task_struct *t)
{
	struct crfs_hdr_task_misc h = {
		.personality = t->personality,
		.policy = t->policy,
		.rt_priority = t->rt_priority,
		.nice = task_nice(t),
	};

	if (t->mm && test_bit(MMF_DISABLE_THP, &t->mm->flags))
		h.flags |= CRFS_TASK_THP_DISABLE;
	if (t->signal->is_child_subreaper)
		h.flags |= CRFS_TASK_CHILD_SUBREAPER;
	return crfs_ck_record(ck, CRFS_HDR_TASK_MISC, &h, sizeof(h));
}

/* ------------------------------------------------------- ITIMER_VIRTUAL, ITIMER_PROF */

/*
 * The time left of @sig's CPU itimer @clock, as getitimer(2) samples it (the group's
 * running cputimer, active while one is armed); 0 when disarmed. Under siglock.
 */
static u64 cpu_itimer_left(struct signal_struct *sig, int clock)
{
	struct task_cputime_atomic *at = &sig->cputimer.cputime_atomic;
	u64 expires = sig->it[clock].expires, now;

	if (!expires)
		return 0;
	now = atomic64_read(&at->utime);
	if (clock == CPUCLOCK_PROF)
		now += atomic64_read(&at->stime);
	return expires > now ? expires - now : NSEC_PER_USEC;
}

/* CHECKPOINT: ITIMER_VIRTUAL and ITIMER_PROF of @sig into SIGNAL @h. Under siglock. */
void crfs_itimers_fill(struct signal_struct *sig, struct ckpt_hdr_signal *h)
{
	h->it_virt_value = cpu_itimer_left(sig, CPUCLOCK_VIRT);
	h->it_virt_incr = sig->it[CPUCLOCK_VIRT].incr;
	h->it_prof_value = cpu_itimer_left(sig, CPUCLOCK_PROF);
	h->it_prof_incr = sig->it[CPUCLOCK_PROF].incr;
}

/* Whether the caller's itimer @clock is armed as (@value, @incr) asks, to the µs. */
static bool cpu_itimer_as(int clock, u64 value, u64 incr)
{
	const struct cpu_itimer *it = &current->signal->it[clock];
	u64 have = it->incr;

	return !!it->expires == !!value &&
	       (have > incr ? have - incr : incr - have) < NSEC_PER_USEC;
}

/*
 * RESTART: set_process_cpu_timer() is not exported, so crfs-restart arms the image's
 * ITIMER_VIRTUAL and ITIMER_PROF with setitimer(2) before it calls RESTART; they live in
 * the signal_struct, which the restore keeps. Checked here: each armed or not as in the
 * image, with its interval (the time left is the caller's CPU time since, spent).
 */
const char *crfs_itimers_check(const struct ckpt_hdr_signal *h)
{
	const char *why = NULL;

	spin_lock_irq(&current->sighand->siglock);
	if (!cpu_itimer_as(CPUCLOCK_VIRT, h->it_virt_value, h->it_virt_incr))
		why = "ITIMER_VIRTUAL";
	else if (!cpu_itimer_as(CPUCLOCK_PROF, h->it_prof_value, h->it_prof_incr))
		why = "ITIMER_PROF";
	spin_unlock_irq(&current->sighand->siglock);
	return why;
}
