// SPDX-License-Identifier: GPL-2.0
/*
 * Lazy restart (CRFS_RESTART_LAZY): the page server's side.
 *
 * A lazy RESTART maps the private writable anonymous VMAs of the image but leaves their
 * pages out (crfs_lazy_vma()). Its leader publishes a struct crfs_lazy, keyed by its pid,
 * listing those VMAs and where their pages are in the image, then, on its way back to
 * user space (after its fds were installed, which closes the restarter's report pipe),
 * sleeps until its server says GO (crfs_lazy_wait()): its real parent, or, for the
 * processes of a tree, the parent of the tree's root. The server
 * reads the list (CRFS_LAZY_RANGES), registers each VMA with a userfaultfd the process
 * made before RESTART (uffd ioctls act on the mm the uffd was made in, which a restore
 * keeps), and says CRFS_LAZY_GO with it. The process checks that every VMA is registered
 * with that userfaultfd, else it is killed; then it runs, and its first touch of a page
 * waits for the server's UFFDIO_COPY.
 *
 * From RANGES on, the release of the /dev/crfs file that asked (the server ends or dies)
 * kills the process, with every descendant of the server: a tree whose server dies before
 * every GO does not wait for lazy_timeout. From GO on, the module keeps a reference to the
 * userfaultfd, and that release kills the process before the reference is dropped: were
 * the userfaultfd released first, its VMAs would be unregistered and the program would
 * fault in zero pages where its data was. DONE (every page is in) lets the process go on
 * without the server.
 *
 * A fork before DONE: the server asks UFFD_FEATURE_EVENT_FORK, so the child's VMAs are
 * registered with a new userfaultfd the server receives and serves too. It lends that one
 * to the module (CRFS_LAZY_FORK). The release kills every descendant of the server (all
 * forked from the program; the server is their subreaper, so that orphans stay below it),
 * not only the restored process, before any userfaultfd is dropped.
 */
#include <linux/completion.h>
#include <linux/file.h>
#include <linux/kref.h>
#include <linux/magic.h>
#include <linux/mm.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/pid.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "crfs.h"

static unsigned int lazy_timeout = 60;
module_param(lazy_timeout, uint, 0644);
MODULE_PARM_DESC(lazy_timeout,
		 "seconds a lazily restored process waits for its server's GO (default 60)");

struct crfs_lazy {
	struct list_head node;		/* in lazy_list, while listed */
	struct kref ref;
	struct pid *pid;		/* the restored process */
	struct completion go;
	struct file *owner;		/* the /dev/crfs file that asked RANGES, then GO */
	struct file *uffd;		/* from GO to DONE or the owner's release */
	struct pid *server;		/* the process that asked them */
	struct file *forks[CRFS_LAZY_MAX_FORKS];	/* children's userfaultfds */
	u32 nr_forks;
	bool listed;
	bool started;			/* GO was said */
	u32 nr_ranges;
	struct crfs_lazy_range ranges[];
};

static LIST_HEAD(lazy_list);
static DEFINE_MUTEX(lazy_lock);

/* A VMA whose pages a lazy restore leaves out: private, anonymous, writable. */
bool crfs_lazy_vma(const struct crfs_vma *vma)
{
	return vma->h.vma_type == CKPT_VMA_ANON && vma->h.vm_flags & VM_WRITE;
}

static u32 count_ranges(const struct crfs_mm *mm)
{
	u32 i, n = 0;

	for (i = 0; i < mm->h.map_count; i++)
		if (crfs_lazy_vma(&mm->vmas[i]))
			n += 1 + mm->vmas[i].nr_runs;
	return n;
}

/* The ranges of @mm left out by a lazy restore, not yet published. */
struct crfs_lazy *crfs_lazy_new(const struct crfs_mm *mm)
{
	u32 i, r, n = count_ranges(mm);
	struct crfs_lazy_range *out;
	const struct crfs_vma *vma;
	struct crfs_lazy *l;

