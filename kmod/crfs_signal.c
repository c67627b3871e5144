// SPDX-License-Identifier: GPL-2.0
/*
 * Signal state and resource limits of a restored task.
 *
 * copy-in (validated while read, EINVAL with the record's offset):
 *   SIGHAND      handlers SIG_DFL, SIG_IGN or user addresses; restorers 0 or user
 *                addresses; sa_flags within UAPI_SA_FLAGS;
 *   SIGNAL       rlimits with soft <= hard; itimers below KTIME_MAX; followed by the
 *                SIGPENDING of the thread group (shared);
 *   SIGPENDING   at most CRFS_MAX_PENDING siginfo, len exactly 24 + 48 * nr_pending,
 *                each of a signal 1..64 in the mask; never SIGKILL (a SIGSTOP
 *                is queued again: the process stops, as it would have);
 *   SIGNAL_TASK  a blocked mask without SIGKILL/SIGSTOP;
 *   SIGALTSTACK  SS_DISABLE, or a stack of at least MINSIGSTKSZ bytes in user space.
 * prepare (the caller intact, an errno and a reason): rlimits bounded by the caller's hard
 *   limits unless it has CAP_SYS_RESOURCE; RLIMIT_CPU and POSIX timer signals, which the
 *   module cannot re-arm with Debian 6.1's exported symbols, refused when the image has
 *   them; ITIMER_VIRTUAL/PROF armed by the caller as the image's (crfs_task_misc.c);
 *   cwd and root (crfs_fs.c).
 * act (after the point of no return, nothing fails): the process's leader sets the
 *   handlers, rlimits, fs_struct and ITIMER_REAL and drops the caller's pending signals;
 *   every thread its blocked mask, altstack and pdeath_signal, then queues its private
 *   pending signals again with their siginfo; the last thread to get its mask back
 *   queues the process's shared ones, with theirs too (crfs_sigqueue.c).
 */
#include <linux/capability.h>
#include <linux/cred.h>
#include <linux/hrtimer.h>
#include <linux/kernel.h>
#include <linux/overflow.h>
#include <linux/resource.h>
#include <linux/sched/signal.h>
#include <linux/signal.h>
#include <linux/slab.h>
#include <linux/xarray.h>

#include "crfs.h"

#define KILL_STOP	(sigmask(SIGKILL) | sigmask(SIGSTOP))
#define SIG_BIT(n)	BIT_ULL((n) - 1)
/* sysctl fs.nr_open's default (sysctl_nr_open is not exported) */
#define NR_OPEN_DEFAULT	(1024 * 1024)
/* si_code > 0: the signals whose siginfo holds si_addr (as crfs/checkpoint/signals.py) */
#define FAULT_SIGNALS	(SIG_BIT(SIGILL) | SIG_BIT(SIGTRAP) | SIG_BIT(SIGBUS) | \
			 SIG_BIT(SIGFPE) | SIG_BIT(SIGSEGV))

static const char *const rlimit_names[CKPT_RLIM_NLIMITS] = {
	"RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK",
	"RLIMIT_CORE", "RLIMIT_RSS", "RLIMIT_NPROC", "RLIMIT_NOFILE",
	"RLIMIT_MEMLOCK", "RLIMIT_AS", "RLIMIT_LOCKS", "RLIMIT_SIGPENDING",
	"RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_RTPRIO", "RLIMIT_RTTIME",
};

/* @err, with the reason in the restore's err_msg (signals and fs_struct). */
int crfs_sig_refuse(struct crfs_sig_restore *sr, int err, const char *fmt, ...)
{
	va_list args;

	va_start(args, fmt);
	vscnprintf(sr->err_msg, CRFS_ERRMSG_LEN, fmt, args);
	va_end(args);
	return err;
}

/* ---------------------------------------------------------------- copy-in */

static bool user_addr(u64 addr)
{
	return addr < TASK_SIZE_MAX;
}

