// SPDX-License-Identifier: GPL-2.0
/*
 * POSIX timers (timer_create(2)) of a process: CRFS_HDR_POSIX_TIMER records.
 *
 * Debian 6.1 exports nothing that creates or arms a POSIX timer (do_timer_create(),
 * the k_clocks are static), so crfs-restart makes them in user space before RESTART, in
 * the process that restores: timer_create() in id order (ids are given in increasing
 * order per process; fillers, deleted at once, for the gaps), then timer_settime() with
 * the time left and the interval. They live in its signal_struct, which the restore keeps.
 *
 * copy-in (EINVAL with the record's offset): only in the task that read its process's
 *   SIGNAL; at most CRFS_MAX_TIMERS; ids >= 0 and increasing; clock REALTIME, MONOTONIC,
 *   BOOTTIME or TAI; notify SIGEV_SIGNAL, SIGEV_NONE or SIGEV_SIGNAL | SIGEV_THREAD_ID
 *   (notify_tid > 0 then, else 0); signo 1.._NSIG (0.._NSIG for SIGEV_NONE); flags within
 *   CRFS_TIMER_PENDING, never with SIGEV_NONE; value and interval at most KTIME_MAX;
 *   overrun >= 0.
 * prepare (the leader; EINVAL with a reason, the caller intact): the caller has exactly
 *   the image's timers, each of the image's clock, notify, signal and value; a queued
 *   SI_TIMER siginfo must name a pending timer of its signal (crfs_timers_queued()).
 * act: the leader drops the restarter's pending signals but the timers' own (they were
 *   armed by crfs-restart and may have fired already); the SI_TIMER siginfo of the image
 *   is not queued again: its timer, armed to fire at once, queues it.
 * checkpoint: under the siglock, signal->posix_timers as timer_gettime() reads it.
 */
#include <linux/hrtimer.h>
#include <linux/math64.h>
#include <linux/posix-timers.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/sort.h>

#include "crfs.h"

#define CRFS_MAX_TIMERS		1024
#define SIGEV_THREAD_SIGNAL	(SIGEV_SIGNAL | SIGEV_THREAD_ID)

static bool known_clock(s32 clockid)
{
	return clockid == CLOCK_REALTIME || clockid == CLOCK_MONOTONIC ||
	       clockid == CLOCK_BOOTTIME || clockid == CLOCK_TAI;
}

static int check_notify(struct crfs_image *img, const struct crfs_rec *rec,
			const struct crfs_hdr_posix_timer *h)
{
	bool none = h->notify == SIGEV_NONE;

	if (h->notify != SIGEV_SIGNAL && !none && h->notify != SIGEV_THREAD_SIGNAL)
		return crfs_image_fail(img, rec, "timer %d: notify %d", h->it_id, h->notify);
	if (h->notify == SIGEV_THREAD_SIGNAL ? h->notify_tid <= 0 : h->notify_tid)
		return crfs_image_fail(img, rec, "timer %d: notify_tid %d with notify %d",
				       h->it_id, h->notify_tid, h->notify);
	if (h->signo < (none ? 0 : 1) || h->signo > _NSIG)
		return crfs_image_fail(img, rec, "timer %d: signo %d", h->it_id, h->signo);
	if ((h->flags & ~CRFS_TIMER_PENDING) || (none && h->flags))
		return crfs_image_fail(img, rec, "timer %d: flags %#x", h->it_id, h->flags);
	return 0;
}

static int check_timer(struct crfs_image *img, const struct crfs_rec *rec,
		       const struct crfs_hdr_posix_timer *h, s32 prev)
{
	if (h->it_id < 0 || h->it_id <= prev)
		return crfs_image_fail(img, rec, "timer id %d after %d", h->it_id, prev);
	if (!known_clock(h->clockid))
		return crfs_image_fail(img, rec,
				       "timer %d: clock %d (REALTIME, MONOTONIC, BOOTTIME or TAI)",
				       h->it_id, h->clockid);
	if (h->value_ns > KTIME_MAX || h->interval_ns > KTIME_MAX || h->overrun < 0)
		return crfs_image_fail(img, rec,
				       "timer %d: value %llu, interval %llu, overrun %lld",
				       h->it_id, h->value_ns, h->interval_ns, h->overrun);
	return check_notify(img, rec, h);
}

/* POSIX_TIMER: one more timer of the process whose SIGNAL @task read. */
int crfs_timers_load_record(struct crfs_image *img, struct crfs_task *task,
			    const struct crfs_rec *rec)
{
	struct crfs_signal *s = task->sig.signal;
	struct crfs_hdr_posix_timer h, *t;
	int ret;

	if (!s || s->owner != task)
		return crfs_image_fail(img, rec, "POSIX_TIMER not after its process's SIGNAL");
	if (s->nr_timers >= CRFS_MAX_TIMERS)
		return crfs_image_fail(img, rec, "more than %d POSIX timers", CRFS_MAX_TIMERS);
	ret = crfs_image_body(img, rec, &h, sizeof(h));
	if (!ret)
		ret = check_timer(img, rec, &h,
				  s->nr_timers ? s->timers[s->nr_timers - 1].it_id : -1);
	if (ret)
		return ret;
	t = krealloc_array(s->timers, s->nr_timers + 1, sizeof(*t), GFP_KERNEL_ACCOUNT);
	if (!t)
		return -ENOMEM;
	s->timers = t;
	t[s->nr_timers++] = h;
	return 0;
}

