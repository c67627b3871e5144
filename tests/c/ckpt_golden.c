/*
 * Golden linux-cr ckpt_hdr image (v19-rc3..v21 numbers) for crfs's tests.
 *
 * Built with gcc -m32 (x86_32 image) and -m64 (x86_64 image). Writes argv[1] and prints, as
 * JSON, the values it wrote, so the expected values come from the C layout, not from crfs.
 *
 * Image: 3 tasks. Process 4242 with thread 4243 sharing mm objref 1: exe FILE object before
 * MM, a file VMA using it, an anon VMA with pages in 2 PGARR chunks, a second file through
 * OBJREF/FILE/FILE_NAME, a SHM_ANON VMA, VDSO, 2 LDT entries, CPU_FPU; the thread writes
 * TASK_OBJS before THREAD. Process 4300 (mm objref 5, no FPU): SHM_ANON_SKIP of the same
 * segment, a file VMA sharing file objref 3, SHM_FILE, SHM_IPC, SHM_IPC_SKIP, IGNORE, anon,
 * VDSO. CONTAINER + LSM records and records of unknown type 777 are to be skipped.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAGE_SIZE 4096
#define IS64 (sizeof(long) == 8)

/* ---- layouts: include/linux/checkpoint_hdr.h, arch/x86/include/asm/checkpoint_hdr.h ---- */

enum {
	CKPT_HDR_HEADER = 1, CKPT_HDR_HEADER_ARCH, CKPT_HDR_CONTAINER, CKPT_HDR_BUFFER,
	CKPT_HDR_STRING, CKPT_HDR_OBJREF, CKPT_HDR_LSM_INFO,
	CKPT_HDR_TREE = 101, CKPT_HDR_TASK, CKPT_HDR_TASK_NS, CKPT_HDR_TASK_OBJS,
	CKPT_HDR_RESTART_BLOCK, CKPT_HDR_THREAD, CKPT_HDR_CPU,
	CKPT_HDR_CPU_FPU = 201, CKPT_HDR_MM_CONTEXT_LDT = 202,
	CKPT_HDR_FILE_TABLE = 301, CKPT_HDR_FILE_DESC, CKPT_HDR_FILE_NAME, CKPT_HDR_FILE,
	CKPT_HDR_MM = 401, CKPT_HDR_VMA, CKPT_HDR_PGARR, CKPT_HDR_MM_CONTEXT,
	CKPT_HDR_TAIL = 9001,
};
enum { CKPT_ARCH_X86_32 = 1, CKPT_ARCH_X86_64 = 2 };
enum { CKPT_OBJ_FILE = 3, CKPT_OBJ_MM = 4 };
enum { CKPT_FILE_GENERIC = 1 };
enum vma_type {
	CKPT_VMA_IGNORE = 0, CKPT_VMA_VDSO, CKPT_VMA_ANON, CKPT_VMA_FILE, CKPT_VMA_SHM_ANON,
	CKPT_VMA_SHM_ANON_SKIP, CKPT_VMA_SHM_FILE, CKPT_VMA_SHM_IPC, CKPT_VMA_SHM_IPC_SKIP,
};
static const char *const vma_names[] = {
	"CKPT_VMA_IGNORE", "CKPT_VMA_VDSO", "CKPT_VMA_ANON", "CKPT_VMA_FILE", "CKPT_VMA_SHM_ANON",
	"CKPT_VMA_SHM_ANON_SKIP", "CKPT_VMA_SHM_FILE", "CKPT_VMA_SHM_IPC", "CKPT_VMA_SHM_IPC_SKIP",
};
static const char *const vma_kinds[] = {
	"ignore", "vdso", "anon", "file", "shm-anon", "shm-anon", "shm-file", "shm-ipc", "shm-ipc",
};
#define UNKNOWN_TYPE 777

#include "ckpt_v21.h"

struct ckpt_hdr_lsm { struct ckpt_hdr h; int32_t ptrref; uint8_t sectype; } __attribute__((aligned(8)));
struct ckpt_hdr_thread {
	struct ckpt_hdr h;
	uint32_t thread_info_flags;
	uint16_t gdt_entry_tls_entries, sizeof_tls_array;
	uint64_t tls_array[3];
} __attribute__((aligned(8)));

struct ckpt_hdr_cpu {
	struct ckpt_hdr h;
	uint64_t r15, r14, r13, r12, bp, bx, r11, r10, r9, r8, ax, cx, dx, si, di, orig_ax, ip, sp,
		 flags, fs, gs;
	uint16_t fsindex, gsindex, cs, ss, ds, es;
	uint32_t used_math;
} __attribute__((aligned(8)));

struct ckpt_hdr_file {
	struct ckpt_hdr h;
	uint32_t f_type, f_mode, f_flags;
	int32_t f_credref;
	uint64_t f_pos, f_version;
	int32_t f_secref;
} __attribute__((aligned(8)));

