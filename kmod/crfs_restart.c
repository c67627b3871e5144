// SPDX-License-Identifier: GPL-2.0
/*
 * CRFS_IOC_CHECK and CRFS_IOC_RESTART: copy-in, validation, restore.
 *
 * The image's metadata is copied into a struct crfs_plan while every record is checked
 * against the grammar of docs/format-ckpt.md (linux-cr ckpt_hdr, v19-rc3..v21 numbering,
 * x86_64 only):
 *
 *   IMAGE     ::= HEADER BUFFER{release} BUFFER{version} BUFFER{machine} HEADER_ARCH
 *                 [skipped records] TREE BUFFER{pids} [BUFFER{vpids}]
 *                 { TASK STRING{comm} TASK_PART* } TAIL
 *   TASK_PART ::= THREAD | CPU [CPU_FPU] | TASK_OBJS | TASK_CREDS | OBJECT
 *                 | SIGNAL SIGPENDING | SIGPENDING | SIGNAL_TASK | SIGALTSTACK
 *                 | skipped record                    (signals: crfs_signal.c)
 *   OBJECT    ::= OBJREF, then for an MM: MM BUFFER{auxv} { [OBJECT] VMA [CONTENTS] }*
 *                 MM_CONTEXT MM_CONTEXT_LDT; for a FILE: [OBJECT] FILE [FILE_NAME]
 *                 [PIPE_BUF]; for a FILE_TABLE: FILE_TABLE { [OBJECT] FILE_DESC }*
 *                 (crfs_files.c);
 *                 for a CRED: { OBJECT }* CRED; for a GROUPINFO: GROUPINFO;
 *                 for an FS: FS FILE_NAME FILE_NAME [FS_EXT] (crfs_fs.c);
 *                 for a SIGHAND: SIGHAND;
 *                 a USER's records (USER, USER_NS) are skipped
 *   CONTENTS  ::= { PGARR{n > 0} BUFFER{u64 vaddr[n]; n pages} }* PGARR{0}
 *
 * Nothing is trusted: lengths are bounded by the file and by their type's size, counts by
 * the file and by the CRFS_MAX_* limits, addresses by TASK_SIZE_MAX. Page contents stay in
 * the file; the plan keeps where they are.
 *
 * CRFS_IOC_RESTART then restores the plan into the caller (crfs_restore.c).
 */
#include <linux/cred.h>
#include <linux/kernel.h>
#include <linux/mm.h>
#include <linux/overflow.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/xarray.h>

#include "crfs.h"

#define AT_NULL_TYPE		0
#define VADDR_SIZE		sizeof(u64)

static int fail(struct crfs_ctx *ctx, const struct crfs_rec *rec,
		const char *what)
{
	return crfs_image_fail(ctx->img, rec, "%s", what);
}

/* Room left in the file after the current record. */
static loff_t room(struct crfs_ctx *ctx)
{
	return ctx->img->size - ctx->img->pos;
}

/* @count items of @size bytes must fit in what is left of the file. */
static bool fits(struct crfs_ctx *ctx, u64 count, u64 size)
{
	u64 bytes;

	return !check_mul_overflow(count, size, &bytes) && bytes <= room(ctx);
}

/* The next record; an ERROR record (a failed checkpoint) ends the image. */
static int next(struct crfs_ctx *ctx, struct crfs_rec *rec)
{
	int ret;

	if (fatal_signal_pending(current))
		return -EINTR;
	ret = crfs_image_next(ctx->img, rec);
	if (!ret && rec->type == CKPT_HDR_ERROR)
		return fail(ctx, rec, "the checkpoint failed (CKPT_HDR_ERROR)");
	return ret;
}

static int expect(struct crfs_ctx *ctx, struct crfs_rec *rec, u32 type)
{
	int ret = next(ctx, rec);

	if (ret)
		return ret;
	if (rec->type != type)
		return crfs_image_fail(ctx->img, rec, "expected %s",
				       crfs_rec_name(type));
	return 0;
}

/* A raw record (BUFFER, STRING...) whose payload must be exactly @size bytes. */
static int expect_sized(struct crfs_ctx *ctx, struct crfs_rec *rec, u32 type,
			u64 size)
{
	int ret = expect(ctx, rec, type);

	if (ret)
		return ret;
	if (rec->len - sizeof(struct ckpt_hdr) != size)
		return crfs_image_fail(ctx->img, rec,
				       "%zu bytes, expected %llu",
				       rec->len - sizeof(struct ckpt_hdr), size);
	return 0;
}

static int payload(struct crfs_ctx *ctx, const struct crfs_rec *rec, void *buf,
		   size_t size)
{
	return crfs_image_read(ctx->img, rec->pos + sizeof(struct ckpt_hdr), buf,
			       size);
}

/* An address inside the user address space (vm_end may be TASK_SIZE_MAX itself). */
static bool user_addr(u64 addr)
{
	return addr < TASK_SIZE_MAX;
}

static int load_object(struct crfs_ctx *ctx, const struct crfs_rec *rec,
		       int depth);

/*
 * A record met between the ones the grammar names: an object definition, a record of a
 * kind crfs skips (by its length), or an error for a record that belongs elsewhere.
 */
static int interleaved(struct crfs_ctx *ctx, const struct crfs_rec *rec,
		       int depth)
{
	switch (rec->type) {
	case CKPT_HDR_OBJREF:
		return load_object(ctx, rec, depth);
	case CKPT_HDR_CONTAINER:
	case CKPT_HDR_LSM_INFO:
	case CKPT_HDR_SECURITY:
	case CKPT_HDR_TASK_NS:
	case CKPT_HDR_RESTART_BLOCK:
	case CKPT_HDR_BUFFER:
	case CKPT_HDR_STRING:
		return 0;
	default:
		/* records of types this module does not know are skipped too */
		if (crfs_rec_known(rec->type))
			return fail(ctx, rec, "unexpected here");
		return 0;
	}
}

