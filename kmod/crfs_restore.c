// SPDX-License-Identifier: GPL-2.0
/*
 * CRFS_IOC_RESTART, the act step: restore one task of a validated image into the caller.
 *
 * The task's process is restored by as many threads of the caller as it had: one call per
 * task. A single-threaded process is restored by one call; the threads of a multi-threaded
 * one meet in a struct crfs_group (crfs_group.c), where the leader's call rebuilds the
 * memory they share while the others sleep, and each restores its own registers.
 *
 * Everything that can fail on the image or on the caller is done first, while the
 * caller is intact, and fails with an errno (err_msg says why):
 *   prepare: tasks sharing an mm are the threads of one process; a caller with one
 *            thread per task of that process (the leader's task in its main thread); a
 *            64-bit task without LDT or SysV shm; the image's vdso where the caller's is
 *            (the user-space restarter moves [vvar]+[vdso] there with mremap); no image
 *            VMA over the caller's [vvar]/[vdso]; the task's credentials (the image's
 *            TASK_CREDS, bounded by the caller's: never more than the original had nor
 *            than the caller has); every mapped file opened with them; shared anonymous
 *            memory built in shmem files; the files of the fd table opened (with the
 *            task's credentials); the xstate checked by a dry run of the kernel's uabi
 *            copy on a scratch fpstate.
 * Then the point of no return (for a thread group: once every thread is prepared):
 *   act:     (leader) unmap everything but [vvar]/[vdso]; map every VMA at its address;
 *            fill the dumped pages; mm fields, auxv; (every thread) comm, FPU/xstate,
 *            per-task pointers, commit_creds(); queue a task_work that sets the general
 *            registers and fs/gs base (the leader's also installs the fd table opened in
 *            prepare, crfs_files.c) on the way back to user space.
 * A failure after the point of no return kills the caller with SIGKILL: it never runs
 * half restored. The caller's signal handlers and mask are kept, and its credentials
 * when the image has no TASK_CREDS.
 */
#include <linux/capability.h>
#include <linux/compat.h>
#include <linux/cred.h>
#include <linux/fdtable.h>
#include <linux/file.h>
#include <linux/futex.h>
#include <linux/mount.h>
#include <linux/mman.h>
#include <linux/mm.h>
#include <linux/sched/mm.h>
#include <linux/securebits.h>
#include <linux/sched/signal.h>
#include <linux/sched/task.h>
#include <linux/sched/task_stack.h>
#include <linux/shmem_fs.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/task_work.h>
#include <linux/uaccess.h>
#include <linux/xarray.h>
#include <asm/fpu/api.h>
#include <asm/fpu/types.h>
#include <asm/fpu/xcr.h>
#include <asm/fsgsbase.h>
#include <asm/pkru.h>
#include <asm/segment.h>

#include "crfs.h"

#define FILL_PAGES	64		/* pages per bounce-buffer read */
#define FILL_DIRECT_PAGES 1024		/* pages per read into user memory (4 MiB) */
#define VM_PROT_BITS	(VM_READ | VM_WRITE | VM_EXEC)
/* user-controlled EFLAGS bits (TF and RF are left to the kernel) */
#define USER_FLAGS	(X86_EFLAGS_AC | X86_EFLAGS_OF | X86_EFLAGS_DF | \
			 X86_EFLAGS_SF | X86_EFLAGS_ZF | X86_EFLAGS_AF | \
			 X86_EFLAGS_PF | X86_EFLAGS_CF)
#define SYSCALL_INSN_LEN 2
/* securebits that only take privilege away: an image's are added to the caller's */
#define RESTRICTING_SECUREBITS	(issecure_mask(SECURE_NOROOT) | \
				 issecure_mask(SECURE_NOROOT_LOCKED) | \
				 issecure_mask(SECURE_NO_CAP_AMBIENT_RAISE) | \
				 issecure_mask(SECURE_NO_CAP_AMBIENT_RAISE_LOCKED))
#define NR_IDS		4		/* real, effective, saved, fs */

/*
 * Shared anonymous memory of the image: one shmem file per ino_objref, made by the first
 * process of the restart that maps it and taken by the others (crfs_shared_file()).
 */
struct crfs_shm {
	struct file *file;
	u64 size;		/* bytes: the largest extent any VMA of any process maps */
	struct crfs_vma *dump;	/* the SHM_ANON VMA that holds the pages */
	const struct crfs_mm *last;	/* the last process counted in users */
	u32 users;		/* processes that map it */
	bool mapped;		/* by the process restored */
};

/* The general registers, fs/gs base: set by a task_work on the way to user space. */
struct crfs_regs_work {
	struct callback_head cb;
	struct ckpt_hdr_cpu cpu;
	bool close_fds;		/* the process's leader: close the restarter's fds */
	struct crfs_files *files;	/* the leader's: the image's fd table, opened */
	struct crfs_group *group;	/* of a threaded process: its call's membership */
	struct crfs_lazy *lazy;		/* the leader's, lazy: the pages left out */
	struct callback_head lazy_cb;	/* its wait for the page server */
	bool leader;
};

struct crfs_restore {
	struct crfs_plan *plan;
	struct crfs_image *img;
	u32 index;			/* of the task restored, in the TREE */
	u32 leader;			/* the index of its process's leader */
	u32 nr_threads;			/* tasks in its process */
	struct crfs_group *group;	/* the rendezvous, when nr_threads > 1 */
	struct crfs_task *task;
	struct crfs_mm *mm;
	struct file **files;		/* per image VMA: the file to map, or NULL */
	struct xarray shm;		/* ino_objref -> struct crfs_shm */
	unsigned long keep_start;	/* the caller's [vvar] + [vdso] */
	unsigned long keep_end;
	unsigned long vdso_start;
	unsigned long vdso_end;
	void *xstate;			/* uabi xstate, xstate_len bytes */
	size_t xstate_len;
	u32 pkru;
	struct crfs_regs_work *work;
	void *buf;			/* FILL_PAGES pages */
	struct cred *cred;		/* the task's, prepared; NULL: the caller's */
	struct file *exe;		/* mm->exe_file to be, write denied (crfs_exe.c) */
	bool exe_privileged;		/* the caller may name any executable */
	struct crfs_sig_restore sig;	/* signals, limits, fs_struct (crfs_signal.c) */
};

__printf(3, 4)
static int refuse(struct crfs_restore *rs, int err, const char *fmt, ...)
{
	va_list args;

	va_start(args, fmt);
	vscnprintf(rs->img->err_msg, sizeof(rs->img->err_msg), fmt, args);
	va_end(args);
	return err;
}

/* ---------------------------------------------------------------- prepare: checks */

static bool is_leader(const struct crfs_restore *rs)
{
	return rs->index == rs->leader;
}

/*
 * One thread of the caller per task of the process. The leader's call, made last by
 * crfs-restart, sees them all; a thread's call may come before its siblings exist (the
 * leader checks them again when it commits).
 */
