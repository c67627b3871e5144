/*
 * Golden linux-cr cr_hdr images, written with the original struct layouts.
 *
 *   cr_golden IMAGE v4    RFC v4 stream (RFC v3 2/9 and v4 4/9; x86 records from RFC v6 3/9)
 *   cr_golden IMAGE v14   v14-rc2 dialect as chosen in docs/format-cr.md
 *
 * Built with gcc -m32 and -m64: the ABI alone decides the cr_hdr_task layout (v4) and the
 * width of the vaddr arrays. Every field gets a distinctive value; bytes the kernel never
 * initialised get pseudo-random garbage (as ctx->hbuf would hold). The values written are
 * printed as JSON on stdout so the tests compare against C, not against our writer.
 * Each dumped page is filled with one byte, its "fill" in the JSON.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef unsigned long long __u64;
typedef long long __s64;
typedef unsigned int __u32;
typedef int __s32;
typedef unsigned short __u16;
typedef short __s16;
typedef unsigned char __u8;

#define __NEW_UTS_LEN 64
#define TASK_COMM_LEN 16
#define PAGE_SIZE 4096
#define LDT_ENTRY_SIZE 8
#define GDT_ENTRY_TLS_ENTRIES 3
#define CHECKPOINT_MAGIC_HEAD 0x00feed0cc0a2d200LL
#define CHECKPOINT_MAGIC_TAIL 0x002d2a0cc0deef00LL

/* ---- include/linux/ckpt_hdr.h (RFC v3 patch 2/9 + RFC v4 patch 4/9) ---- */
struct cr_hdr {
	__s16 type;
	__s16 len;
	__u32 parent;
};

enum {
	CR_HDR_HEAD = 1,
	CR_HDR_STRING,
	CR_HDR_FNAME,

	CR_HDR_TASK = 101,
	CR_HDR_THREAD,
	CR_HDR_CPU,

	CR_HDR_MM = 201,
	CR_HDR_VMA,
	CR_HDR_MM_CONTEXT,

	CR_HDR_TAIL = 5001
};

struct cr_hdr_head {
	__u64 magic;

	__u16 major;
	__u16 minor;
	__u16 patch;
	__u16 rev;

	__u64 time;	/* when checkpoint taken */
	__u64 flags;	/* checkpoint options */

	char release[__NEW_UTS_LEN];
	char version[__NEW_UTS_LEN];
	char machine[__NEW_UTS_LEN];
} __attribute__((aligned(8)));

struct cr_hdr_tail {
	__u64 magic;
} __attribute__((aligned(8)));

struct cr_hdr_task {
	__u64 state;
	__u32 exit_state;
	__u32 exit_code, exit_signal;

	__u64 utime, stime, utimescaled, stimescaled;
	__u64 gtime;
	__u64 prev_utime, prev_stime;
	__u64 nvcsw, nivcsw;
	__u64 start_time_sec, start_time_nsec;
	__u64 real_start_time_sec, real_start_time_nsec;
	__u64 min_flt, maj_flt;

	__s32 task_comm_len;
} __attribute__((aligned(8)));

struct cr_hdr_mm {
	__u32 objref;		/* identifier for shared objects */
	__u32 map_count;

	__u64 start_code, end_code, start_data, end_data;
	__u64 start_brk, brk, start_stack;
	__u64 arg_start, arg_end, env_start, env_end;

} __attribute__((aligned(8)));

/* vma subtypes */
enum vm_type {
	CR_VMA_ANON = 1,
	CR_VMA_FILE
};

struct cr_hdr_vma {
	__u32 vma_type;
	__u32 _padding;
	__s64 nr_pages;

	__u64 vm_start;
	__u64 vm_end;
	__u64 vm_page_prot;
	__u64 vm_flags;
	__u64 vm_pgoff;

} __attribute__((aligned(8)));

/* ---- include/asm-x86/ckpt_hdr.h (v4: git blob 44a903c, as created by RFC v6 patch 3/9) ---- */
struct cr_hdr_thread {
	__s16 gdt_entry_tls_entries;
	__s16 sizeof_tls_array;
	__s16 ntls;	/* number of TLS entries to follow */
} __attribute__((aligned(8)));