/* The next record of @type; objects are loaded and other records skipped on the way. */
static int next_of(struct crfs_ctx *ctx, struct crfs_rec *rec, u32 type,
		   int depth)
{
	int ret;

	for (;;) {
		ret = next(ctx, rec);
		if (ret)
			return ret;
		if (rec->type == type)
			return 0;
		ret = interleaved(ctx, rec, depth);
		if (ret)
			return ret;
		cond_resched();
	}
}

static struct crfs_object *lookup(struct crfs_ctx *ctx, s32 objref, u32 objtype)
{
	struct crfs_object *obj;

	if (objref <= 0)
		return NULL;
	obj = xa_load(&ctx->plan->objects, objref);
	if (!obj || obj->objtype != objtype || !obj->ready)
		return NULL;
	return obj;
}

/* The helpers above, for crfs_files.c. */
int crfs_next_of(struct crfs_ctx *ctx, struct crfs_rec *rec, u32 type,
		 int depth)
{
	return next_of(ctx, rec, type, depth);
}

int crfs_expect(struct crfs_ctx *ctx, struct crfs_rec *rec, u32 type)
{
	return expect(ctx, rec, type);
}

bool crfs_fits(struct crfs_ctx *ctx, u64 count, u64 size)
{
	return fits(ctx, count, size);
}

struct crfs_object *crfs_lookup(struct crfs_ctx *ctx, s32 objref, u32 objtype)
{
	return lookup(ctx, objref, objtype);
}

/* ---------------------------------------------------------------- header, tree */

static int load_uts(struct crfs_ctx *ctx, u16 len)
{
	struct crfs_rec rec;

	return expect_sized(ctx, &rec, CKPT_HDR_BUFFER, len);
}

static int load_header(struct crfs_ctx *ctx)
{
	struct ckpt_hdr_header *h = &ctx->plan->header;
	struct ckpt_const *c = &h->constants;
	struct crfs_rec rec;
	int ret;

	if (ctx->img->size < (loff_t)sizeof(*h))
		return fail(ctx, NULL, "not a ckpt_hdr image (too short)");
	ret = crfs_image_next(ctx->img, &rec);
	if (ret)
		return ret;
	if (rec.type != CKPT_HDR_HEADER)
		return fail(ctx, &rec, "not a ckpt_hdr image");
	ret = crfs_image_body(ctx->img, &rec, h, sizeof(*h));
	if (ret)
		return ret;
	if (h->magic != CHECKPOINT_MAGIC_HEAD)
		return crfs_image_fail(ctx->img, &rec, "bad magic %#llx",
				       h->magic);
	if (h->arch_id != CKPT_ARCH_X86_64) {
		crfs_image_fail(ctx->img, &rec,
				"arch_id %u: only x86_64 images are restarted",
				h->arch_id);
		return -ENOEXEC;
	}
	if (h->rev != CHECKPOINT_VERSION && h->rev != CHECKPOINT_VERSION_V20 &&
	    h->rev != CHECKPOINT_VERSION_CRFS1) {
		crfs_image_fail(ctx->img, &rec,
				"format version %u, expected %u, %u or %u", h->rev,
				CHECKPOINT_VERSION, CHECKPOINT_VERSION_V20,
				CHECKPOINT_VERSION_CRFS1);
		return -ENOEXEC;
	}
	if (!c->task_comm_len || c->task_comm_len > CRFS_MAX_STRING ||
	    c->uts_release_len > CRFS_MAX_STRING ||
	    c->uts_version_len > CRFS_MAX_STRING ||
	    c->uts_machine_len > CRFS_MAX_STRING)
		return fail(ctx, &rec, "bad task_comm_len or uts lengths");
	ret = load_uts(ctx, c->uts_release_len);
	if (!ret)
		ret = load_uts(ctx, c->uts_version_len);
	if (!ret)
		ret = load_uts(ctx, c->uts_machine_len);
	if (ret)
		return ret;
	ret = expect(ctx, &rec, CKPT_HDR_HEADER_ARCH);
	if (ret)
		return ret;
	return crfs_image_body(ctx->img, &rec, &ctx->plan->arch,
			       sizeof(ctx->plan->arch));
}

static int load_tree(struct crfs_ctx *ctx)
{
	struct crfs_plan *plan = ctx->plan;
	struct ckpt_hdr_tree tree;
	struct ckpt_pids *pids;
	struct crfs_rec rec;
	u64 depth = 0;
	u32 i;
	int ret;

	ret = next_of(ctx, &rec, CKPT_HDR_TREE, 0);
	if (!ret)
		ret = crfs_image_body(ctx->img, &rec, &tree, sizeof(tree));
	if (ret)
		return ret;
	if (tree.nr_tasks < 1 || tree.nr_tasks > CRFS_MAX_TASKS ||
	    !fits(ctx, tree.nr_tasks, sizeof(*pids)))
		return crfs_image_fail(ctx->img, &rec, "nr_tasks %d",
				       tree.nr_tasks);
	plan->tasks = kvcalloc(tree.nr_tasks, sizeof(*plan->tasks),
			       GFP_KERNEL_ACCOUNT);
	pids = kvcalloc(tree.nr_tasks, sizeof(*pids), GFP_KERNEL_ACCOUNT);
	if (!plan->tasks || !pids) {
		kvfree(pids);
		return -ENOMEM;
	}
	plan->nr_tasks = tree.nr_tasks;
	ret = expect_sized(ctx, &rec, CKPT_HDR_BUFFER,
			   (u64)tree.nr_tasks * sizeof(*pids));
	if (!ret)
		ret = payload(ctx, &rec, pids, tree.nr_tasks * sizeof(*pids));
	for (i = 0; !ret && i < plan->nr_tasks; i++) {
		plan->tasks[i].pids = pids[i];
		if (pids[i].depth < 0 || pids[i].depth > CRFS_MAX_PID_DEPTH)
			ret = crfs_image_fail(ctx->img, &rec,
					      "pid %d: depth %d", pids[i].vpid,
					      pids[i].depth);
		depth += pids[i].depth;
	}
	kvfree(pids);
	if (ret || !depth)
		return ret;
	/* the vpids of nested pid namespaces: not restored, only checked */
	return expect_sized(ctx, &rec, CKPT_HDR_BUFFER, depth * sizeof(s32));
}