static int check_caller(struct crfs_restore *rs)
{
	struct mm_struct *mm = current->mm;

	if (!mm || current->flags & PF_KTHREAD)
		return refuse(rs, -EINVAL, "the caller has no address space");
	if (test_thread_flag(TIF_ADDR32) || in_compat_syscall())
		return refuse(rs, -EOPNOTSUPP, "the caller must be a 64-bit process");
	if (rs->nr_threads == 1 &&
	    (get_nr_threads(current) != 1 || atomic_read(&mm->mm_users) != 1))
		return refuse(rs, -EBUSY,
			      "the caller must be single-threaded and not share its mm");
	if (thread_group_leader(current) != is_leader(rs))
		return refuse(rs, -EBUSY, "task %u must be restored by %s", rs->index,
			      is_leader(rs) ? "the caller's main thread" :
			      "a thread other than the caller's main one");
	if (is_leader(rs) && get_nr_threads(current) != rs->nr_threads)
		return refuse(rs, -EBUSY,
			      "the image's process has %u threads, the caller %d: one thread per task",
			      rs->nr_threads, get_nr_threads(current));
	return 0;
}

/*
 * Tasks sharing an mm must be the threads of one process (same tgid, whose leader is in
 * the image); set rs->leader and rs->nr_threads for the task restored.
 */
static int check_threads(struct crfs_restore *rs)
{
	struct crfs_plan *plan = rs->plan;
	struct crfs_task *a, *b;
	bool led;
	u32 i, j;

	for (i = 0; i < plan->nr_tasks; i++) {
		a = &plan->tasks[i];
		led = false;
		for (j = 0; j < plan->nr_tasks; j++) {
			b = &plan->tasks[j];
			if (b->pids.vpid == a->pids.vtgid && b->pids.vtgid == a->pids.vtgid)
				led = true;
			if (j == i)
				continue;
			if (b->pids.vpid == a->pids.vpid)
				return refuse(rs, -EINVAL, "tasks %u and %u have one pid %d",
					      i, j, a->pids.vpid);
			if (a->pids.vtgid != b->pids.vtgid && a->mm && a->mm == b->mm)
				return refuse(rs, -EOPNOTSUPP,
					      "tasks %u and %u share an mm but are not threads of one process",
					      i, j);
			if (a->pids.vtgid == b->pids.vtgid && a->mm != b->mm)
				return refuse(rs, -EINVAL,
					      "tasks %u and %u are threads of pid %d with different mms",
					      i, j, a->pids.vtgid);
		}
		if (!led)
			return refuse(rs, -EINVAL,
				      "task %u: the leader of its thread group %d is not in the image",
				      i, a->pids.vtgid);
		cond_resched();
	}
	a = &plan->tasks[rs->index];
	for (i = 0; i < plan->nr_tasks; i++) {
		b = &plan->tasks[i];
		if (b->pids.vtgid != a->pids.vtgid)
			continue;
		rs->nr_threads++;
		if (b->pids.vpid == b->pids.vtgid)
			rs->leader = i;
	}
	return 0;
}

/* A VMA of segment @h->ino_objref in process @mm: its extent and its users. */
static int count_shm(struct crfs_restore *rs, const struct crfs_mm *mm,
		     struct crfs_vma *vma)
{
	struct ckpt_hdr_vma *h = &vma->h;
	u64 end = ((h->vm_pgoff << PAGE_SHIFT) + h->vm_end - h->vm_start);
	struct crfs_shm *shm;
	int ret;

	shm = xa_load(&rs->shm, h->ino_objref);
	if (!shm) {
		shm = kzalloc(sizeof(*shm), GFP_KERNEL_ACCOUNT);
		if (!shm)
			return -ENOMEM;
		ret = xa_insert(&rs->shm, h->ino_objref, shm, GFP_KERNEL_ACCOUNT);
		if (ret) {
			kfree(shm);
			return ret;
		}
	}
	if (h->vma_type == CKPT_VMA_SHM_ANON) {
		shm->dump = vma;
		shm->size = max_t(u64, shm->size, PAGE_ALIGN(h->ino_size));
	}
	shm->size = max(shm->size, end);
	if (shm->last != mm) {
		shm->last = mm;
		shm->users++;
	}
	return 0;
}

/*
 * The threads of the task's process; the shared anonymous segments of the image, the
 * same for every process of the restart: their sizes and how many processes map each.
 */
static int check_processes(struct crfs_restore *rs)
{
	struct crfs_plan *plan = rs->plan;
	struct crfs_task *task;
	struct crfs_vma *vma;
	u32 i, j;
	int ret;

	ret = check_threads(rs);
	for (i = 0; !ret && i < plan->nr_tasks; i++) {
		task = &plan->tasks[i];
		if (!task->mm || task->pids.vpid != task->pids.vtgid)
			continue;
		for (j = 0; !ret && j < task->mm->h.map_count; j++) {
			vma = &task->mm->vmas[j];
			if (vma->h.vma_type == CKPT_VMA_SHM_ANON ||
			    vma->h.vma_type == CKPT_VMA_SHM_ANON_SKIP)
				ret = count_shm(rs, task->mm, vma);
		}
		cond_resched();
	}
	return ret;
}

static int check_task(struct crfs_restore *rs)
{
	struct crfs_task *task = &rs->plan->tasks[rs->index];
	struct ckpt_hdr_cpu *cpu = &task->cpu;

	rs->task = task;
	rs->mm = task->mm;
	if (!rs->mm || !(task->parts & CRFS_PART_CPU))
		return refuse(rs, -EINVAL, "the task has no mm or no CPU record");
	if (task->h.exit_state)
		return refuse(rs, -EOPNOTSUPP, "the task had exited");
	if (cpu->cs != CKPT_X86_SEG_USER64_CS)
		return refuse(rs, -EOPNOTSUPP,
			      "not a 64-bit task: only 64-bit tasks are restored");
	if (cpu->fsindex != CKPT_X86_SEG_NULL || cpu->gsindex != CKPT_X86_SEG_NULL)
		return refuse(rs, -EOPNOTSUPP, "fs/gs selectors are not restored");
	if (rs->mm->context.nldt)
		return refuse(rs, -EOPNOTSUPP, "an LDT is not restored");
	if (cpu->ip >= TASK_SIZE_MAX || cpu->sp >= TASK_SIZE_MAX ||
	    task->h.clear_child_tid >= TASK_SIZE_MAX ||
	    task->h.robust_futex_list >= TASK_SIZE_MAX)
		return refuse(rs, -EINVAL,
			      "ip, sp or a futex pointer above TASK_SIZE_MAX");
	if (rs->mm->h.start_brk > rs->mm->h.brk)
		return refuse(rs, -EINVAL, "brk %#llx below start_brk %#llx",
			      rs->mm->h.brk, rs->mm->h.start_brk);
	return 0;
}

static bool vvar_vma(struct vm_area_struct *vma)
{
	const char *name = NULL;

	if (vma->vm_ops && vma->vm_ops->name)
		name = vma->vm_ops->name(vma);
	return name && !strncmp(name, "[vvar", 5);
}

/*
 * The caller's [vvar] and [vdso]: kept, since map_vdso() is not exported; unmapped with
 * the rest when the image has no vdso (its program unmapped its own).
 */