union thread_xstate {	/* 2.6.26/27: fsave 112, fxsave 512 aligned(16), soft */
	__u32 fsave[28];
	struct { __u8 bytes[512]; } __attribute__((aligned(16))) fxsave;
};

struct cr_hdr_cpu {
	__u64 r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
	__u64 ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
	__u64 ds, es, fs, gs;
	__u64 debugreg0, debugreg1, debugreg2, debugreg3;
	__u64 debugreg4, debugreg5, debugreg6, debugreg7;
	__u16 uses_debug;
	__u16 used_math;
	__u16 has_fxsr;
	__u16 _padding;
	union thread_xstate xstate;
} __attribute__((aligned(8)));

struct cr_hdr_mm_context {
	__s16 ldt_entry_size;
	__s16 nldt;
} __attribute__((aligned(8)));

/* ---- v14-rc2 dialect (docs/format-cr.md; v9..v13 x86 and v6+ task forms) ---- */
struct cr_hdr14 {		/* inferred: parent dropped, fields unsigned, 8 bytes kept */
	__u16 type;
	__u16 len;
	__u32 _padding;
};

enum {
	CR14_HDR_HEAD = 1,
	CR14_HDR_HEAD_ARCH,
	CR14_HDR_BUFFER,
	CR14_HDR_STRING,
	CR14_HDR_FNAME,

	CR14_HDR_TREE = 101,
	CR14_HDR_TASK,
	CR14_HDR_THREAD,
	CR14_HDR_CPU,

	CR14_HDR_MM = 201,
	CR14_HDR_VMA,
	CR14_HDR_PGARR,
	CR14_HDR_MM_CONTEXT,

	CR14_HDR_TAIL = 5001
};

enum cr_vma_type {		/* SHM values inferred: each _SKIP = base + 1 */
	CR14_VMA_ANON = 1,
	CR14_VMA_FILE,
	CR14_VMA_SHM_ANON,
	CR14_VMA_SHM_ANON_SKIP,
	CR14_VMA_SHM_FILE,
	CR14_VMA_SHM_FILE_SKIP,
};

struct cr_hdr_head14 {
	__u64 magic;
	__u16 _padding;
	__u16 major;
	__u16 minor;
	__u16 patch;
	__u16 rev;
	__u16 uts_release_len;
	__u16 uts_version_len;
	__u16 uts_machine_len;
	__u64 time;
	__u64 flags;
} __attribute__((aligned(8)));

struct cr_hdr_head_arch {
	__u16 has_fxsr;
	__u16 has_xsave;
	__u16 xstate_size;
	__u16 _pading;
} __attribute__((aligned(8)));

struct cr_hdr_tree {
	__u32 tasks_nr;
} __attribute__((aligned(8)));

struct cr_hdr_pids {
	__s32 vpid;
	__s32 vtgid;
	__s32 vppid;
} __attribute__((aligned(8)));

struct cr_hdr_task14 {
	__u32 state;
	__u32 exit_state;
	__u32 exit_code;
	__u32 exit_signal;

	__s32 task_comm_len;
} __attribute__((aligned(8)));

struct cr_hdr_vma14 {
	__u32 vma_type;
	__s32 vma_objref;	/* objref of backing file */
	__s32 shm_objref;	/* objref of shared segment */
	__u32 _padding;
	__u64 shm_size;		/* size of shared segment */

	__u64 vm_start;
	__u64 vm_end;
	__u64 vm_page_prot;
	__u64 vm_flags;
	__u64 vm_pgoff;
} __attribute__((aligned(8)));

struct cr_hdr_pgarr {
	__u64 nr_pages;		/* number of pages to saved */
} __attribute__((aligned(8)));

struct cr_hdr_cpu14 {
	__u64 r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
	__u64 ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
	__u64 ds, es, fs, gs;
	__u64 debugreg0, debugreg1, debugreg2, debugreg3;
	__u64 debugreg4, debugreg5, debugreg6, debugreg7;
	__u32 uses_debug;
	__u32 used_math;
	/* thread_xstate contents follow (if used_math) */
} __attribute__((aligned(8)));