struct ckpt_hdr_mm {
	struct ckpt_hdr h;
	uint32_t map_count;
	int32_t exe_objref;
	uint64_t def_flags, flags;
	uint64_t start_code, end_code, start_data, end_data, start_brk, brk, start_stack,
		 arg_start, arg_end, env_start, env_end;
} __attribute__((aligned(8)));

struct ckpt_hdr_vma {
	struct ckpt_hdr h;
	uint32_t vma_type;
	int32_t vma_objref, ino_objref;
	uint32_t _padding;
	uint64_t ino_size, vm_start, vm_end, vm_page_prot, vm_flags, vm_pgoff;
} __attribute__((aligned(8)));

struct ckpt_hdr_pgarr { struct ckpt_hdr h; uint64_t nr_pages; } __attribute__((aligned(8)));

struct ckpt_hdr_mm_context {
	struct ckpt_hdr h;
	uint64_t vdso;
	uint32_t ldt_entry_size, nldt;
} __attribute__((aligned(8)));

_Static_assert(sizeof(struct ckpt_hdr_header) == 72, "HEADER");
_Static_assert(sizeof(struct ckpt_hdr_header_arch) == 16, "HEADER_ARCH");
_Static_assert(sizeof(struct ckpt_hdr_lsm) == 16, "LSM_INFO");
_Static_assert(sizeof(struct ckpt_hdr_objref) == 16, "OBJREF");
_Static_assert(sizeof(struct ckpt_hdr_tree) == 16, "TREE");
_Static_assert(sizeof(struct ckpt_pids) == 24, "pids");
_Static_assert(sizeof(struct ckpt_hdr_task) == 64, "TASK");
_Static_assert(sizeof(struct ckpt_hdr_task_objs) == 32, "TASK_OBJS");
_Static_assert(sizeof(struct ckpt_hdr_thread) == 40, "THREAD");
_Static_assert(sizeof(struct ckpt_hdr_cpu) == 192, "CPU");
_Static_assert(sizeof(struct ckpt_hdr_file) == 48, "FILE");
_Static_assert(sizeof(struct ckpt_hdr_mm) == 120, "MM");
_Static_assert(sizeof(struct ckpt_hdr_vma) == 72, "VMA");
_Static_assert(sizeof(struct ckpt_hdr_pgarr) == 16, "PGARR");
_Static_assert(sizeof(struct ckpt_hdr_mm_context) == 24, "MM_CONTEXT");
_Static_assert(sizeof(struct ckpt_hdr_tail) == 16, "TAIL");

/* ---- distinctive values ---- */

static unsigned tag;

static uint64_t v64(void) { tag++; return 0x5a00000000000000ULL | ((uint64_t)tag << 32) | (tag * 0x1111u); }
static uint32_t v32(void) { tag++; return 0x3a000000u | (tag << 12) | tag; }
static uint16_t v16(void) { tag++; return (uint16_t)(0x5000 | tag); }

static uint8_t page_byte(unsigned seed, unsigned i) { return (uint8_t)(seed * 31 + i * 7 + (i >> 8)); }

static uint64_t page_hash(unsigned seed)	/* FNV-1a 64 of the page contents */
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (unsigned i = 0; i < PAGE_SIZE; i++)
		h = (h ^ page_byte(seed, i)) * 0x100000001b3ULL;
	return h;
}

/* ---- the image ---- */

static void emit_unknown(void)
{
	emit_raw(UNKNOWN_TYPE, "skip me, 13b", 13);
}

/* ---- descriptions of what is written (also printed as JSON) ---- */

struct file_obj { int32_t objref; const char *path; struct ckpt_hdr_file rec; };

#define MAX_PAGES 8
struct vma_desc {
	struct ckpt_hdr_vma rec;
	struct file_obj *new_file;	/* OBJREF/FILE/FILE_NAME first */
	struct file_obj *file;
	int chunks[3];			/* pages per PGARR chunk */
	unsigned long vaddrs[MAX_PAGES];	/* or shmem page indices */
	unsigned seeds[MAX_PAGES];
	int npages;
};

struct mm_desc {
	int32_t objref;
	struct file_obj *exe;
	struct ckpt_hdr_mm rec;
	uint64_t auxv[38];
	struct vma_desc vmas[12];
	int nvmas;
	struct ckpt_hdr_mm_context ctx;
	uint8_t ldt[16];
};

struct task_desc {
	struct ckpt_pids pids;
	int32_t vpids[2];
	const char *comm;
	struct ckpt_hdr_task task;
	struct ckpt_hdr_thread thread;
	struct ckpt_hdr_cpu cpu;
	uint8_t fpu[576];
	struct ckpt_hdr_task_objs objs;
	struct mm_desc *mm;	/* written before TASK_OBJS when new */
	int objs_first;		/* TASK_OBJS before THREAD */
	uint16_t sel_cs, sel_ss, sel_ds, sel_es, sel_fs, sel_gs;	/* decoded selectors */
};