/* ---------------------------------------------------------------- objects */

/* Make room for @more runs in @vma, growing the array geometrically. */
static int grow_runs(struct crfs_vma *vma, u64 more)
{
	u64 need = vma->nr_runs + more;
	struct crfs_run *runs;
	u64 cap;

	if (need <= vma->max_runs)
		return 0;
	cap = max_t(u64, need, 2 * (u64)vma->max_runs);
	cap = min_t(u64, cap, CRFS_MAX_PAGES);
	runs = kvmalloc_array(cap, sizeof(*runs), GFP_KERNEL_ACCOUNT);
	if (!runs)
		return -ENOMEM;
	if (vma->nr_runs)
		memcpy(runs, vma->runs, vma->nr_runs * sizeof(*runs));
	kvfree(vma->runs);
	vma->runs = runs;
	vma->max_runs = cap;
	return 0;
}

/*
 * Check the vaddrs of one PGARR chunk (aligned, strictly ascending, from *@lowest up to
 * @limit) and append them to @vma's runs; their pages start at @pages_pos.
 */
static int add_runs(struct crfs_ctx *ctx, struct crfs_vma *vma,
		    const struct crfs_rec *rec, u64 nr, loff_t pages_pos,
		    u64 *lowest, u64 limit, bool indices)
{
	const u64 *v = ctx->plan->vaddrs;
	u64 step = indices ? 1 : PAGE_SIZE;
	struct crfs_run *run = NULL;
	u64 i, nr_runs = 0;
	int ret;

	for (i = 0; i < nr; i++) {
		if (v[i] < *lowest || v[i] >= limit ||
		    (!indices && !PAGE_ALIGNED(v[i])))
			return crfs_image_fail(ctx->img, rec,
					       "%s %#llx not aligned, ascending and inside the vma",
					       indices ? "page index" : "vaddr",
					       v[i]);
		*lowest = v[i] + step;
		if (!i || v[i] != v[i - 1] + step)
			nr_runs++;
	}
	ret = grow_runs(vma, nr_runs);
	if (ret)
		return ret;
	for (i = 0; i < nr; i++) {
		if (!i || v[i] != v[i - 1] + step) {
			run = &vma->runs[vma->nr_runs++];
			run->addr = v[i];
			run->pos = pages_pos + i * PAGE_SIZE;
			run->nr_pages = 0;
		}
		run->nr_pages++;
	}
	return 0;
}

/*
 * CONTENTS of a VMA: page chunks up to PGARR{0}. Private VMAs give vaddrs in
 * [vm_start, vm_end), SHM_ANON gives page indices in [0, pages of the inode).
 */
static int load_contents(struct crfs_ctx *ctx, struct crfs_vma *vma, u64 lowest,
			 u64 limit, bool indices)
{
	struct crfs_plan *plan = ctx->plan;
	struct ckpt_hdr_pgarr pgarr;
	struct crfs_rec rec;
	u64 nr;
	int ret;

	for (;;) {
		ret = expect(ctx, &rec, CKPT_HDR_PGARR);
		if (!ret)
			ret = crfs_image_body(ctx->img, &rec, &pgarr, sizeof(pgarr));
		if (ret)
			return ret;
		nr = pgarr.nr_pages;
		if (!nr)
			return 0;
		if (nr > CKPT_PGARR_BATCH || !fits(ctx, nr, VADDR_SIZE + PAGE_SIZE))
			return crfs_image_fail(ctx->img, &rec,
					       "nr_pages %llu exceeds the file or the batch size",
					       nr);
		if (plan->nr_pages + nr > CRFS_MAX_PAGES)
			return crfs_image_fail(ctx->img, &rec,
					       "more than %lu pages in the image",
					       CRFS_MAX_PAGES);
		plan->nr_pages += nr;
		ret = expect_sized(ctx, &rec, CKPT_HDR_BUFFER,
				   nr * (VADDR_SIZE + PAGE_SIZE));
		if (!ret)
			ret = payload(ctx, &rec, plan->vaddrs, nr * VADDR_SIZE);
		if (!ret)
			ret = add_runs(ctx, vma, &rec, nr,
				       rec.pos + sizeof(struct ckpt_hdr) +
				       nr * VADDR_SIZE, &lowest, limit, indices);
		if (ret)
			return ret;
		cond_resched();
	}
}

/* The type, range and offset of a VMA, checked against the one before it. */
static int check_vma(struct crfs_ctx *ctx, const struct ckpt_hdr_vma *h,
		     const struct crfs_rec *rec, u64 prev_end)
{
	u64 npages;

	if (h->vma_type > CKPT_VMA_MAX)
		return crfs_image_fail(ctx->img, rec, "unknown vma_type %u",
				       h->vma_type);
	if (h->vm_start >= h->vm_end || !PAGE_ALIGNED(h->vm_start) ||
	    !PAGE_ALIGNED(h->vm_end) || h->vm_end > TASK_SIZE_MAX)
		return crfs_image_fail(ctx->img, rec,
				       "bad range %#llx-%#llx (TASK_SIZE_MAX %#lx)",
				       h->vm_start, h->vm_end, TASK_SIZE_MAX);
	if (h->vm_start < prev_end)
		return crfs_image_fail(ctx->img, rec,
				       "vma %#llx overlaps or precedes the one before",
				       h->vm_start);
	/* the file or shmem offset of a mapping must fit vm_mmap()'s byte offset */
	npages = (h->vm_end - h->vm_start) >> PAGE_SHIFT;
	if (h->vma_type != CKPT_VMA_ANON && h->vma_type != CKPT_VMA_VDSO &&
	    h->vma_type != CKPT_VMA_IGNORE &&
	    h->vm_pgoff > (ULONG_MAX >> PAGE_SHIFT) - npages)
		return crfs_image_fail(ctx->img, rec, "vm_pgoff %#llx",
				       h->vm_pgoff);
	return 0;
}

