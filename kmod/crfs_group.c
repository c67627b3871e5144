// SPDX-License-Identifier: GPL-2.0
/*
 * The rendezvous of a multi-threaded restore.
 *
 * A process of N threads in the image is restored by N threads of the caller, each in its
 * own CRFS_IOC_RESTART call with its own task_index: the leader (the image's thread group
 * leader, restored into the caller's main thread) rebuilds the shared address space, every
 * thread restores its own registers, FPU and per-thread pointers. The calls meet in a
 * struct crfs_group, keyed by the caller's thread group (its signal_struct):
 *
 *   GATHERING	the threads join, prepare (copy-in, validate) and arrive; any failure
 *		before the commit cancels the group, so that every call returns an errno
 *		with the caller intact;
 *   COMMITTED	the leader saw every other thread of the caller arrive: the point of no
 *		return for all of them (they are asleep in the kernel while it rewrites the
 *		memory under them);
 *   RESTORED	the memory is the image's: each thread finishes its own restore;
 *   FAILED	cancelled before the commit, or the memory restore failed (the leader
 *		has sent SIGKILL to the whole process).
 *
 * Waiting is killable, and bounded by the group_timeout parameter while gathering.
 */
#include <linux/bitmap.h>
#include <linux/list.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/wait.h>

#include "crfs.h"

static unsigned int group_timeout = 60;
module_param(group_timeout, uint, 0644);
MODULE_PARM_DESC(group_timeout,
		 "seconds the threads of a process restore wait for each other (default 60)");

static long timeout_jiffies(void)
{
	return (long)min_t(u64, (u64)READ_ONCE(group_timeout) * HZ, MAX_SCHEDULE_TIMEOUT - 1);
}

enum crfs_group_state {
	CRFS_GROUP_GATHERING,
	CRFS_GROUP_COMMITTED,
	CRFS_GROUP_RESTORED,
	CRFS_GROUP_FAILED,
};

struct crfs_group {
	struct list_head node;
	const struct signal_struct *key;	/* the caller's thread group */
	const struct inode *image;		/* every call restores the same image */
	u32 nr_tasks;				/* of the image */
	u32 nr_threads;				/* of the process restored */
	u32 users;				/* calls in the group */
	u32 arrived;				/* non-leader threads prepared */
	enum crfs_group_state state;
	bool committed;				/* the point of no return was passed */
	u32 masked;				/* threads whose signal mask is restored */
	bool settled;				/* the leader installed the fd table */
	unsigned long *claimed;			/* image task indices taken */
	wait_queue_head_t wq;
};

static LIST_HEAD(crfs_groups);
static DEFINE_MUTEX(crfs_groups_lock);	/* the list and every group's fields */

static struct crfs_group *group_alloc(const struct inode *image, u32 nr_tasks,
				      u32 nr_threads)
{
	struct crfs_group *g = kzalloc(sizeof(*g), GFP_KERNEL);

	if (!g)
		return NULL;
	g->claimed = bitmap_zalloc(nr_tasks, GFP_KERNEL);
	if (!g->claimed) {
		kfree(g);
		return NULL;
	}
	g->key = current->signal;
	g->image = image;
	g->nr_tasks = nr_tasks;
	g->nr_threads = nr_threads;
	g->state = CRFS_GROUP_GATHERING;
	init_waitqueue_head(&g->wq);
	return g;
}

static void group_free(struct crfs_group *g)
{
	if (g) {
		bitmap_free(g->claimed);
		kfree(g);
	}
}

/*
 * Join (or open) the group of the caller's thread group to restore task @index of the
 * image open as @image. -EINVAL: another thread restores another image (or a process of
 * another size); -ECANCELED: another thread's call already failed (that one reports the
 * cause); -EBUSY: the task is taken, or the group is past gathering.
 */
int crfs_group_join(const struct file *image, u32 nr_tasks, u32 index,
		    u32 nr_threads, struct crfs_group **out)
{
	const struct inode *inode = file_inode(image);
	struct crfs_group *g, *fresh;
	int ret = 0;

	fresh = group_alloc(inode, nr_tasks, nr_threads);
	if (!fresh)
		return -ENOMEM;
	mutex_lock(&crfs_groups_lock);
	list_for_each_entry(g, &crfs_groups, node)
		if (g->key == current->signal)
			goto found;
	g = fresh;
	fresh = NULL;
	list_add(&g->node, &crfs_groups);
found:
	if (g->image != inode || g->nr_tasks != nr_tasks || g->nr_threads != nr_threads)
		ret = -EINVAL;
	else if (g->state == CRFS_GROUP_FAILED)
		ret = -ECANCELED;
	else if (g->state != CRFS_GROUP_GATHERING || test_and_set_bit(index, g->claimed))
		ret = -EBUSY;
	else
		g->users++;
	mutex_unlock(&crfs_groups_lock);
	group_free(fresh);
	*out = ret ? NULL : g;
	return ret;
}

