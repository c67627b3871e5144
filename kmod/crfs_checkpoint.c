// SPDX-License-Identifier: GPL-2.0
/*
 * CRFS_IOC_CHECKPOINT: write a ckpt_hdr x86_64 image of processes the caller has stopped.
 *
 * Mirkin's model: the processes are checkpointed from outside while they are stopped. The
 * caller must be the ptracer of every task written and each one must sit in a ptrace stop,
 * so the checks of PTRACE_ATTACH (ptrace_may_access, LSMs) have been passed already, and
 * nothing runs in them while they are read. A SIGKILL may still wake one: its mm and
 * task_struct stay pinned by our references, so that only makes the image inconsistent,
 * never unsafe.
 *
 * The tasks are those crfs/checkpoint/freezer.py stops, in its order: the process @pid
 * and, with CRFS_CHECKPOINT_TREE, its descendants depth first (a process before its
 * children, children by pid); each process is its leader, then its other threads by tid.
 * Children are found as the freezer finds them in /proc: the processes whose real parent
 * is a thread of the process, from a walk of the caller's pid namespace under RCU
 * (tasklist_lock is not exported to modules, and ->children may not be walked without it).
 * A process is found stopped before its children are looked for, so it cannot fork
 * meanwhile. Zombies are left out, as the freezer leaves them out.
 *
 * The records are those of crfs/model/ckpt_dump.py, in its order:
 *   HEADER BUFFER*3 HEADER_ARCH TREE BUFFER{pids}
 *   per task: TASK STRING{comm} THREAD CPU CPU_FPU
 *             CRED objects TASK_CREDS		(crfs_ckpt_creds.c)
 *             [OBJREF{FILE_TABLE} FILE_TABLE { [FILE object] FILE_DESC }*]
 *						(crfs_ckpt_files.c, at its first task)
 *             [[OBJREF{FILE} FILE FILE_NAME CRFS_FILE_ID]{exe}
 *              OBJREF{MM} MM BUFFER{auxv}
 *              { [OBJREF{FILE} FILE FILE_NAME [CRFS_FILE_ID]] VMA [CONTENTS] }*
 *              MM_CONTEXT MM_CONTEXT_LDT]	(at the first task of each mm)
 *             [OBJREF{FS} FS FILE_NAME{cwd} FILE_NAME{root} FS_EXT{umask}]
 *             [OBJREF{SIGHAND} SIGHAND]	(at the first task of each)
 *             TASK_OBJS [SIGNAL SIGPENDING{shared}] (at the first task of each process)
 *             SIGPENDING{private} SIGNAL_TASK [SIGALTSTACK]
 *             [OOM_SCORE_ADJ] [RSEQ]		(crfs_task_state.c)
 *             (each SIGPENDING of signals followed by SIGINFO_RAW)
 *   TAIL
 * Objrefs are numbered from 1 in first-use order: an mm, the files and shmem inodes of its
 * VMAs, then the next process's mm... Pages are chosen as the linux-cr writers chose them:
 * present anonymous pages (not the zero page), the written (anonymous) pages of private
 * file mappings, and every page of shared anonymous memory. They are read with
 * get_user_pages_remote() in chunks of CKPT_PGARR_BATCH (one call per run of kept pages),
 * and each chunk's pages are written with one vfs_iter_write() over their bio_vecs:
 * memory use is bounded, and so is the image (the max_pages parameter). The mmap_lock of
 * a process is held to take the list of its VMAs and to pin each chunk of pages, never
 * while the file is written.
 *
 * copy-in (the arguments) -> validate (every task found, stopped, 64-bit, with an mm of
 * its own process, one FPU state size) -> act (write). A refusal met while writing (an
 * LDT, a VMA) leaves part of an image in the file, as a write error does.
 */
#include <linux/capability.h>
#include <linux/elf.h>
#include <linux/eventfd.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/fs_struct.h>
#include <linux/highmem.h>
#include <linux/hrtimer.h>
#include <linux/hugetlb.h>
#include <linux/mm.h>
#include <linux/mmap_lock.h>
#include <linux/moduleparam.h>
#include <linux/pid.h>
#include <linux/pid_namespace.h>
#include <linux/ptrace.h>
#include <linux/regset.h>
#include <linux/sched/coredump.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/sched/task.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/timekeeping.h>
#include <linux/uaccess.h>
#include <linux/utsname.h>
#include <linux/xarray.h>
#include <asm/desc.h>
#include <asm/segment.h>
#include <asm/user.h>

#include "crfs.h"

#define CRFS_FXSAVE_SIZE	512
#define CRFS_NSIG		64
#define CRFS_UTS_LEN		65
#define CRFS_RLIM_NLIMITS	16
#define CRFS_TTY_BUF_SIZE	4096
#define CRFS_TERMIOS_NCC	8
#define CRFS_ROBUST_HEAD_LEN	24	/* sizeof(struct robust_list_head), 64-bit */
/* si_code > 0: the signals whose siginfo holds si_addr (as crfs/checkpoint/signals.py) */
#define CK_FAULT_SIGNALS	(BIT_ULL(SIGILL - 1) | BIT_ULL(SIGTRAP - 1) | \
				 BIT_ULL(SIGBUS - 1) | BIT_ULL(SIGFPE - 1) | \
				 BIT_ULL(SIGSEGV - 1))

/* what RESTART accepts (CRFS_MAX_PAGES): a larger image could not be restarted */
static unsigned long max_pages = CRFS_MAX_PAGES;
module_param(max_pages, ulong, 0644);
MODULE_PARM_DESC(max_pages,
		 "pages one CHECKPOINT may write, EFBIG beyond (default 4194304: 16 GiB)");

/* A task of the image. */
struct ck_task {
	struct task_struct *task;	/* a reference */
	struct mm_struct *mm;		/* a reference, once the tasks are collected */
	struct ckpt_pids pids;		/* as found, in the caller's pid namespace */
};

/* A VMA to write, as it was while the mmap_lock was held. */
struct ck_vma {
	unsigned long start;
	unsigned long end;
	unsigned long flags;
	unsigned long pgoff;
	u64 prot;
	u32 type;			/* CKPT_VMA_* */
	struct file *file;		/* a reference, for FILE and SHM_* */
};

/* A copy-on-write clone of a process (CRFS_IOC_SNAPSHOT). */
struct ck_clone {
	pid_t vtgid;			/* the process's */
	struct task_struct *task;	/* a reference */
	struct mm_struct *mm;		/* a reference: it outlives the clone */
};

/* The contents of a VMA read from a clone once the processes run on. */
struct ck_slot {
	struct ck_vma vma;		/* without its file */
	struct mm_struct *mm;		/* the clone's */
	pid_t vpid;
	loff_t spool_pos;		/* where the records after it start in the spool */
};

/* A checkpoint being written. */
struct crfs_ckpt {
	struct file *file;		/* where records go: the image, or the spool */
	loff_t pos;
	loff_t start_pos;		/* the image's first byte */
	struct ck_clone *clones;	/* nr_clones: the processes' clones, if any */
	u32 nr_clones;
	struct mm_struct *clone_mm;	/* the clone of ck->mm's process, or NULL */
	struct ck_slot *slots;		/* nr_slots of max_slots */
	u32 nr_slots;
	u32 max_slots;
	struct file *spool;		/* the records after the first slot wait there */
	loff_t spool_end;
	struct file *out;		/* the image while records are spooled */
	loff_t out_pos;
	struct eventfd_ctx *resume;	/* signalled when the processes may run on */
	struct ck_task *tasks;		/* CRFS_MAX_TASKS of them; nr_tasks collected */
	u32 nr_tasks;
	struct task_struct **stack;	/* processes still to visit (references) */
	u32 nr_stack;
	struct crfs_ck_zombies *zombies;	/* met, written after the tasks */
	struct ck_vma *vmas;		/* of the mm being written: nr_vmas of them */
	u32 nr_vmas;
	struct task_struct *task;	/* the task being captured or written */
	struct mm_struct *mm;		/* its mm */
	pid_t vpid;			/* its pid, for the messages */
	struct xarray objs;		/* mm, struct file or inode pointer -> objref */
	s32 nr_objs;
	u64 nr_pages;			/* written so far, at most max_pages */
	struct ckpt_hdr_thread thread;
	struct ckpt_hdr_cpu cpu;
	void *xstate;
	u32 xstate_size;
	u64 *vaddrs;			/* one PGARR chunk */
	struct page **pages;
	struct bio_vec *bvecs;		/* the chunk's pages, for vfs_iter_write() */
	char *path;			/* PATH_MAX scratch for d_path() */
	struct ckpt_hdr_sighand *sighand;	/* a SIGHAND being written */
	struct ckpt_siginfo *siginfo;	/* CRFS_MAX_PENDING: a SIGPENDING's */
	kernel_siginfo_t *rawinfo;	/* the same, whole: its SIGINFO_RAW */
	char err_msg[CRFS_ERRMSG_LEN];
};

__printf(3, 4)
static int ck_fail(struct crfs_ckpt *ck, int err, const char *fmt, ...)
{
	va_list args;

	va_start(args, fmt);
	vscnprintf(ck->err_msg, sizeof(ck->err_msg), fmt, args);
	va_end(args);
	return err;
}

/* ---------------------------------------------------------------- output */

static int ck_write(struct crfs_ckpt *ck, const void *buf, size_t len)
{
	const char *p = buf;
	ssize_t n;

	while (len) {
		if (fatal_signal_pending(current))
			return -EINTR;
		n = kernel_write(ck->file, p, len, &ck->pos);
		if (n < 0)
			return ck_fail(ck, n, "writing the image failed");
		if (n == 0)
			return ck_fail(ck, -EIO, "the image file took no more bytes");
		p += n;
		len -= n;
	}
	return 0;
}

/* A fixed-size record whose struct starts with struct ckpt_hdr. */
static int ck_record(struct crfs_ckpt *ck, u32 type, void *rec, size_t size)
{
	struct ckpt_hdr *h = rec;

	h->type = type;
	h->len = size;
	return ck_write(ck, rec, size);
}