/* The file a VMA maps (always for CKPT_VMA_FILE), an object seen before. */
static int vma_file(struct crfs_ctx *ctx, struct crfs_vma *vma,
		    const struct crfs_rec *rec)
{
	const struct ckpt_hdr_vma *h = &vma->h;
	struct crfs_object *obj;

	if (!h->vma_objref && h->vma_type != CKPT_VMA_FILE)
		return 0;
	obj = lookup(ctx, h->vma_objref, CKPT_OBJ_FILE);
	if (!obj)
		return crfs_image_fail(ctx->img, rec,
				       "vma_objref %d is not a file seen before",
				       h->vma_objref);
	vma->file = obj->file;
	return 0;
}

/* A segment's VMA starts inside the segment (of @npages pages). */
static int check_shm_pgoff(struct crfs_ctx *ctx, const struct ckpt_hdr_vma *h,
			   const struct crfs_rec *rec, u64 npages)
{
	if (h->vm_pgoff >= npages)
		return crfs_image_fail(ctx->img, rec,
				       "vm_pgoff %#llx past shm %d of %llu pages",
				       h->vm_pgoff, h->ino_objref, npages);
	return 0;
}

/* A SHM_ANON VMA: a new shmem inode, then its pages by index. */
static int load_shm_anon(struct crfs_ctx *ctx, struct crfs_vma *vma,
			 const struct crfs_rec *rec)
{
	const struct ckpt_hdr_vma *h = &vma->h;
	u64 npages;
	void *old;
	int ret;

	if (h->ino_objref <= 0 || h->ino_size > TASK_SIZE_MAX)
		return crfs_image_fail(ctx->img, rec,
				       "ino_objref %d, ino_size %#llx",
				       h->ino_objref, h->ino_size);
	npages = DIV_ROUND_UP(h->ino_size, PAGE_SIZE);
	old = xa_store(&ctx->plan->shm, h->ino_objref, xa_mk_value(npages),
		       GFP_KERNEL_ACCOUNT);
	if (xa_is_err(old))
		return xa_err(old);
	if (old)
		return crfs_image_fail(ctx->img, rec,
				       "ino_objref %d is not new",
				       h->ino_objref);
	ret = check_shm_pgoff(ctx, h, rec, npages);
	if (ret)
		return ret;
	return load_contents(ctx, vma, 0, npages, true);
}

/* A SHM_ANON_SKIP VMA: a segment dumped before, of the same size. */
static int check_shm_skip(struct crfs_ctx *ctx, const struct ckpt_hdr_vma *h,
			  const struct crfs_rec *rec)
{
	void *entry = NULL;

	if (h->ino_objref > 0)
		entry = xa_load(&ctx->plan->shm, h->ino_objref);
	if (!entry)
		return crfs_image_fail(ctx->img, rec,
				       "ino_objref %d was not dumped before",
				       h->ino_objref);
	if (h->ino_size > TASK_SIZE_MAX ||
	    DIV_ROUND_UP(h->ino_size, PAGE_SIZE) != xa_to_value(entry))
		return crfs_image_fail(ctx->img, rec,
				       "ino_size %#llx differs from shm %d's dump",
				       h->ino_size, h->ino_objref);
	return check_shm_pgoff(ctx, h, rec, xa_to_value(entry));
}

static int load_vma(struct crfs_ctx *ctx, struct crfs_vma *vma,
		    const struct crfs_rec *rec, u64 prev_end)
{
	struct ckpt_hdr_vma *h = &vma->h;
	int ret;

	ret = crfs_image_body(ctx->img, rec, h, sizeof(*h));
	if (!ret)
		ret = check_vma(ctx, h, rec, prev_end);
	if (!ret)
		ret = vma_file(ctx, vma, rec);
	if (ret)
		return ret;
	switch (h->vma_type) {
	case CKPT_VMA_ANON:
	case CKPT_VMA_FILE:
		return load_contents(ctx, vma, h->vm_start, h->vm_end, false);
	case CKPT_VMA_SHM_ANON:
		return load_shm_anon(ctx, vma, rec);
	case CKPT_VMA_SHM_ANON_SKIP:
		return check_shm_skip(ctx, h, rec);
	default:
		return 0;	/* no contents */
	}
}

static int load_auxv(struct crfs_ctx *ctx, struct crfs_mm *mm)
{
	u32 size = ctx->plan->header.constants.at_vector_size * sizeof(u64);
	struct crfs_rec rec;
	u32 i;
	int ret;

	ret = expect(ctx, &rec, CKPT_HDR_BUFFER);
	if (ret)
		return ret;
	if (rec.len - sizeof(struct ckpt_hdr) != size || !size || size % 16 ||
	    size > CRFS_MAX_AUXV_BYTES)
		return crfs_image_fail(ctx->img, &rec,
				       "auxv of %zu bytes, at_vector_size %u",
				       rec.len - sizeof(struct ckpt_hdr),
				       ctx->plan->header.constants.at_vector_size);
	mm->auxv = kmalloc(size, GFP_KERNEL_ACCOUNT);
	if (!mm->auxv)
		return -ENOMEM;
	ret = payload(ctx, &rec, mm->auxv, size);
	if (ret)
		return ret;
	for (i = 0; i < size / sizeof(u64); i += 2)
		if (mm->auxv[i] == AT_NULL_TYPE)
			return 0;
	return fail(ctx, &rec, "auxv without AT_NULL");
}