void crfs_timers_free(struct crfs_signal *s)
{
	kfree(s->timers);
	s->timers = NULL;
	s->nr_timers = 0;
}

/* Whether a queued SI_TIMER siginfo of @signo from timer @id is a pending timer's. */
bool crfs_timers_queued(const struct crfs_signal *s, s32 id, int signo)
{
	u32 i;

	for (i = 0; s && i < s->nr_timers; i++)
		if (s->timers[i].it_id == id)
			return s->timers[i].signo == signo &&
			       (s->timers[i].flags & CRFS_TIMER_PENDING);
	return false;
}

/* ---------------------------------------------------------------- prepare */

/* What the caller's timer @timr is, as a record (no times). */
static void describe(struct k_itimer *timr, struct crfs_hdr_posix_timer *h)
{
	memset(h, 0, sizeof(*h));
	h->it_id = timr->it_id;
	h->clockid = timr->it_clock;
	h->notify = timr->it_sigev_notify;
	h->signo = timr->sigq->info.si_signo;
	h->sigev_value = (unsigned long)timr->sigq->info.si_value.sival_ptr;
	if (h->notify & SIGEV_THREAD_ID)
		h->notify_tid = pid_vnr(timr->it_pid);
}

static int cmp_id(const void *a, const void *b)
{
	const struct crfs_hdr_posix_timer *x = a, *y = b;

	return x->it_id < y->it_id ? -1 : x->it_id > y->it_id;
}

/* The timers of @t's process, at most @max of them, sorted by id; -E2BIG: more. */
static int list_timers(struct task_struct *t, struct crfs_hdr_posix_timer *out,
		       u32 max, void (*fill)(struct k_itimer *, struct crfs_hdr_posix_timer *))
{
	struct sighand_struct *sighand;
	struct k_itimer *timr;
	unsigned long flags;
	u32 n = 0;

	sighand = crfs_ck_lock_sighand(t, &flags);
	if (!sighand)
		return -ESRCH;
	list_for_each_entry(timr, &t->signal->posix_timers, list) {
		if (n == max) {
			n = max + 1;
			break;
		}
		fill(timr, &out[n++]);
	}
	spin_unlock_irqrestore(&sighand->siglock, flags);
	if (n > max)
		return -E2BIG;
	sort(out, n, sizeof(*out), cmp_id, NULL);
	return n;
}

static int compare(const struct crfs_hdr_posix_timer *want,
		   const struct crfs_hdr_posix_timer *got, char *err_msg)
{
	if (want->it_id != got->it_id || want->clockid != got->clockid ||
	    want->notify != got->notify || want->signo != got->signo ||
	    want->sigev_value != got->sigev_value) {
		scnprintf(err_msg, CRFS_ERRMSG_LEN,
			  "timer %d (clock %d, notify %d, signo %d): the caller's is %d (clock %d, notify %d, signo %d)",
			  want->it_id, want->clockid, want->notify, want->signo,
			  got->it_id, got->clockid, got->notify, got->signo);
		return -EINVAL;
	}
	return 0;
}

/* The leader: the caller has the image's timers (crfs-restart made them). */
int crfs_timers_prepare(const struct crfs_signal *s, char *err_msg)
{
	struct crfs_hdr_posix_timer *got;
	u32 want = s ? s->nr_timers : 0, i;
	int n, ret = 0;

	got = kvcalloc(want + 1, sizeof(*got), GFP_KERNEL);
	if (!got)
		return -ENOMEM;
	n = list_timers(current, got, want, describe);
	if (n >= 0 && n != want) {
		scnprintf(err_msg, CRFS_ERRMSG_LEN,
			  "the image has %u POSIX timers, the caller %d", want, n);
		ret = -EINVAL;
	} else if (n < 0) {
		scnprintf(err_msg, CRFS_ERRMSG_LEN,
			  "the image has %u POSIX timers, the caller more", want);
		ret = n == -E2BIG ? -EINVAL : n;
	}
	for (i = 0; !ret && i < want; i++)
		ret = compare(&s->timers[i], &got[i], err_msg);
	kvfree(got);
	return ret;
}

/* ---------------------------------------------------------------- act */

/* The timers' queued signals of @p go to @kept (under the siglock). */
static void take_timer_signals(struct sigpending *p, struct list_head *kept)
{
	struct sigqueue *q, *n;

	list_for_each_entry_safe(q, n, &p->list, list)
		if (q->flags & SIGQUEUE_PREALLOC)
			list_move_tail(&q->list, kept);
}