static struct ckpt_hdr_header header;
static struct ckpt_hdr_header_arch header_arch;
static const char release[] = "2.6.34-crfs-golden", version[] = "#21 SMP Golden Tue";
static struct file_obj files[2];
static struct mm_desc mms[2];
static struct task_desc tasks[3];
static unsigned seed_counter = 1;
static unsigned long shm_size = 6 * PAGE_SIZE - 100;
static struct vma_desc *shm_vma;	/* the SHM_ANON that holds the segment's pages */

static void fill_header(void)
{
	header.magic = CHECKPOINT_MAGIC_HEAD;
	header.arch_id = IS64 ? CKPT_ARCH_X86_64 : CKPT_ARCH_X86_32;
	header.major = 2;
	header.minor = 6;
	header.patch = 34;
	header.rev = 6;	/* CHECKPOINT_VERSION of v21 */
	header.constants = (struct ckpt_const){
		.task_comm_len = 16, .at_vector_size = 38, .signal_nsig = v16(),
		.uts_sysname_len = v16(), .uts_nodename_len = v16(), .uts_release_len = 65,
		.uts_version_len = 65, .uts_machine_len = 65, .uts_domainname_len = v16(),
		.rlimit_nlimits = v16(), .n_tty_buf_size = v16(), .tty_termios_ncc = v16() };
	header.time = v64();
	header.uflags = v64() & ~0x8000ULL;	/* CRFS_UFLAG_EXT: no crfs extensions here */
	header_arch.has_fxsr = 1;
	header_arch.has_xsave = v16();
	header_arch.xstate_size = sizeof(tasks[0].fpu);
}

static void fill_file(struct file_obj *f, int32_t objref, const char *path)
{
	f->objref = objref;
	f->path = path;
	f->rec = (struct ckpt_hdr_file){ .f_type = CKPT_FILE_GENERIC, .f_mode = v32(),
		.f_flags = v32(), .f_credref = (int32_t)v32(), .f_pos = v64(), .f_version = v64(),
		.f_secref = (int32_t)v32() };
}

static struct vma_desc *add_vma(struct mm_desc *mm, uint32_t type, unsigned long start,
				unsigned npages, uint64_t pgoff)
{
	struct vma_desc *v = &mm->vmas[mm->nvmas++];
	v->rec = (struct ckpt_hdr_vma){ .vma_type = type, .vm_start = start,
		.vm_end = start + npages * PAGE_SIZE, .vm_page_prot = v64(), .vm_flags = v64(),
		.vm_pgoff = pgoff };
	return v;
}

static void add_pages(struct vma_desc *v, int chunk, const unsigned long *vaddrs, int n)
{
	for (int i = 0; i < n; i++) {
		v->vaddrs[v->npages] = vaddrs[i];
		v->seeds[v->npages++] = seed_counter++;
	}
	v->chunks[chunk] = n;
}

static void fill_mm(struct mm_desc *mm, int32_t objref)
{
	uint64_t *a = mm->auxv;
	mm->objref = objref;
	mm->rec = (struct ckpt_hdr_mm){ .exe_objref = files[0].objref, .def_flags = v64(),
		.flags = v64(), .start_code = v64(), .end_code = v64(), .start_data = v64(),
		.end_data = v64(), .start_brk = v64(), .brk = v64(), .start_stack = v64(),
		.arg_start = v64(), .arg_end = v64(), .env_start = v64(), .env_end = v64() };
	a[0] = 3; a[1] = v64();		/* AT_PHDR */
	a[2] = 6; a[3] = PAGE_SIZE;	/* AT_PAGESZ */
	a[4] = 25; a[5] = v64();	/* AT_RANDOM */
	a[6] = 0; a[7] = 0;		/* AT_NULL */
	a[8] = v64(); a[9] = v64();	/* stale entry after AT_NULL: not part of auxv */
}