static int check_sighand(struct crfs_image *img, const struct crfs_rec *rec,
			 const struct ckpt_hdr_sighand *h)
{
	const struct ckpt_sigaction *a;
	int i;

	for (i = 0; i < CKPT_ARCH_NSIG; i++) {
		a = &h->action[i];
		if (a->_sa_handler > (u64)(unsigned long)SIG_IGN &&
		    !user_addr(a->_sa_handler))
			return crfs_image_fail(img, rec,
					       "SIGHAND: signal %d: handler %#llx is not a user address",
					       i + 1, a->_sa_handler);
		if (!user_addr(a->sa_restorer))
			return crfs_image_fail(img, rec,
					       "SIGHAND: signal %d: restorer %#llx is not a user address",
					       i + 1, a->sa_restorer);
		if (a->sa_flags & ~(u64)UAPI_SA_FLAGS)
			return crfs_image_fail(img, rec,
					       "SIGHAND: signal %d: unknown sa_flags %#llx",
					       i + 1, a->sa_flags & ~(u64)UAPI_SA_FLAGS);
	}
	return 0;
}

/* The SIGHAND record of a SIGHAND object, right after its OBJREF. */
int crfs_sig_load_sighand(struct crfs_image *img, struct crfs_object *obj)
{
	struct crfs_rec rec;
	int ret;

	ret = crfs_image_next(img, &rec);
	if (ret)
		return ret;
	if (rec.type != CKPT_HDR_SIGHAND)
		return crfs_image_fail(img, &rec, "expected CKPT_HDR_SIGHAND");
	obj->sighand = kmalloc(sizeof(*obj->sighand), GFP_KERNEL_ACCOUNT);
	if (!obj->sighand)
		return -ENOMEM;
	ret = crfs_image_body(img, &rec, obj->sighand, sizeof(*obj->sighand));
	if (!ret)
		ret = check_sighand(img, &rec, obj->sighand);
	return ret;
}

static struct crfs_object *find(struct crfs_plan *plan, s32 ref, u32 objtype)
{
	struct crfs_object *obj = ref > 0 ? xa_load(&plan->objects, ref) : NULL;

	return obj && obj->objtype == objtype && obj->ready ? obj : NULL;
}

/* TASK_OBJS: its fs, sighand (objects seen before) and signal (maybe new) refs. */
int crfs_sig_task_objs(struct crfs_plan *plan, struct crfs_image *img,
		       struct crfs_task *task, const struct crfs_rec *rec,
		       const struct ckpt_hdr_task_objs *objs)
{
	struct crfs_task_sig *sig = &task->sig;
	struct crfs_object *obj;

	if (objs->fs_objref) {
		obj = find(plan, objs->fs_objref, CKPT_OBJ_FS);
		if (!obj)
			return crfs_image_fail(img, rec, "fs_objref %d is not an FS seen before",
					       objs->fs_objref);
		sig->fs = obj->fs;
	}
	if (objs->sighand_objref) {
		obj = find(plan, objs->sighand_objref, CKPT_OBJ_SIGHAND);
		if (!obj)
			return crfs_image_fail(img, rec,
					       "sighand_objref %d is not a SIGHAND seen before",
					       objs->sighand_objref);
		sig->sighand = obj->sighand;
	}
	if (objs->signal_objref <= 0)
		return 0;
	obj = xa_load(&plan->objects, objs->signal_objref);
	if (!obj) {
		sig->signal_ref = objs->signal_objref;	/* its SIGNAL comes next */
		return 0;
	}
	if (obj->objtype != CKPT_OBJ_SIGNAL || !obj->ready)
		return crfs_image_fail(img, rec, "signal_objref %d is not a SIGNAL",
				       objs->signal_objref);
	sig->signal = obj->signal;
	return 0;
}

bool crfs_sig_record(u32 type)
{
	return type == CKPT_HDR_SIGNAL || type == CKPT_HDR_SIGPENDING ||
	       type == CKPT_HDR_SIGNAL_TASK || type == CRFS_HDR_SIGALTSTACK ||
	       type == CRFS_HDR_SIGINFO_RAW;
}

static int check_pending(struct crfs_image *img, const struct crfs_rec *rec,
			 const struct crfs_pending *p)
{
	u32 i, signo;

	if (p->mask & sigmask(SIGKILL))
		return crfs_image_fail(img, rec, "SIGPENDING: SIGKILL pending");
	for (i = 0; i < p->nr; i++) {
		signo = p->info[i].signo;
		if (!signo || signo > CKPT_ARCH_NSIG || !(p->mask & SIG_BIT(signo)))
			return crfs_image_fail(img, rec,
					       "SIGPENDING: siginfo %u of signal %u, not in the mask %#llx",
					       i, signo, p->mask);
	}
	return 0;
}