/* ---------------------------------------------------------------------------- */

static FILE *img;
static int v14;
static unsigned int seed = 12345;
static const char *sep = "";

#ifdef __x86_64__
#define ARCH "x86_64"
#define BASE 0x7f1200000000UL
#define USER_CS 0x33
#define USER_DS 0x2b
#else
#define ARCH "i386"
#define BASE 0x08040000UL
#define USER_CS 0x73
#define USER_DS 0x7b
#endif

/* kernel-stack / hbuf garbage: never zero, so a parser reading it shows up */
static void garbage(void *p, size_t n)
{
	unsigned char *c = p;
	while (n--) {
		seed = seed * 1103515245 + 12345;
		*c++ = 0x80 | (seed >> 16);
	}
}

static void out(const void *p, size_t n)
{
	if (n && fwrite(p, n, 1, img) != 1) {
		perror("write");
		exit(1);
	}
}

static void rec(int type, int len, __u32 parent, const void *payload)
{
	if (v14) {
		struct cr_hdr14 h = { type, len, 0 };
		out(&h, sizeof(h));
	} else {
		struct cr_hdr h = { type, len, parent };
		out(&h, sizeof(h));
	}
	out(payload, len);
}

static void hex(const char *key, const void *p, size_t n)
{
	const unsigned char *c = p;
	printf("\"%s\": \"", key);
	while (n--)
		printf("%02x", *c++);
	printf("\"");
}

#define J(obj, field) printf(", \"" #field "\": %llu", (unsigned long long)(obj).field)

/* ---- head ---- */

static const char *release = "2.6.27-rc5-cr4";
static const char *version = "#7 SMP PREEMPT Tue Sep 9 00:42:29 PDT 2008";

static void head(void)
{
	const char *machine = sizeof(long) == 8 ? "x86_64" : "i686";

	printf("{\"mode\": \"%s\", \"arch\": \"%s\", \"head\": {\"release\": \"%s\", "
	       "\"version\": \"%s\", \"machine\": \"%s\"", v14 ? "v14" : "v4", ARCH,
	       release, version, machine);
	if (!v14) {
		struct cr_hdr_head hh;
		garbage(&hh, sizeof(hh));	/* uts bytes after the NUL stay garbage */
		hh.magic = CHECKPOINT_MAGIC_HEAD;
		hh.major = 2; hh.minor = 6; hh.patch = 27; hh.rev = 1;
		hh.time = 1220946149ULL; hh.flags = 1;
		memcpy(hh.release, release, strlen(release) + 1);
		memcpy(hh.version, version, strlen(version) + 1);
		memcpy(hh.machine, machine, strlen(machine) + 1);
		rec(CR_HDR_HEAD, sizeof(hh), 0, &hh);
		J(hh, major); J(hh, minor); J(hh, patch); J(hh, rev); J(hh, time); J(hh, flags);
		printf("}");
		return;
	}
	struct cr_hdr_head14 hh;
	char uts[3][__NEW_UTS_LEN + 1];
	garbage(&hh, sizeof(hh));
	garbage(uts, sizeof(uts));
	hh.magic = CHECKPOINT_MAGIC_HEAD;
	hh.major = 2; hh.minor = 6; hh.patch = 29; hh.rev = 1;
	hh.uts_release_len = hh.uts_version_len = hh.uts_machine_len = __NEW_UTS_LEN + 1;
	hh.time = 1238457600ULL; hh.flags = 1;
	memcpy(uts[0], release, strlen(release) + 1);
	memcpy(uts[1], version, strlen(version) + 1);
	memcpy(uts[2], machine, strlen(machine) + 1);
	rec(CR14_HDR_HEAD, sizeof(hh), 0, &hh);
	for (int i = 0; i < 3; i++)
		rec(CR14_HDR_BUFFER, sizeof(uts[i]), 0, uts[i]);
	J(hh, major); J(hh, minor); J(hh, patch); J(hh, rev); J(hh, time); J(hh, flags);
	J(hh, uts_release_len);

	struct cr_hdr_head_arch ha;
	garbage(&ha, sizeof(ha));
	ha.has_fxsr = 1; ha.has_xsave = 0; ha.xstate_size = 512;
	rec(CR14_HDR_HEAD_ARCH, sizeof(ha), 0, &ha);
	J(ha, has_fxsr); J(ha, has_xsave); J(ha, xstate_size);
	printf("}");
}