/* exe_objref: 0, or a generic FILE by name seen before (crfs_exe.c). */
static int load_exe(struct crfs_ctx *ctx, struct crfs_mm *mm,
		    const struct crfs_rec *rec)
{
	struct crfs_object *obj;

	if (!mm->h.exe_objref)
		return 0;
	obj = lookup(ctx, mm->h.exe_objref, CKPT_OBJ_FILE);
	if (!obj || obj->file->h.f_type != CKPT_FILE_GENERIC || !obj->file->name)
		return crfs_image_fail(ctx->img, rec,
				       "exe_objref %d is not a file by name seen before",
				       mm->h.exe_objref);
	mm->exe = obj->file;
	return 0;
}

/* The MM record itself: every address in it inside the user address space. */
static int load_mm_header(struct crfs_ctx *ctx, struct crfs_mm *mm,
			  struct crfs_rec *rec, int depth)
{
	const u64 *addr;
	int ret;

	ret = next_of(ctx, rec, CKPT_HDR_MM, depth);
	if (!ret)
		ret = crfs_image_body(ctx->img, rec, &mm->h, sizeof(mm->h));
	if (ret)
		return ret;
	for (addr = &mm->h.start_code; addr <= &mm->h.env_end; addr++)
		if (!user_addr(*addr))
			return crfs_image_fail(ctx->img, rec,
					       "address %#llx above TASK_SIZE_MAX",
					       *addr);
	return load_exe(ctx, mm, rec);
}

/* The map_count VMAs of an mm (@rec, its MM record), each above the one before. */
static int load_vmas(struct crfs_ctx *ctx, struct crfs_mm *mm,
		     const struct crfs_rec *rec, int depth)
{
	struct crfs_plan *plan = ctx->plan;
	struct crfs_rec vma;
	u64 prev_end = 0;
	u32 i;
	int ret;

	if (mm->h.map_count > CRFS_MAX_VMAS ||
	    plan->nr_vmas + mm->h.map_count > CRFS_MAX_TOTAL_VMAS ||
	    !fits(ctx, mm->h.map_count, sizeof(struct ckpt_hdr_vma)))
		return crfs_image_fail(ctx->img, rec, "map_count %u",
				       mm->h.map_count);
	plan->nr_vmas += mm->h.map_count;
	mm->vmas = kvcalloc(mm->h.map_count, sizeof(*mm->vmas),
			    GFP_KERNEL_ACCOUNT);
	if (mm->h.map_count && !mm->vmas)
		return -ENOMEM;
	for (i = 0; i < mm->h.map_count; i++) {
		ret = next_of(ctx, &vma, CKPT_HDR_VMA, depth);
		if (!ret)
			ret = load_vma(ctx, &mm->vmas[i], &vma, prev_end);
		if (ret)
			return ret;
		prev_end = mm->vmas[i].h.vm_end;
		cond_resched();
	}
	return 0;
}

/* MM_CONTEXT and its LDT. */
static int load_mm_context(struct crfs_ctx *ctx, struct crfs_mm *mm, int depth)
{
	struct ckpt_hdr_mm_context *context = &mm->context;
	struct crfs_rec rec;
	int ret;

	ret = next_of(ctx, &rec, CKPT_HDR_MM_CONTEXT, depth);
	if (!ret)
		ret = crfs_image_body(ctx->img, &rec, context, sizeof(*context));
	if (ret)
		return ret;
	if (context->ldt_entry_size != CKPT_LDT_ENTRY_SIZE ||
	    context->nldt > CRFS_LDT_ENTRIES || !user_addr(context->vdso))
		return crfs_image_fail(ctx->img, &rec,
				       "%u LDT entries of %u bytes, vdso %#llx",
				       context->nldt, context->ldt_entry_size,
				       context->vdso);
	return expect_sized(ctx, &rec, CKPT_HDR_MM_CONTEXT_LDT,
			    (u64)context->nldt * CKPT_LDT_ENTRY_SIZE);
}

static int load_mm(struct crfs_ctx *ctx, struct crfs_object *obj, int depth)
{
	struct crfs_mm *mm;
	struct crfs_rec rec;
	int ret;

	mm = kzalloc(sizeof(*mm), GFP_KERNEL_ACCOUNT);
	if (!mm)
		return -ENOMEM;
	obj->mm = mm;
	ret = load_mm_header(ctx, mm, &rec, depth);
	if (!ret)
		ret = load_auxv(ctx, mm);
	if (!ret)
		ret = load_vmas(ctx, mm, &rec, depth);
	if (!ret)
		ret = load_mm_context(ctx, mm, depth);
	return ret;
}

/* An FS object: FS, then its names and umask (crfs_fs.c). */
static int load_fs(struct crfs_ctx *ctx, struct crfs_object *obj, int depth)
{
	struct crfs_rec rec;
	int ret;

	ret = next_of(ctx, &rec, CKPT_HDR_FS, depth);
	return ret ?: crfs_fs_load(ctx->img, obj);
}

/*
 * A GROUPINFO: ngroups (at most NGROUPS_MAX) gids, and len exactly
 * CKPT_GROUPINFO_SIZE + 4 * ngroups.
 */