static int load_pending(struct crfs_image *img, const struct crfs_rec *rec,
			struct crfs_pending **out)
{
	struct ckpt_hdr_sigpending h;
	struct crfs_pending *p;
	size_t size;
	int ret;

	ret = crfs_image_body(img, rec, &h, sizeof(h));
	if (ret)
		return ret;
	if (h.nr_pending > CRFS_MAX_PENDING ||
	    rec->len != sizeof(h) + (u64)h.nr_pending * sizeof(struct ckpt_siginfo))
		return crfs_image_fail(img, rec,
				       "SIGPENDING: nr_pending %u (at most %d) in len %u",
				       h.nr_pending, CRFS_MAX_PENDING, rec->len);
	size = h.nr_pending * sizeof(struct ckpt_siginfo);
	p = kvmalloc(struct_size(p, info, h.nr_pending), GFP_KERNEL_ACCOUNT);
	if (!p)
		return -ENOMEM;
	*out = p;
	p->mask = h.signal;
	p->nr = h.nr_pending;
	p->raw = NULL;
	ret = crfs_image_read(img, rec->pos + sizeof(h), p->info, size);
	return ret ?: check_pending(img, rec, p);
}

static int check_signal(struct crfs_image *img, const struct crfs_rec *rec,
			const struct ckpt_hdr_signal *h)
{
	const u64 *t = &h->it_real_value;
	int i;

	for (i = 0; i < CKPT_RLIM_NLIMITS; i++)
		if (h->rlim[i].rlim_cur > h->rlim[i].rlim_max)
			return crfs_image_fail(img, rec,
					       "SIGNAL: %s soft limit %llu above its hard limit %llu",
					       rlimit_names[i], h->rlim[i].rlim_cur,
					       h->rlim[i].rlim_max);
	for (i = 0; i < 6; i++)
		if (t[i] > KTIME_MAX)
			return crfs_image_fail(img, rec, "SIGNAL: itimer value %llu ns",
					       t[i]);
	return 0;
}

/* SIGNAL, under the signal_objref its TASK_OBJS named, then SIGPENDING{shared}. */
static int load_signal(struct crfs_plan *plan, struct crfs_image *img,
		       struct crfs_task *task, const struct crfs_rec *rec)
{
	struct crfs_object *obj;
	struct crfs_rec shared;
	int ret;

	if (!task->sig.signal_ref)
		return crfs_image_fail(img, rec, "SIGNAL without a new signal_objref before it");
	if (plan->nr_objects >= CRFS_MAX_OBJECTS)
		return crfs_image_fail(img, rec, "too many objects");
	obj = kzalloc(sizeof(*obj), GFP_KERNEL_ACCOUNT);
	if (!obj)
		return -ENOMEM;
	obj->objtype = CKPT_OBJ_SIGNAL;
	ret = xa_insert(&plan->objects, task->sig.signal_ref, obj, GFP_KERNEL_ACCOUNT);
	if (ret) {
		kfree(obj);
		if (ret == -EBUSY)
			return crfs_image_fail(img, rec, "SIGNAL: objref %d is not new",
					       task->sig.signal_ref);
		return ret;
	}
	plan->nr_objects++;
	task->sig.signal_ref = 0;
	obj->signal = kzalloc(sizeof(*obj->signal), GFP_KERNEL_ACCOUNT);
	if (!obj->signal)
		return -ENOMEM;
	ret = crfs_image_body(img, rec, &obj->signal->h, sizeof(obj->signal->h));
	if (!ret)
		ret = check_signal(img, rec, &obj->signal->h);
	if (!ret)
		ret = crfs_image_next(img, &shared);
	if (ret)
		return ret;
	if (shared.type != CKPT_HDR_SIGPENDING)
		return crfs_image_fail(img, &shared, "expected CKPT_HDR_SIGPENDING");
	ret = load_pending(img, &shared, &obj->signal->shared);
	if (ret)
		return ret;
	task->sig.last = obj->signal->shared;
	obj->ready = true;
	task->sig.signal = obj->signal;
	obj->signal->owner = task;
	return 0;
}