	l = kvzalloc(struct_size(l, ranges, n), GFP_KERNEL_ACCOUNT);
	if (!l)
		return NULL;
	kref_init(&l->ref);
	init_completion(&l->go);
	INIT_LIST_HEAD(&l->node);
	out = l->ranges;
	for (i = 0; i < mm->h.map_count; i++) {
		vma = &mm->vmas[i];
		if (!crfs_lazy_vma(vma))
			continue;
		*out++ = (struct crfs_lazy_range){ .addr = vma->h.vm_start,
			.len = vma->h.vm_end - vma->h.vm_start, .pos = -1 };
		for (r = 0; r < vma->nr_runs; r++)
			*out++ = (struct crfs_lazy_range){ .addr = vma->runs[r].addr,
				.len = (u64)vma->runs[r].nr_pages << PAGE_SHIFT,
				.pos = vma->runs[r].pos };
	}
	l->nr_ranges = n;
	return l;
}

static void lazy_free(struct kref *ref)
{
	struct crfs_lazy *l = container_of(ref, struct crfs_lazy, ref);
	u32 i;

	if (l->uffd)
		fput(l->uffd);
	for (i = 0; i < l->nr_forks; i++)
		fput(l->forks[i]);
	put_pid(l->server);
	put_pid(l->pid);
	kvfree(l);
}

void crfs_lazy_put(struct crfs_lazy *l)
{
	if (l)
		kref_put(&l->ref, lazy_free);
}

/* Off the list (with lazy_lock held); drops the list's reference. */
static void unlist(struct crfs_lazy *l)
{
	if (!l->listed)
		return;
	list_del_init(&l->node);
	l->listed = false;
	kref_put(&l->ref, lazy_free);
}

/* A restore that failed before its wait: off the list, dropped. */
void crfs_lazy_abandon(struct crfs_lazy *l)
{
	if (!l)
		return;
	mutex_lock(&lazy_lock);
	if (!l->started)
		unlist(l);
	mutex_unlock(&lazy_lock);
	crfs_lazy_put(l);
}

/* Listed under the calling process's pid: the server may ask for it now. */
void crfs_lazy_publish(struct crfs_lazy *l)
{
	mutex_lock(&lazy_lock);
	l->pid = get_task_pid(current, PIDTYPE_PID);
	kref_get(&l->ref);
	list_add(&l->node, &lazy_list);
	l->listed = true;
	mutex_unlock(&lazy_lock);
}

static bool registered(const struct vm_area_struct *vma, const struct file *uffd)
{
#ifdef CONFIG_USERFAULTFD
	return vma->vm_flags & VM_UFFD_MISSING &&
	       vma->vm_userfaultfd_ctx.ctx == uffd->private_data;
#else
	return false;
#endif
}

/* Every range to register is covered by VMAs registered (MISSING) with the server's uffd. */
static int check_registered(const struct crfs_lazy *l)
{
	struct mm_struct *mm = current->mm;
	struct vm_area_struct *vma;
	u64 addr, end;
	u32 i;
	int ret = 0;

	mmap_read_lock(mm);
	for (i = 0; !ret && i < l->nr_ranges; i++) {
		if (l->ranges[i].pos != -1)
			continue;
		end = l->ranges[i].addr + l->ranges[i].len;
		for (addr = l->ranges[i].addr; addr < end; addr = vma->vm_end) {
			vma = find_vma(mm, addr);
			if (!vma || vma->vm_start > addr || !registered(vma, l->uffd)) {
				ret = -EINVAL;
				break;
			}
		}
	}
	mmap_read_unlock(mm);
	return ret;
}

/*
 * The restored process, before its first instruction: wait (killable, lazy_timeout
 * seconds at most) for GO, then check the registration. 0, or an errno: the caller
 * kills the process.
 */
int crfs_lazy_wait(struct crfs_lazy *l)
{
	u64 limit = min_t(u64, (u64)READ_ONCE(lazy_timeout) * HZ, MAX_SCHEDULE_TIMEOUT - 1);
	long left;
	int ret;

	if (current->flags & PF_EXITING)
		left = -EINTR;
	else
		left = wait_for_completion_killable_timeout(&l->go, limit);
	mutex_lock(&lazy_lock);
	ret = l->started ? 0 : left < 0 ? (int)left : -ETIMEDOUT;
	if (ret)
		unlist(l);
	mutex_unlock(&lazy_lock);
	if (!ret)
		ret = check_registered(l);
	if (ret)
		pr_warn_ratelimited("crfs: pid %d: lazy restore %s (%d): killed\n",
				    task_pid_nr(current), ret == -EINVAL ?
				    "not registered with the server's userfaultfd" :
				    "got no GO from its server", ret);
	return ret;
}