/* The header of a variable-size record; its @len bytes of payload follow. */
static int ck_frame(struct crfs_ckpt *ck, u32 type, size_t len)
{
	struct ckpt_hdr h = { .type = type, .len = sizeof(h) + len };

	return ck_write(ck, &h, sizeof(h));
}

static int ck_blob(struct crfs_ckpt *ck, u32 type, const void *data, size_t len)
{
	int ret = ck_frame(ck, type, len);

	return ret ? ret : ck_write(ck, data, len);
}

/* A BUFFER/STRING of exactly @size bytes: @text, zero-filled. */
static int ck_text(struct crfs_ckpt *ck, u32 type, const char *text, size_t size)
{
	char buf[CRFS_UTS_LEN] = { 0 };

	strscpy(buf, text, min(size, sizeof(buf)));
	return ck_blob(ck, type, buf, size);
}

static int ck_objref(struct crfs_ckpt *ck, u32 objtype, s32 objref)
{
	struct ckpt_hdr_objref o = { .objtype = objtype, .objref = objref };

	return ck_record(ck, CKPT_HDR_OBJREF, &o, sizeof(o));
}

/*
 * The objref of @key (an mm, a struct file or an inode): > 0 when it was met before, else
 * a new objref as -objref, to be defined by the caller.
 */
static int ck_object(struct crfs_ckpt *ck, void *key, s32 *objref)
{
	void *old;
	int ret;

	old = xa_load(&ck->objs, (unsigned long)key);
	if (old) {
		*objref = xa_to_value(old);
		return 0;
	}
	if (ck->nr_objs >= CRFS_MAX_OBJECTS)
		return ck_fail(ck, -EOPNOTSUPP, "more than %lu objects",
			       CRFS_MAX_OBJECTS);
	ret = xa_err(xa_store(&ck->objs, (unsigned long)key,
			      xa_mk_value(ck->nr_objs + 1), GFP_KERNEL));
	if (ret)
		return ret;
	*objref = -(++ck->nr_objs);
	return 0;
}

int crfs_ck_write(struct crfs_ckpt *ck, const void *buf, size_t len)
{
	return ck_write(ck, buf, len);
}

int crfs_ck_record(struct crfs_ckpt *ck, u32 type, void *rec, size_t size)
{
	return ck_record(ck, type, rec, size);
}

int crfs_ck_objref(struct crfs_ckpt *ck, u32 objtype, s32 objref)
{
	return ck_objref(ck, objtype, objref);
}

int crfs_ck_object(struct crfs_ckpt *ck, void *key, s32 *objref)
{
	return ck_object(ck, key, objref);
}

int crfs_ck_frame(struct crfs_ckpt *ck, u32 type, size_t len)
{
	return ck_frame(ck, type, len);
}

int crfs_ck_fail(struct crfs_ckpt *ck, int err, const char *fmt, ...)
{
	va_list args;

	va_start(args, fmt);
	vscnprintf(ck->err_msg, sizeof(ck->err_msg), fmt, args);
	va_end(args);
	return err;
}

/* ---------------------------------------------------------------- header, tree, task */

/* "6.1.0-18-amd64" -> 6.1.0; numbers that are not there stay 0 */
static void set_version(struct ckpt_hdr_header *h, const char *release)
{
	unsigned short v[3] = { 0 };

	if (sscanf(release, "%hu.%hu.%hu", &v[0], &v[1], &v[2]) < 1)
		return;
	h->major = v[0];
	h->minor = v[1];
	h->patch = v[2];
}

static int write_header(struct crfs_ckpt *ck)
{
	struct new_utsname *uts = utsname();
	struct ckpt_hdr_header h = {
		.magic = CHECKPOINT_MAGIC_HEAD,
		.arch_id = CKPT_ARCH_X86_64,
		.rev = CHECKPOINT_VERSION,
		/* FS_EXT (umask) and FILE_IDs of mapped files are always written */
		.uflags = CRFS_UFLAG_EXT | (ck->nr_clones ? CRFS_UFLAG_SNAPSHOT : 0),
		.constants = {
			.task_comm_len = TASK_COMM_LEN,
			.at_vector_size = AT_VECTOR_SIZE,
			.signal_nsig = CRFS_NSIG,
			.uts_sysname_len = CRFS_UTS_LEN,
			.uts_nodename_len = CRFS_UTS_LEN,
			.uts_release_len = CRFS_UTS_LEN,
			.uts_version_len = CRFS_UTS_LEN,
			.uts_machine_len = CRFS_UTS_LEN,
			.uts_domainname_len = CRFS_UTS_LEN,
			.rlimit_nlimits = CRFS_RLIM_NLIMITS,
			.n_tty_buf_size = CRFS_TTY_BUF_SIZE,
			.tty_termios_ncc = CRFS_TERMIOS_NCC,
		},
		.time = ktime_get_real_seconds(),
	};
	struct ckpt_hdr_header_arch arch = {
		.has_fxsr = 1,
		.has_xsave = ck->xstate_size > CRFS_FXSAVE_SIZE,
		.xstate_size = ck->xstate_size,
	};
	int ret;

	set_version(&h, uts->release);
	ret = ck_record(ck, CKPT_HDR_HEADER, &h, sizeof(h));
	if (!ret)
		ret = ck_text(ck, CKPT_HDR_BUFFER, uts->release, CRFS_UTS_LEN);
	if (!ret)
		ret = ck_text(ck, CKPT_HDR_BUFFER, uts->version, CRFS_UTS_LEN);
	if (!ret)
		ret = ck_text(ck, CKPT_HDR_BUFFER, uts->machine, CRFS_UTS_LEN);
	if (!ret)
		ret = ck_record(ck, CKPT_HDR_HEADER_ARCH, &arch, sizeof(arch));
	return ret;
}

static int write_tree(struct crfs_ckpt *ck)
{
	struct ckpt_hdr_tree tree = {
		.nr_tasks = ck->nr_tasks + crfs_ts_nr_zombies(ck->zombies)
	};
	u32 i;
	int ret;

	ret = ck_record(ck, CKPT_HDR_TREE, &tree, sizeof(tree));
	if (!ret)
		ret = ck_frame(ck, CKPT_HDR_BUFFER, tree.nr_tasks * sizeof(struct ckpt_pids));
	for (i = 0; !ret && i < ck->nr_tasks; i++)
		ret = ck_write(ck, &ck->tasks[i].pids, sizeof(struct ckpt_pids));
	return ret ? ret : crfs_ts_write_zombie_pids(ck, ck->zombies);
}

static int write_task_header(struct crfs_ckpt *ck)
{
	struct task_struct *t = ck->task;
	struct ckpt_hdr_task h = {
		.state = crfs_ts_ckpt_state(t),
		.exit_signal = t->exit_signal,
		.pdeath_signal = t->pdeath_signal,
		.robust_futex_list = (unsigned long)t->robust_list,
		.robust_futex_head_len = t->robust_list ? CRFS_ROBUST_HEAD_LEN : 0,
		.set_child_tid = (unsigned long)t->set_child_tid,
		.clear_child_tid = (unsigned long)t->clear_child_tid,
	};
	char comm[TASK_COMM_LEN];
	int ret;

	memset(comm, 0, sizeof(comm));
	get_task_comm(comm, t);
	ret = ck_record(ck, CKPT_HDR_TASK, &h, sizeof(h));
	return ret ? ret : ck_blob(ck, CKPT_HDR_STRING, comm, sizeof(comm));
}

/* ---------------------------------------------------------------- registers */

static const struct user_regset *find_regset(const struct user_regset_view *view,
					     unsigned int note)
{
	unsigned int i;

	for (i = 0; i < view->n; i++)
		if (view->regsets[i].core_note_type == note)
			return &view->regsets[i];
	return NULL;
}

/* A selector as a CKPT_X86_SEG_* code; -1 when it has none. */
static int encode_segment(u64 sel)
{
	u64 tls = (sel >> 3) - GDT_ENTRY_TLS_MIN;

	if (sel == 0)
		return CKPT_X86_SEG_NULL;
	if (sel > 0xffff)
		return -1;
	if (sel & SEGMENT_LDT)
		return CKPT_X86_SEG_LDT | (sel >> 3);
	if (tls < GDT_ENTRY_TLS_ENTRIES)
		return CKPT_X86_SEG_TLS | tls;
	switch (sel) {
	case __USER_CS:
		return CKPT_X86_SEG_USER64_CS;
	case __USER_DS:
		return CKPT_X86_SEG_USER64_DS;
	case __USER32_CS:
		return CKPT_X86_SEG_USER32_CS;
	default:
		return -1;
	}
}

static int fill_segments(struct crfs_ckpt *ck, const struct user_regs_struct *r)
{
	const u64 sel[] = { r->fs, r->gs, r->cs, r->ss, r->ds, r->es };
	u16 *out[] = { &ck->cpu.fsindex, &ck->cpu.gsindex, &ck->cpu.cs,
		       &ck->cpu.ss, &ck->cpu.ds, &ck->cpu.es };
	int i, code;

	for (i = 0; i < ARRAY_SIZE(sel); i++) {
		code = encode_segment(sel[i]);
		if (code < 0)
			return ck_fail(ck, -EOPNOTSUPP, "pid %d: selector %#llx",
				       ck->vpid, sel[i]);
		*out[i] = code;
	}
	if (r->cs != __USER_CS)
		return ck_fail(ck, -EOPNOTSUPP, "pid %d: not a 64-bit task", ck->vpid);
	return 0;
}

static int capture_gprs(struct crfs_ckpt *ck, const struct user_regset_view *view)
{
	const struct user_regset *rs = find_regset(view, NT_PRSTATUS);
	struct ckpt_hdr_cpu *c = &ck->cpu;
	struct user_regs_struct r;
	int ret;

	if (!rs)
		return ck_fail(ck, -EOPNOTSUPP, "no NT_PRSTATUS regset");
	ret = regset_get(ck->task, rs, sizeof(r), &r);
	if (ret < 0)
		return ck_fail(ck, ret, "pid %d: cannot read the registers", ck->vpid);
	if (ret != sizeof(r))
		return ck_fail(ck, -EOPNOTSUPP, "pid %d: registers of %d bytes",
			       ck->vpid, ret);
	c->r15 = r.r15;
	c->r14 = r.r14;
	c->r13 = r.r13;
	c->r12 = r.r12;
	c->bp = r.bp;
	c->bx = r.bx;
	c->r11 = r.r11;
	c->r10 = r.r10;
	c->r9 = r.r9;
	c->r8 = r.r8;
	c->ax = r.ax;
	c->cx = r.cx;
	c->dx = r.dx;
	c->si = r.si;
	c->di = r.di;
	c->orig_ax = r.orig_ax;
	c->ip = r.ip;
	c->sp = r.sp;
	c->flags = r.flags;
	c->fs = r.fs_base;
	c->gs = r.gs_base;
	return fill_segments(ck, &r);
}