static int find_vdso(struct crfs_restore *rs)
{
	struct mm_struct *mm = current->mm;
	unsigned long vdso = (unsigned long)mm->context.vdso;
	struct vm_area_struct *vma;
	int ret = 0;

	if (!vdso || !rs->mm->context.vdso)
		return 0;
	mmap_read_lock(mm);
	vma = find_vma(mm, vdso);
	if (!vma || vma->vm_start != vdso) {
		ret = refuse(rs, -EINVAL, "cannot find the caller's vdso");
		goto out;
	}
	rs->vdso_start = vdso;
	rs->vdso_end = vma->vm_end;
	rs->keep_start = vdso;
	rs->keep_end = vma->vm_end;
	vma = find_vma(mm, vdso - 1);
	if (vma && vma->vm_end == vdso && vvar_vma(vma))
		rs->keep_start = vma->vm_start;
out:
	mmap_read_unlock(mm);
	return ret;
}

static int check_vdso(struct crfs_restore *rs)
{
	u64 image_vdso = rs->mm->context.vdso;

	if (!image_vdso)
		return 0;
	if (image_vdso != rs->vdso_start)
		return refuse(rs, -EOPNOTSUPP,
			      "image vdso at %#llx, the caller's at %#lx (mremap it)",
			      image_vdso, rs->vdso_start);
	return 0;
}

static int check_vma(struct crfs_restore *rs, const struct ckpt_hdr_vma *h)
{
	switch (h->vma_type) {
	case CKPT_VMA_IGNORE:
		return 0;
	case CKPT_VMA_VDSO:
		if (h->vm_start != rs->vdso_start || h->vm_end != rs->vdso_end)
			return refuse(rs, -EOPNOTSUPP,
				      "vdso vma %#llx-%#llx, the caller's is %#lx-%#lx",
				      h->vm_start, h->vm_end, rs->vdso_start,
				      rs->vdso_end);
		return 0;
	case CKPT_VMA_SHM_IPC:
	case CKPT_VMA_SHM_IPC_SKIP:
		return refuse(rs, -EOPNOTSUPP, "SysV shm at %#llx is not restored",
			      h->vm_start);
	default:
		break;
	}
	if (h->vm_start < rs->keep_end && h->vm_end > rs->keep_start)
		return refuse(rs, -EOPNOTSUPP,
			      "vma %#llx-%#llx overlaps the caller's vdso/vvar",
			      h->vm_start, h->vm_end);
	if ((h->vm_flags & VM_SHARED) !=
	    (h->vma_type >= CKPT_VMA_SHM_ANON ? VM_SHARED : 0))
		return refuse(rs, -EINVAL, "vma %#llx: VM_SHARED and vma_type %u disagree",
			      h->vm_start, h->vma_type);
	return 0;
}

/* ---------------------------------------------------------------- prepare: objects */

/*
 * @name, opened with the caller's credentials if it is a regular file; ERR_PTR(-EINVAL)
 * if it is not. It is looked up with O_PATH first, which opens nothing: a device's open
 * is never called, a tty never becomes the controlling terminal, a FIFO never blocks.
 * Should the name be swapped for another file in between, O_NOCTTY and O_NONBLOCK keep
 * the second open from doing either, and its type is checked again.
 */
static struct file *open_regular(const char *name, int flags)
{
	struct file *file;
	bool reg;

	file = filp_open(name, O_PATH, 0);
	if (IS_ERR(file))
		return file;
	reg = S_ISREG(file_inode(file)->i_mode);
	fput(file);
	if (!reg)
		return ERR_PTR(-EINVAL);
	file = filp_open(name, flags | O_LARGEFILE | O_NOCTTY | O_NONBLOCK, 0);
	if (!IS_ERR(file) && !S_ISREG(file_inode(file)->i_mode)) {
		fput(file);
		return ERR_PTR(-EINVAL);
	}
	return file;
}

struct file *crfs_open_regular(const char *name, int flags)
{
	return open_regular(name, flags);
}

static int open_file(struct crfs_restore *rs, u32 i)
{
	struct crfs_vma *vma = &rs->mm->vmas[i];
	int flags = O_RDONLY;
	struct file *file;
	int ret;

	if (!vma->file || !vma->file->name)
		return refuse(rs, -EOPNOTSUPP, "vma %#llx: not a file by name",
			      vma->h.vm_start);
	if (vma->h.vma_type == CKPT_VMA_SHM_FILE && vma->h.vm_flags & VM_WRITE)
		flags = O_RDWR;
	file = open_regular(vma->file->name, flags);
	if (file == ERR_PTR(-EINVAL))
		return refuse(rs, -EINVAL, "%.60s is not a regular file",
			      vma->file->name);
	if (IS_ERR(file))
		return refuse(rs, PTR_ERR(file), "cannot open %.60s",
			      vma->file->name);
	if (!file->f_op->mmap) {
		fput(file);
		return refuse(rs, -ENODEV, "%.60s cannot be mapped",
			      vma->file->name);
	}
	if (vma->h.vm_flags & VM_EXEC &&
	    (file->f_path.mnt->mnt_flags & MNT_NOEXEC ||
	     file->f_path.mnt->mnt_sb->s_iflags & SB_I_NOEXEC)) {
		fput(file);
		return refuse(rs, -EACCES, "%.60s is on a noexec mount",
			      vma->file->name);
	}
	ret = crfs_file_id_check(rs->img, vma->file, file);
	if (ret) {
		fput(file);
		return ret;
	}
	rs->files[i] = file;
	return 0;
}

/* The dumped pages of @shm, written into @file at their indices. */
static int fill_shm(struct crfs_restore *rs, struct crfs_shm *shm, struct file *file)
{
	struct crfs_run *run;
	loff_t pos;
	u32 i, done, n;
	ssize_t written;
	int ret;

	for (i = 0; shm->dump && i < shm->dump->nr_runs; i++) {
		run = &shm->dump->runs[i];
		for (done = 0; done < run->nr_pages; done += n) {
			n = min_t(u32, run->nr_pages - done, FILL_PAGES);
			ret = crfs_image_read(rs->img, run->pos + (loff_t)done * PAGE_SIZE,
					      rs->buf, n * PAGE_SIZE);
			if (ret)
				return ret;
			pos = (run->addr + done) << PAGE_SHIFT;
			if (pos + n * PAGE_SIZE > shm->size)
				return refuse(rs, -EINVAL, "shm page %#llx past the segment",
					      run->addr + done);
			written = kernel_write(file, rs->buf, n * PAGE_SIZE, &pos);
			if (written != n * PAGE_SIZE)
				return written < 0 ? written : -EIO;
			cond_resched();
		}
	}
	return 0;
}

/* A new shmem file of @shm->size bytes holding the dumped pages. */
static struct file *build_shm(struct crfs_restore *rs, struct crfs_shm *shm)
{
	struct file *file;
	int ret;

	file = shmem_file_setup("dev/zero", shm->size, VM_NORESERVE);
	if (IS_ERR(file)) {
		refuse(rs, PTR_ERR(file), "cannot create shared memory of %llu bytes",
		       shm->size);
		return file;
	}
	ret = fill_shm(rs, shm, file);
	if (ret) {
		fput(file);
		return ERR_PTR(ret);
	}
	return file;
}