/* The listed restore of the process @pid, or NULL (lazy_lock held). */
static struct crfs_lazy *listed(struct pid *pid)
{
	struct crfs_lazy *l;

	list_for_each_entry(l, &lazy_list, node)
		if (l->pid == pid)
			return l;
	return NULL;
}

/*
 * Whether the caller may serve @task: it is its real parent, or an ancestor of which every
 * process in between is itself a listed lazy restore (a tree restarted lazily: its server
 * is the parent of its root). The chain ends at a process not listed (init at the latest).
 * RCU and lazy_lock held.
 */
static bool serves(struct task_struct *task)
{
	struct task_struct *parent;

	for (;;) {
		parent = rcu_dereference(task->real_parent);
		if (parent->tgid == current->tgid)
			return true;
		if (parent == task || !listed(task_tgid(parent)))
			return false;
		task = parent;
	}
}

/* The listed restore of pid @nr, if the caller serves it (lazy_lock held). */
static struct crfs_lazy *lookup(pid_t nr, int *err)
{
	struct task_struct *task;
	struct crfs_lazy *l;
	struct pid *pid;
	bool ok;

	pid = find_get_pid(nr);
	*err = -ESRCH;
	if (!pid)
		return NULL;
	l = listed(pid);
	put_pid(pid);
	if (!l)
		return NULL;
	rcu_read_lock();
	task = pid_task(l->pid, PIDTYPE_PID);
	ok = task && serves(task);
	rcu_read_unlock();
	*err = ok ? 0 : task ? -EPERM : -ESRCH;
	return ok ? l : NULL;
}

/*
 * @dev and the caller, its server, answer for @l from now on: the release of @dev kills
 * the process (lazy_lock held).
 */
static void own(struct crfs_lazy *l, struct file *dev)
{
	put_pid(l->server);
	l->server = get_task_pid(current, PIDTYPE_TGID);
	l->owner = dev;
}

/* The ranges to @args; a process not yet let go is now @dev's (a server dying before GO). */
static int lazy_ranges(struct file *dev, struct crfs_lazy_args *args)
{
	struct crfs_lazy *l;
	u32 n;
	int ret;

	mutex_lock(&lazy_lock);
	l = lookup(args->pid, &ret);
	if (l && !l->started)
		own(l, dev);
	if (l)
		kref_get(&l->ref);
	mutex_unlock(&lazy_lock);
	if (!l)
		return ret;
	n = min(args->nr_ranges, l->nr_ranges);
	args->nr_ranges = l->nr_ranges;
	if (n && copy_to_user(u64_to_user_ptr(args->ranges), l->ranges,
			      array_size(n, sizeof(l->ranges[0]))))
		ret = -EFAULT;
	crfs_lazy_put(l);
	return ret;
}

static bool is_userfaultfd(struct file *file)
{
	return file_inode(file)->i_sb->s_magic == ANON_INODE_FS_MAGIC &&
	       !strcmp(file->f_path.dentry->d_name.name, "[userfaultfd]");
}

/* The userfaultfd at @fd, referenced; ERR_PTR(-EBADF or -EINVAL) for anything else. */
static struct file *fget_userfaultfd(int fd)
{
	struct file *uffd = fget(fd);

	if (!uffd)
		return ERR_PTR(-EBADF);
	if (!is_userfaultfd(uffd)) {
		fput(uffd);
		return ERR_PTR(-EINVAL);
	}
	return uffd;
}

/* lookup() of a program whose server @dev started it (GO); NULL and -ESRCH otherwise. */
static struct crfs_lazy *lookup_served(pid_t pid, struct file *dev, int *ret)
{
	struct crfs_lazy *l = lookup(pid, ret);

	if (l && (!l->started || l->owner != dev)) {
		*ret = -ESRCH;
		return NULL;
	}
	return l;
}

static int lazy_go(struct file *dev, struct crfs_lazy_args *args)
{
	struct crfs_lazy *l;
	struct file *uffd;
	int ret;

	uffd = fget_userfaultfd(args->uffd);
	if (IS_ERR(uffd))
		return PTR_ERR(uffd);
	mutex_lock(&lazy_lock);
	l = lookup(args->pid, &ret);
	if (l && l->started) {
		l = NULL;
		ret = -ESRCH;
	}
	if (l) {
		l->uffd = uffd;
		own(l, dev);
		l->started = true;
		complete(&l->go);
		uffd = NULL;
	}
	mutex_unlock(&lazy_lock);
	if (uffd)
		fput(uffd);
	return ret;
}