/* The XSAVE (uabi) layout when the CPU has it, else the 512-byte FXSAVE area. */
static const struct user_regset *fpu_regset(struct task_struct *t,
					    const struct user_regset_view *view)
{
	const struct user_regset *rs = find_regset(view, NT_X86_XSTATE);

	if (!rs || (rs->active && rs->active(t, rs) <= 0))
		rs = find_regset(view, NT_PRFPREG);
	return rs;
}

/*
 * The header gives one FPU state size for every task: that of task 0, the same for all
 * 64-bit tasks (capture_fpu refuses another).
 */
static int alloc_xstate(struct crfs_ckpt *ck)
{
	struct task_struct *t = ck->tasks[0].task;
	const struct user_regset *rs = fpu_regset(t, task_user_regset_view(t));
	unsigned int size;

	if (!rs)
		return ck_fail(ck, -EOPNOTSUPP, "no FPU regset");
	size = rs->n * rs->size;
	if (size < CRFS_FXSAVE_SIZE || size > U16_MAX)
		return ck_fail(ck, -EOPNOTSUPP, "FPU state of %u bytes", size);
	ck->xstate = kvzalloc(size, GFP_KERNEL);
	if (!ck->xstate)
		return -ENOMEM;
	ck->xstate_size = size;
	return 0;
}

static int capture_fpu(struct crfs_ckpt *ck, const struct user_regset_view *view)
{
	const struct user_regset *rs = fpu_regset(ck->task, view);
	unsigned int size = rs ? rs->n * rs->size : 0;
	int ret;

	if (size != ck->xstate_size)
		return ck_fail(ck, -EOPNOTSUPP, "pid %d: FPU state of %u bytes, not %u",
			       ck->vpid, size, ck->xstate_size);
	memset(ck->xstate, 0, size);
	ret = regset_get(ck->task, rs, size, ck->xstate);
	if (ret < 0)
		return ck_fail(ck, ret, "pid %d: cannot read the FPU state", ck->vpid);
	ck->cpu.used_math = 1;
	return 0;
}

/* The registers of @ct into ck->thread, ck->cpu and ck->xstate. */
static int capture_cpu(struct crfs_ckpt *ck, struct ck_task *ct)
{
	const struct user_regset_view *view;
	struct ckpt_hdr_thread *th = &ck->thread;
	int ret;

	ck->task = ct->task;
	ck->mm = ct->mm;
	ck->vpid = ct->pids.vpid;
	memset(&ck->thread, 0, sizeof(ck->thread));
	memset(&ck->cpu, 0, sizeof(ck->cpu));
	view = task_user_regset_view(ck->task);
	BUILD_BUG_ON(sizeof(th->tls_array) != sizeof(ck->task->thread.tls_array));
	ret = capture_gprs(ck, view);
	if (!ret)
		ret = capture_fpu(ck, view);
	th->gdt_entry_tls_entries = CKPT_TLS_ENTRIES;
	th->sizeof_tls_array = sizeof(th->tls_array);
	memcpy(th->tls_array, ck->task->thread.tls_array, sizeof(th->tls_array));
	return ret;
}

static int write_cpu(struct crfs_ckpt *ck)
{
	int ret = ck_record(ck, CKPT_HDR_THREAD, &ck->thread, sizeof(ck->thread));

	if (!ret)
		ret = ck_record(ck, CKPT_HDR_CPU, &ck->cpu, sizeof(ck->cpu));
	if (!ret)
		ret = ck_blob(ck, CKPT_HDR_CPU_FPU, ck->xstate, ck->xstate_size);
	return ret;
}

/* ---------------------------------------------------------------- memory */

#define CK_SKIP	0x100	/* not a CKPT_VMA_* */

static bool vvar_vma(struct vm_area_struct *vma)
{
	const char *name = NULL;

	if (!vma->vm_file && vma->vm_ops && vma->vm_ops->name)
		name = vma->vm_ops->name(vma);
	return name && !strncmp(name, "[vvar", 5);
}

/*
 * The [vdso] itself: mm->context.vdso still points where it was after the program
 * unmapped it (CRIU's vdso02 does), and something else may be mapped there since.
 */
static bool vdso_vma(struct vm_area_struct *vma)
{
	const char *name = NULL;

	if (!vma->vm_file && vma->vm_ops && vma->vm_ops->name)
		name = vma->vm_ops->name(vma);
	return name && !strcmp(name, "[vdso]");
}

/* The CKPT_VMA_* type of @vma, CK_SKIP for kernel-provided areas, or -errno. */
static int vma_type(struct crfs_ckpt *ck, struct vm_area_struct *vma)
{
	if (vvar_vma(vma))
		return CK_SKIP;
	if (vma->vm_flags & (VM_IO | VM_PFNMAP))
		return ck_fail(ck, -EOPNOTSUPP, "pid %d: vma %#lx: device memory",
			       ck->vpid, vma->vm_start);
	if (is_vm_hugetlb_page(vma))
		return ck_fail(ck, -EOPNOTSUPP, "pid %d: vma %#lx: hugetlb pages",
			       ck->vpid, vma->vm_start);
	if (vma->vm_start == (unsigned long)ck->mm->context.vdso && vdso_vma(vma))
		return CKPT_VMA_VDSO;
	if (vma_is_anonymous(vma))
		return CKPT_VMA_ANON;
	if (!vma->vm_file)
		return ck_fail(ck, -EOPNOTSUPP, "pid %d: vma %#lx: a special mapping",
			       ck->vpid, vma->vm_start);
	/*
	 * VM_MAYSHARE, as /proc/<pid>/maps says "s": MAP_SHARED of a file open read-only has
	 * no VM_SHARED but is a shared mapping all the same
	 */
	if (!(vma->vm_flags & VM_MAYSHARE))
		return CKPT_VMA_FILE;
	/*
	 * shared memory no name leads to (/proc/<pid>/maps says "(deleted)"): /dev/zero and
	 * MAP_ANONYMOUS (shmem pseudo files, never hashed), memfd, unlinked files
	 */
	if (d_unhashed(vma->vm_file->f_path.dentry))
		return CKPT_VMA_SHM_ANON;
	return CKPT_VMA_SHM_FILE;
}

/* Under the mmap_lock: the VMAs of ck->mm to write, each file with a reference. */
static int snapshot_vmas(struct crfs_ckpt *ck, u32 max)
{
	VMA_ITERATOR(vmi, ck->mm, 0);
	struct vm_area_struct *vma;
	struct ck_vma *cv;
	int type;

	for_each_vma(vmi, vma) {
		type = vma_type(ck, vma);
		if (type < 0)
			return type;
		if (type == CK_SKIP)
			continue;
		if (ck->nr_vmas >= max)
			return ck_fail(ck, -EOPNOTSUPP, "pid %d: more than %u VMAs", ck->vpid, max);
		cv = &ck->vmas[ck->nr_vmas++];
		*cv = (struct ck_vma){
			.start = vma->vm_start,
			.end = vma->vm_end,
			.flags = vma->vm_flags,
			.pgoff = vma->vm_pgoff,
			.prot = pgprot_val(vma->vm_page_prot),
			.type = type,
		};
		if (type == CKPT_VMA_FILE || type == CKPT_VMA_SHM_ANON ||
		    type == CKPT_VMA_SHM_FILE)
			cv->file = get_file(vma->vm_file);
	}
	return 0;
}

static void put_vmas(struct crfs_ckpt *ck)
{
	while (ck->nr_vmas) {
		if (ck->vmas[--ck->nr_vmas].file)
			fput(ck->vmas[ck->nr_vmas].file);
	}
	kvfree(ck->vmas);
	ck->vmas = NULL;
}

/*
 * The VMAs of ck->mm, taken under its mmap_lock, which is then dropped: as the core
 * dump does (dump_vma_snapshot()), the file is written without it. Nothing else runs in
 * this mm (check_mms, add_task); should it change all the same, the pages are looked up
 * again under the lock and a page no longer there is skipped.
 */
static int collect_vmas(struct crfs_ckpt *ck)
{
	u32 max;
	int ret = 0;

	if (mmap_read_lock_killable(ck->mm))
		return -EINTR;
	max = ck->mm->map_count;
#ifdef CONFIG_MODIFY_LDT_SYSCALL
	if (ck->mm->context.ldt)
		ret = ck_fail(ck, -EOPNOTSUPP, "pid %d has an LDT", ck->vpid);
#endif
	if (!ret && max > CRFS_MAX_VMAS)
		ret = ck_fail(ck, -EOPNOTSUPP, "pid %d has %u VMAs", ck->vpid, max);
	if (!ret) {
		ck->vmas = kvmalloc_array(max_t(u32, max, 1), sizeof(*ck->vmas), GFP_KERNEL);
		if (!ck->vmas)
			ret = -ENOMEM;
	}
	if (!ret)
		ret = snapshot_vmas(ck, max);
	mmap_read_unlock(ck->mm);
	return ret;
}

/* CRFS_HDR_FILE_ID: what RESTART checks the file against (crfs_fileid.c) */
static int write_file_id(struct crfs_ckpt *ck, struct file *file)
{
	struct crfs_hdr_file_id id;
	int ret = crfs_file_id_of(file, &id);

	if (ret)
		return ck_fail(ck, ret, "stat of a mapped file failed");
	return ck_record(ck, CRFS_HDR_FILE_ID, &id, sizeof(id));
}