struct crfs_shm_call {
	struct crfs_restore *rs;
	struct crfs_shm *shm;
};

static struct file *make_shm(void *arg)
{
	struct crfs_shm_call *call = arg;

	return build_shm(call->rs, call->shm);
}

/* The segment's file: made here, or by another process of the restart that maps it. */
static int get_shm(struct crfs_restore *rs, unsigned long objref,
		   struct crfs_shm *shm)
{
	struct crfs_shm_call call = { .rs = rs, .shm = shm };
	struct file *file;

	file = crfs_shared_file(rs->img, CRFS_SHARED_SHM | (u32)objref,
				shm->users, make_shm, &call);
	if (IS_ERR(file))
		return PTR_ERR(file);
	shm->file = file;
	return 0;
}

static int prepare_vmas(struct crfs_restore *rs)
{
	struct crfs_shm *shm;
	struct crfs_vma *vma;
	unsigned long index;
	u32 i;
	int ret;

	rs->files = kvcalloc(max_t(u32, rs->mm->h.map_count, 1),
			     sizeof(*rs->files), GFP_KERNEL_ACCOUNT);
	if (!rs->files)
		return -ENOMEM;
	for (i = 0; i < rs->mm->h.map_count; i++) {
		vma = &rs->mm->vmas[i];
		ret = check_vma(rs, &vma->h);
		if (!ret && (vma->h.vma_type == CKPT_VMA_FILE ||
			     vma->h.vma_type == CKPT_VMA_SHM_FILE))
			ret = open_file(rs, i);
		if (!ret && (vma->h.vma_type == CKPT_VMA_SHM_ANON ||
			     vma->h.vma_type == CKPT_VMA_SHM_ANON_SKIP)) {
			shm = xa_load(&rs->shm, vma->h.ino_objref);
			if (!shm)
				return -EINVAL;
			shm->mapped = true;
		}
		if (ret)
			return ret;
		if (fatal_signal_pending(current))
			return -EINTR;
	}
	xa_for_each(&rs->shm, index, shm) {
		ret = shm->mapped ? get_shm(rs, index, shm) : 0;
		if (ret)
			return ret;
	}
	for (i = 0; i < rs->mm->h.map_count; i++) {
		vma = &rs->mm->vmas[i];
		if (vma->h.vma_type != CKPT_VMA_SHM_ANON &&
		    vma->h.vma_type != CKPT_VMA_SHM_ANON_SKIP)
			continue;
		shm = xa_load(&rs->shm, vma->h.ino_objref);
		rs->files[i] = get_file(shm->file);
	}
	return 0;
}

/* ---------------------------------------------------------------- prepare: FPU */

/* A scratch copy of the caller's fpstate, for a dry run of the uabi copy. */
static struct fpstate *scratch_fpstate(void)
{
	struct fpstate *live = current->thread.fpu.fpstate;
	size_t len = offsetof(struct fpstate, regs) + live->size;
	struct fpstate *fps;

	/* power-of-two kmalloc sizes are naturally aligned: regs needs 64 */
	fps = kmalloc(roundup_pow_of_two(len), GFP_KERNEL);
	if (fps)
		memcpy(fps, live, offsetof(struct fpstate, regs));
	return fps;
}

/*
 * The uabi (standard XSAVE layout) buffer: the image's CPU_FPU, or the init state when the
 * task never used the FPU; checked by fpu_copy_uabi_to_guest_fpstate() on a scratch copy.
 */
static int prepare_fpu(struct crfs_restore *rs)
{
	struct fpstate *live = current->thread.fpu.fpstate;
	u16 size = rs->plan->arch.xstate_size;
	struct fpu_guest fake = { };
	struct fxregs_state *fx;
	int ret;

	rs->xstate_len = max_t(size_t, live->user_size, size);
	rs->xstate_len = max_t(size_t, rs->xstate_len, sizeof(struct xregs_state));
	rs->xstate = kvzalloc(rs->xstate_len, GFP_KERNEL);
	if (!rs->xstate)
		return -ENOMEM;
	if (rs->task->cpu.used_math) {
		ret = crfs_image_read(rs->img, rs->task->fpu_pos, rs->xstate, size);
		if (ret)
			return ret;
	} else {
		fx = rs->xstate;
		fx->cwd = 0x37f;
		fx->mxcsr = MXCSR_DEFAULT;
		((struct xregs_state *)rs->xstate)->header.xfeatures =
			XFEATURE_MASK_FPSSE;
	}
	fake.fpstate = scratch_fpstate();
	if (!fake.fpstate)
		return -ENOMEM;
	rs->pkru = current->thread.pkru;
	ret = fpu_copy_uabi_to_guest_fpstate(&fake, rs->xstate,
					     boot_cpu_has(X86_FEATURE_XSAVE) ?
					     xgetbv(XCR_XFEATURE_ENABLED_MASK) : 0,
					     &rs->pkru);
	kfree(fake.fpstate);
	if (ret)
		return refuse(rs, ret, "the xstate (CPU_FPU) is not valid here");
	return 0;
}

/* ---------------------------------------------------------------- prepare: registers */

/*
 * A task stopped inside a system call has orig_ax = its number and ax = -ERESTART*:
 * restart it (ax = orig_ax, back to the syscall instruction) as a signal without a
 * handler would; restart_block is not in the image, so ERESTART_RESTARTBLOCK gives EINTR.
 */
static void fix_syscall_restart(struct ckpt_hdr_cpu *cpu)
{
	if ((s64)cpu->orig_ax < 0)
		return;
	switch ((s64)cpu->ax) {
	case -ERESTARTSYS:
	case -ERESTARTNOINTR:
	case -ERESTARTNOHAND:
		cpu->ax = cpu->orig_ax;
		cpu->ip -= SYSCALL_INSN_LEN;
		break;
	case -ERESTART_RESTARTBLOCK:
		cpu->ax = -EINTR;
		break;
	}
}

/* [@start, @end] lies in one VMA the restore maps */
static bool in_one_vma(const struct crfs_mm *mm, u64 start, u64 end)
{
	const struct ckpt_hdr_vma *h;
	u32 i;

	for (i = 0; i < mm->h.map_count; i++) {
		h = &mm->vmas[i].h;
		if (h->vma_type != CKPT_VMA_IGNORE && h->vm_start <= start && end <= h->vm_end)
			return true;
	}
	return false;
}

/*
 * The mm fields, checked as prctl(PR_SET_MM_MAP) checks them (validate_prctl_map_addr()
 * and prctl_set_mm(), kernel/sys.c): inside user space (mmap_min_addr is not exported: its
 * configured default is the floor), ordered, brk within RLIMIT_DATA, and the arguments and
 * environment inside a VMA of the image.
 */