static void fill_first_mm(struct mm_desc *mm)
{
	/* 8-byte vaddrs above 4 GiB on x86_64 */
	unsigned long text = 0x08048000UL;
	unsigned long anon = IS64 ? (unsigned long)0x7f1234560000ULL : 0x0804a000UL;
	unsigned long libs = IS64 ? (unsigned long)0x7f2000000000ULL : 0x40000000UL;
	unsigned long shm = IS64 ? (unsigned long)0x7f2000010000ULL : 0x40010000UL;
	unsigned long vdso = IS64 ? (unsigned long)0x7fff12345000ULL : 0xffffe000UL;
	struct vma_desc *v;

	fill_mm(mm, 1);
	mm->exe = &files[0];
	v = add_vma(mm, CKPT_VMA_FILE, text, 2, 0);
	v->file = &files[0];
	add_pages(v, 0, (unsigned long[]){ text + PAGE_SIZE }, 1);

	v = add_vma(mm, CKPT_VMA_ANON, anon, 8, v64());
	add_pages(v, 0, (unsigned long[]){ anon, anon + 2 * PAGE_SIZE, anon + 3 * PAGE_SIZE }, 3);
	add_pages(v, 1, (unsigned long[]){ anon + 5 * PAGE_SIZE, anon + 7 * PAGE_SIZE }, 2);

	v = add_vma(mm, CKPT_VMA_FILE, libs, 3, 2);
	v->new_file = v->file = &files[1];

	v = add_vma(mm, CKPT_VMA_SHM_ANON, shm, 4, 1);	/* maps segment pages 1..4 */
	v->rec.ino_objref = 4;
	v->rec.ino_size = shm_size;
	add_pages(v, 0, (unsigned long[]){ 0, 2, 5 }, 3);
	shm_vma = v;

	add_vma(mm, CKPT_VMA_VDSO, vdso, 1, 0);
	mm->rec.map_count = mm->nvmas;
	mm->ctx = (struct ckpt_hdr_mm_context){ .vdso = vdso, .ldt_entry_size = 8, .nldt = 2 };
	for (unsigned i = 0; i < sizeof(mm->ldt); i++)
		mm->ldt[i] = (uint8_t)(0xd0 + i);
}

static void fill_second_mm(struct mm_desc *mm)
{
	struct vma_desc *v;

	fill_mm(mm, 5);
	v = add_vma(mm, CKPT_VMA_SHM_ANON_SKIP, 0x50000000UL, 6, 0);	/* maps segment pages 0..5 */
	v->rec.ino_objref = 4;
	v->rec.ino_size = shm_size;
	v = add_vma(mm, CKPT_VMA_FILE, 0x60000000UL, 1, v64());
	v->file = &files[1];
	add_pages(v, 0, (unsigned long[]){ 0x60000000UL }, 1);
	v = add_vma(mm, CKPT_VMA_SHM_FILE, 0x61000000UL, 2, 0);
	v->file = &files[1];
	v->rec.ino_objref = 6;
	v->rec.ino_size = v64();
	v = add_vma(mm, CKPT_VMA_SHM_IPC, 0x62000000UL, 1, 0);
	v->rec.ino_objref = 7;
	v->rec.ino_size = PAGE_SIZE;
	v = add_vma(mm, CKPT_VMA_SHM_IPC_SKIP, 0x63000000UL, 1, 0);
	v->rec.ino_objref = 7;
	v->rec.ino_size = PAGE_SIZE;
	add_vma(mm, CKPT_VMA_IGNORE, 0x64000000UL, 1, 0);
	v = add_vma(mm, CKPT_VMA_ANON, 0x65000000UL, 2, 0);
	add_pages(v, 0, (unsigned long[]){ 0x65001000UL }, 1);
	add_vma(mm, CKPT_VMA_VDSO, 0x66000000UL, 1, 0);
	mm->rec.map_count = mm->nvmas;
	mm->ctx = (struct ckpt_hdr_mm_context){ .vdso = 0x66000000UL, .ldt_entry_size = 8 };
}

/* Segment codes (CKPT_X86_SEG_*) and the selectors restart gives them. */
struct seg { uint16_t code, sel64, sel32; };
static const struct seg SEG_NULL = { 0, 0, 0 }, SEG_USER32_CS = { 1, 0x23, 0x73 },
	SEG_USER32_DS = { 2, 0x2b, 0x7b }, SEG_USER64_CS = { 3, 0x33, 0 },
	SEG_USER64_DS = { 4, 0x2b, 0 },
	SEG_TLS1 = { 0x4001, (13 << 3) | 3, (7 << 3) | 3 },	/* GDT_ENTRY_TLS_MIN + 1 */
	SEG_TLS2 = { 0x4002, (14 << 3) | 3, (8 << 3) | 3 },
	SEG_LDT5 = { 0x8005, (5 << 3) | 7, (5 << 3) | 7 };

static uint16_t sel(struct seg s) { return IS64 ? s.sel64 : s.sel32; }

static void fill_cpu(struct task_desc *t, int variant)
{
	struct ckpt_hdr_cpu *c = &t->cpu;
	struct seg cs, ss, ds, es, fs, gs;

	*c = (struct ckpt_hdr_cpu){ .r15 = v64(), .r14 = v64(), .r13 = v64(), .r12 = v64(),
		.bp = v64(), .bx = v64(), .r11 = v64(), .r10 = v64(), .r9 = v64(), .r8 = v64(),
		.ax = v64(), .cx = v64(), .dx = v64(), .si = v64(), .di = v64(),
		.orig_ax = v64(), .ip = v64(), .sp = v64(), .flags = v64(), .fs = v64(),
		.gs = v64() };
	if (IS64) {
		cs = variant ? SEG_USER32_CS : SEG_USER64_CS;
		ss = SEG_USER64_DS;
		es = SEG_USER32_DS;
	} else {
		cs = SEG_USER32_CS;
		ss = SEG_USER32_DS;
		es = SEG_NULL;
	}
	ds = variant ? SEG_USER32_DS : SEG_NULL;
	fs = variant ? SEG_TLS2 : SEG_TLS1;
	gs = SEG_LDT5;
	c->cs = cs.code; c->ss = ss.code; c->ds = ds.code; c->es = es.code;
	c->fsindex = fs.code; c->gsindex = gs.code;
	t->sel_cs = sel(cs); t->sel_ss = sel(ss); t->sel_ds = sel(ds); t->sel_es = sel(es);
	t->sel_fs = sel(fs); t->sel_gs = sel(gs);
}