/* A FILE object; with @with_id (a file RESTART opens by name), its CRFS_HDR_FILE_ID. */
static int write_file(struct crfs_ckpt *ck, struct file *file, bool with_id,
		      s32 *objref)
{
	struct ckpt_hdr_file h = {
		.f_type = CKPT_FILE_GENERIC,
		.f_mode = file->f_mode & (FMODE_READ | FMODE_WRITE),
		.f_flags = file->f_flags,
	};
	char *name;
	int ret;

	ret = ck_object(ck, file, objref);
	if (ret || *objref > 0)
		return ret;
	*objref = -*objref;
	name = d_path(&file->f_path, ck->path, PATH_MAX);
	if (IS_ERR(name))
		return ck_fail(ck, PTR_ERR(name), "file name of a mapping");
	ret = ck_objref(ck, CKPT_OBJ_FILE, *objref);
	if (!ret)
		ret = ck_record(ck, CKPT_HDR_FILE, &h, sizeof(h));
	if (!ret)
		ret = ck_blob(ck, CKPT_HDR_FILE_NAME, name, strlen(name) + 1);
	if (!ret && with_id)
		ret = write_file_id(ck, file);
	return ret;
}

/*
 * Pins the pages from @addr on that the image may keep, at most @nr, into @pages: how
 * many (a run: get_user_pages_remote() stops at the first hole or zero page, which
 * FOLL_DUMP makes fail with -EFAULT), 0 when the page at @addr is such a page, or an error.
 */
static long pin_run(struct crfs_ckpt *ck, unsigned long addr, unsigned long nr,
		    struct page **pages)
{
	long n;

	n = get_user_pages_remote(ck->mm, addr, nr, FOLL_FORCE | FOLL_DUMP, pages, NULL, NULL);
	return n == -EFAULT ? 0 : n;
}

/* Whether the image keeps @page, pinned in a VMA of @type (else it is put). */
static bool kept_page(struct page *page, u32 type)
{
	if (type == CKPT_VMA_FILE && !PageAnon(page)) {
		put_page(page);		/* the file's own page: not written */
		return false;
	}
	return true;
}

static void put_pages(struct crfs_ckpt *ck, u32 n)
{
	while (n)
		put_page(ck->pages[--n]);
}

/*
 * The @n pinned pages of the chunk, written with as few vfs_iter_write() calls as the
 * file takes (one, normally), not one kernel_write() per page: under TCG each write's
 * fixed cost made the page loop slower than criu's whole dump.
 */
static int ck_write_pages(struct crfs_ckpt *ck, u32 n)
{
	struct iov_iter iter;
	ssize_t done;
	u32 i;

	for (i = 0; i < n; i++)
		bvec_set_page(&ck->bvecs[i], ck->pages[i], PAGE_SIZE, 0);
	iov_iter_bvec(&iter, ITER_SOURCE, ck->bvecs, n, (size_t)n * PAGE_SIZE);
	while (iov_iter_count(&iter)) {
		if (fatal_signal_pending(current))
			return -EINTR;
		file_start_write(ck->file);
		done = vfs_iter_write(ck->file, &iter, &ck->pos, 0);
		file_end_write(ck->file);
		if (done < 0)
			return ck_fail(ck, done, "writing the image failed");
		if (done == 0)
			return ck_fail(ck, -EIO, "the image file took no more bytes");
	}
	return 0;
}

static int write_chunk(struct crfs_ckpt *ck, u32 n)
{
	struct ckpt_hdr_pgarr pgarr = { .nr_pages = n };
	void *kaddr;
	u32 i;
	int ret;

	ret = ck_record(ck, CKPT_HDR_PGARR, &pgarr, sizeof(pgarr));
	if (!ret)
		ret = ck_frame(ck, CKPT_HDR_BUFFER, n * (sizeof(u64) + PAGE_SIZE));
	if (!ret)
		ret = ck_write(ck, ck->vaddrs, n * sizeof(u64));
	if (!ret && ck->file->f_op->write_iter)
		return ck_write_pages(ck, n);
	for (i = 0; !ret && i < n; i++) {
		kaddr = kmap_local_page(ck->pages[i]);
		ret = ck_write(ck, kaddr, PAGE_SIZE);
		kunmap_local(kaddr);
	}
	return ret;
}

/*
 * The @got pages pin_run() pinned at ck->pages[*@n] for *@addr on: those the image keeps
 * stay, packed from ck->pages[*@n] with their addresses; *@addr and *@n move past them.
 * Every kept page counts against max_pages (the rest of the run is put when it is met).
 */
static int keep_run(struct crfs_ckpt *ck, const struct ck_vma *cv, u32 type,
		    unsigned long *addr, u32 *n, long got)
{
	struct page **run = ck->pages + *n;
	long i;

	for (i = 0; i < got; i++, *addr += PAGE_SIZE) {
		if (!kept_page(run[i], type))
			continue;
		if (++ck->nr_pages > READ_ONCE(max_pages)) {
			while (i < got)
				put_page(run[i++]);
			return ck_fail(ck, -EFBIG, "more than %lu pages (max_pages)",
				       READ_ONCE(max_pages));
		}
		ck->pages[*n] = run[i];
		ck->vaddrs[(*n)++] = type == CKPT_VMA_SHM_ANON ?
			cv->pgoff + ((*addr - cv->start) >> PAGE_SHIFT) : *addr;
	}
	return 0;
}

/*
 * Pins the kept pages of @cv from *@addr on, up to a chunk, under the mmap_lock, into
 * ck->pages; *@n of them. Every page counts against max_pages.
 */
static int pin_chunk(struct crfs_ckpt *ck, const struct ck_vma *cv, u32 type,
		     unsigned long *addr, u32 *n)
{
	long got;
	int ret = 0;

	*n = 0;
	if (mmap_read_lock_killable(ck->mm))
		return -EINTR;
	while (!ret && *addr < cv->end && *n < CKPT_PGARR_BATCH) {
		if (fatal_signal_pending(current)) {
			ret = -EINTR;
			break;
		}
		got = pin_run(ck, *addr, min_t(unsigned long, (cv->end - *addr) >> PAGE_SHIFT,
					       CKPT_PGARR_BATCH - *n), ck->pages + *n);
		if (got < 0)
			ret = ck_fail(ck, got, "pid %d: cannot read %#lx", ck->vpid, *addr);
		else if (!got)
			*addr += PAGE_SIZE;	/* a page the image does not keep */
		else
			ret = keep_run(ck, cv, type, addr, n, got);
		cond_resched();
	}
	mmap_read_unlock(ck->mm);
	return ret;
}

/* CONTENTS: PGARR chunks of up to CKPT_PGARR_BATCH pages, then PGARR{0}. */
static int write_contents(struct crfs_ckpt *ck, const struct ck_vma *cv, u32 type)
{
	struct ckpt_hdr_pgarr end = { .nr_pages = 0 };
	unsigned long addr = cv->start;
	int ret = 0;
	u32 n;

	while (!ret && addr < cv->end) {
		ret = pin_chunk(ck, cv, type, &addr, &n);
		if (!ret && n)
			ret = write_chunk(ck, n);
		put_pages(ck, n);
	}
	return ret ? ret : ck_record(ck, CKPT_HDR_PGARR, &end, sizeof(end));
}

/*
 * Whether the contents of @cv are left for the clone of its process: private memory a
 * fork shares copy-on-write, which the clone maps alike. VM_DONTCOPY areas are not in
 * the clone and VM_WIPEONFORK ones are empty there: those are written now, as shared
 * memory is (the clone would see the program's later writes).
 */
static bool in_clone(struct crfs_ckpt *ck, const struct ck_vma *cv)
{
	struct vm_area_struct *vma;
	bool same;

	if (!ck->clone_mm || (cv->type != CKPT_VMA_ANON && cv->type != CKPT_VMA_FILE) ||
	    (cv->flags & (VM_DONTCOPY | VM_WIPEONFORK)))
		return false;
	if (mmap_read_lock_killable(ck->clone_mm))
		return false;
	vma = find_vma(ck->clone_mm, cv->start);
	same = vma && vma->vm_start == cv->start && vma->vm_end == cv->end &&
	       !(vma->vm_flags & (VM_WIPEONFORK | VM_SHARED)) &&
	       vma_is_anonymous(vma) == (cv->type == CKPT_VMA_ANON);
	mmap_read_unlock(ck->clone_mm);
	return same;
}

/*
 * A slot for the contents of @cv, written once the processes run on; from here the
 * records go to the spool until then.
 */
static int defer_contents(struct crfs_ckpt *ck, const struct ck_vma *cv)
{
	struct ck_slot *slot;

	if (ck->nr_slots == ck->max_slots) {
		u32 max = ck->max_slots ? ck->max_slots * 2 : 64;

		slot = kvrealloc(ck->slots, ck->max_slots * sizeof(*slot),
				 max * sizeof(*slot), GFP_KERNEL);
		if (!slot)
			return -ENOMEM;
		ck->slots = slot;
		ck->max_slots = max;
	}
	if (!ck->out) {
		ck->out = ck->file;
		ck->out_pos = ck->pos;
		ck->file = ck->spool;
		ck->pos = 0;
	}
	slot = &ck->slots[ck->nr_slots++];
	*slot = (struct ck_slot){
		.vma = *cv,
		.mm = ck->clone_mm,
		.vpid = ck->vpid,
		.spool_pos = ck->pos,
	};
	slot->vma.file = NULL;
	return 0;
}

/* SHM_ANON/SHM_FILE: the inode's objref; SHM_ANON_SKIP when its pages were written. */
static int shm_inode(struct crfs_ckpt *ck, struct file *file, struct ckpt_hdr_vma *h)
{
	struct inode *inode = file_inode(file);
	int ret;

	ret = ck_object(ck, inode, &h->ino_objref);
	if (ret)
		return ret;
	if (h->ino_objref < 0)
		h->ino_objref = -h->ino_objref;
	else if (h->vma_type == CKPT_VMA_SHM_ANON)
		h->vma_type = CKPT_VMA_SHM_ANON_SKIP;
	h->ino_size = i_size_read(inode);
	return 0;
}