static int check_mm_fields(struct crfs_restore *rs)
{
	static const char * const names[] = {
		"start_code", "end_code", "start_data", "end_data", "start_brk", "brk",
		"start_stack", "arg_start", "arg_end", "env_start", "env_end",
	};
	const struct ckpt_hdr_mm *h = &rs->mm->h;
	const u64 val[] = {
		h->start_code, h->end_code, h->start_data, h->end_data, h->start_brk, h->brk,
		h->start_stack, h->arg_start, h->arg_end, h->env_start, h->env_end,
	};
	u32 i;

	BUILD_BUG_ON(ARRAY_SIZE(names) != ARRAY_SIZE(val));
	for (i = 0; i < ARRAY_SIZE(val); i++)
		if (val[i] >= TASK_SIZE || val[i] < CONFIG_DEFAULT_MMAP_MIN_ADDR)
			return refuse(rs, -EINVAL, "mm %s %#llx is not a user address",
				      names[i], val[i]);
	if (h->start_code >= h->end_code || h->start_data > h->end_data ||
	    h->start_brk > h->brk || h->arg_start > h->arg_end || h->env_start > h->env_end)
		return refuse(rs, -EINVAL, "mm code, data, brk, arg or env range out of order");
	if (check_data_rlimit(rlimit(RLIMIT_DATA), h->brk, h->start_brk, h->end_data,
			      h->start_data))
		return refuse(rs, -EINVAL, "mm brk %#llx exceeds RLIMIT_DATA", h->brk);
	if (!in_one_vma(rs->mm, h->arg_start, h->arg_end) ||
	    !in_one_vma(rs->mm, h->env_start, h->env_end))
		return refuse(rs, -EINVAL, "mm arg or env range is not inside one VMA");
	return 0;
}

/* ---------------------------------------------------------------- prepare: credentials */

/* An id an unprivileged caller may give itself (setresuid()): its real, effective, saved. */
static bool own_uid(kuid_t uid)
{
	const struct cred *old = current_cred();

	return uid_eq(uid, old->uid) || uid_eq(uid, old->euid) ||
	       uid_eq(uid, old->suid);
}

static bool own_gid(kgid_t gid)
{
	const struct cred *old = current_cred();

	return gid_eq(gid, old->gid) || gid_eq(gid, old->egid) ||
	       gid_eq(gid, old->sgid);
}

/*
 * The image's uids, mapped into the caller's user namespace; without CAP_SETUID, only ids
 * the caller has.
 */
static int set_uids(struct crfs_restore *rs, struct cred *new,
		    const struct ckpt_hdr_cred *h)
{
	const u32 ids[NR_IDS] = { h->uid, h->euid, h->suid, h->fsuid };
	struct user_namespace *ns = current_user_ns();
	bool priv = ns_capable(ns, CAP_SETUID);
	kuid_t k[NR_IDS];
	int i;

	for (i = 0; i < NR_IDS; i++) {
		k[i] = make_kuid(ns, ids[i]);
		if (!uid_valid(k[i]))
			return refuse(rs, -EPERM,
				      "image uid %u does not map into the caller's user namespace",
				      ids[i]);
		if (!priv && !own_uid(k[i]))
			return refuse(rs, -EPERM, "image uid %u is not the caller's",
				      ids[i]);
	}
	new->uid = k[0];
	new->euid = k[1];
	new->suid = k[2];
	new->fsuid = k[3];
	return 0;
}

static int set_gids(struct crfs_restore *rs, struct cred *new,
		    const struct ckpt_hdr_cred *h)
{
	const u32 ids[NR_IDS] = { h->gid, h->egid, h->sgid, h->fsgid };
	struct user_namespace *ns = current_user_ns();
	bool priv = ns_capable(ns, CAP_SETGID);
	kgid_t k[NR_IDS];
	int i;

	for (i = 0; i < NR_IDS; i++) {
		k[i] = make_kgid(ns, ids[i]);
		if (!gid_valid(k[i]))
			return refuse(rs, -EPERM,
				      "image gid %u does not map into the caller's user namespace",
				      ids[i]);
		if (!priv && !own_gid(k[i]))
			return refuse(rs, -EPERM, "image gid %u is not the caller's",
				      ids[i]);
	}
	new->gid = k[0];
	new->egid = k[1];
	new->sgid = k[2];
	new->fsgid = k[3];
	return 0;
}

/* Binary search of the caller's supplementary groups (sorted; groups_search() is not exported). */
static bool caller_in_group(kgid_t gid)
{
	const struct group_info *gi = current_cred()->group_info;
	unsigned int left = 0, right = gi->ngroups;

	while (left < right) {
		unsigned int mid = left + (right - left) / 2;

		if (gid_gt(gid, gi->gid[mid]))
			left = mid + 1;
		else if (gid_lt(gid, gi->gid[mid]))
			right = mid;
		else
			return true;
	}
	return false;
}

/*
 * The image's supplementary groups (none without a GROUPINFO); without CAP_SETGID, a
 * subset of the caller's.
 */
static int set_image_groups(struct crfs_restore *rs, struct cred *new,
			    const struct crfs_groups *groups)
{
	struct user_namespace *ns = current_user_ns();
	bool priv = ns_capable(ns, CAP_SETGID);
	u32 i, n = groups ? groups->ngroups : 0;
	struct group_info *gi;
	int ret = 0;

	gi = groups_alloc(n);
	if (!gi)
		return -ENOMEM;
	for (i = 0; i < n && !ret; i++) {
		gi->gid[i] = make_kgid(ns, groups->gids[i]);
		if (!gid_valid(gi->gid[i]))
			ret = refuse(rs, -EPERM,
				     "image group %u does not map into the caller's user namespace",
				     groups->gids[i]);
		else if (!priv && !caller_in_group(gi->gid[i]))
			ret = refuse(rs, -EPERM,
				     "image group %u is not one of the caller's",
				     groups->gids[i]);
	}
	if (!ret) {
		groups_sort(gi);
		set_groups(new, gi);
	}
	put_group_info(gi);
	return ret;
}

static kernel_cap_t image_cap(u32 lo, u32 hi, kernel_cap_t caller)
{
	kernel_cap_t cap = CAP_EMPTY_SET;

	cap.cap[0] = lo;
	cap.cap[1] = hi;
	return cap_intersect(cap, caller);
}

/* Capabilities: the image's that the caller has; no ambient ones. */
static void set_caps(struct cred *new, const struct ckpt_capabilities *c)
{
	const struct cred *old = current_cred();

	new->cap_inheritable = image_cap(c->cap_i_0, c->cap_i_1,
					 old->cap_inheritable);
	new->cap_permitted = image_cap(c->cap_p_0, c->cap_p_1,
				       old->cap_permitted);
	new->cap_effective = image_cap(c->cap_e_0, c->cap_e_1,
				       cap_intersect(old->cap_effective,
						     new->cap_permitted));
	new->cap_bset = image_cap(c->cap_b_0, c->cap_b_1, old->cap_bset);
	cap_clear(new->cap_ambient);
	new->securebits |= c->securebits & RESTRICTING_SECUREBITS;
}

/*
 * The credentials the task gets (rs->cred), when the image has its TASK_CREDS: never more
 * privilege than it had, nor than the caller has.
 */