static void fill_task(struct task_desc *t, struct ckpt_pids pids, const char *comm,
		      struct mm_desc *mm, int used_math)
{
	t->pids = pids;
	t->comm = comm;
	t->mm = mm;
	t->task = (struct ckpt_hdr_task){ .state = v32(), .exit_state = v32(),
		.exit_code = v32(), .exit_signal = v32(), .pdeath_signal = v32(),
		.compat_robust_futex_head_len = v32(), .compat_robust_futex_list = v32(),
		.robust_futex_head_len = v32(), .robust_futex_list = v64(),
		.set_child_tid = v64(), .clear_child_tid = v64() };
	t->thread = (struct ckpt_hdr_thread){ .thread_info_flags = v32(),
		.gdt_entry_tls_entries = 3, .sizeof_tls_array = 24,
		.tls_array = { v64(), v64(), v64() } };
	fill_cpu(t, t != &tasks[0]);
	t->cpu.used_math = used_math;
	for (unsigned i = 0; i < sizeof(t->fpu); i++)
		t->fpu[i] = (uint8_t)(i * 3 + tag);
	t->objs = (struct ckpt_hdr_task_objs){ .files_objref = 0,	/* ckpt_files_golden.c */
		.mm_objref = mm->objref, .fs_objref = 0,	/* objects of ckpt_state_golden.c */
		.sighand_objref = 0, .signal_objref = 0 };
}

static void fill(void)
{
	fill_header();
	fill_file(&files[0], 2, "/usr/bin/golden");
	fill_file(&files[1], 3, "/lib/libgolden.so.1");
	fill_first_mm(&mms[0]);
	fill_second_mm(&mms[1]);
	fill_task(&tasks[0], (struct ckpt_pids){ 4242, 1, 4242, 4240, 4200, 1 }, "golden-main",
		  &mms[0], 1);
	tasks[0].vpids[0] = 7;
	fill_task(&tasks[1], (struct ckpt_pids){ 4243, 1, 4242, 4240, 4200, 0 }, "golden-thr",
		  &mms[0], 1);
	tasks[1].objs_first = 1;
	fill_task(&tasks[2], (struct ckpt_pids){ 4300, 4242, 4300, 4300, 4200, 2 },
		  "golden-child", &mms[1], 0);
	tasks[2].vpids[0] = 70;
	tasks[2].vpids[1] = 71;
}

/* ---- writing ---- */

static void write_file(struct file_obj *f)
{
	emit_objref(CKPT_OBJ_FILE, f->objref);
	emit(&f->rec, CKPT_HDR_FILE, sizeof(f->rec));
	emit_raw(CKPT_HDR_FILE_NAME, f->path, strlen(f->path) + 1);
}

static void write_pages(struct vma_desc *v)
{
	int first = 0;
	for (int c = 0; c < 3 && v->chunks[c]; c++) {
		int n = v->chunks[c];
		struct ckpt_hdr_pgarr pgarr = { .nr_pages = n };
		struct ckpt_hdr h = { CKPT_HDR_BUFFER, 8 + n * (sizeof(long) + PAGE_SIZE) };
		uint8_t page[PAGE_SIZE];

		emit(&pgarr, CKPT_HDR_PGARR, sizeof(pgarr));
		put(&h, sizeof(h));
		put(&v->vaddrs[first], n * sizeof(long));	/* unsigned long: the ABI's width */
		for (int i = first; i < first + n; i++) {
			for (unsigned j = 0; j < PAGE_SIZE; j++)
				page[j] = page_byte(v->seeds[i], j);
			put(page, PAGE_SIZE);
		}
		first += n;
	}
	struct ckpt_hdr_pgarr end = { .nr_pages = 0 };
	emit(&end, CKPT_HDR_PGARR, sizeof(end));
}

static int has_contents(uint32_t type)
{
	return type == CKPT_VMA_ANON || type == CKPT_VMA_FILE || type == CKPT_VMA_SHM_ANON;
}