static int write_vma(struct crfs_ckpt *ck, const struct ck_vma *cv)
{
	struct ckpt_hdr_vma h = {
		.vma_type = cv->type,
		.vm_start = cv->start,
		.vm_end = cv->end,
		.vm_page_prot = cv->prot,
		.vm_flags = cv->flags,
		.vm_pgoff = cv->pgoff,
	};
	int ret = 0;

	if (cv->file)
		ret = write_file(ck, cv->file, cv->type != CKPT_VMA_SHM_ANON,
				 &h.vma_objref);
	if (!ret && (cv->type == CKPT_VMA_SHM_ANON || cv->type == CKPT_VMA_SHM_FILE))
		ret = shm_inode(ck, cv->file, &h);
	if (!ret)
		ret = ck_record(ck, CKPT_HDR_VMA, &h, sizeof(h));
	if (ret || (h.vma_type != CKPT_VMA_ANON && h.vma_type != CKPT_VMA_FILE &&
		    h.vma_type != CKPT_VMA_SHM_ANON))
		return ret;
	if (in_clone(ck, cv))
		return defer_contents(ck, cv);
	return write_contents(ck, cv, h.vma_type);
}

/*
 * The struct file that stands for @exe in the image: a VMA's of the same inode when the
 * program maps it, so that they share one FILE object as they share a name (on overlayfs
 * the VMAs map the real file, opened with the exe's path, not the exe's own file).
 */
static struct file *exe_key(struct crfs_ckpt *ck, struct file *exe)
{
	struct inode *inode = d_real_inode(exe->f_path.dentry);
	u32 i;

	for (i = 0; i < ck->nr_vmas; i++)
		if (ck->vmas[i].file && ck->vmas[i].type != CKPT_VMA_SHM_ANON &&
		    d_real_inode(ck->vmas[i].file->f_path.dentry) == inode)
			return ck->vmas[i].file;
	return exe;
}

/*
 * The FILE object of mm->exe_file (/proc/PID/exe), before the MM record that names it;
 * *@objref 0 when there is none or it was unlinked since (no name leads to it: as the
 * ptrace checkpointer). The stopped process cannot exec: the file stays the mm's while
 * the image is written, so its address is a sound object key.
 */
static int write_exe(struct crfs_ckpt *ck, s32 *objref)
{
	struct file *exe;
	int ret;

	*objref = 0;
	rcu_read_lock();
	exe = rcu_dereference(ck->mm->exe_file);
	if (exe && !get_file_rcu(exe))
		exe = NULL;
	rcu_read_unlock();
	if (!exe)
		return 0;
	if (d_unlinked(exe->f_path.dentry)) {
		fput(exe);
		return 0;
	}
	ret = write_file(ck, exe_key(ck, exe), true, objref);
	fput(exe);
	return ret;
}

static int write_mm_header(struct crfs_ckpt *ck, s32 objref, u32 map_count)
{
	struct mm_struct *mm = ck->mm;
	struct ckpt_hdr_mm h = {
		.map_count = map_count,
		.def_flags = mm->def_flags,
		.start_code = mm->start_code,
		.end_code = mm->end_code,
		.start_data = mm->start_data,
		.end_data = mm->end_data,
		.start_brk = mm->start_brk,
		.brk = mm->brk,
		.start_stack = mm->start_stack,
		.arg_start = mm->arg_start,
		.arg_end = mm->arg_end,
		.env_start = mm->env_start,
		.env_end = mm->env_end,
	};
	int ret;

	BUILD_BUG_ON(sizeof(mm->saved_auxv) != AT_VECTOR_SIZE * sizeof(u64));
	ret = write_exe(ck, &h.exe_objref);
	if (!ret)
		ret = ck_objref(ck, CKPT_OBJ_MM, objref);
	if (!ret)
		ret = ck_record(ck, CKPT_HDR_MM, &h, sizeof(h));
	if (!ret)
		ret = ck_blob(ck, CKPT_HDR_BUFFER, mm->saved_auxv, sizeof(mm->saved_auxv));
	return ret;
}

/* OBJREF{MM} MM ... MM_CONTEXT_LDT of ck->mm, the new object @objref. */
static int write_mm(struct crfs_ckpt *ck, s32 objref)
{
	struct ckpt_hdr_mm_context ctx = {
		.vdso = (unsigned long)ck->mm->context.vdso,
		.ldt_entry_size = CKPT_LDT_ENTRY_SIZE,
	};
	u32 i;
	int ret;

	ret = collect_vmas(ck);
	if (!ret)
		ret = write_mm_header(ck, objref, ck->nr_vmas);
	for (i = 0; !ret && i < ck->nr_vmas; i++)
		ret = write_vma(ck, &ck->vmas[i]);
	for (i = 0; i < ck->nr_vmas && ck->vmas[i].type != CKPT_VMA_VDSO; i++)
		;
	if (i == ck->nr_vmas)
		ctx.vdso = 0;	/* unmapped by the program: restarted without one */
	if (!ret)
		ret = ck_record(ck, CKPT_HDR_MM_CONTEXT, &ctx, sizeof(ctx));
	if (!ret)
		ret = ck_frame(ck, CKPT_HDR_MM_CONTEXT_LDT, 0);
	put_vmas(ck);
	return ret;
}

/* ---------------------------------------------------------------- fs_struct, signals */

/* A FILE_NAME: @path as d_path() shows it from the caller's root (as /proc's links). */
static int write_path(struct crfs_ckpt *ck, const struct path *path)
{
	char *name = d_path(path, ck->path, PATH_MAX);

	if (IS_ERR(name))
		return ck_fail(ck, PTR_ERR(name), "pid %d: the path of its cwd or root",
			       ck->vpid);
	return ck_blob(ck, CKPT_HDR_FILE_NAME, name, strlen(name) + 1);
}

/* OBJREF{FS} FS FILE_NAME{pwd} FILE_NAME{root} CRFS_HDR_FS_EXT, at its first task. */
static int write_fs(struct crfs_ckpt *ck, s32 *objref)
{
	struct crfs_hdr_fs_ext ext = { 0 };
	struct ckpt_hdr_fs h = { 0 };
	struct path pwd, root;
	struct fs_struct *fs;
	int ret;

	task_lock(ck->task);
	fs = ck->task->fs;
	if (fs) {
		get_fs_pwd(fs, &pwd);
		get_fs_root(fs, &root);
		ext.umask = READ_ONCE(fs->umask);
	}
	task_unlock(ck->task);
	if (!fs)
		return ck_fail(ck, -ESRCH, "pid %d has no fs_struct", ck->vpid);
	ret = ck_object(ck, fs, objref);
	if (!ret && *objref < 0) {
		*objref = -*objref;
		ret = ck_objref(ck, CKPT_OBJ_FS, *objref);
		if (!ret)
			ret = ck_record(ck, CKPT_HDR_FS, &h, sizeof(h));
		if (!ret)
			ret = write_path(ck, &pwd);
		if (!ret)
			ret = write_path(ck, &root);
		if (!ret)
			ret = ck_record(ck, CRFS_HDR_FS_EXT, &ext, sizeof(ext));
	}
	path_put(&pwd);
	path_put(&root);
	return ret;
}

/* lock_task_sighand(), whose __lock_task_sighand() is not exported. */
struct sighand_struct *crfs_ck_lock_sighand(struct task_struct *t, unsigned long *flags)
{
	struct sighand_struct *sighand;

	rcu_read_lock();
	for (;;) {
		sighand = rcu_dereference(t->sighand);
		if (!sighand)
			break;
		spin_lock_irqsave(&sighand->siglock, *flags);
		if (likely(sighand == rcu_access_pointer(t->sighand)))
			break;
		spin_unlock_irqrestore(&sighand->siglock, *flags);
	}
	rcu_read_unlock();
	return sighand;
}

static int sighand_gone(struct crfs_ckpt *ck)
{
	return ck_fail(ck, -ESRCH, "pid %d exited while it was written", ck->vpid);
}

/* OBJREF{SIGHAND} SIGHAND, at the first task of its sighand_struct. */
static int write_sighand(struct crfs_ckpt *ck, s32 *objref)
{
	struct ckpt_hdr_sighand *h = ck->sighand;
	struct sighand_struct *sighand;
	const struct k_sigaction *k;
	unsigned long flags;
	int i, ret;

	ret = ck_object(ck, READ_ONCE(ck->task->sighand), objref);
	if (ret || *objref > 0)
		return ret;
	*objref = -*objref;
	memset(h, 0, sizeof(*h));
	sighand = crfs_ck_lock_sighand(ck->task, &flags);
	if (!sighand)
		return sighand_gone(ck);
	for (i = 0; i < CRFS_NSIG; i++) {
		k = &sighand->action[i];
		h->action[i]._sa_handler = (unsigned long)k->sa.sa_handler;
		h->action[i].sa_flags = k->sa.sa_flags;
		h->action[i].sa_restorer = (unsigned long)k->sa.sa_restorer;
		h->action[i].sa_mask = k->sa.sa_mask.sig[0];
	}
	spin_unlock_irqrestore(&sighand->siglock, flags);
	ret = ck_objref(ck, CKPT_OBJ_SIGHAND, *objref);
	return ret ? ret : ck_record(ck, CKPT_HDR_SIGHAND, h, sizeof(*h));
}

/* A siginfo as crfs/checkpoint/signals.py keeps it (linux-cr v21's fill_siginfo). */
static void to_ckpt_siginfo(struct ckpt_siginfo *c, const kernel_siginfo_t *k)
{
	int code = k->si_code, signo = k->si_signo;

	memset(c, 0, sizeof(*c));
	c->signo = signo;
	c->_errno = k->si_errno;
	c->code = code;
	if (code > 0 && code != SI_KERNEL && signo == SIGCHLD) {
		c->pid = k->si_pid;
		c->uid = k->si_uid;
		c->sigval_int = k->si_status;
		c->utime = k->si_utime;
		c->stime = k->si_stime;
	} else if (code > 0 && code != SI_KERNEL && signo >= 1 && signo <= CRFS_NSIG &&
		   (CK_FAULT_SIGNALS & BIT_ULL(signo - 1))) {
		c->sigval_ptr = (unsigned long)k->si_addr;
	} else if (code > 0 && code != SI_KERNEL && signo == SIGPOLL) {
		c->pid = k->si_band;
		c->sigval_int = k->si_fd;
	} else if (code == SI_TIMER) {
		c->pid = k->si_tid;
		c->uid = k->si_overrun;
		c->sigval_int = k->si_int;
		c->utime = (u32)k->si_sys_private;
	} else {
		c->pid = k->si_pid;
		c->uid = k->si_uid;
		c->sigval_ptr = (unsigned long)k->si_ptr;
	}
}