static int load_groupinfo(struct crfs_ctx *ctx, struct crfs_object *obj,
			  int depth)
{
	struct ckpt_hdr_groupinfo h;
	struct crfs_groups *groups;
	struct crfs_rec rec;
	int ret;

	ret = next_of(ctx, &rec, CKPT_HDR_GROUPINFO, depth);
	if (!ret)
		ret = crfs_image_body(ctx->img, &rec, &h, sizeof(h));
	if (ret)
		return ret;
	if (h.ngroups > NGROUPS_MAX ||
	    rec.len != CKPT_GROUPINFO_SIZE + (u64)h.ngroups * sizeof(u32))
		return crfs_image_fail(ctx->img, &rec,
				       "GROUPINFO: ngroups %u (at most %d) in len %u",
				       h.ngroups, NGROUPS_MAX, rec.len);
	groups = kvmalloc(struct_size(groups, gids, h.ngroups),
			  GFP_KERNEL_ACCOUNT);
	if (!groups)
		return -ENOMEM;
	obj->groups = groups;
	groups->ngroups = h.ngroups;
	return crfs_image_read(ctx->img, rec.pos + sizeof(h), groups->gids,
			       h.ngroups * sizeof(u32));
}

/* A CRED, after the objects it refers to (a USER, a GROUPINFO) when they are new. */
static int load_cred(struct crfs_ctx *ctx, struct crfs_object *obj, int depth)
{
	struct crfs_object *ref;
	struct crfs_cred *cred;
	struct crfs_rec rec;
	int ret;

	cred = kzalloc(sizeof(*cred), GFP_KERNEL_ACCOUNT);
	if (!cred)
		return -ENOMEM;
	obj->cred = cred;
	ret = next_of(ctx, &rec, CKPT_HDR_CRED, depth);
	if (!ret)
		ret = crfs_image_body(ctx->img, &rec, &cred->h, sizeof(cred->h));
	if (ret)
		return ret;
	if (cred->h.user_ref && !lookup(ctx, cred->h.user_ref, CKPT_OBJ_USER))
		return crfs_image_fail(ctx->img, &rec,
				       "CRED: user_ref %d is not a user seen before",
				       cred->h.user_ref);
	if (!cred->h.groupinfo_ref)
		return 0;
	ref = lookup(ctx, cred->h.groupinfo_ref, CKPT_OBJ_GROUPINFO);
	if (!ref)
		return crfs_image_fail(ctx->img, &rec,
				       "CRED: groupinfo_ref %d is not a GROUPINFO seen before",
				       cred->h.groupinfo_ref);
	cred->groups = ref->groups;
	return 0;
}

static int load_object(struct crfs_ctx *ctx, const struct crfs_rec *rec,
		       int depth)
{
	struct crfs_plan *plan = ctx->plan;
	struct ckpt_hdr_objref h;
	struct crfs_object *obj;
	int ret;

	ret = crfs_image_body(ctx->img, rec, &h, sizeof(h));
	if (ret)
		return ret;
	if (depth >= CRFS_MAX_OBJ_DEPTH)
		return fail(ctx, rec, "objects nested too deep");
	if (plan->nr_objects >= CRFS_MAX_OBJECTS)
		return fail(ctx, rec, "too many objects");
	if (h.objref <= 0)
		return crfs_image_fail(ctx->img, rec, "objref %d", h.objref);
	obj = kzalloc(sizeof(*obj), GFP_KERNEL_ACCOUNT);
	if (!obj)
		return -ENOMEM;
	obj->objtype = h.objtype;
	ret = xa_insert(&plan->objects, h.objref, obj, GFP_KERNEL_ACCOUNT);
	if (ret) {
		kfree(obj);
		if (ret == -EBUSY)
			return crfs_image_fail(ctx->img, rec,
					       "objref %d is not new", h.objref);
		return ret;
	}
	plan->nr_objects++;
	switch (h.objtype) {
	case CKPT_OBJ_MM:
		ret = load_mm(ctx, obj, depth + 1);
		break;
	case CKPT_OBJ_FILE:
		ret = crfs_load_file(ctx, obj, depth + 1);
		break;
	case CKPT_OBJ_FILE_TABLE:
		ret = crfs_load_file_table(ctx, obj, depth + 1);
		break;
	case CKPT_OBJ_FS:
		ret = load_fs(ctx, obj, depth + 1);
		break;
	case CKPT_OBJ_SIGHAND:
		ret = crfs_sig_load_sighand(ctx->img, obj);
		break;
	case CKPT_OBJ_CRED:
		ret = load_cred(ctx, obj, depth + 1);
		break;
	case CKPT_OBJ_GROUPINFO:
		ret = load_groupinfo(ctx, obj, depth + 1);
		break;
	default:
		break;		/* its records, if any, are skipped */
	}
	if (!ret)
		obj->ready = true;
	return ret;
}

/* ---------------------------------------------------------------- tasks */

static bool segment_ok(u16 code)
{
	if (code & CKPT_X86_SEG_LDT)
		return true;	/* index < 8192 by construction */
	if (code & CKPT_X86_SEG_TLS)
		return (code & ~CKPT_X86_SEG_TLS) < CKPT_TLS_ENTRIES;
	return code <= CKPT_X86_SEG_USER64_DS;
}

static int load_cpu(struct crfs_ctx *ctx, struct crfs_task *task,
		    const struct crfs_rec *rec)
{
	struct ckpt_hdr_cpu *cpu = &task->cpu;
	u16 xstate_size = ctx->plan->arch.xstate_size;
	struct crfs_rec fpu;
	int ret;

	ret = crfs_image_body(ctx->img, rec, cpu, sizeof(*cpu));
	if (ret)
		return ret;
	if (!segment_ok(cpu->fsindex) || !segment_ok(cpu->gsindex) ||
	    !segment_ok(cpu->cs) || !segment_ok(cpu->ss) ||
	    !segment_ok(cpu->ds) || !segment_ok(cpu->es))
		return fail(ctx, rec, "unknown segment code");
	if (!user_addr(cpu->fs) || !user_addr(cpu->gs))
		return crfs_image_fail(ctx->img, rec,
				       "fs base %#llx or gs base %#llx above TASK_SIZE_MAX",
				       cpu->fs, cpu->gs);
	if (!cpu->used_math)
		return 0;
	ret = expect_sized(ctx, &fpu, CKPT_HDR_CPU_FPU, xstate_size);
	if (ret)
		return ret;
	task->fpu_pos = fpu.pos + sizeof(struct ckpt_hdr);
	return 0;
}