static void give_back(struct sigpending *p, struct list_head *kept)
{
	struct sigqueue *q;

	list_for_each_entry(q, kept, list)
		sigaddset(&p->signal, q->info.si_signo);
	list_splice_tail_init(kept, &p->list);
}

/*
 * An interval timer that fired while its signal was out of the lists: its signal was
 * flushed and it waits for the dequeue that re-arms it (it_requeue_pending odd).
 */
static void requeue_flushed(struct signal_struct *sig)
{
	struct k_itimer *timr;

	struct sigpending *p;

	list_for_each_entry(timr, &sig->posix_timers, list) {
		if (!timr->it_interval || !(timr->it_requeue_pending & 1) ||
		    !list_empty(&timr->sigq->list))
			continue;
		p = &sig->shared_pending;
		if (timr->it_sigev_notify & SIGEV_THREAD_ID) {
			if (pid_task(timr->it_pid, PIDTYPE_PID) != current)
				continue;	/* another thread's: not flushed */
			p = &current->pending;
		}
		list_add_tail(&timr->sigq->list, &p->list);
		sigaddset(&p->signal, timr->sigq->info.si_signo);
	}
}

/* flush_signals() of the caller, but for its POSIX timers' own queued signals. */
void crfs_timers_flush_signals(void)
{
	struct sighand_struct *sighand = current->sighand;
	LIST_HEAD(priv);
	LIST_HEAD(shared);

	spin_lock_irq(&sighand->siglock);
	take_timer_signals(&current->pending, &priv);
	take_timer_signals(&current->signal->shared_pending, &shared);
	spin_unlock_irq(&sighand->siglock);
	flush_signals(current);
	spin_lock_irq(&sighand->siglock);
	give_back(&current->pending, &priv);
	give_back(&current->signal->shared_pending, &shared);
	rcu_read_lock();
	requeue_flushed(current->signal);
	rcu_read_unlock();
	recalc_sigpending();
	spin_unlock_irq(&sighand->siglock);
}

/* ---------------------------------------------------------------- checkpoint */

/* What timer_gettime() would say is left of @timr, 1 ns for a due one, 0: disarmed. */
static u64 time_left(struct k_itimer *timr, u64 interval)
{
	bool none = timr->it_sigev_notify == SIGEV_NONE;
	s64 left;
	u64 rem;

	if (!timr->it_active && !none && !(interval && (timr->it_requeue_pending & 1)))
		return 0;
	left = ktime_to_ns(hrtimer_expires_remaining(&timr->it.real.timer));
	if (left > 0)
		return left;
	if (!none)
		return 1;
	if (!interval)
		return 0;
	div64_u64_rem((u64)-left, interval, &rem);
	return interval - rem;
}

static void snapshot(struct k_itimer *timr, struct crfs_hdr_posix_timer *h)
{
	describe(timr, h);
	h->interval_ns = ktime_to_ns(timr->it_interval);
	h->overrun = max_t(s64, timr->it_overrun_last, 0);
	if (!known_clock(h->clockid))
		return;		/* refused by the caller */
	if (h->notify != SIGEV_NONE && !list_empty(&timr->sigq->list)) {
		h->flags = CRFS_TIMER_PENDING;
		h->value_ns = 1;	/* its signal is queued: it fires again at once */
		return;
	}
	h->value_ns = time_left(timr, h->interval_ns);
}

/* POSIX_TIMER of each timer of @t's process, by id (at its first task). */
int crfs_timers_checkpoint(struct crfs_ckpt *ck, struct task_struct *t)
{
	struct crfs_hdr_posix_timer *buf;
	int n, i, ret = 0;

	if (list_empty(&t->signal->posix_timers))
		return 0;
	buf = kvcalloc(CRFS_MAX_TIMERS + 1, sizeof(*buf), GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	n = list_timers(t, buf, CRFS_MAX_TIMERS, snapshot);
	if (n == -E2BIG)
		ret = crfs_ck_fail(ck, -EOPNOTSUPP, "pid %d: more than %d POSIX timers",
				   task_pid_vnr(t), CRFS_MAX_TIMERS);
	else if (n < 0)
		ret = n;
	for (i = 0; !ret && i < n; i++) {
		if (!known_clock(buf[i].clockid) || buf[i].notify == SIGEV_THREAD)
			ret = crfs_ck_fail(ck, -EOPNOTSUPP,
					   "pid %d: timer %d (clock %d, notify %d) is not checkpointed",
					   task_pid_vnr(t), buf[i].it_id, buf[i].clockid,
					   buf[i].notify);
		else
			ret = crfs_ck_record(ck, CRFS_HDR_POSIX_TIMER, &buf[i], sizeof(buf[i]));
	}
	kvfree(buf);
	return ret;
}