static int load_altstack(struct crfs_image *img, const struct crfs_rec *rec,
			 struct crfs_hdr_sigaltstack *h)
{
	int ret = crfs_image_body(img, rec, h, sizeof(*h));

	if (ret)
		return ret;
	if (h->ss_flags & ~(SS_ONSTACK | SS_DISABLE | SS_FLAG_BITS))
		return crfs_image_fail(img, rec, "SIGALTSTACK: unknown ss_flags %#x",
				       h->ss_flags);
	if (h->ss_flags & SS_DISABLE)
		return 0;
	if (h->ss_size < MINSIGSTKSZ || h->ss_size > TASK_SIZE_MAX ||
	    !user_addr(h->ss_sp) || h->ss_sp + h->ss_size > TASK_SIZE_MAX)
		return crfs_image_fail(img, rec,
				       "SIGALTSTACK: stack %#llx + %llu is not in user space or below MINSIGSTKSZ",
				       h->ss_sp, h->ss_size);
	return 0;
}

/* SIGNAL_TASK: once, without SIGKILL/SIGSTOP. */
static int load_blocked(struct crfs_image *img, const struct crfs_rec *rec,
			struct crfs_task_sig *sig)
{
	struct ckpt_hdr_signal_task h;
	int ret;

	ret = crfs_image_body(img, rec, &h, sizeof(h));
	if (ret)
		return ret;
	if (h.blocked & KILL_STOP)
		return crfs_image_fail(img, rec, "SIGNAL_TASK: SIGKILL or SIGSTOP blocked");
	sig->blocked = h.blocked;
	sig->has |= CRFS_SIG_BLOCKED;
	return 0;
}

/*
 * SIGINFO_RAW, right after a SIGPENDING: its siginfo whole, each of the signal and code
 * of the SIGPENDING's (the kernel delivers them as they are, to the program only).
 */
static int load_raw(struct crfs_image *img, const struct crfs_rec *rec,
		    struct crfs_pending *p)
{
	struct crfs_hdr_siginfo_raw h;
	u32 i;
	int ret;

	BUILD_BUG_ON(sizeof(kernel_siginfo_t) != CRFS_SIGINFO_SIZE);
	if (!p || p->raw)
		return crfs_image_fail(img, rec, "SIGINFO_RAW: not after a SIGPENDING");
	ret = crfs_image_body(img, rec, &h, sizeof(h));
	if (ret)
		return ret;
	if (h.nr_pending != p->nr ||
	    rec->len != sizeof(h) + (u64)p->nr * CRFS_SIGINFO_SIZE)
		return crfs_image_fail(img, rec,
				       "SIGINFO_RAW: nr_pending %u in len %u, the SIGPENDING has %u",
				       h.nr_pending, rec->len, p->nr);
	p->raw = kvmalloc_array(p->nr, CRFS_SIGINFO_SIZE, GFP_KERNEL_ACCOUNT);
	if (!p->raw)
		return -ENOMEM;
	ret = crfs_image_read(img, rec->pos + sizeof(h), p->raw, p->nr * CRFS_SIGINFO_SIZE);
	for (i = 0; !ret && i < p->nr; i++)
		if (p->raw[i].si_signo != p->info[i].signo ||
		    p->raw[i].si_code != (s32)p->info[i].code)
			return crfs_image_fail(img, rec,
					       "SIGINFO_RAW: siginfo %u is not the SIGPENDING's",
					       i);
	return ret;
}

static void free_pending(struct crfs_pending *p)
{
	if (p)
		kvfree(p->raw);
	kvfree(p);
}

/* A task's SIGNAL, SIGPENDING{private}, SIGNAL_TASK, SIGALTSTACK or SIGINFO_RAW. */
int crfs_sig_load_record(struct crfs_plan *plan, struct crfs_image *img,
			 struct crfs_task *task, const struct crfs_rec *rec)
{
	struct crfs_task_sig *sig = &task->sig;
	struct crfs_pending *last = sig->last;
	int ret;