static int prepare_cred(struct crfs_restore *rs)
{
	const struct crfs_task *t = rs->task;
	struct cred *new;
	int ret;

	if (!t->cred)
		return 0;	/* the caller's credentials stay */
	if (t->ecred != t->cred &&
	    memcmp(&t->ecred->h, &t->cred->h, sizeof(t->cred->h)))
		return refuse(rs, -EOPNOTSUPP,
			      "task %u: effective credentials other than the real ones are not restored",
			      rs->index);
	new = prepare_creds();
	if (!new)
		return -ENOMEM;
	ret = set_uids(rs, new, &t->cred->h);
	if (!ret)
		ret = set_gids(rs, new, &t->cred->h);
	if (!ret)
		ret = set_image_groups(rs, new, t->cred->groups);
	if (ret) {
		abort_creds(new);
		return ret;
	}
	set_caps(new, &t->cred->h.cap_s);
	rs->cred = new;
	return 0;
}

/* ---------------------------------------------------------------- prepare */

/* What the process's leader alone restores: the memory its threads share. */
static int prepare_memory(struct crfs_restore *rs)
{
	int ret;

	ret = check_mm_fields(rs);
	if (!ret)
		ret = find_vdso(rs);
	if (!ret)
		ret = check_vdso(rs);
	if (ret)
		return ret;
	rs->buf = kvmalloc(FILL_PAGES * PAGE_SIZE, GFP_KERNEL);
	if (!rs->buf)
		return -ENOMEM;
	if (rs->plan->flags & CRFS_RESTART_LAZY) {
		if (!IS_ENABLED(CONFIG_USERFAULTFD))
			return refuse(rs, -EOPNOTSUPP, "a lazy restart needs userfaultfd");
		rs->work->lazy = crfs_lazy_new(rs->mm);
		if (!rs->work->lazy)
			return -ENOMEM;
	}
	ret = prepare_vmas(rs);
	if (ret || !rs->mm->exe)
		return ret;
	rs->exe = crfs_exe_prepare(rs->img, rs->mm->exe, rs->exe_privileged);
	if (IS_ERR(rs->exe)) {
		ret = PTR_ERR(rs->exe);
		rs->exe = NULL;
	}
	return ret;
}

/* The image's files are opened with the credentials the task will run with. */
static int prepare_memory_as_task(struct crfs_restore *rs)
{
	const struct cred *old;
	int ret;

	/* the caller's privilege, not the task's: see crfs_exe.c */
	rs->exe_privileged = rs->mm->exe &&
			     checkpoint_restore_ns_capable(current_user_ns());
	if (!rs->cred)
		return prepare_memory(rs);
	old = override_creds(rs->cred);
	ret = prepare_memory(rs);
	revert_creds(old);
	return ret;
}

static int prepare(struct crfs_restore *rs)
{
	int ret;

	ret = check_caller(rs);
	if (!ret)
		ret = check_task(rs);
	if (!ret)
		ret = prepare_cred(rs);
	if (!ret)
		ret = crfs_sig_prepare(&rs->sig, rs->task, is_leader(rs), rs->cred,
				       rs->img->err_msg);
	if (!ret)
		ret = crfs_ts_prepare(rs->task, is_leader(rs), rs->img->err_msg);
	if (ret)
		return ret;
	rs->work = kzalloc(sizeof(*rs->work), GFP_KERNEL);
	if (!rs->work)
		return -ENOMEM;
	rs->work->cpu = rs->task->cpu;
	rs->work->close_fds = is_leader(rs);
	fix_syscall_restart(&rs->work->cpu);
	/* the fix-up moves ip: the address the task resumes at is checked, not the image's */
	if (rs->work->cpu.ip >= TASK_SIZE_MAX)
		return refuse(rs, -EINVAL,
			      "ip %#llx after the system call restart is not a user address",
			      rs->work->cpu.ip);
	if (is_leader(rs))
		ret = prepare_memory_as_task(rs);
	if (!ret && is_leader(rs))
		ret = crfs_files_prepare(rs->plan, rs->img, rs->index, rs->cred,
					 &rs->work->files);
	if (!ret)
		ret = prepare_fpu(rs);
	return ret;
}

/* ---------------------------------------------------------------- act: memory */

static int unmap_caller(struct crfs_restore *rs)
{
	int ret = 0;

	if (!rs->keep_end)
		return vm_munmap(0, TASK_SIZE_MAX);
	if (rs->keep_start)
		ret = vm_munmap(0, rs->keep_start);
	if (!ret && rs->keep_end < TASK_SIZE_MAX)
		ret = vm_munmap(rs->keep_end, TASK_SIZE_MAX - rs->keep_end);
	return ret;
}

static int map_vma(struct crfs_restore *rs, u32 i)
{
	struct ckpt_hdr_vma *h = &rs->mm->vmas[i].h;
	unsigned long prot = h->vm_flags & VM_PROT_BITS;
	unsigned long flags = MAP_FIXED;
	unsigned long addr;
	loff_t off = 0;

	/* PROT_READ/WRITE/EXEC have the values of VM_READ/WRITE/EXEC */
	BUILD_BUG_ON(PROT_READ != VM_READ || PROT_WRITE != VM_WRITE ||
		     PROT_EXEC != VM_EXEC);
	switch (h->vma_type) {
	case CKPT_VMA_ANON:
		flags |= MAP_PRIVATE | MAP_ANONYMOUS;
		if (h->vm_flags & VM_GROWSDOWN)
			flags |= MAP_GROWSDOWN;
		break;
	case CKPT_VMA_FILE:
		flags |= MAP_PRIVATE;
		off = h->vm_pgoff << PAGE_SHIFT;
		break;
	case CKPT_VMA_SHM_ANON:
	case CKPT_VMA_SHM_ANON_SKIP:
	case CKPT_VMA_SHM_FILE:
		flags |= MAP_SHARED;
		off = h->vm_pgoff << PAGE_SHIFT;
		break;
	default:
		return 0;	/* vdso (kept), ignored */
	}
	addr = vm_mmap(rs->files[i], h->vm_start, h->vm_end - h->vm_start, prot,
		       flags, off);
	if (IS_ERR_VALUE(addr))
		return addr;
	return addr == h->vm_start ? 0 : -ENOMEM;
}

/* Put @len bytes at @addr: writable mappings directly, others as ptrace would. */
static int poke(struct crfs_vma *vma, unsigned long addr, void *buf, size_t len)
{
	if (vma->h.vm_flags & VM_WRITE)
		return copy_to_user((void __user *)addr, buf, len) ? -EFAULT : 0;
	if (access_process_vm(current, addr, buf, len,
			      FOLL_FORCE | FOLL_WRITE) != len)
		return -EFAULT;
	return 0;
}

/*
 * Writable private mappings are read into straight from the image, faulting their pages
 * in (one copy); the others go through rs->buf and access_process_vm().
 */