static int load_task_part(struct crfs_ctx *ctx, struct crfs_task *task,
			  const struct crfs_rec *rec, unsigned int part)
{
	struct ckpt_hdr_task_objs objs;
	struct crfs_object *obj;
	int ret;

	if (task->parts & part)
		return crfs_image_fail(ctx->img, rec, "second one for pid %d",
				       task->pids.vpid);
	task->parts |= part;
	switch (part) {
	case CRFS_PART_THREAD:
		ret = crfs_image_body(ctx->img, rec, &task->thread,
				      sizeof(task->thread));
		if (ret)
			return ret;
		if (task->thread.gdt_entry_tls_entries != CKPT_TLS_ENTRIES ||
		    task->thread.sizeof_tls_array != sizeof(task->thread.tls_array))
			return fail(ctx, rec, "bad TLS array");
		return 0;
	case CRFS_PART_CPU:
		return load_cpu(ctx, task, rec);
	default:
		ret = crfs_image_body(ctx->img, rec, &objs, sizeof(objs));
		if (!ret)
			ret = crfs_load_task_files(ctx, task, rec,
						   objs.files_objref);
		if (!ret)
			ret = crfs_sig_task_objs(ctx->plan, ctx->img, task, rec, &objs);
		if (ret || !objs.mm_objref)
			return ret;
		obj = lookup(ctx, objs.mm_objref, CKPT_OBJ_MM);
		if (!obj)
			return crfs_image_fail(ctx->img, rec,
					       "mm_objref %d is not an mm seen before",
					       objs.mm_objref);
		task->mm = obj->mm;
		return 0;
	}
}

/* TASK_CREDS: the task's real and effective CRED, objects seen before. */
static int load_task_creds(struct crfs_ctx *ctx, struct crfs_task *task,
			   const struct crfs_rec *rec)
{
	struct ckpt_hdr_task_creds h;
	struct crfs_object *real, *eff;
	int ret;

	if (task->parts & CRFS_PART_CREDS)
		return crfs_image_fail(ctx->img, rec, "second one for pid %d",
				       task->pids.vpid);
	task->parts |= CRFS_PART_CREDS;
	ret = crfs_image_body(ctx->img, rec, &h, sizeof(h));
	if (ret)
		return ret;
	real = lookup(ctx, h.cred_ref, CKPT_OBJ_CRED);
	eff = lookup(ctx, h.ecred_ref, CKPT_OBJ_CRED);
	if (!real || !eff)
		return crfs_image_fail(ctx->img, rec,
				       "TASK_CREDS: cred_ref %d or ecred_ref %d is not a CRED seen before",
				       h.cred_ref, h.ecred_ref);
	task->cred = real->cred;
	task->ecred = eff->cred;
	return 0;
}

/* TASK and the STRING of its comm. */
static int load_task_header(struct crfs_ctx *ctx, struct crfs_task *task)
{
	struct crfs_rec rec;
	u32 len;
	int ret;

	ret = next_of(ctx, &rec, CKPT_HDR_TASK, 0);
	if (!ret)
		ret = crfs_image_body(ctx->img, &rec, &task->h, sizeof(task->h));
	if (!ret)
		ret = expect(ctx, &rec, CKPT_HDR_STRING);
	if (ret)
		return ret;
	len = rec.len - sizeof(struct ckpt_hdr);
	if (len > CRFS_MAX_STRING)
		return crfs_image_fail(ctx->img, &rec, "comm of %u bytes", len);
	return payload(ctx, &rec, task->comm,
		       min_t(u32, len, sizeof(task->comm) - 1));
}

/* One record of a task after its comm: a part of it or an interleaved one. */
static int load_task_record(struct crfs_ctx *ctx, struct crfs_task *task,
			    const struct crfs_rec *rec)
{
	switch (rec->type) {
	case CKPT_HDR_THREAD:
		return load_task_part(ctx, task, rec, CRFS_PART_THREAD);
	case CKPT_HDR_CPU:
		return load_task_part(ctx, task, rec, CRFS_PART_CPU);
	case CKPT_HDR_TASK_OBJS:
		return load_task_part(ctx, task, rec, CRFS_PART_TASK_OBJS);
	case CKPT_HDR_TASK_CREDS:
		return load_task_creds(ctx, task, rec);
	case CKPT_HDR_SIGNAL:
	case CKPT_HDR_SIGPENDING:
	case CKPT_HDR_SIGNAL_TASK:
	case CRFS_HDR_SIGALTSTACK:
	case CRFS_HDR_SIGINFO_RAW:
		return crfs_sig_load_record(ctx->plan, ctx->img, task, rec);
	case CRFS_HDR_OOM_SCORE_ADJ:
	case CRFS_HDR_RSEQ:
	case CRFS_HDR_SECCOMP:
	case CRFS_HDR_TASK_MISC:
		return crfs_ts_load_record(ctx->img, task, rec);
	case CRFS_HDR_POSIX_TIMER:
		return crfs_timers_load_record(ctx->img, task, rec);
	default:
		return interleaved(ctx, rec, 0);
	}
}