/* SIGINFO_RAW after a SIGPENDING of @n signals: their siginfo whole. */
static int write_raw(struct crfs_ckpt *ck, u32 n)
{
	struct crfs_hdr_siginfo_raw h = { .nr_pending = n };
	int ret;

	h.h.type = CRFS_HDR_SIGINFO_RAW;
	h.h.len = sizeof(h) + n * CRFS_SIGINFO_SIZE;
	ret = ck_write(ck, &h, sizeof(h));
	return ret ? ret : ck_write(ck, ck->rawinfo, n * CRFS_SIGINFO_SIZE);
}

/*
 * SIGPENDING of @t's shared or private queue: its mask, then its siginfo in order;
 * SIGINFO_RAW after it when it has any.
 */
static int write_pending(struct crfs_ckpt *ck, bool shared)
{
	struct ckpt_hdr_sigpending h = { 0 };
	struct sighand_struct *sighand;
	struct sigpending *p;
	struct sigqueue *q;
	unsigned long flags;
	bool over = false;
	u32 n = 0;
	int ret;

	sighand = crfs_ck_lock_sighand(ck->task, &flags);
	if (!sighand)
		return sighand_gone(ck);
	p = shared ? &ck->task->signal->shared_pending : &ck->task->pending;
	h.signal = p->signal.sig[0];
	list_for_each_entry(q, &p->list, list) {
		if (n == CRFS_MAX_PENDING) {
			over = true;
			break;
		}
		copy_siginfo(&ck->rawinfo[n], &q->info);
		to_ckpt_siginfo(&ck->siginfo[n++], &q->info);
	}
	spin_unlock_irqrestore(&sighand->siglock, flags);
	if (over)
		return ck_fail(ck, -EOPNOTSUPP, "pid %d: more than %d queued signals",
			       ck->vpid, CRFS_MAX_PENDING);
	h.nr_pending = n;
	h.h.type = CKPT_HDR_SIGPENDING;
	h.h.len = sizeof(h) + n * sizeof(struct ckpt_siginfo);
	ret = ck_write(ck, &h, sizeof(h));
	if (!ret)
		ret = ck_write(ck, ck->siginfo, n * sizeof(struct ckpt_siginfo));
	return ret || !n ? ret : write_raw(ck, n);
}

/* The rlimits, ITIMER_REAL, and ITIMER_VIRTUAL/PROF (crfs_task_misc.c). */
static int fill_signal(struct crfs_ckpt *ck, struct ckpt_hdr_signal *h)
{
	struct signal_struct *sig = ck->task->signal;
	struct sighand_struct *sighand;
	unsigned long flags;
	s64 left;
	int i;

	task_lock(ck->task->group_leader);
	for (i = 0; i < CRFS_RLIM_NLIMITS; i++) {
		h->rlim[i].rlim_cur = sig->rlim[i].rlim_cur;
		h->rlim[i].rlim_max = sig->rlim[i].rlim_max;
	}
	task_unlock(ck->task->group_leader);
	sighand = crfs_ck_lock_sighand(ck->task, &flags);
	if (!sighand)
		return sighand_gone(ck);
	if (hrtimer_active(&sig->real_timer)) {
		left = ktime_to_ns(__hrtimer_get_remaining(&sig->real_timer, false));
		h->it_real_value = left > 0 ? left : NSEC_PER_USEC;
	}
	h->it_real_incr = ktime_to_ns(sig->it_real_incr);
	crfs_itimers_fill(sig, h);
	spin_unlock_irqrestore(&sighand->siglock, flags);
	return 0;
}

/* SIGNAL_TASK, then SIGALTSTACK when the task has an alternate stack. */
static int write_signal_task(struct crfs_ckpt *ck)
{
	struct ckpt_hdr_signal_task h = { 0 };
	struct crfs_hdr_sigaltstack alt = { 0 };
	struct task_struct *t = ck->task;
	struct sighand_struct *sighand;
	unsigned long flags;
	int ret;

	sighand = crfs_ck_lock_sighand(t, &flags);
	if (!sighand)
		return sighand_gone(ck);
	h.blocked = t->blocked.sig[0];
	spin_unlock_irqrestore(&sighand->siglock, flags);
	ret = ck_record(ck, CKPT_HDR_SIGNAL_TASK, &h, sizeof(h));
	if (ret || !t->sas_ss_size)
		return ret;
	alt.ss_sp = t->sas_ss_sp;
	alt.ss_size = t->sas_ss_size;
	alt.ss_flags = t->sas_ss_flags & SS_FLAG_BITS;
	if (ck->cpu.sp > t->sas_ss_sp && ck->cpu.sp - t->sas_ss_sp <= t->sas_ss_size)
		alt.ss_flags |= SS_ONSTACK;	/* as sigaltstack(2) reports it */
	return ck_record(ck, CRFS_HDR_SIGALTSTACK, &alt, sizeof(alt));
}

/* [SIGNAL SIGPENDING{shared}] (at the first task of the process) SIGPENDING SIGNAL_TASK ... */
static int write_signals(struct crfs_ckpt *ck, bool new_group)
{
	struct ckpt_hdr_signal h = { 0 };
	int ret = 0;

	if (new_group) {
		ret = fill_signal(ck, &h);
		if (!ret)
			ret = ck_record(ck, CKPT_HDR_SIGNAL, &h, sizeof(h));
		if (!ret)
			ret = write_pending(ck, true);
	}
	if (!ret)
		ret = write_pending(ck, false);
	if (!ret)
		ret = write_signal_task(ck);
	if (!ret)
		ret = crfs_ts_checkpoint(ck, ck->task, new_group);
	if (!ret && new_group)
		ret = crfs_timers_checkpoint(ck, ck->task);
	return ret;
}

/* The fs and sighand objects of the task, at their first use, and the signal's ref. */
static int write_task_objs(struct crfs_ckpt *ck, struct ckpt_hdr_task_objs *objs,
			   bool *new_group)
{
	int ret;

	ret = write_fs(ck, &objs->fs_objref);
	if (!ret)
		ret = write_sighand(ck, &objs->sighand_objref);
	if (!ret)
		ret = ck_object(ck, ck->task->signal, &objs->signal_objref);
	*new_group = objs->signal_objref < 0;
	if (*new_group)
		objs->signal_objref = -objs->signal_objref;
	return ret;
}

static struct mm_struct *clone_mm_of(struct crfs_ckpt *ck, pid_t vtgid)
{
	u32 i;

	for (i = 0; i < ck->nr_clones; i++)
		if (ck->clones[i].vtgid == vtgid)
			return ck->clones[i].mm;
	return NULL;
}

/*
 * TASK STRING THREAD CPU CPU_FPU creds TASK_CREDS [the mm, fs, sighand at their first
 * task] TASK_OBJS [SIGNAL SIGPENDING] SIGPENDING SIGNAL_TASK [SIGALTSTACK]
 */
static int write_task(struct crfs_ckpt *ck, struct ck_task *ct)
{
	struct ckpt_hdr_task_objs objs = { 0 };
	bool new_group = false;
	int ret;

	ret = capture_cpu(ck, ct);
	if (!ret)
		ret = write_task_header(ck);
	if (!ret)
		ret = write_cpu(ck);
	if (!ret)
		ret = crfs_ckpt_creds(ck, ct->task);
	if (!ret)
		ret = crfs_ckpt_files(ck, ct->task, ck->vpid, &objs.files_objref);
	if (!ret)
		ret = ck_object(ck, ck->mm, &objs.mm_objref);
	if (!ret && objs.mm_objref < 0) {
		objs.mm_objref = -objs.mm_objref;
		ck->clone_mm = clone_mm_of(ck, ct->pids.vtgid);
		ret = write_mm(ck, objs.mm_objref);
	}
	if (!ret)
		ret = write_task_objs(ck, &objs, &new_group);
	if (!ret)
		ret = ck_record(ck, CKPT_HDR_TASK_OBJS, &objs, sizeof(objs));
	return ret ? ret : write_signals(ck, new_group);
}

static int write_image(struct crfs_ckpt *ck)
{
	struct ckpt_hdr_tail tail = { .magic = CHECKPOINT_MAGIC_TAIL };
	u32 i;
	int ret;

	ret = write_header(ck);
	if (!ret)
		ret = write_tree(ck);
	for (i = 0; !ret && i < ck->nr_tasks; i++)
		ret = write_task(ck, &ck->tasks[i]);
	if (!ret)
		ret = crfs_ts_write_zombies(ck, ck->zombies);
	if (!ret)
		ret = ck_record(ck, CKPT_HDR_TAIL, &tail, sizeof(tail));
	return ret;
}

/* ---------------------------------------------------------------- the tasks */

/*
 * Whether @t is in a ptrace stop, traced by a thread of the caller's process: the thread
 * that seized it, or another one of the same process (SNAPSHOT's caller lets the tasks
 * go from that thread while this one writes), which could read its tracee's memory
 * anyway. Under rcu_read_lock().
 */
static bool stopped_by_caller(struct task_struct *t)
{
	return t->ptrace && same_thread_group(rcu_dereference(t->parent), current) &&
	       task_is_traced(t);
}

/*
 * Appends @t to the tasks, with a reference, if the caller is its ptracer and it is in a
 * ptrace stop. Under rcu_read_lock().
 */