void crfs_group_leave(struct crfs_group *g)
{
	bool last;

	mutex_lock(&crfs_groups_lock);
	last = !--g->users;
	if (last)
		list_del(&g->node);
	mutex_unlock(&crfs_groups_lock);
	if (last)
		group_free(g);
}

static void set_state(struct crfs_group *g, enum crfs_group_state state)
{
	WRITE_ONCE(g->state, state);
	wake_up_all(&g->wq);
}

/* A failure before the commit: every call of the group returns an errno. */
void crfs_group_cancel(struct crfs_group *g)
{
	mutex_lock(&crfs_groups_lock);
	if (g->state == CRFS_GROUP_GATHERING)
		set_state(g, CRFS_GROUP_FAILED);
	mutex_unlock(&crfs_groups_lock);
}

/*
 * The leader, prepared: wait until every other thread of the caller has arrived, then
 * commit. 0 when committed; else the group is cancelled: -ECANCELED (a thread failed),
 * -ETIMEDOUT, -EINTR, or -EBUSY (the caller has threads outside the group, or its mm is
 * used elsewhere).
 */
int crfs_group_gather(struct crfs_group *g)
{
	long left;
	int ret = 0;

	left = wait_event_killable_timeout(g->wq,
					   READ_ONCE(g->arrived) + 1 == g->nr_threads ||
					   READ_ONCE(g->state) != CRFS_GROUP_GATHERING,
					   timeout_jiffies());
	mutex_lock(&crfs_groups_lock);
	if (g->state != CRFS_GROUP_GATHERING)
		ret = -ECANCELED;
	else if (g->arrived + 1 != g->nr_threads)
		ret = left < 0 ? -EINTR : -ETIMEDOUT;
	else if (get_nr_threads(current) != g->nr_threads ||
		 atomic_read(&current->mm->mm_users) != g->nr_threads)
		ret = -EBUSY;
	g->committed = !ret;
	set_state(g, ret ? CRFS_GROUP_FAILED : CRFS_GROUP_COMMITTED);
	mutex_unlock(&crfs_groups_lock);
	return ret;
}

/* The leader, after the memory restore: the threads go on, or give up. */
void crfs_group_restored(struct crfs_group *g, bool ok)
{
	mutex_lock(&crfs_groups_lock);
	set_state(g, ok ? CRFS_GROUP_RESTORED : CRFS_GROUP_FAILED);
	mutex_unlock(&crfs_groups_lock);
}

/*
 * A thread restored its signal mask: true for the last one, which may then queue the
 * process's shared pending signals (no thread of the caller's can take one meant for
 * a thread that blocks it in the image).
 */
bool crfs_group_masked(struct crfs_group *g)
{
	bool last;

	mutex_lock(&crfs_groups_lock);
	last = ++g->masked == g->nr_threads;
	mutex_unlock(&crfs_groups_lock);
	return last;
}

/*
 * A non-leader thread, prepared: arrive and wait for the leader. 0 once the memory is
 * restored. Otherwise *@committed says whether the point of no return was passed (then
 * the process is being killed); before it: -ECANCELED, -ETIMEDOUT or -EINTR.
 */
int crfs_group_arrive(struct crfs_group *g, bool *committed)
{
	enum crfs_group_state state;
	long left;

	mutex_lock(&crfs_groups_lock);
	g->arrived++;
	wake_up_all(&g->wq);
	mutex_unlock(&crfs_groups_lock);
	left = wait_event_killable_timeout(g->wq,
					   READ_ONCE(g->state) != CRFS_GROUP_GATHERING,
					   timeout_jiffies());
	mutex_lock(&crfs_groups_lock);
	state = g->state;
	if (state == CRFS_GROUP_GATHERING) {
		g->arrived--;		/* the leader will not commit without us */
		set_state(g, CRFS_GROUP_FAILED);
	}
	*committed = g->committed;
	mutex_unlock(&crfs_groups_lock);
	if (state == CRFS_GROUP_GATHERING)
		return left < 0 ? -EINTR : -ETIMEDOUT;
	if (state == CRFS_GROUP_COMMITTED &&
	    wait_event_killable(g->wq, READ_ONCE(g->state) != CRFS_GROUP_COMMITTED))
		return -EINTR;
	return READ_ONCE(g->state) == CRFS_GROUP_RESTORED ? 0 : -ECANCELED;
}

/*
 * The leader, on its way back to user space: the process's fd table is the image's (or
 * the leader is dying). The other threads wait for this before they run again: they
 * share the table, and a thread must not find its fds missing.
 */
void crfs_group_settle(struct crfs_group *g)
{
	mutex_lock(&crfs_groups_lock);
	g->settled = true;
	wake_up_all(&g->wq);
	mutex_unlock(&crfs_groups_lock);
}

/*
 * A non-leader thread, on its way back to user space: until the leader settled, or a
 * fatal signal (then the thread runs no user code again).
 */
void crfs_group_wait_settled(struct crfs_group *g)
{
	wait_event_killable(g->wq, READ_ONCE(g->settled));
}