/* ---- memory ---- */

struct page_spec { unsigned long vaddr; int fill; };

struct vma_spec {
	int type;
	const char *file;
	unsigned long start, end, prot, flags, pgoff;
	int npages;
	struct page_spec pages[6];
	int chunk;		/* v14: pages per PGARR */
	int shm_objref;
	unsigned long shm_size;
};

static void write_pages(const struct vma_spec *v, int first, int n)
{
	unsigned long vaddrs[6];
	unsigned char page[PAGE_SIZE];

	for (int i = 0; i < n; i++)
		vaddrs[i] = v->pages[first + i].vaddr;
	out(vaddrs, n * sizeof(unsigned long));
	for (int i = 0; i < n; i++) {
		memset(page, v->pages[first + i].fill, sizeof(page));
		out(page, sizeof(page));
	}
}

static void json_vma(const struct vma_spec *v, const void *hh, size_t size)
{
	printf("%s{\"vma_type\": %d, \"file\": ", sep, v->type);
	if (v->file)
		printf("\"%s\"", v->file);
	else
		printf("null");
	printf(", \"start\": %lu, \"end\": %lu, \"prot\": %lu, \"flags\": %lu, \"pgoff\": %lu, "
	       "\"shm_objref\": %d, \"shm_size\": %lu, \"pages\": [",
	       v->start, v->end, v->prot, v->flags, v->pgoff, v->shm_objref, v->shm_size);
	for (int i = 0; i < v->npages; i++)
		printf("%s[%lu, %d]", i ? ", " : "", v->pages[i].vaddr, v->pages[i].fill);
	printf("], ");
	hex("raw", hh, size);
	printf("}");
	sep = ", ";
}

static void vma4(const struct vma_spec *v)
{
	struct cr_hdr_vma hh;
	garbage(&hh, sizeof(hh));		/* _padding is never written */
	hh.vma_type = v->type;
	hh.nr_pages = v->npages;
	hh.vm_start = v->start; hh.vm_end = v->end; hh.vm_page_prot = v->prot;
	hh.vm_flags = v->flags; hh.vm_pgoff = v->pgoff;
	rec(CR_HDR_VMA, sizeof(hh), 0, &hh);
	if (v->file)
		rec(CR_HDR_FNAME, strlen(v->file) + 1, 0, v->file);
	write_pages(v, 0, v->npages);
	json_vma(v, &hh, sizeof(hh));
}

static void pgarr(__u64 n)
{
	struct cr_hdr_pgarr hh = { n };
	rec(CR14_HDR_PGARR, sizeof(hh), 0, &hh);
}

static void vma14(const struct vma_spec *v)
{
	struct cr_hdr_vma14 hh;
	garbage(&hh, sizeof(hh));
	hh.vma_type = v->type;
	hh.vma_objref = v->file ? 3 : 0;
	hh.shm_objref = v->shm_objref;
	hh.shm_size = v->shm_size;
	hh.vm_start = v->start; hh.vm_end = v->end; hh.vm_page_prot = v->prot;
	hh.vm_flags = v->flags; hh.vm_pgoff = v->pgoff;
	rec(CR14_HDR_VMA, sizeof(hh), 0, &hh);
	if (v->file)
		rec(CR14_HDR_FNAME, strlen(v->file) + 1, 0, v->file);
	if (v->type == CR14_VMA_ANON || v->type == CR14_VMA_FILE || v->type == CR14_VMA_SHM_ANON) {
		for (int i = 0; i < v->npages; i += v->chunk) {
			int n = v->npages - i < v->chunk ? v->npages - i : v->chunk;
			pgarr(n);
			write_pages(v, i, n);
		}
		pgarr(0);
	}
	json_vma(v, &hh, sizeof(hh));
}