static int fill_vma(struct crfs_restore *rs, struct crfs_vma *vma)
{
	bool direct = (vma->h.vm_flags & VM_WRITE) && rs->img->file->f_op->read_iter;
	u32 chunk = direct ? FILL_DIRECT_PAGES : FILL_PAGES;
	struct crfs_run *run;
	u32 i, done, n;
	loff_t pos;
	u64 addr;
	int ret;

	if (vma->h.vma_type != CKPT_VMA_ANON && vma->h.vma_type != CKPT_VMA_FILE)
		return 0;	/* shared memory was filled in its shmem file */
	if (rs->work->lazy && crfs_lazy_vma(vma))
		return 0;	/* the page server brings them in (crfs_lazy.c) */
	for (i = 0; i < vma->nr_runs; i++) {
		run = &vma->runs[i];
		for (done = 0; done < run->nr_pages; done += n) {
			n = min_t(u32, run->nr_pages - done, chunk);
			pos = run->pos + (loff_t)done * PAGE_SIZE;
			addr = run->addr + (u64)done * PAGE_SIZE;
			if (direct) {
				ret = crfs_image_read_user(rs->img, pos,
							   (void __user *)addr,
							   n * PAGE_SIZE);
			} else {
				ret = crfs_image_read(rs->img, pos, rs->buf,
						      n * PAGE_SIZE);
				if (!ret)
					ret = poke(vma, addr, rs->buf, n * PAGE_SIZE);
			}
			if (ret)
				return ret;
			cond_resched();
		}
	}
	return 0;
}

static void set_mm_fields(struct crfs_restore *rs)
{
	const struct ckpt_hdr_mm *h = &rs->mm->h;
	struct mm_struct *mm = current->mm;
	u32 words = rs->plan->header.constants.at_vector_size;
	u32 i;

	words = min_t(u32, words, ARRAY_SIZE(mm->saved_auxv) - 2);
	mmap_write_lock(mm);
	mm->start_code = h->start_code;
	mm->end_code = h->end_code;
	mm->start_data = h->start_data;
	mm->end_data = h->end_data;
	mm->start_brk = h->start_brk;
	mm->brk = h->brk;
	mm->start_stack = h->start_stack;
	mm->arg_start = h->arg_start;
	mm->arg_end = h->arg_end;
	mm->env_start = h->env_start;
	mm->env_end = h->env_end;
	memset(mm->saved_auxv, 0, sizeof(mm->saved_auxv));
	for (i = 0; i + 1 < words && rs->mm->auxv[i]; i += 2) {
		mm->saved_auxv[i] = rs->mm->auxv[i];
		mm->saved_auxv[i + 1] = rs->mm->auxv[i + 1];
	}
	mmap_write_unlock(mm);
}

static int restore_memory(struct crfs_restore *rs)
{
	u32 i;
	int ret;

	ret = unmap_caller(rs);
	for (i = 0; !ret && i < rs->mm->h.map_count; i++)
		ret = map_vma(rs, i);
	for (i = 0; !ret && i < rs->mm->h.map_count; i++)
		ret = fill_vma(rs, &rs->mm->vmas[i]);
	if (!ret)
		set_mm_fields(rs);
	if (!ret && rs->exe) {
		crfs_exe_install(rs->exe);	/* consumes the reference */
		rs->exe = NULL;
	}
	return ret;
}

/* ---------------------------------------------------------------- act: task state */

static int restore_fpu(struct crfs_restore *rs)
{
	struct fpu_guest fake = { .fpstate = current->thread.fpu.fpstate };
	u32 pkru = current->thread.pkru;
	int ret;

	/* saves the live registers to fpstate; the return to user space reloads them */
	kernel_fpu_begin();
	ret = fpu_copy_uabi_to_guest_fpstate(&fake, rs->xstate,
					     boot_cpu_has(X86_FEATURE_XSAVE) ?
					     xgetbv(XCR_XFEATURE_ENABLED_MASK) : 0,
					     &pkru);
	kernel_fpu_end();
	if (!ret && pkru != current->thread.pkru) {
		/* PKRU is switched eagerly, not from fpstate */
		preempt_disable();
		current->thread.pkru = pkru;
		write_pkru(pkru);
		preempt_enable();
	}
	return ret;
}

static void restore_task_fields(struct crfs_restore *rs)
{
	const struct ckpt_hdr_task *h = &rs->task->h;

	task_lock(current);
	strscpy_pad(current->comm, rs->task->comm, sizeof(current->comm));
	task_unlock(current);
	/* these point into the old address space: the image's values, or none */
	rseq_execve(current);
	current->clear_child_tid = (int __user *)h->clear_child_tid;
	current->robust_list = NULL;
	if (h->robust_futex_list &&
	    h->robust_futex_head_len == sizeof(struct robust_list_head))
		current->robust_list =
			(struct robust_list_head __user *)h->robust_futex_list;
#ifdef CONFIG_COMPAT
	current->compat_robust_list = NULL;
#endif
}

static void set_bases(u64 fs, u64 gs)
{
	unsigned long flags;
	u16 sel;

	/* as do_arch_prctl_64(ARCH_SET_FS / ARCH_SET_GS) does for current */
	preempt_disable();
	savesegment(fs, sel);
	if (sel)
		loadsegment(fs, 0);
	x86_fsbase_write_cpu(fs);
	current->thread.fsindex = 0;
	current->thread.fsbase = fs;
	savesegment(gs, sel);
	if (sel)
		load_gs_index(0);
	local_irq_save(flags);
	wrmsrl(MSR_KERNEL_GS_BASE, gs);	/* the user's gs base, inactive in the kernel */
	local_irq_restore(flags);
	current->thread.gsindex = 0;
	current->thread.gsbase = gs;
	preempt_enable();
}

static void set_regs(struct pt_regs *regs, const struct ckpt_hdr_cpu *cpu)
{
	regs->r15 = cpu->r15;
	regs->r14 = cpu->r14;
	regs->r13 = cpu->r13;
	regs->r12 = cpu->r12;
	regs->bp = cpu->bp;
	regs->bx = cpu->bx;
	regs->r11 = cpu->r11;
	regs->r10 = cpu->r10;
	regs->r9 = cpu->r9;
	regs->r8 = cpu->r8;
	regs->ax = cpu->ax;
	regs->cx = cpu->cx;
	regs->dx = cpu->dx;
	regs->si = cpu->si;
	regs->di = cpu->di;
	regs->ip = cpu->ip;
	regs->sp = cpu->sp;
	regs->flags = (regs->flags & ~USER_FLAGS) | (cpu->flags & USER_FLAGS) |
		      X86_EFLAGS_IF;
	regs->cs = __USER_CS;
	regs->ss = __USER_DS;
	regs->orig_ax = -1;	/* no system call to restart */
}

/* The fds of the restarter (the image, /dev/crfs, its report pipe) are not the image's. */
static void close_fds_above_stderr(void)
{
	unsigned int fd, max_fds;

	rcu_read_lock();
	max_fds = files_fdtable(current->files)->max_fds;
	rcu_read_unlock();
	for (fd = 3; fd < max_fds; fd++)
		close_fd(fd);
}

/* The restore of this thread is over: the threads of a process meet a last time. */
static void settle(struct crfs_regs_work *work)
{
	if (work->group) {
		/* the threads share the fd table: none runs before it is the image's */
		if (work->leader)
			crfs_group_settle(work->group);
		else
			crfs_group_wait_settled(work->group);
		crfs_group_leave(work->group);
	}
	kfree(work);
}