static int add_task(struct crfs_ckpt *ck, struct task_struct *t)
{
	struct ck_task *ct;
	pid_t tid = task_pid_vnr(t), tgid = task_tgid_vnr(t);

	if (!stopped_by_caller(t)) {
		if (tid == tgid)
			return ck_fail(ck, -EPERM, "pid %d is not ptrace-stopped by the caller",
				       tid);
		return ck_fail(ck, -EPERM,
			       "thread %d of pid %d is not ptrace-stopped by the caller",
			       tid, tgid);
	}
	if (ck->nr_tasks + ck->nr_stack >= CRFS_MAX_TASKS)
		return ck_fail(ck, -EOPNOTSUPP, "more than %d tasks", CRFS_MAX_TASKS);
	ct = &ck->tasks[ck->nr_tasks++];
	get_task_struct(t);
	ct->task = t;
	ct->pids.vpid = tid;
	ct->pids.vtgid = tgid;
	ct->pids.vppid = task_tgid_vnr(rcu_dereference(t->real_parent));
	ct->pids.vpgid = task_pgrp_vnr(t);
	ct->pids.vsid = task_session_vnr(t);
	return 0;
}

static int cmp_vpid(const void *a, const void *b)
{
	const struct ck_task *x = a, *y = b;

	return (x->pids.vpid > y->pids.vpid) - (x->pids.vpid < y->pids.vpid);
}

/* The tasks of process @p: its leader, then its other threads by tid (zombies left out). */
static int add_process(struct crfs_ckpt *ck, struct task_struct *p)
{
	u32 first = ck->nr_tasks;
	struct task_struct *t;
	int ret;

	rcu_read_lock();
	ret = add_task(ck, p);
	if (!ret) {
		for_each_thread(p, t) {
			if (t == p || t->exit_state)
				continue;
			ret = add_task(ck, t);
			if (ret)
				break;
		}
	}
	rcu_read_unlock();
	if (!ret && ck->nr_tasks > first + 1)
		sort(&ck->tasks[first + 1], ck->nr_tasks - first - 1, sizeof(*ck->tasks),
		     cmp_vpid, NULL);
	return ret;
}

static bool is_clone(struct crfs_ckpt *ck, struct task_struct *t)
{
	u32 i;

	for (i = 0; i < ck->nr_clones; i++)
		if (ck->clones[i].task == t)
			return true;
	return false;
}

/*
 * Pushes the children of process @p (processes whose real parent is one of its threads)
 * that have not exited, so that the one with the lowest pid is visited first.
 */
static int push_children(struct crfs_ckpt *ck, struct task_struct *p)
{
	struct pid_namespace *ns = task_active_pid_ns(current);
	struct task_struct *c;
	u32 base = ck->nr_stack, i, j;
	struct pid *pid;
	int nr = 1, ret = 0;

	rcu_read_lock();
	while ((pid = find_ge_pid(nr, ns))) {
		nr = pid_nr_ns(pid, ns) + 1;
		c = pid_task(pid, PIDTYPE_TGID);
		if (!c || rcu_dereference(c->real_parent)->tgid != p->tgid || is_clone(ck, c))
			continue;
		if (c->exit_state) {	/* a zombie is kept, a process exiting is not */
			ret = crfs_ts_add_zombie(ck, ck->zombies, c, ck->nr_tasks + ck->nr_stack);
			if (ret < 0)
				break;
			ret = 0;
			continue;
		}
		if (ck->nr_tasks + ck->nr_stack >= CRFS_MAX_TASKS) {
			ret = ck_fail(ck, -EOPNOTSUPP, "more than %d tasks", CRFS_MAX_TASKS);
			break;
		}
		get_task_struct(c);
		ck->stack[ck->nr_stack++] = c;
	}
	rcu_read_unlock();
	for (i = base, j = ck->nr_stack; i + 1 < j; i++, j--)
		swap(ck->stack[i], ck->stack[j - 1]);
	return ret;
}

/*
 * The tasks of process @pid and, with @tree, of its descendants, depth first, in the
 * order of crfs/checkpoint/freezer.py (see the top of this file).
 */
static int collect_tasks(struct crfs_ckpt *ck, pid_t pid, bool tree)
{
	struct task_struct *p;
	int ret = 0;

	rcu_read_lock();
	p = pid > 0 ? pid_task(find_vpid(pid), PIDTYPE_PID) : NULL;
	if (p)
		get_task_struct(p);
	rcu_read_unlock();
	if (!p)
		return ck_fail(ck, -ESRCH, "no process %d", pid);
	ck->stack[ck->nr_stack++] = p;
	if (!thread_group_leader(p))
		return ck_fail(ck, -EINVAL, "pid %d is a thread of process %d", pid,
			       task_tgid_vnr(p));
	while (!ret && ck->nr_stack) {
		p = ck->stack[--ck->nr_stack];
		if (!p->exit_state) {	/* a child that exited meanwhile is left out */
			ret = add_process(ck, p);
			if (!ret && tree)
				ret = push_children(ck, p);
		}
		put_task_struct(p);
		cond_resched();
	}
	/*
	 * The root is checked once, in the loop: it may exit at any time before it (a
	 * SIGKILL wakes a ptrace stop), and the steps after this one need a task 0.
	 */
	if (!ret && !ck->nr_tasks)
		return ck_fail(ck, -ESRCH, "pid %d has exited", pid);
	return ret;
}

/*
 * As ptrace_access_vm() requires of a tracer reading a tracee's memory: the mm of a
 * process that is not dumpable (it changed its credentials, or PR_SET_DUMPABLE 0) is
 * read only by a caller with CAP_SYS_PTRACE over its user namespace. ptracer_capable()
 * is not exported: the caller is the tracer, so its current capabilities are checked.
 */
static int check_dumpable(struct crfs_ckpt *ck, struct ck_task *ct)
{
	if (get_dumpable(ct->mm) == SUID_DUMP_USER ||
	    ns_capable_noaudit(ct->mm->user_ns, CAP_SYS_PTRACE))
		return 0;
	return ck_fail(ck, -EPERM, "pid %d is not dumpable and the caller lacks CAP_SYS_PTRACE",
		       ct->pids.vpid);
}

/*
 * Every task's mm, readable by the caller; no process may share its mm with another one
 * (CLONE_VM without CLONE_THREAD, or vfork): it could run in it while it is read.
 */
static int check_mms(struct crfs_ckpt *ck)
{
	struct ck_task *ct;
	u32 i, j;

	for (i = 0; i < ck->nr_tasks; i++) {
		ct = &ck->tasks[i];
		ct->mm = get_task_mm(ct->task);
		if (!ct->mm)
			return ck_fail(ck, -ESRCH, "pid %d has no memory (exiting)",
				       ct->pids.vpid);
		if (check_dumpable(ck, ct))
			return -EPERM;
		if (ct->pids.vpid != ct->pids.vtgid)
			continue;	/* a thread: its leader was checked */
		if (test_bit(MMF_MULTIPROCESS, &ct->mm->flags))
			return ck_fail(ck, -EOPNOTSUPP,
				       "pid %d shares its memory with another process",
				       ct->pids.vpid);
		for (j = 0; j < i; j++)
			if (ck->tasks[j].mm == ct->mm)
				return ck_fail(ck, -EOPNOTSUPP,
					       "pids %d and %d share their memory",
					       ck->tasks[j].pids.vtgid, ct->pids.vpid);
	}
	return 0;
}

/* Every task is a 64-bit task whose registers and FPU state can be written. */
static int check_cpus(struct crfs_ckpt *ck)
{
	u32 i;
	int ret = alloc_xstate(ck);

	for (i = 0; !ret && i < ck->nr_tasks; i++)
		ret = capture_cpu(ck, &ck->tasks[i]);
	return ret;
}

/* ---------------------------------------------------------------- the call */

static int open_output(struct crfs_ckpt *ck, int fd)
{
	ck->file = fget(fd);
	if (!ck->file)
		return -EBADF;
	if (!(ck->file->f_mode & FMODE_WRITE))
		return -EBADF;
	if (!S_ISREG(file_inode(ck->file)->i_mode))
		return ck_fail(ck, -EINVAL, "not a regular file");
	ck->pos = ck->file->f_pos;
	ck->start_pos = ck->pos;
	return 0;
}

static int alloc_buffers(struct crfs_ckpt *ck)
{
	ck->tasks = kvcalloc(CRFS_MAX_TASKS, sizeof(*ck->tasks), GFP_KERNEL);
	ck->stack = kvmalloc_array(CRFS_MAX_TASKS, sizeof(*ck->stack), GFP_KERNEL);
	ck->vaddrs = kvmalloc_array(CKPT_PGARR_BATCH, sizeof(*ck->vaddrs), GFP_KERNEL);
	ck->pages = kvmalloc_array(CKPT_PGARR_BATCH, sizeof(*ck->pages), GFP_KERNEL);
	ck->bvecs = kvmalloc_array(CKPT_PGARR_BATCH, sizeof(*ck->bvecs), GFP_KERNEL);
	ck->path = kmalloc(PATH_MAX, GFP_KERNEL);
	ck->sighand = kmalloc(sizeof(*ck->sighand), GFP_KERNEL);
	ck->siginfo = kvmalloc_array(CRFS_MAX_PENDING, sizeof(*ck->siginfo), GFP_KERNEL);
	ck->rawinfo = kvmalloc_array(CRFS_MAX_PENDING, sizeof(*ck->rawinfo), GFP_KERNEL);
	ck->zombies = crfs_ts_zombies_alloc();
	if (!ck->tasks || !ck->stack || !ck->vaddrs || !ck->pages || !ck->bvecs || !ck->path ||
	    !ck->sighand || !ck->siginfo || !ck->rawinfo || !ck->zombies)
		return -ENOMEM;
	return 0;
}

static void free_ckpt(struct crfs_ckpt *ck)
{
	struct ck_task *ct;
	u32 i;

	put_vmas(ck);
	xa_destroy(&ck->objs);
	for (i = 0; i < ck->nr_tasks; i++) {
		ct = &ck->tasks[i];
		if (ct->mm)
			mmput(ct->mm);
		put_task_struct(ct->task);
	}
	while (ck->nr_stack)
		put_task_struct(ck->stack[--ck->nr_stack]);
	kvfree(ck->tasks);
	kvfree(ck->stack);
	kvfree(ck->vaddrs);
	kvfree(ck->pages);
	kvfree(ck->bvecs);
	kfree(ck->path);
	kfree(ck->sighand);
	kvfree(ck->siginfo);
	kvfree(ck->rawinfo);
	crfs_ts_zombies_free(ck->zombies);
	kvfree(ck->xstate);
	for (i = 0; i < ck->nr_clones; i++) {
		if (ck->clones[i].mm)
			mmput(ck->clones[i].mm);
		put_task_struct(ck->clones[i].task);
	}
	kvfree(ck->clones);
	kvfree(ck->slots);
	if (ck->out)
		fput(ck->out);
	if (ck->spool && ck->spool != ck->file)
		fput(ck->spool);
	if (ck->resume)
		eventfd_ctx_put(ck->resume);
	if (ck->file)
		fput(ck->file);
	kfree(ck);
}