#define P(off, fill) { BASE + (off), fill }
#define VM_READ 0x1
#define VM_WRITE 0x2
#define VM_EXEC 0x4
#define VM_SHARED 0x8
#define VM_MAYREAD 0x10
#define VM_MAYWRITE 0x20
#define VM_MAYEXEC 0x40
#define VM_MAYSHARE 0x80
#define VM_GROWSDOWN 0x100

static const struct vma_spec vmas_v4[] = {
	/* text: clean file pages are not dumped */
	{ CR_VMA_FILE, "/usr/bin/golden", BASE, BASE + 0x4000, 0x25,
	  VM_READ | VM_EXEC | VM_MAYREAD | VM_MAYEXEC, 0, 0 },
	/* data: two COW-broken pages; the name ends like a deleted file's */
	{ CR_VMA_FILE, "/tmp/lib golden.so (deleted)", BASE + 0x5000, BASE + 0x8000,
	  0x8000000000000027ULL & ~0UL,	/* NX bit on 64-bit */
	  VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE, 5, 2,
	  { P(0x5000, 0xd1), P(0x7000, 0xd3) } },
	/* heap */
	{ CR_VMA_ANON, NULL, BASE + 0x10000, BASE + 0x18000, 0x27,
	  VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE, 0, 3,
	  { P(0x10000, 0xa0), P(0x11000, 0xa1), P(0x15000, 0xa5) } },
	/* stack, nothing dumped */
	{ CR_VMA_ANON, NULL, BASE + 0x40000, BASE + 0x42000, 0x27,
	  VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE | VM_GROWSDOWN, 0x7ff, 0 },
};

#define SHM_FLAGS (VM_READ | VM_WRITE | VM_SHARED | VM_MAYREAD | VM_MAYWRITE | VM_MAYSHARE)

static const struct vma_spec vmas_v14_t0[] = {
	{ CR14_VMA_FILE, "/usr/bin/golden", BASE, BASE + 0x4000, 0x25,
	  VM_READ | VM_EXEC | VM_MAYREAD | VM_MAYEXEC, 0, 1, { P(0x1000, 0xf1) }, 4 },
	/* five pages in chunks of 2, 2, 1 */
	{ CR14_VMA_ANON, NULL, BASE + 0x10000, BASE + 0x18000, 0x27,
	  VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE, 0, 5,
	  { P(0x10000, 0xa0), P(0x11000, 0xa1), P(0x13000, 0xa3), P(0x14000, 0xa4),
	    P(0x17000, 0xa7) }, 2 },
	/* shared anon segment of 6 pages (last one partial); "vaddrs" are indices 0, 2, 5 */
	{ CR14_VMA_SHM_ANON, NULL, BASE + 0x20000, BASE + 0x24000, 0x27, SHM_FLAGS, 1, 3,
	  { { 0, 0x50 }, { 2, 0x52 }, { 5, 0x55 } }, 2, 7, 5 * PAGE_SIZE + 100 },
	{ CR14_VMA_SHM_FILE, "/var/shared.db", BASE + 0x30000, BASE + 0x32000, 0x27, SHM_FLAGS,
	  0, 0, { }, 1, 9, 2 * PAGE_SIZE },
	/* anon, nothing dumped: only the terminating PGARR */
	{ CR14_VMA_ANON, NULL, BASE + 0x40000, BASE + 0x42000, 0x27,
	  VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE | VM_GROWSDOWN, 0x7ff, 0, { }, 1 },
};

static const struct vma_spec vmas_v14_t1[] = {
	{ CR14_VMA_ANON, NULL, BASE + 0x10000, BASE + 0x12000, 0x27,
	  VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE, 0, 1, { P(0x11000, 0xb1) }, 8 },
	/* the same segment again, from its start: pages 0 and 2 show */
	{ CR14_VMA_SHM_ANON_SKIP, NULL, BASE + 0x20000, BASE + 0x23000, 0x27, SHM_FLAGS, 0, 0,
	  { }, 1, 7, 5 * PAGE_SIZE + 100 },
	{ CR14_VMA_SHM_FILE_SKIP, "/var/shared.db", BASE + 0x30000, BASE + 0x31000, 0x27,
	  SHM_FLAGS, 1, 0, { }, 1, 9, 2 * PAGE_SIZE },
};