	sig->last = NULL;
	switch (rec->type) {
	case CKPT_HDR_SIGNAL:
		return load_signal(plan, img, task, rec);
	case CKPT_HDR_SIGPENDING:
		if (sig->pending)
			break;
		ret = load_pending(img, rec, &sig->pending);
		sig->last = sig->pending;
		return ret;
	case CRFS_HDR_SIGINFO_RAW:
		return load_raw(img, rec, last);
	case CKPT_HDR_SIGNAL_TASK:
		if (sig->has & CRFS_SIG_BLOCKED)
			break;
		return load_blocked(img, rec, sig);
	default:
		if (sig->has & CRFS_SIG_ALTSTACK)
			break;
		ret = load_altstack(img, rec, &sig->altstack);
		if (!ret)
			sig->has |= CRFS_SIG_ALTSTACK;
		return ret;
	}
	return crfs_image_fail(img, rec, "second one for pid %d", task->pids.vpid);
}

void crfs_sig_free_object(struct crfs_object *obj)
{
	switch (obj->objtype) {
	case CKPT_OBJ_SIGHAND:
		kfree(obj->sighand);
		break;
	case CKPT_OBJ_SIGNAL:
		if (obj->signal) {
			free_pending(obj->signal->shared);
			crfs_timers_free(obj->signal);
		}
		kfree(obj->signal);
		break;
	case CKPT_OBJ_FS:
		if (obj->fs) {
			kfree(obj->fs->pwd);
			kfree(obj->fs->root);
		}
		kfree(obj->fs);
		break;
	}
}

void crfs_sig_free_task(struct crfs_task *task)
{
	free_pending(task->sig.pending);
	task->sig.pending = NULL;
}

/* ---------------------------------------------------------------- prepare */

static int prepare_rlimits(struct crfs_sig_restore *sr,
			   const struct ckpt_hdr_signal *h)
{
	bool priv = capable(CAP_SYS_RESOURCE);
	struct rlimit old;
	u64 soft, hard;
	int i;

	for (i = 0; i < CKPT_RLIM_NLIMITS; i++) {
		soft = h->rlim[i].rlim_cur;
		hard = h->rlim[i].rlim_max;
		old.rlim_cur = READ_ONCE(current->signal->rlim[i].rlim_cur);
		old.rlim_max = READ_ONCE(current->signal->rlim[i].rlim_max);
		if (hard > old.rlim_max && !priv)
			return crfs_sig_refuse(sr, -EPERM,
					       "%s hard limit %llu is above the caller's %lu",
					       rlimit_names[i], hard, old.rlim_max);
		if (i == RLIMIT_NOFILE && hard > old.rlim_max && hard > NR_OPEN_DEFAULT)
			return crfs_sig_refuse(sr, -EPERM,
					       "RLIMIT_NOFILE hard limit %llu is above %u",
					       hard, NR_OPEN_DEFAULT);
		if (i == RLIMIT_CPU && soft != old.rlim_cur)
			return crfs_sig_refuse(sr, -EOPNOTSUPP,
					       "RLIMIT_CPU soft limit %llu other than the caller's %lu is not restored",
					       soft, old.rlim_cur);
		sr->rlim[i].rlim_cur = soft;
		sr->rlim[i].rlim_max = hard;
	}
	sr->set_rlim = true;
	return 0;
}

/* A queued POSIX timer signal needs its timer, pending in the image (crfs_timers.c). */
static int check_timer_signals(struct crfs_sig_restore *sr,
			       const struct crfs_pending *p)
{
	u32 i;

	for (i = 0; p && i < p->nr; i++)
		if ((s32)p->info[i].code == SI_TIMER &&
		    !crfs_timers_queued(sr->sig->signal, p->info[i].pid, p->info[i].signo))
			return crfs_sig_refuse(sr, -EOPNOTSUPP,
					       "a POSIX timer's pending signal %u is not restored: no pending timer %d in the image",
					       p->info[i].signo, p->info[i].pid);
	return 0;
}