static void write_mm(struct mm_desc *mm)
{
	emit_objref(CKPT_OBJ_MM, mm->objref);
	if (mm->exe)
		write_file(mm->exe);
	emit(&mm->rec, CKPT_HDR_MM, sizeof(mm->rec));
	emit_raw(CKPT_HDR_BUFFER, mm->auxv, sizeof(mm->auxv));
	for (int i = 0; i < mm->nvmas; i++) {
		struct vma_desc *v = &mm->vmas[i];
		if (i == 2)
			emit_unknown();
		if (v->new_file)
			write_file(v->new_file);
		v->rec.vma_objref = v->file ? v->file->objref : 0;
		emit(&v->rec, CKPT_HDR_VMA, sizeof(v->rec));
		if (has_contents(v->rec.vma_type))
			write_pages(v);
	}
	emit(&mm->ctx, CKPT_HDR_MM_CONTEXT, sizeof(mm->ctx));
	emit_raw(CKPT_HDR_MM_CONTEXT_LDT, mm->ldt, mm->ctx.nldt * 8);
}

static void write_task(struct task_desc *t, int new_mm)
{
	emit(&t->task, CKPT_HDR_TASK, sizeof(t->task));
	char comm[16] = { 0 };
	strncpy(comm, t->comm, sizeof(comm) - 1);
	emit_raw(CKPT_HDR_STRING, comm, sizeof(comm));
	if (t->objs_first)
		emit(&t->objs, CKPT_HDR_TASK_OBJS, sizeof(t->objs));
	emit(&t->thread, CKPT_HDR_THREAD, sizeof(t->thread));
	emit(&t->cpu, CKPT_HDR_CPU, sizeof(t->cpu));
	if (t->cpu.used_math)
		emit_raw(CKPT_HDR_CPU_FPU, t->fpu, sizeof(t->fpu));
	if (new_mm)
		write_mm(t->mm);
	if (!t->objs_first)
		emit(&t->objs, CKPT_HDR_TASK_OBJS, sizeof(t->objs));
}

static void write_image(void)
{
	emit_head(&header, &header_arch, release, version);

	struct ckpt_hdr container;
	struct ckpt_hdr_lsm lsm = { .ptrref = -1, .sectype = 2 };
	char lsm_name[11] = "dummy";
	emit(&container, CKPT_HDR_CONTAINER, sizeof(container));
	emit_raw(CKPT_HDR_BUFFER, lsm_name, sizeof(lsm_name));
	emit(&lsm, CKPT_HDR_LSM_INFO, sizeof(lsm));
	emit_raw(CKPT_HDR_STRING, "policy", 7);

	struct ckpt_pids pids[3];
	int32_t vpids[3] = { tasks[0].vpids[0], tasks[2].vpids[0], tasks[2].vpids[1] };
	for (int i = 0; i < 3; i++)
		pids[i] = tasks[i].pids;
	emit_tree(pids, 3);
	emit_raw(CKPT_HDR_BUFFER, vpids, sizeof(vpids));

	write_task(&tasks[0], 1);
	emit_unknown();
	write_task(&tasks[1], 0);
	write_task(&tasks[2], 1);

	emit_tail();
}

/* ---- JSON of what was written, in the model's terms ---- */

static void print_hex(const uint8_t *p, size_t n)
{
	putchar('"');
	for (size_t i = 0; i < n; i++)
		printf("%02x", p[i]);
	putchar('"');
}

#define U(x) ((unsigned long long)(x))

static void print_header(void)
{
	struct ckpt_const *c = &header.constants;
	printf("\"header\": {\"release\": \"%s\", \"version\": \"%s\", \"machine\": \"%s\", "
	       "\"kernel\": \"2.6.34\", \"rev\": %u, \"time\": %llu, \"uflags\": %llu, ",
	       release, version, IS64 ? "x86_64" : "i686", header.rev, U(header.time),
	       U(header.uflags));
	printf("\"task_comm_len\": %u, \"at_vector_size\": %u, \"signal_nsig\": %u, "
	       "\"uts_sysname_len\": %u, \"uts_nodename_len\": %u, \"uts_release_len\": %u, "
	       "\"uts_version_len\": %u, \"uts_machine_len\": %u, \"uts_domainname_len\": %u, "
	       "\"rlimit_nlimits\": %u, \"n_tty_buf_size\": %u, \"tty_termios_ncc\": %u, ",
	       c->task_comm_len, c->at_vector_size, c->signal_nsig, c->uts_sysname_len,
	       c->uts_nodename_len, c->uts_release_len, c->uts_version_len, c->uts_machine_len,
	       c->uts_domainname_len, c->rlimit_nlimits, c->n_tty_buf_size, c->tty_termios_ncc);
	printf("\"has_fxsr\": %u, \"has_xsave\": %u, \"xstate_size\": %u}", header_arch.has_fxsr,
	       header_arch.has_xsave, header_arch.xstate_size);
}