static void mm(int pid, int index, const struct vma_spec *v, int n, int nldt)
{
	struct cr_hdr_mm hh;
	__u64 ldt[4];

	garbage(&hh, sizeof(hh));
	hh.objref = 0;
	hh.map_count = n;
	hh.start_code = BASE; hh.end_code = BASE + 0x3a10 + index;
	hh.start_data = BASE + 0x5010; hh.end_data = BASE + 0x7f20;
	hh.start_brk = BASE + 0x10000; hh.brk = BASE + 0x17ff0;
	hh.start_stack = BASE + 0x41f00; hh.arg_start = BASE + 0x41f40;
	hh.arg_end = BASE + 0x41f80; hh.env_start = BASE + 0x41f80; hh.env_end = BASE + 0x41ff0;
	rec(v14 ? CR14_HDR_MM : CR_HDR_MM, sizeof(hh), pid, &hh);
	printf(", \"mm\": {\"objref\": 0");
	J(hh, map_count); J(hh, start_code); J(hh, end_code); J(hh, start_data);
	J(hh, end_data); J(hh, start_brk); J(hh, brk); J(hh, start_stack); J(hh, arg_start);
	J(hh, arg_end); J(hh, env_start); J(hh, env_end);
	printf("}, \"vmas\": [");
	sep = "";
	for (int i = 0; i < n; i++)
		v14 ? vma14(&v[i]) : vma4(&v[i]);
	printf("]");

	struct cr_hdr_mm_context hc;
	garbage(&hc, sizeof(hc));
	hc.ldt_entry_size = LDT_ENTRY_SIZE;
	hc.nldt = nldt;
	for (int i = 0; i < 4; i++)
		ldt[i] = 0x00cff3000000ffffULL + ((__u64)(i + 1) << 16);
	rec(v14 ? CR14_HDR_MM_CONTEXT : CR_HDR_MM_CONTEXT, sizeof(hc), hh.objref, &hc);
	out(ldt, nldt * LDT_ENTRY_SIZE);
	printf(", ");
	hex("ldt", ldt, nldt * LDT_ENTRY_SIZE);
}

/* ---- task, thread, cpu ---- */

static void task(int pid, int index)
{
	static const char comm[TASK_COMM_LEN] = "golden-cr";

	printf(", \"task\": {\"comm\": \"%s\", \"pid\": %d", comm, pid);
	if (v14) {
		struct cr_hdr_task14 hh;
		garbage(&hh, sizeof(hh));
		hh.state = 1 + index; hh.exit_state = 0x10 + index;
		hh.exit_code = 0x200 + index; hh.exit_signal = 17;
		hh.task_comm_len = TASK_COMM_LEN;
		rec(CR14_HDR_TASK, sizeof(hh), 0, &hh);
		J(hh, state); J(hh, exit_state); J(hh, exit_code); J(hh, exit_signal);
		J(hh, task_comm_len);
	} else {
		struct cr_hdr_task hh;
		garbage(&hh, sizeof(hh));	/* x86_64: holes after exit_signal and at the end */
		hh.state = 0x100000001ULL; hh.exit_state = 0x10; hh.exit_code = 0x200;
		hh.exit_signal = 17;
		hh.utime = 0x1111000000000001ULL; hh.stime = 0x2222000000000002ULL;
		hh.utimescaled = 0x3333000000000003ULL; hh.stimescaled = 0x4444000000000004ULL;
		hh.gtime = 0x5555000000000005ULL; hh.prev_utime = 0x6666000000000006ULL;
		hh.prev_stime = 0x7777000000000007ULL; hh.nvcsw = 0x8888000000000008ULL;
		hh.nivcsw = 0x9999000000000009ULL; hh.start_time_sec = 0xaaaa00000000000aULL;
		hh.start_time_nsec = 0xbbbb00000000000bULL;
		hh.real_start_time_sec = 0xcccc00000000000cULL;
		hh.real_start_time_nsec = 0xdddd00000000000dULL;
		hh.min_flt = 0xeeee00000000000eULL; hh.maj_flt = 0xffff00000000000fULL;
		hh.task_comm_len = TASK_COMM_LEN;
		rec(CR_HDR_TASK, sizeof(hh), 0, &hh);
		J(hh, state); J(hh, exit_state); J(hh, exit_code); J(hh, exit_signal);
		J(hh, utime); J(hh, stime); J(hh, utimescaled); J(hh, stimescaled); J(hh, gtime);
		J(hh, prev_utime); J(hh, prev_stime); J(hh, nvcsw); J(hh, nivcsw);
		J(hh, start_time_sec); J(hh, start_time_nsec); J(hh, real_start_time_sec);
		J(hh, real_start_time_nsec); J(hh, min_flt); J(hh, maj_flt); J(hh, task_comm_len);
		printf(", \"task_len\": %u", (unsigned)sizeof(hh));
	}
	printf("}");
	rec(v14 ? CR14_HDR_STRING : CR_HDR_STRING, TASK_COMM_LEN, 0, comm);
}