static int prepare_signal(struct crfs_sig_restore *sr, const struct crfs_signal *s)
{
	const struct ckpt_hdr_signal *h = &s->h;
	const char *itimer = crfs_itimers_check(h);
	int ret;

	if (itimer)
		return crfs_sig_refuse(sr, -EOPNOTSUPP,
				       "%s: the caller's is not armed as the image's (crfs-restart arms it)",
				       itimer);
	if (h->tty_objref)
		return crfs_sig_refuse(sr, -EOPNOTSUPP, "a controlling tty is not restored");
	ret = check_timer_signals(sr, s->shared);
	if (!ret)
		ret = crfs_timers_prepare(s, sr->err_msg);
	return ret ?: prepare_rlimits(sr, h);
}

/*
 * Check what the task's records ask for against the caller; the cwd and root are looked
 * up with @cred, the credentials the task will have (NULL: the caller's).
 */
int crfs_sig_prepare(struct crfs_sig_restore *sr, const struct crfs_task *task,
		     bool process, const struct cred *cred, char *err_msg)
{
	const struct crfs_task_sig *sig = &task->sig;
	const struct cred *old;
	int ret;

	sr->sig = sig;
	sr->process = process;
	sr->err_msg = err_msg;
	if (!valid_signal(task->h.pdeath_signal))
		return crfs_sig_refuse(sr, -EINVAL, "pdeath_signal %u", task->h.pdeath_signal);
	sr->pdeath_signal = task->h.pdeath_signal;
	ret = check_timer_signals(sr, sig->pending);
	if (ret || !process)
		return ret;
	if (sig->signal) {
		ret = prepare_signal(sr, sig->signal);
		if (ret)
			return ret;
	}
	if (!sig->fs)
		return 0;
	old = cred ? override_creds(cred) : NULL;
	ret = crfs_fs_prepare(sr, sig->fs);
	if (cred)
		revert_creds(old);
	return ret;
}

void crfs_sig_release(struct crfs_sig_restore *sr)
{
	if (sr->pwd.mnt)
		path_put(&sr->pwd);
	if (sr->root.mnt)
		path_put(&sr->root);
	sr->pwd.mnt = NULL;
	sr->root.mnt = NULL;
}

/* ---------------------------------------------------------------- act */

static void set_actions(const struct ckpt_hdr_sighand *h)
{
	struct sighand_struct *sighand = current->sighand;
	const struct ckpt_sigaction *a;
	struct k_sigaction *k;
	int i;

	spin_lock_irq(&sighand->siglock);
	for (i = 0; i < CKPT_ARCH_NSIG; i++) {
		if (sig_kernel_only(i + 1))
			continue;	/* SIGKILL, SIGSTOP: always SIG_DFL */
		a = &h->action[i];
		k = &sighand->action[i];
		k->sa.sa_handler = (__sighandler_t)(unsigned long)a->_sa_handler;
		k->sa.sa_flags = a->sa_flags;
		k->sa.sa_restorer = (__sigrestore_t)(unsigned long)a->sa_restorer;
		k->sa.sa_mask.sig[0] = a->sa_mask & ~(u64)KILL_STOP;
	}
	spin_unlock_irq(&sighand->siglock);
}

static void set_rlimits(struct crfs_sig_restore *sr)
{
	int i;

	task_lock(current->group_leader);
	for (i = 0; i < CKPT_RLIM_NLIMITS; i++)
		current->signal->rlim[i] = sr->rlim[i];
	task_unlock(current->group_leader);
}

/* ITIMER_REAL: what was left of it, then its interval (as do_setitimer()). */
static void set_itimer_real(const struct ckpt_hdr_signal *h)
{
	struct signal_struct *sig = current->signal;

	hrtimer_cancel(&sig->real_timer);
	spin_lock_irq(&current->sighand->siglock);
	sig->it_real_incr = ns_to_ktime(h->it_real_incr);
	if (h->it_real_value)
		hrtimer_start(&sig->real_timer, ns_to_ktime(h->it_real_value),
			      HRTIMER_MODE_REL);
	spin_unlock_irq(&current->sighand->siglock);
}

/* The leader, before the other threads go on: what the threads of the process share. */
void crfs_sig_act_process(struct crfs_sig_restore *sr)
{
	const struct crfs_task_sig *sig = sr->sig;

	if (sig->sighand)
		set_actions(sig->sighand);
	if (sr->set_rlim)
		set_rlimits(sr);
	if (sig->fs)
		crfs_fs_act(sr, sig->fs);
	if (sig->signal) {
		crfs_timers_flush_signals();	/* the caller's, but its timers' */
		set_itimer_real(&sig->signal->h);
	}
}