/*
 * The processes @dev let go that have ended, forgotten (lazy_lock held): reaped, their
 * pids can no longer be named to DONE, and their server says DONE only once every page
 * of every process it serves is in. Left listed, the release would kill the tree.
 */
static void forget_ended(struct file *dev)
{
	struct crfs_lazy *l, *next;
	bool ended;

	list_for_each_entry_safe(l, next, &lazy_list, node) {
		if (!l->started || l->owner != dev)
			continue;
		rcu_read_lock();
		ended = !pid_task(l->pid, PIDTYPE_PID);
		rcu_read_unlock();
		if (ended)
			unlist(l);
	}
}

static int lazy_done(struct file *dev, struct crfs_lazy_args *args)
{
	struct crfs_lazy *l;
	int ret;

	mutex_lock(&lazy_lock);
	l = lookup_served(args->pid, dev, &ret);
	if (l) {
		unlist(l);
		forget_ended(dev);
	}
	mutex_unlock(&lazy_lock);
	return ret;
}

/* The userfaultfd of a process forked from the program, kept until DONE or the release. */
static int lazy_fork(struct file *dev, struct crfs_lazy_args *args)
{
	struct crfs_lazy *l;
	struct file *uffd;
	int ret;

	uffd = fget_userfaultfd(args->uffd);
	if (IS_ERR(uffd))
		return PTR_ERR(uffd);
	mutex_lock(&lazy_lock);
	l = lookup_served(args->pid, dev, &ret);
	if (l && l->nr_forks == CRFS_LAZY_MAX_FORKS)
		ret = -ENOSPC;
	else if (l)
		l->forks[l->nr_forks++] = uffd;
	mutex_unlock(&lazy_lock);
	if (ret || !l)
		fput(uffd);
	return ret;
}

long crfs_ioctl_lazy(struct file *dev, struct crfs_lazy_args __user *uargs)
{
	struct crfs_lazy_args args;
	int ret;

	if (copy_from_user(&args, uargs, sizeof(args)))
		return -EFAULT;
	if (args.__reserved)
		return -EINVAL;
	switch (args.op) {
	case CRFS_LAZY_RANGES:
		ret = lazy_ranges(dev, &args);
		if (!ret && copy_to_user(uargs, &args, sizeof(args)))
			ret = -EFAULT;
		return ret;
	case CRFS_LAZY_GO:
		return lazy_go(dev, &args);
	case CRFS_LAZY_DONE:
		return lazy_done(dev, &args);
	case CRFS_LAZY_FORK:
		return lazy_fork(dev, &args);
	default:
		return -EINVAL;
	}
}

/* Whether @p descends from the process @server (RCU held). */
static bool below(struct task_struct *p, struct pid *server)
{
	struct task_struct *parent;

	for (;;) {
		parent = rcu_dereference(p->real_parent);
		if (parent == p || !parent)
			return false;
		if (task_tgid(parent) == server)
			return true;
		p = parent;
	}
}

/* SIGKILL to every process below @server: what it forked may fault on its userfaultfds. */
static void kill_descendants(struct pid *server)
{
	struct task_struct *p;

	rcu_read_lock();
	for_each_process(p)
		if (below(p, server))
			send_sig(SIGKILL, p, 1);
	rcu_read_unlock();
}

/*
 * The /dev/crfs file @dev is released: each process it said GO for and not DONE, or asked
 * the ranges of and not yet GO, is killed, with every descendant of the server (all forked
 * from it: a tree and its forks), then its userfaultfds dropped (unlist() drops the last
 * reference but the process's own, gone by then).
 */
void crfs_lazy_release(struct file *dev)
{
	struct crfs_lazy *l, *next;
	struct pid *killed = NULL;

	mutex_lock(&lazy_lock);
	list_for_each_entry_safe(l, next, &lazy_list, node) {
		if (l->owner != dev)
			continue;
		kill_pid(l->pid, SIGKILL, 1);
		if (l->server != killed)	/* the processes of a tree share theirs */
			kill_descendants(l->server);
		killed = l->server;
		unlist(l);
	}
	mutex_unlock(&lazy_lock);
}