static void thread(int pid, int ntls)
{
	struct cr_hdr_thread hh;
	__u32 tls[GDT_ENTRY_TLS_ENTRIES][2] = { { 0 } };

	/* TLS slot 0 and 2 in use (a = limit/base low, b = flags/base high) */
	if (ntls) {
		tls[0][0] = 0x1000ffff; tls[0][1] = 0xb7cff300 | pid;
		tls[2][0] = 0x2000ffff; tls[2][1] = 0x08cff300;
	}
	garbage(&hh, sizeof(hh));
	hh.gdt_entry_tls_entries = GDT_ENTRY_TLS_ENTRIES;
	hh.sizeof_tls_array = sizeof(tls);
	hh.ntls = ntls;
	rec(v14 ? CR14_HDR_THREAD : CR_HDR_THREAD, sizeof(hh), pid, &hh);
	if (!v14 || ntls)	/* v4 writes the array even when ntls == 0 */
		out(tls, sizeof(tls));
	printf(", \"ntls\": %d, \"tls\": [", ntls);
	for (int i = 0; i < GDT_ENTRY_TLS_ENTRIES; i++)
		printf("%s[%u, %u]", i ? ", " : "", tls[i][0], tls[i][1]);
	printf("]");
}

#define REGS(X) X(r15) X(r14) X(r13) X(r12) X(bp) X(bx) X(r11) X(r10) X(r9) X(r8) \
	X(ax) X(cx) X(dx) X(si) X(di) X(orig_ax) X(ip) X(cs) X(flags) X(sp) X(ss) \
	X(ds) X(es) X(fs) X(gs) X(debugreg0) X(debugreg1) X(debugreg2) X(debugreg3) \
	X(debugreg4) X(debugreg5) X(debugreg6) X(debugreg7) X(uses_debug) X(used_math)
#define JREG(r) J(hh, r);

#define SET_REGS(hh, k) do { \
	hh.bp = 0xbffff0e8 + k; hh.bx = 0x1b + k; hh.ax = 0; hh.cx = 0x2c + k; \
	hh.dx = 0x3d + k; hh.si = 0x4e + k; hh.di = 0x5f + k; hh.orig_ax = 333; \
	hh.ip = BASE + 0x1234 + k; hh.cs = USER_CS; hh.flags = 0x246; \
	hh.sp = BASE + 0x41e00 - k; hh.ss = USER_DS; hh.ds = USER_DS; hh.es = USER_DS; \
	hh.fs = 0; hh.gs = 0x33 + 8 * k; \
	hh.debugreg0 = 0xd0; hh.debugreg1 = 0xd1; hh.debugreg2 = 0xd2; hh.debugreg3 = 0xd3; \
	hh.debugreg4 = 0; hh.debugreg5 = 0; hh.debugreg6 = 0xffff0ff0; hh.debugreg7 = 0x400; \
	if (sizeof(long) == 8) { /* i386 leaves r8..r15 as garbage */ \
		hh.r8 = 0x108; hh.r9 = 0x109; hh.r10 = 0x110; hh.r11 = 0x111; \
		hh.r12 = 0x112; hh.r13 = 0x113; hh.r14 = 0x114; hh.r15 = 0x115; } \
	} while (0)