static void set_altstack(const struct crfs_task_sig *sig)
{
	const struct crfs_hdr_sigaltstack *h = &sig->altstack;

	if (!(sig->has & CRFS_SIG_ALTSTACK) || (h->ss_flags & SS_DISABLE)) {
		current->sas_ss_sp = 0;
		current->sas_ss_size = 0;
		current->sas_ss_flags = SS_DISABLE;
		return;
	}
	current->sas_ss_sp = h->ss_sp;
	current->sas_ss_size = h->ss_size;
	current->sas_ss_flags = h->ss_flags & SS_FLAG_BITS;
}

/* A siginfo as linux-cr's fill_siginfo() kept it (docs/format-ckpt.md). */
static void to_kernel_siginfo(kernel_siginfo_t *k, const struct ckpt_siginfo *c)
{
	s32 code = c->code;

	clear_siginfo(k);
	k->si_signo = c->signo;
	k->si_errno = c->_errno;
	k->si_code = code;
	if (code > 0 && code != SI_KERNEL && c->signo == SIGCHLD) {
		k->si_pid = c->pid;
		k->si_uid = c->uid;
		k->si_status = c->sigval_int;
		k->si_utime = c->utime;
		k->si_stime = c->stime;
	} else if (code > 0 && code != SI_KERNEL && (FAULT_SIGNALS & SIG_BIT(c->signo))) {
		k->si_addr = (void __user *)(unsigned long)c->sigval_ptr;
	} else if (code > 0 && code != SI_KERNEL && c->signo == SIGPOLL) {
		k->si_band = c->pid;
		k->si_fd = c->sigval_int;
	} else {
		k->si_pid = c->pid;
		k->si_uid = c->uid;
		k->si_ptr = (void __user *)(unsigned long)c->sigval_ptr;
	}
}

/*
 * Queue @p again with their siginfo: private signals to the caller, shared ones to its
 * process (crfs_sigqueue.c); a mask bit without siginfo as from the kernel.
 */
static void requeue(const struct crfs_pending *p, bool shared)
{
	kernel_siginfo_t info;
	u64 sent = 0;
	u32 i, signo;

	for (i = 0; p && i < p->nr; i++) {
		signo = p->info[i].signo;
		sent |= SIG_BIT(signo);
		if ((s32)p->info[i].code == SI_TIMER)
			continue;	/* its timer fires at once: crfs_timers.c */
		if (p->raw)
			copy_siginfo(&info, &p->raw[i]);
		else
			to_kernel_siginfo(&info, &p->info[i]);
		if (shared)
			crfs_queue_shared(signo, &info);
		else
			send_sig_info(signo, &info, current);
	}
	for (signo = 1; p && signo <= CKPT_ARCH_NSIG; signo++) {
		if (!(p->mask & SIG_BIT(signo)) || (sent & SIG_BIT(signo)))
			continue;
		if (shared)
			kill_pid(task_tgid(current), signo, 1);
		else
			send_sig_info(signo, SEND_SIG_PRIV, current);
	}
}

/* Every thread, the leader after crfs_sig_act_process(): its own signal state. */
int crfs_sig_act_thread(struct crfs_sig_restore *sr)
{
	const struct crfs_task_sig *sig = sr->sig;
	sigset_t blocked;
	int ret = 0;

	if (sig->has & CRFS_SIG_BLOCKED) {
		siginitset(&blocked, sig->blocked);
		ret = sigprocmask(SIG_SETMASK, &blocked, NULL);
		set_altstack(sig);
	}
	if (sr->pdeath_signal)	/* else the restarter's (SIGKILL: it dies with its relay) */
		current->pdeath_signal = sr->pdeath_signal;
	requeue(sig->pending, false);
	return ret;
}

/*
 * The last thread to restore its mask (any: each call's plan has the process's SIGNAL):
 * the process's shared pending signals. Earlier, a thread still running with the
 * restarter's mask could take a signal its image blocks, maybe a fatal one.
 */
void crfs_sig_act_shared(struct crfs_sig_restore *sr)
{
	if (sr->sig->signal)
		requeue(sr->sig->signal->shared, true);
}