/*
 * A lazy restore's leader, after the task_works that release the restarter's files (the
 * report pipe among them: its server sees EOF), which regs_work_fn() queued after this one
 * and so run before it: wait for the server's GO (crfs_lazy.c).
 */
static void lazy_work_fn(struct callback_head *cb)
{
	struct crfs_regs_work *work = container_of(cb, struct crfs_regs_work, lazy_cb);

	if (crfs_lazy_wait(work->lazy))
		force_sig(SIGKILL);
	crfs_lazy_put(work->lazy);
	settle(work);
}

/*
 * Runs on the way back to user space, after the ioctl's return value was stored into
 * regs->ax (which is why the registers are not set in the ioctl itself).
 */
static void regs_work_fn(struct callback_head *cb)
{
	struct crfs_regs_work *work = container_of(cb, struct crfs_regs_work, cb);
	bool lazy = false;

	if (work->lazy) {
		init_task_work(&work->lazy_cb, lazy_work_fn);
		lazy = !task_work_add(current, &work->lazy_cb, TWA_RESUME);
	}
	if (!(current->flags & PF_EXITING)) {
		set_regs(task_pt_regs(current), &work->cpu);
		set_bases(work->cpu.fs, work->cpu.gs);
		if (work->files)
			crfs_files_install(work->files);	/* consumes it */
		else if (work->close_fds)
			close_fds_above_stderr();
		work->files = NULL;
	}
	crfs_files_free(work->files);
	if (lazy)
		return;		/* lazy_work_fn() settles */
	if (work->lazy) {
		crfs_lazy_abandon(work->lazy);
		force_sig(SIGKILL);
	}
	settle(work);
}

static int act(struct crfs_restore *rs)
{
	int ret;

	if (is_leader(rs)) {
		ret = restore_memory(rs);
		if (!ret && rs->work->lazy)
			crfs_lazy_publish(rs->work->lazy);
		if (!ret) {
			crfs_sig_act_process(&rs->sig);
			crfs_ts_act_process(rs->task);
		}
		if (rs->group)
			crfs_group_restored(rs->group, !ret);
		if (ret)
			return ret;
	}
	ret = restore_fpu(rs);
	if (ret)
		return ret;
	restore_task_fields(rs);
	crfs_ts_act_thread(rs->task);
	if (rs->cred) {
		commit_creds(rs->cred);	/* consumes the reference */
		rs->cred = NULL;
	}
	ret = crfs_sig_act_thread(&rs->sig);
	if (ret)
		return ret;
	if (!rs->group || crfs_group_masked(rs->group)) {
		crfs_sig_act_shared(&rs->sig);
		crfs_ts_act_last(rs->plan, rs->index);
	}
	init_task_work(&rs->work->cb, regs_work_fn);
	rs->work->group = rs->group;
	rs->work->leader = is_leader(rs);
	ret = task_work_add(current, &rs->work->cb, TWA_RESUME);
	if (ret) {
		rs->work->group = NULL;
		return ret;
	}
	rs->work = NULL;	/* the callback frees it */
	rs->group = NULL;	/* and leaves the group */
	crfs_ts_act_seccomp(rs->task);	/* last: no syscall of ours after it */
	return 0;
}

/* ---------------------------------------------------------------- entry */

static void release(struct crfs_restore *rs)
{
	struct crfs_shm *shm;
	unsigned long index;
	u32 i;

	if (rs->group)
		crfs_group_leave(rs->group);
	for (i = 0; rs->files && i < rs->mm->h.map_count; i++)
		if (rs->files[i])
			fput(rs->files[i]);
	kvfree(rs->files);
	xa_for_each(&rs->shm, index, shm) {
		if (shm->file)
			fput(shm->file);
		kfree(shm);
	}
	xa_destroy(&rs->shm);
	kvfree(rs->xstate);
	kvfree(rs->buf);
	crfs_exe_release(rs->exe);
	if (rs->work) {
		crfs_files_free(rs->work->files);
		crfs_lazy_abandon(rs->work->lazy);
	}
	kfree(rs->work);
	if (rs->cred)
		abort_creds(rs->cred);
	crfs_sig_release(&rs->sig);
}

static int join_group(struct crfs_restore *rs)
{
	int ret;

	ret = crfs_group_join(rs->img->file, rs->plan->nr_tasks, rs->index,
			      rs->nr_threads, &rs->group);
	if (ret == -EINVAL)
		return refuse(rs, ret, "another thread of the caller restores another image");
	if (ret == -ECANCELED)
		return refuse(rs, ret, "task %u: the restore of another thread failed",
			      rs->index);
	if (ret == -EBUSY)
		return refuse(rs, ret,
			      "task %u is restored by another thread, or the restore has begun",
			      rs->index);
	return ret;
}

/*
 * The threads of a process, prepared, meet: the leader commits once every other thread
 * is there; the others wait until it has restored the memory (0) or failed. *@done is
 * set when the point of no return was passed.
 */
static int meet(struct crfs_restore *rs, bool *done)
{
	int ret;

	if (is_leader(rs)) {
		ret = crfs_group_gather(rs->group);
		*done = !ret;
	} else {
		ret = crfs_group_arrive(rs->group, done);
	}
	switch (ret) {
	case 0:
		return 0;
	case -ECANCELED:
		return refuse(rs, ret, "task %u: the restore of another thread failed",
			      rs->index);
	case -ETIMEDOUT:
		return refuse(rs, ret,
			      "task %u: the other threads of the process did not all call RESTART",
			      rs->index);
	case -EBUSY:
		return refuse(rs, ret,
			      "the caller has threads outside the restore, or shares its mm");
	default:
		return ret;
	}
}

/*
 * Restore task @index of the validated @plan into the calling thread. Returns an errno
 * while the caller is intact (img->err_msg says why); once past the point of no return
 * it sets *@done and returns 0 whatever happens: on a failure the caller has been sent
 * SIGKILL.
 */
int crfs_restore(struct crfs_plan *plan, struct crfs_image *img, u32 index,
		 bool *done)
{
	struct crfs_restore rs = { .plan = plan, .img = img, .index = index };
	int ret;

	*done = false;
	xa_init(&rs.shm);
	ret = check_processes(&rs);
	if (!ret && rs.nr_threads > 1)
		ret = join_group(&rs);
	if (!ret)
		ret = prepare(&rs);
	if (!ret && fatal_signal_pending(current))
		ret = -EINTR;
	if (rs.group) {
		if (ret)
			crfs_group_cancel(rs.group);
		else
			ret = meet(&rs, done);
	} else if (!ret) {
		*done = true;
	}
	if (*done) {
		/* past the point of no return */
		if (!ret)
			ret = act(&rs);
		if (ret) {
			pr_warn_ratelimited("crfs: pid %d: restore failed after the point of no return (%d): killed\n",
					    task_pid_nr(current), ret);
			force_sig(SIGKILL);
		}
		ret = 0;
	}
	release(&rs);
	return ret;
}