static void cpu(int pid, int k, int used_math)
{
	if (!v14) {
		struct cr_hdr_cpu hh;
		garbage(&hh, sizeof(hh));	/* xstate: the v4 pointer bug leaves garbage */
		SET_REGS(hh, k);
		hh.uses_debug = 1; hh.used_math = used_math; hh.has_fxsr = 1;
		rec(CR_HDR_CPU, sizeof(hh), pid, &hh);
		printf(", \"cpu\": {\"len\": %u", (unsigned)sizeof(hh));
		REGS(JREG)
		J(hh, has_fxsr);
		printf("}, ");
		hex("fpu", &hh.xstate, sizeof(hh.xstate));
		return;
	}
	struct cr_hdr_cpu14 hh;
	unsigned char xstate[512];
	garbage(&hh, sizeof(hh));
	SET_REGS(hh, k);
	hh.uses_debug = 1; hh.used_math = used_math;
	rec(CR14_HDR_CPU, sizeof(hh), 0, &hh);
	printf(", \"cpu\": {\"len\": %u", (unsigned)sizeof(hh));
	REGS(JREG)
	printf("}, ");
	if (used_math) {
		for (int i = 0; i < 512; i++)
			xstate[i] = i * 7 + k;
		out(xstate, sizeof(xstate));
		hex("fpu", xstate, sizeof(xstate));
	} else {
		printf("\"fpu\": null");
	}
}

static void tail(void)
{
	struct cr_hdr_tail hh = { CHECKPOINT_MAGIC_TAIL };
	rec(v14 ? CR14_HDR_TAIL : CR_HDR_TAIL, sizeof(hh), 0, &hh);
}

int main(int argc, char **argv)
{
	if (argc != 3 || (strcmp(argv[2], "v4") && strcmp(argv[2], "v14"))) {
		fprintf(stderr, "usage: %s IMAGE v4|v14\n", argv[0]);
		return 2;
	}
	v14 = !strcmp(argv[2], "v14");
	img = fopen(argv[1], "wb");
	if (!img) {
		perror(argv[1]);
		return 1;
	}
	head();
	printf(", \"tasks\": [");
	if (!v14) {
		const int pid = 4242;
		printf("{\"tgid\": %d, \"ppid\": 0", pid);
		task(pid, 0);
		mm(pid, 0, vmas_v4, sizeof(vmas_v4) / sizeof(vmas_v4[0]), 3);
		thread(pid, 2);
		cpu(pid, 0, 1);
		printf("}");
	} else {
		static const struct { int pid, tgid, ppid; } pids[2] = {
			{ 300, 300, 1 }, { 301, 300, 1 } };
		struct cr_hdr_tree ht;
		struct cr_hdr_pids hp[2];
		garbage(&ht, sizeof(ht));
		garbage(hp, sizeof(hp));
		ht.tasks_nr = 2;
		rec(CR14_HDR_TREE, sizeof(ht), 0, &ht);
		for (int i = 0; i < 2; i++) {
			hp[i].vpid = pids[i].pid; hp[i].vtgid = pids[i].tgid; hp[i].vppid = pids[i].ppid;
		}
		out(hp, sizeof(hp));
		for (int i = 0; i < 2; i++) {
			printf("%s{\"tgid\": %d, \"ppid\": %d", i ? ", " : "", pids[i].tgid,
			       pids[i].ppid);
			task(pids[i].pid, i);
			if (i == 0)
				mm(0, i, vmas_v14_t0, 5, 2);
			else
				mm(0, i, vmas_v14_t1, 3, 0);
			thread(pids[i].pid, i == 0 ? 2 : 0);
			cpu(pids[i].pid, i, i == 0);
			printf("}");
		}
	}
	printf("]}\n");
	tail();
	return fclose(img) ? 1 : 0;
}