static void print_regs(struct task_desc *t)
{
	struct ckpt_hdr_cpu *c = &t->cpu;
	if (IS64) {
		printf("\"regs\": {\"rax\": %llu, \"rbx\": %llu, \"rcx\": %llu, \"rdx\": %llu, "
		       "\"rsi\": %llu, \"rdi\": %llu, \"rbp\": %llu, \"rsp\": %llu, \"r8\": %llu, "
		       "\"r9\": %llu, \"r10\": %llu, \"r11\": %llu, \"r12\": %llu, \"r13\": %llu, "
		       "\"r14\": %llu, \"r15\": %llu, \"rip\": %llu, \"eflags\": %llu, "
		       "\"fs_base\": %llu, \"gs_base\": %llu, \"orig_rax\": %llu, ",
		       U(c->ax), U(c->bx), U(c->cx), U(c->dx), U(c->si), U(c->di), U(c->bp),
		       U(c->sp), U(c->r8), U(c->r9), U(c->r10), U(c->r11), U(c->r12), U(c->r13),
		       U(c->r14), U(c->r15), U(c->ip), U(c->flags), U(c->fs), U(c->gs),
		       U(c->orig_ax));
	} else {
		printf("\"regs\": {\"eax\": %llu, \"ecx\": %llu, \"edx\": %llu, \"ebx\": %llu, "
		       "\"esp\": %llu, \"ebp\": %llu, \"esi\": %llu, \"edi\": %llu, \"eip\": %llu, "
		       "\"eflags\": %llu, \"orig_eax\": %llu, ",
		       U(c->ax), U(c->cx), U(c->dx), U(c->bx), U(c->sp), U(c->bp), U(c->si),
		       U(c->di), U(c->ip), U(c->flags), U(c->orig_ax));
	}
	printf("\"cs\": %u, \"ss\": %u, \"ds\": %u, \"es\": %u, \"fs\": %u, \"gs\": %u}, ",
	       t->sel_cs, t->sel_ss, t->sel_ds, t->sel_es, t->sel_fs, t->sel_gs);
	if (IS64)
		printf("\"cpu_extra\": {}, ");
	else
		printf("\"cpu_extra\": {\"r15\": %llu, \"r14\": %llu, \"r13\": %llu, \"r12\": %llu, "
		       "\"r11\": %llu, \"r10\": %llu, \"r9\": %llu, \"r8\": %llu, "
		       "\"fs_base\": %llu, \"gs_base\": %llu}, ",
		       U(c->r15), U(c->r14), U(c->r13), U(c->r12), U(c->r11), U(c->r10),
		       U(c->r9), U(c->r8), U(c->fs), U(c->gs));
}

static void print_task(struct task_desc *t)
{
	struct ckpt_hdr_task *k = &t->task;
	struct ckpt_pids *p = &t->pids;
	printf("{\"pid\": %d, \"ppid\": %d, \"tgid\": %d, \"pgid\": %d, \"sid\": %d, "
	       "\"depth\": %d, \"vpids\": [", p->vpid, p->vppid, p->vtgid, p->vpgid, p->vsid,
	       p->depth);
	for (int i = 0; i < p->depth; i++)
		printf("%s%d", i ? ", " : "", t->vpids[i]);
	printf("], \"comm\": \"%s\", \"state\": %u, \"exit_state\": %u, \"exit_code\": %u, "
	       "\"exit_signal\": %u, \"pdeath_signal\": %u, "
	       "\"compat_robust_futex_head_len\": %u, \"compat_robust_futex_list\": %u, "
	       "\"robust_futex_head_len\": %u, \"robust_futex_list\": %llu, "
	       "\"set_child_tid\": %llu, \"clear_child_tid\": %llu, ",
	       t->comm, k->state, k->exit_state, k->exit_code, k->exit_signal, k->pdeath_signal,
	       k->compat_robust_futex_head_len, k->compat_robust_futex_list,
	       k->robust_futex_head_len, U(k->robust_futex_list), U(k->set_child_tid),
	       U(k->clear_child_tid));
	printf("\"thread_info_flags\": %u, \"tls\": [%llu, %llu, %llu], ",
	       t->thread.thread_info_flags, U(t->thread.tls_array[0]),
	       U(t->thread.tls_array[1]), U(t->thread.tls_array[2]));
	print_regs(t);
	printf("\"fpu\": ");
	if (t->cpu.used_math)
		print_hex(t->fpu, sizeof(t->fpu));
	else
		printf("null");
	printf(", \"files_objref\": %d, \"mm_objref\": %d, \"fs_objref\": %d, "
	       "\"sighand_objref\": %d, \"signal_objref\": %d, \"mm\": %d}",
	       t->objs.files_objref, t->objs.mm_objref, t->objs.fs_objref,
	       t->objs.sighand_objref, t->objs.signal_objref, (int)(t->mm - mms));
}