static int load_task(struct crfs_ctx *ctx, struct crfs_task *task)
{
	struct crfs_rec rec;
	int ret;

	ret = load_task_header(ctx, task);
	if (ret)
		return ret;
	for (;;) {
		if (ctx->img->pos == ctx->img->size)
			return fail(ctx, NULL,
				    "missing CKPT_HDR_TAIL at the end of the file");
		ret = crfs_image_peek(ctx->img, &rec);
		if (ret)
			return ret;
		if (rec.type == CKPT_HDR_TASK || rec.type == CKPT_HDR_TAIL)
			return 0;
		ret = next(ctx, &rec);
		if (!ret)
			ret = load_task_record(ctx, task, &rec);
		if (ret)
			return ret;
		cond_resched();
	}
}

static int load_tail(struct crfs_ctx *ctx)
{
	struct ckpt_hdr_tail tail;
	struct crfs_rec rec;
	int ret;

	ret = next_of(ctx, &rec, CKPT_HDR_TAIL, 0);
	if (!ret)
		ret = crfs_image_body(ctx->img, &rec, &tail, sizeof(tail));
	if (ret)
		return ret;
	if (tail.magic != CHECKPOINT_MAGIC_TAIL)
		return crfs_image_fail(ctx->img, &rec, "bad magic %#llx",
				       tail.magic);
	if (ctx->img->pos != ctx->img->size)
		return fail(ctx, &rec, "data after the trailer");
	return 0;
}

/* ---------------------------------------------------------------- plan */

void crfs_plan_init(struct crfs_plan *plan)
{
	memset(plan, 0, sizeof(*plan));
	xa_init(&plan->objects);
	xa_init(&plan->shm);
	xa_init(&plan->inodes);
}

static void free_mm(struct crfs_mm *mm)
{
	u32 i;

	if (!mm)
		return;
	for (i = 0; mm->vmas && i < mm->h.map_count; i++)
		kvfree(mm->vmas[i].runs);
	kvfree(mm->vmas);
	kfree(mm->auxv);
	kfree(mm);
}

void crfs_plan_free(struct crfs_plan *plan)
{
	struct crfs_object *obj;
	unsigned long index;
	u32 i;

	xa_for_each(&plan->objects, index, obj) {
		crfs_free_file_object(obj);	/* FILE, FILE_TABLE, INODE */
		if (obj->objtype == CKPT_OBJ_MM)
			free_mm(obj->mm);
		else if (obj->objtype == CKPT_OBJ_CRED)
			kfree(obj->cred);
		else if (obj->objtype == CKPT_OBJ_GROUPINFO)
			kvfree(obj->groups);
		else
			crfs_sig_free_object(obj);
		kfree(obj);
	}
	xa_destroy(&plan->objects);
	xa_destroy(&plan->shm);
	xa_destroy(&plan->inodes);
	for (i = 0; plan->tasks && i < plan->nr_tasks; i++)
		crfs_sig_free_task(&plan->tasks[i]);
	kvfree(plan->tasks);
	kvfree(plan->vaddrs);
	plan->tasks = NULL;
	plan->vaddrs = NULL;
}

/* Copy in and validate the whole image. 0, -EINVAL (see img->err_*) or another errno. */
int crfs_plan_load(struct crfs_plan *plan, struct crfs_image *img)
{
	struct crfs_ctx ctx = { .plan = plan, .img = img };
	u32 i;
	int ret;

	plan->vaddrs = kvmalloc_array(CKPT_PGARR_BATCH, VADDR_SIZE,
				      GFP_KERNEL_ACCOUNT);
	if (!plan->vaddrs)
		return -ENOMEM;
	ret = load_header(&ctx);
	if (!ret)
		ret = load_tree(&ctx);
	for (i = 0; !ret && i < plan->nr_tasks; i++)
		ret = load_task(&ctx, &plan->tasks[i]);
	if (!ret)
		ret = load_tail(&ctx);
	return ret;
}

/* ---------------------------------------------------------------- ioctl */

long crfs_ioctl_image(struct crfs_image_args __user *uargs, bool restart)
{
	return crfs_image_ioctl(uargs, restart, NULL);
}

/* CHECK or RESTART; @handed: RESTART_FILES's files (crfs_anonfd.c), or NULL. */
long crfs_image_ioctl(struct crfs_image_args __user *uargs, bool restart,
		      struct crfs_handed *handed)
{
	struct crfs_image_args args;
	struct crfs_image *img;
	struct crfs_plan *plan;
	bool done = false;
	long ret;

	if (copy_from_user(&args, uargs, sizeof(args)))
		return -EFAULT;
	if (args.flags & ~CRFS_RESTART_FLAGS)
		return -EINVAL;
	img = kzalloc(sizeof(*img), GFP_KERNEL);
	plan = kzalloc(sizeof(*plan), GFP_KERNEL);
	if (!img || !plan) {
		kfree(img);
		kfree(plan);
		return -ENOMEM;
	}
	crfs_plan_init(plan);
	plan->flags = args.flags;
	plan->handed = handed;
	ret = crfs_image_open(img, args.fd);
	if (!ret)
		ret = crfs_plan_load(plan, img);
	if (!ret && args.task_index >= plan->nr_tasks)
		ret = crfs_image_fail(img, NULL, "task_index %u: the image has %u tasks",
				      args.task_index, plan->nr_tasks);
	if (!ret)
		ret = crfs_handed_check(plan, img);
	if (!ret && restart)
		ret = crfs_restore(plan, img, args.task_index, &done);
	if (done)
		goto out;	/* the caller's memory is the image's now */
	args.err_offset = img->err_offset;
	args.err_type = img->err_type;
	memcpy(args.err_msg, img->err_msg, sizeof(args.err_msg));
	args.err_msg[sizeof(args.err_msg) - 1] = '\0';
	if (copy_to_user(uargs, &args, sizeof(args)))
		ret = -EFAULT;
out:
	crfs_plan_free(plan);
	crfs_image_close(img);
	kfree(plan);
	kfree(img);
	return ret;
}
