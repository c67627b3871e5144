// SPDX-License-Identifier: GPL-2.0
/*
 * A shared pending signal queued again with its siginfo.
 *
 * No exported call queues a siginfo to a thread group's shared pending queue. The
 * signal is queued to the calling thread with its siginfo (send_sig_info()), then its
 * entry is moved, under the siglock, from the thread's private queue to the shared one:
 * it is pending for the process again, with the siginfo it had. This needs the calling
 * thread to take it or every thread of the process to block it, as is the case of a
 * shared signal that was pending at checkpoint; otherwise (another thread would take it
 * and is not woken), and for a signal below SIGRTMIN the thread already has pending
 * (one instance of those is queued), it is sent to the process as from the kernel
 * (SI_KERNEL, the siginfo lost), as before.
 */
#include <linux/list.h>
#include <linux/rcupdate.h>
#include <linux/sched/signal.h>
#include <linux/signal.h>

#include "crfs.h"

/* Whether the caller takes @sig itself, or every thread of its process blocks it. */
static bool no_other_taker(int sig)
{
	struct task_struct *t;
	bool none = true;

	if (!sigismember(&current->blocked, sig))
		return true;
	rcu_read_lock();
	for_each_thread(current, t) {
		if (!sigismember(&t->blocked, sig)) {
			none = false;
			break;
		}
	}
	rcu_read_unlock();
	return none;
}

static unsigned int count_queued(struct sigpending *p, int sig, struct sigqueue **last)
{
	struct sigqueue *q;
	unsigned int n = 0;

	list_for_each_entry(q, &p->list, list) {
		if (q->info.si_signo != sig)
			continue;
		n++;
		*last = q;
	}
	return n;
}

static unsigned int queued(int sig)
{
	struct sigqueue *last;
	unsigned int n;

	spin_lock_irq(&current->sighand->siglock);
	n = count_queued(&current->pending, sig, &last);
	spin_unlock_irq(&current->sighand->siglock);
	return n;
}

/* The entry of @sig queued last to the caller (after @before others) goes shared. */
static void to_shared(int sig, unsigned int before)
{
	struct sigpending *priv = &current->pending;
	struct sigpending *shared = &current->signal->shared_pending;
	struct sigqueue *last = NULL;

	spin_lock_irq(&current->sighand->siglock);
	if (count_queued(priv, sig, &last) == before + 1) {
		list_move_tail(&last->list, &shared->list);
		sigaddset(&shared->signal, sig);
		if (!before)
			sigdelset(&priv->signal, sig);
		recalc_sigpending();
	}
	spin_unlock_irq(&current->sighand->siglock);
}

/* Queue @sig with @info to the caller's process (shared); see the top of this file. */
void crfs_queue_shared(int sig, kernel_siginfo_t *info)
{
	unsigned int before;

	if (!no_other_taker(sig) ||
	    (sig < SIGRTMIN && sigismember(&current->pending.signal, sig))) {
		kill_pid(task_tgid(current), sig, 1);
		return;
	}
	before = queued(sig);
	send_sig_info(sig, info, current);
	to_shared(sig, before);
}