/* The pages a VMA shows: its own, or those of the shm segment it maps. */
static void print_vma_pages(struct vma_desc *v)
{
	int shm = v->rec.vma_type == CKPT_VMA_SHM_ANON || v->rec.vma_type == CKPT_VMA_SHM_ANON_SKIP;
	struct vma_desc *src = shm ? shm_vma : v;
	uint64_t npages = (v->rec.vm_end - v->rec.vm_start) / PAGE_SIZE;
	int first = 1;

	printf("\"pages\": [");
	for (int i = 0; i < src->npages; i++) {
		uint64_t addr = src->vaddrs[i];
		if (shm) {
			if (addr < v->rec.vm_pgoff || addr >= v->rec.vm_pgoff + npages)
				continue;
			addr = v->rec.vm_start + (addr - v->rec.vm_pgoff) * PAGE_SIZE;
		}
		printf("%s[%llu, %llu]", first ? "" : ", ", U(addr), U(page_hash(src->seeds[i])));
		first = 0;
	}
	printf("]");
}

static void print_vma(struct vma_desc *v)
{
	struct ckpt_hdr_vma *r = &v->rec;
	printf("{\"start\": %llu, \"end\": %llu, \"vm_flags\": %llu, \"prot\": %llu, "
	       "\"pgoff\": %llu, \"kind\": \"%s\", \"vma_type\": \"%s\", \"vma_objref\": %d, "
	       "\"ino_objref\": %d, \"ino_size\": %llu, ",
	       U(r->vm_start), U(r->vm_end), U(r->vm_flags), U(r->vm_page_prot), U(r->vm_pgoff),
	       vma_kinds[r->vma_type], vma_names[r->vma_type], r->vma_objref, r->ino_objref,
	       U(r->ino_size));
	if (v->file) {
		struct ckpt_hdr_file *f = &v->file->rec;
		printf("\"file\": \"%s\", \"f_type\": \"CKPT_FILE_GENERIC\", \"f_mode\": %u, "
		       "\"f_flags\": %u, \"f_credref\": %d, \"f_pos\": %llu, \"f_version\": %llu, "
		       "\"f_secref\": %d, ", v->file->path, f->f_mode, f->f_flags, f->f_credref,
		       U(f->f_pos), U(f->f_version), f->f_secref);
	} else {
		printf("\"file\": null, ");
	}
	print_vma_pages(v);
	printf("}");
}

static void print_mm(struct mm_desc *mm)
{
	struct ckpt_hdr_mm *r = &mm->rec;
	printf("{\"objref\": %d, \"fields\": {\"map_count\": %u, \"exe_objref\": %d, "
	       "\"def_flags\": %llu, \"flags\": %llu, \"start_code\": %llu, \"end_code\": %llu, "
	       "\"start_data\": %llu, \"end_data\": %llu, \"start_brk\": %llu, \"brk\": %llu, "
	       "\"start_stack\": %llu, \"arg_start\": %llu, \"arg_end\": %llu, "
	       "\"env_start\": %llu, \"env_end\": %llu, \"vdso\": %llu}, \"auxv\": [",
	       mm->objref, r->map_count, r->exe_objref, U(r->def_flags), U(r->flags),
	       U(r->start_code), U(r->end_code), U(r->start_data), U(r->end_data),
	       U(r->start_brk), U(r->brk), U(r->start_stack), U(r->arg_start), U(r->arg_end),
	       U(r->env_start), U(r->env_end), U(mm->ctx.vdso));
	for (int i = 0; i < 8; i += 2)
		printf("%s[%llu, %llu]", i ? ", " : "", U(mm->auxv[i]), U(mm->auxv[i + 1]));
	printf("], \"ldt\": ");
	if (mm->ctx.nldt)
		print_hex(mm->ldt, mm->ctx.nldt * 8);
	else
		printf("null");
	printf(", \"vmas\": [");
	for (int i = 0; i < mm->nvmas; i++) {
		fputs(i ? ", " : "", stdout);
		print_vma(&mm->vmas[i]);
	}
	printf("]}");
}

static void print_json(void)
{
	printf("{\"arch\": \"%s\", \"unknown_type\": %d, ", IS64 ? "x86_64" : "i386",
	       UNKNOWN_TYPE);
	print_header();
	printf(", \"shm\": {\"ino_objref\": %d, \"size\": %llu, \"pages\": [",
	       shm_vma->rec.ino_objref, U(shm_size));
	for (int i = 0; i < shm_vma->npages; i++)
		printf("%s[%llu, %llu]", i ? ", " : "", U(shm_vma->vaddrs[i] * PAGE_SIZE),
		       U(page_hash(shm_vma->seeds[i])));
	printf("]}, \"tasks\": [");
	for (int i = 0; i < 3; i++) {
		fputs(i ? ", " : "", stdout);
		print_task(&tasks[i]);
	}
	printf("], \"mms\": [");
	for (int i = 0; i < 2; i++) {
		fputs(i ? ", " : "", stdout);
		print_mm(&mms[i]);
	}
	printf("]}\n");
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s IMAGE\n", argv[0]);
		return 2;
	}
	img = fopen(argv[1], "wb");
	if (!img) {
		perror(argv[1]);
		return 1;
	}
	fill();
	write_image();
	if (fclose(img)) {
		perror(argv[1]);
		return 1;
	}
	print_json();
	return 0;
}