/* ---------------------------------------------------------------- snapshots */

/*
 * @c->clone is a clone of @c->pid: a single-threaded child of one of its threads,
 * ptrace-stopped by the caller. Under rcu_read_lock().
 */
static int check_clone(struct crfs_ckpt *ck, const struct crfs_clone *c, struct ck_clone *cc)
{
	struct task_struct *t = c->clone > 0 ? pid_task(find_vpid(c->clone), PIDTYPE_PID) : NULL;
	struct task_struct *p = c->pid > 0 ? pid_task(find_vpid(c->pid), PIDTYPE_PID) : NULL;

	if (!t || !p)
		return ck_fail(ck, -ESRCH, "no clone %d of pid %d", c->clone, c->pid);
	if (t == p || !thread_group_leader(t) || !thread_group_leader(p) ||
	    get_nr_threads(t) != 1 || t->exit_state ||
	    rcu_dereference(t->real_parent)->tgid != p->tgid)
		return ck_fail(ck, -EINVAL, "%d is not a clone of pid %d", c->clone, c->pid);
	if (!stopped_by_caller(t))
		return ck_fail(ck, -EPERM, "clone %d is not ptrace-stopped by the caller",
			       c->clone);
	cc->task = get_task_struct(t);
	cc->vtgid = c->pid;
	return 0;
}

/* The clones of @args, each with its mm; none twice. */
static int collect_clones(struct crfs_ckpt *ck, const struct crfs_snapshot_args *args)
{
	struct crfs_clone *user;
	struct ck_clone *cc;
	u32 i, j;
	int ret = 0;

	if (!args->nr_clones)
		return 0;
	if (args->nr_clones > CRFS_MAX_TASKS)
		return ck_fail(ck, -EINVAL, "more than %d clones", CRFS_MAX_TASKS);
	ck->clones = kvcalloc(args->nr_clones, sizeof(*ck->clones), GFP_KERNEL);
	if (!ck->clones)
		return -ENOMEM;
	user = memdup_user(u64_to_user_ptr(args->clones), args->nr_clones * sizeof(*user));
	if (IS_ERR(user))
		return PTR_ERR(user);
	for (i = 0; !ret && i < args->nr_clones; i++) {
		for (j = 0; j < i; j++)
			if (user[j].pid == user[i].pid || user[j].clone == user[i].clone)
				ret = ck_fail(ck, -EINVAL, "pid %d or clone %d given twice",
					      user[i].pid, user[i].clone);
		cc = &ck->clones[i];
		rcu_read_lock();
		if (!ret)
			ret = check_clone(ck, &user[i], cc);
		rcu_read_unlock();
		if (ret)
			break;
		ck->nr_clones++;
		cc->mm = get_task_mm(cc->task);
		if (!cc->mm)
			ret = ck_fail(ck, -ESRCH, "clone %d has exited", user[i].clone);
		else if (get_dumpable(cc->mm) != SUID_DUMP_USER &&
			 !ns_capable_noaudit(cc->mm->user_ns, CAP_SYS_PTRACE))
			ret = ck_fail(ck, -EPERM,
				      "clone %d is not dumpable and the caller lacks CAP_SYS_PTRACE",
				      user[i].clone);
	}
	kfree(user);
	return ret;
}

/*
 * Each clone is of a process written here. Its mm is its own: a child sharing its
 * parent's is a thread (refused above), a CLONE_VM process (check_mms refuses the
 * parent) or a vfork child, whose parent cannot be in a ptrace stop until it is gone.
 */
static int check_clones(struct crfs_ckpt *ck)
{
	u32 i, j;

	for (i = 0; i < ck->nr_clones; i++) {
		for (j = 0; j < ck->nr_tasks; j++)
			if (ck->tasks[j].pids.vpid == ck->clones[i].vtgid &&
			    ck->tasks[j].pids.vtgid == ck->clones[i].vtgid)
				break;
		if (j == ck->nr_tasks)
			return ck_fail(ck, -EINVAL, "pid %d has a clone but is not written",
				       ck->clones[i].vtgid);
	}
	return 0;
}

static int open_snapshot(struct crfs_ckpt *ck, const struct crfs_snapshot_args *args)
{
	ck->resume = eventfd_ctx_fdget(args->resume_fd);
	if (IS_ERR(ck->resume)) {
		ck->resume = NULL;
		return -EBADF;
	}
	ck->spool = fget(args->spool_fd);
	if (!ck->spool)
		return -EBADF;
	if ((ck->spool->f_mode & (FMODE_READ | FMODE_WRITE)) != (FMODE_READ | FMODE_WRITE))
		return -EBADF;
	if (!S_ISREG(file_inode(ck->spool)->i_mode))
		return ck_fail(ck, -EINVAL, "the spool is not a regular file");
	return 0;
}

/* Records go to the image again, after what it holds; the spool ends where they were. */
static void unspool(struct crfs_ckpt *ck)
{
	if (!ck->out)
		return;
	ck->spool_end = ck->pos;
	ck->file = ck->out;
	ck->pos = ck->out_pos;
	ck->out = NULL;
}

#define CK_COPY_SIZE	(64 * 1024)

static int copy_spool(struct crfs_ckpt *ck, loff_t from, loff_t to, void *buf)
{
	ssize_t n;
	int ret = 0;

	while (!ret && from < to) {
		n = kernel_read(ck->spool, buf, min_t(loff_t, to - from, CK_COPY_SIZE), &from);
		if (n <= 0)
			return ck_fail(ck, n < 0 ? n : -EIO, "reading the spool failed");
		ret = ck_write(ck, buf, n);
	}
	return ret;
}

/*
 * Once the processes run on: each slot's pages from its clone's mm, which still holds
 * the memory of the instant of the clone, then the records spooled after it.
 */
static int write_slots(struct crfs_ckpt *ck)
{
	const struct ck_slot *slot;
	loff_t end;
	void *buf;
	u32 i;
	int ret = 0;

	unspool(ck);
	if (!ck->nr_slots)
		return 0;
	buf = kvmalloc(CK_COPY_SIZE, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	for (i = 0; !ret && i < ck->nr_slots; i++) {
		slot = &ck->slots[i];
		ck->mm = slot->mm;
		ck->vpid = slot->vpid;
		end = i + 1 < ck->nr_slots ? ck->slots[i + 1].spool_pos : ck->spool_end;
		ret = write_contents(ck, &slot->vma, slot->vma.type);
		if (!ret)
			ret = copy_spool(ck, slot->spool_pos, end, buf);
	}
	kvfree(buf);
	return ret;
}

/* ---------------------------------------------------------------- the calls */

/*
 * CHECKPOINT, and with @snap, SNAPSHOT: the same image, whose private memory is read
 * from the clones after @snap->resume_fd told the caller the processes may run on.
 */
static int do_checkpoint(struct crfs_ckpt *ck, const struct crfs_checkpoint_args *args,
			 const struct crfs_snapshot_args *snap)
{
	int ret;

	ret = open_output(ck, args->fd);
	if (!ret)
		ret = alloc_buffers(ck);
	if (!ret && snap)
		ret = open_snapshot(ck, snap);
	if (!ret && snap)
		ret = collect_clones(ck, snap);
	if (!ret)
		ret = collect_tasks(ck, args->pid, args->flags & CRFS_CHECKPOINT_TREE);
	if (!ret)
		ret = check_mms(ck);
	if (!ret)
		ret = check_clones(ck);
	if (!ret)
		ret = check_cpus(ck);
	if (!ret)
		ret = write_image(ck);
	if (!ret && ck->resume)
		eventfd_signal(ck->resume, 1);
	if (!ret)
		ret = write_slots(ck);
	unspool(ck);
	if (ck->pos > ck->start_pos)
		ck->file->f_pos = ck->pos;
	return ret;
}

static long checkpoint(struct crfs_checkpoint_args *args,
		       const struct crfs_snapshot_args *snap)
{
	struct crfs_ckpt *ck;
	long ret;

	ck = kzalloc(sizeof(*ck), GFP_KERNEL);
	if (!ck)
		return -ENOMEM;
	xa_init(&ck->objs);
	ret = do_checkpoint(ck, args, snap);
	args->written = ck->pos - ck->start_pos;
	memcpy(args->err_msg, ck->err_msg, sizeof(args->err_msg));
	args->err_msg[sizeof(args->err_msg) - 1] = '\0';
	free_ckpt(ck);
	return ret;
}

long crfs_ioctl_checkpoint(struct crfs_checkpoint_args __user *uargs)
{
	struct crfs_checkpoint_args args;
	long ret;

	if (copy_from_user(&args, uargs, sizeof(args)))
		return -EFAULT;
	if ((args.flags & ~CRFS_CHECKPOINT_TREE) || args.__reserved)
		return -EINVAL;
	ret = checkpoint(&args, NULL);
	if (copy_to_user(uargs, &args, sizeof(args)))
		ret = -EFAULT;
	return ret;
}

long crfs_ioctl_snapshot(struct crfs_snapshot_args __user *uargs)
{
	struct crfs_snapshot_args args;
	long ret;

	if (copy_from_user(&args, uargs, sizeof(args)))
		return -EFAULT;
	if ((args.ck.flags & ~CRFS_CHECKPOINT_TREE) || args.ck.__reserved || args.__reserved)
		return -EINVAL;
	ret = checkpoint(&args.ck, &args);
	if (copy_to_user(uargs, &args, sizeof(args)))
		ret = -EFAULT;
	return ret;
}
