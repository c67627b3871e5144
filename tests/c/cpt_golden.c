/*
 * Writes a complete OpenVZ cpt v2 image (the OpenVZ v2 patchset, Andrey Mirkin, 17 Oct 2008,
 * checkpoint/cpt_image.h) to argv[1]
 * and prints, as JSON, every object it wrote in file order with the values of its fields.
 *
 * Built with -m32 it writes an i386 image (cpt_arch 0, cpt_x86_regs); with -m64 the
 * x86_64 extension (cpt_arch 1, cpt_x86_64_regs = production layout, v2 header names).
 * The v2 dumper's writer bugs are reproduced: the LDT BITS header has cpt_len 24 and an unset
 * cpt_hdrlen, BITS __cpt_pad1 and the cpt_x86_regs tail padding are garbage, and the NAME
 * object is not padded. Beyond what the v2 dumper writes, one VMA holds a VOID block and a
 * two-page DATA block (both accepted by the v2 restart code's rst_restore_one_vma).
 *
 * Task tree, written depth first: 1 -> { 2 -> { 4 }, 3 }.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint8_t __u8;
typedef uint16_t __u16;
typedef uint32_t __u32;
typedef uint64_t __u64;

#define TASK_COMM_LEN 16
#define GDT_ENTRY_TLS_ENTRIES 3
#define PAGE_SIZE 4096
#define CPT_NULL (~0ULL)

/* ---- checkpoint/cpt_image.h after patch 10/10, plus the x86_64 extension ---- */

enum _cpt_object_type {
	CPT_OBJ_TASK = 0,
	CPT_OBJ_MM,
	CPT_OBJ_MAX,
	CPT_OBJ_HEAD = 1024,
	CPT_OBJ_VMA,
	CPT_OBJ_PAGES,
	CPT_OBJ_NAME,
	CPT_OBJ_X86_REGS,
	CPT_OBJ_BITS,
	CPT_OBJ_X86_64_REGS = 4097,	/* extension: production value */
};

enum _cpt_content_type {
	CPT_CONTENT_VOID,
	CPT_CONTENT_ARRAY,
	CPT_CONTENT_DATA,
	CPT_CONTENT_NAME,
	CPT_CONTENT_REF,
	CPT_CONTENT_X86_FPUSTATE,
	CPT_CONTENT_X86_FPUSTATE_OLD,
	CPT_CONTENT_MM_CONTEXT,
	CPT_CONTENT_MAX
};

#define CPT_SIGNATURE0 0x79
#define CPT_SIGNATURE1 0x1c
#define CPT_SIGNATURE2 0x01
#define CPT_SIGNATURE3 0x63

struct cpt_head {
	__u8 cpt_signature[4];
	__u32 cpt_hdrlen;
	__u16 cpt_image_major;
	__u16 cpt_image_minor;
	__u16 cpt_image_sublevel;
	__u16 cpt_image_extra;
	__u16 cpt_arch;
#define CPT_ARCH_I386 0
#define CPT_ARCH_X86_64 1
	__u16 cpt_pad1;
	__u32 cpt_pad2;
	__u64 cpt_time;
} __attribute__ ((aligned (8)));

struct cpt_object_hdr {
	__u64 cpt_len;
	__u32 cpt_hdrlen;
	__u16 cpt_type;
	__u16 cpt_content;
} __attribute__ ((aligned (8)));

struct cpt_task_image {
	__u64 cpt_len;
	__u32 cpt_hdrlen;
	__u16 cpt_type;
	__u16 cpt_content;

	__u64 cpt_state;
	__u64 cpt_flags;
#define CPT_PF_EXITING 0
#define CPT_PF_FORKNOEXEC 1
#define CPT_PF_SUPERPRIV 2
#define CPT_PF_DUMPCORE 3
#define CPT_PF_SIGNALED 4
#define CPT_PF_USED_MATH 5
	__u64 cpt_thrflags;
	__u64 cpt_thrstatus;
	__u32 cpt_pid;
	__u32 cpt_tgid;
	__u32 cpt_ppid;
	__u32 cpt_rppid;
	__u32 cpt_pgrp;
	__u32 cpt_session;
	__u32 cpt_old_pgrp;
	__u32 cpt_leader;
	__u64 cpt_set_tid;
	__u64 cpt_clear_tid;
	__u32 cpt_exit_code;
	__u32 cpt_exit_signal;
	__u32 cpt_pdeath_signal;
	__u32 cpt_user;
	__u32 cpt_uid;
	__u32 cpt_euid;
	__u32 cpt_suid;
	__u32 cpt_fsuid;
	__u32 cpt_gid;
	__u32 cpt_egid;
	__u32 cpt_sgid;
	__u32 cpt_fsgid;
	__u8 cpt_comm[TASK_COMM_LEN];
	__u64 cpt_tls[GDT_ENTRY_TLS_ENTRIES];
	__u64 cpt_utime;
	__u64 cpt_stime;
	__u64 cpt_utimescaled;
	__u64 cpt_stimescaled;
	__u64 cpt_gtime;
	__u64 cpt_prev_utime;
	__u64 cpt_prev_stime;
	__u64 cpt_start_time;
	__u64 cpt_real_start_time;
	__u64 cpt_nvcsw;
	__u64 cpt_nivcsw;
	__u64 cpt_min_flt;
	__u64 cpt_maj_flt;
	__u32 cpt_children_num;
	__u32 cpt_pad;
} __attribute__ ((aligned (8)));

struct cpt_mm_image {
	__u64 cpt_len;
	__u32 cpt_hdrlen;
	__u16 cpt_type;
	__u16 cpt_content;

	__u64 cpt_start_code;
	__u64 cpt_end_code;
	__u64 cpt_start_data;
	__u64 cpt_end_data;
	__u64 cpt_start_brk;
	__u64 cpt_brk;
	__u64 cpt_start_stack;
	__u64 cpt_start_arg;
	__u64 cpt_end_arg;
	__u64 cpt_start_env;
	__u64 cpt_end_env;
	__u64 cpt_def_flags;
	__u64 cpt_flags;
	__u64 cpt_map_count;
} __attribute__ ((aligned (8)));

struct cpt_vma_image {
	__u64 cpt_len;
	__u32 cpt_hdrlen;
	__u16 cpt_type;
	__u16 cpt_content;

	__u64 cpt_file;
	__u32 cpt_vma_type;
#define CPT_VMA_TYPE_0 0
#define CPT_VMA_FILE 1
	__u32 cpt_pad;

	__u64 cpt_start;
	__u64 cpt_end;
	__u64 cpt_flags;
	__u64 cpt_pgprot;
	__u64 cpt_pgoff;
	__u64 cpt_page_num;
} __attribute__ ((aligned (8)));

struct cpt_page_block {
	__u64 cpt_len;
	__u32 cpt_hdrlen;
	__u16 cpt_type;
	__u16 cpt_content;

	__u64 cpt_start;
	__u64 cpt_end;
} __attribute__ ((aligned (8)));

struct cpt_obj_bits {
	__u64 cpt_len;
	__u32 cpt_hdrlen;
	__u16 cpt_type;
	__u16 cpt_content;

	__u32 cpt_size;
	__u32 __cpt_pad1;
} __attribute__ ((aligned (8)));

#define CPT_SEG_ZERO 0
#define CPT_SEG_TLS1 1
#define CPT_SEG_TLS2 2
#define CPT_SEG_TLS3 3
#define CPT_SEG_USER32_DS 4
#define CPT_SEG_USER32_CS 5
#define CPT_SEG_USER64_DS 6
#define CPT_SEG_USER64_CS 7
#define CPT_SEG_LDT 256

struct cpt_x86_regs {
	__u64 cpt_len;
	__u32 cpt_hdrlen;
	__u16 cpt_type;
	__u16 cpt_content;

	__u32 cpt_debugreg[8];
	__u32 cpt_gs;

	__u32 cpt_bx;
	__u32 cpt_cx;
	__u32 cpt_dx;
	__u32 cpt_si;
	__u32 cpt_di;
	__u32 cpt_bp;
	__u32 cpt_ax;
	__u32 cpt_ds;
	__u32 cpt_es;
	__u32 cpt_fs;
	__u32 cpt_orig_ax;
	__u32 cpt_ip;
	__u32 cpt_cs;
	__u32 cpt_flags;
	__u32 cpt_sp;
	__u32 cpt_ss;
} __attribute__ ((aligned (8)));

struct cpt_x86_64_regs {
	__u64 cpt_len;
	__u32 cpt_hdrlen;
	__u16 cpt_type;
	__u16 cpt_content;

	__u64 cpt_debugreg[8];
	__u64 cpt_fsbase;
	__u64 cpt_gsbase;
	__u32 cpt_fsindex;
	__u32 cpt_gsindex;
	__u32 cpt_ds;
	__u32 cpt_es;
	__u64 cpt_r15;
	__u64 cpt_r14;
	__u64 cpt_r13;
	__u64 cpt_r12;
	__u64 cpt_rbp;
	__u64 cpt_rbx;
	__u64 cpt_r11;
	__u64 cpt_r10;
	__u64 cpt_r9;
	__u64 cpt_r8;
	__u64 cpt_rax;
	__u64 cpt_rcx;
	__u64 cpt_rdx;
	__u64 cpt_rsi;
	__u64 cpt_rdi;
	__u64 cpt_orig_rax;
	__u64 cpt_rip;
	__u64 cpt_cs;
	__u64 cpt_eflags;
	__u64 cpt_rsp;
	__u64 cpt_ss;
} __attribute__ ((aligned (8)));

_Static_assert(sizeof(struct cpt_head) == 32, "cpt_head");
_Static_assert(sizeof(struct cpt_object_hdr) == 16, "cpt_object_hdr");
_Static_assert(sizeof(struct cpt_task_image) == 296, "cpt_task_image");
_Static_assert(sizeof(struct cpt_mm_image) == 128, "cpt_mm_image");
_Static_assert(sizeof(struct cpt_vma_image) == 80, "cpt_vma_image");
_Static_assert(sizeof(struct cpt_page_block) == 32, "cpt_page_block");
_Static_assert(sizeof(struct cpt_obj_bits) == 24, "cpt_obj_bits");
_Static_assert(sizeof(struct cpt_x86_regs) == 120, "cpt_x86_regs");
_Static_assert(sizeof(struct cpt_x86_64_regs) == 280, "cpt_x86_64_regs");

/* ---- the selectors the kernel would hold, and the v2 dumper's encode_segment() ---- */

#ifdef __x86_64__
#define GDT_ENTRY_TLS_MIN 12
#define __USER32_CS 0x23
#define __USER32_DS 0x2b
#define __USER_DS 0x2b
#define __USER_CS 0x33
#else
#define GDT_ENTRY_TLS_MIN 6
#define __USER_CS 0x73
#define __USER_DS 0x7b
#endif
#define GDT_ENTRY_TLS_MAX (GDT_ENTRY_TLS_MIN + GDT_ENTRY_TLS_ENTRIES - 1)

static __u32 encode_segment(__u32 segreg)
{
	segreg &= 0xFFFF;
	if (segreg == 0)
		return CPT_SEG_ZERO;
	if ((segreg & 3) != 3)
		return CPT_SEG_ZERO;
	if (segreg & 4)
		return CPT_SEG_LDT + (segreg >> 3);
	if ((segreg >> 3) >= GDT_ENTRY_TLS_MIN && (segreg >> 3) <= GDT_ENTRY_TLS_MAX)
		return CPT_SEG_TLS1 + ((segreg >> 3) - GDT_ENTRY_TLS_MIN);
#ifdef __x86_64__
	if (segreg == __USER32_DS)
		return CPT_SEG_USER32_DS;
	if (segreg == __USER32_CS)
		return CPT_SEG_USER32_CS;
	if (segreg == __USER_DS)
		return CPT_SEG_USER64_DS;
	if (segreg == __USER_CS)
		return CPT_SEG_USER64_CS;
#else
	if (segreg == __USER_DS)
		return CPT_SEG_USER32_DS;
	if (segreg == __USER_CS)
		return CPT_SEG_USER32_CS;
#endif
	return CPT_SEG_ZERO;
}

#define TLS_SELECTOR(index) (((GDT_ENTRY_TLS_MIN + (index)) << 3) | 3)
#define LDT_SELECTOR(index) (((index) << 3) | 7)

/* ---- output: the image, and JSON on stdout ---- */

static FILE *image;
static __u64 offset;
static int first_object = 1;
static __u64 counter;

/* A value no other field has: misplaced fields cannot go unnoticed. */
static __u64 distinct64(void)
{
	counter++;
	return 0x5a00000000000000ULL | (counter << 32) | (0x1000 + counter * 0x111);
}

static __u32 distinct32(void)
{
	counter++;
	return 0xa5000000u | (__u32)(counter * 0x10101);
}

static __u64 fnv1a(const void *data, size_t size)
{
	const __u8 *p = data;
	__u64 hash = 0xcbf29ce484222325ULL;

	while (size--) {
		hash ^= *p++;
		hash *= 0x100000001b3ULL;
	}
	return hash;
}

static void emit(const void *data, size_t size)
{
	if (fwrite(data, 1, size, image) != size) {
		perror("fwrite");
		exit(1);
	}
	offset += size;
}

/* {"type": ..., "offset": ..., "length": ..., fields...}: the fields are added by F/A/S. */
static void begin(const char *type, __u64 length)
{
	printf("%s\n  {\"type\": \"%s\", \"offset\": %llu, \"length\": %llu",
	       first_object ? "" : ",", type, (unsigned long long)offset,
	       (unsigned long long)length);
	first_object = 0;
}

static void num(const char *name, __u64 value)
{
	printf(", \"%s\": %llu", name, (unsigned long long)value);
}

static void nums(const char *name, const void *values, int count, int width)
{
	int i;

	printf(", \"%s\": [", name);
	for (i = 0; i < count; i++) {
		__u64 v = width == 8 ? ((const __u64 *)values)[i] : ((const __u32 *)values)[i];
		printf("%s%llu", i ? ", " : "", (unsigned long long)v);
	}
	printf("]");
}

#ifndef __x86_64__
static void bytes(const char *name, const void *data, int size)
{
	int i;

	printf(", \"%s\": \"", name);
	for (i = 0; i < size; i++)
		printf("%02x", ((const __u8 *)data)[i]);
	printf("\"");
}
#endif

static void end(void)
{
	printf("}");
}

#define F(s, field) num(#field, (s).field)
#define A(s, field, n) nums(#field, (s).field, n, sizeof((s).field[0]))
#define H(s) do { F(s, cpt_len); F(s, cpt_hdrlen); F(s, cpt_type); F(s, cpt_content); } while (0)

static void write_head(void)
{
	struct cpt_head h;

	memset(&h, 0, sizeof(h));
	h.cpt_signature[0] = CPT_SIGNATURE0;
	h.cpt_signature[1] = CPT_SIGNATURE1;
	h.cpt_signature[2] = CPT_SIGNATURE2;
	h.cpt_signature[3] = CPT_SIGNATURE3;
	h.cpt_hdrlen = sizeof(h);
	h.cpt_image_major = 2;
	h.cpt_image_minor = 6;
	h.cpt_image_sublevel = 27;
	h.cpt_image_extra = 3;
#ifdef __x86_64__
	h.cpt_arch = CPT_ARCH_X86_64;
#else
	h.cpt_arch = CPT_ARCH_I386;
#endif
	h.cpt_time = 1224284400;	/* the v2 dumper leaves it 0; a value here tests the field */

	begin("cpt_head", sizeof(h));
	F(h, cpt_hdrlen); F(h, cpt_image_major); F(h, cpt_image_minor);
	F(h, cpt_image_sublevel); F(h, cpt_image_extra); F(h, cpt_arch); F(h, cpt_time);
	end();
	emit(&h, sizeof(h));
}

static void write_task(__u32 pid, __u32 ppid, const char *comm, __u32 children)
{
	struct cpt_task_image t;
	int i;

	memset(&t, 0, sizeof(t));	/* kzalloc */
	t.cpt_len = sizeof(t);
	t.cpt_type = CPT_OBJ_TASK;
	t.cpt_hdrlen = sizeof(t);
	t.cpt_content = CPT_CONTENT_ARRAY;
	t.cpt_state = distinct64();
	t.cpt_flags = (1 << CPT_PF_FORKNOEXEC) | (1 << CPT_PF_USED_MATH);
	t.cpt_thrflags = distinct64();
	t.cpt_thrstatus = distinct64();
	t.cpt_pid = pid;
	t.cpt_tgid = pid;
	t.cpt_ppid = ppid;
	t.cpt_rppid = distinct32();
	t.cpt_pgrp = distinct32();
	t.cpt_session = distinct32();
	t.cpt_old_pgrp = distinct32();
	t.cpt_leader = distinct32();
	t.cpt_set_tid = distinct64();
	t.cpt_clear_tid = distinct64();
	t.cpt_exit_code = distinct32();
	t.cpt_exit_signal = distinct32();
	t.cpt_pdeath_signal = distinct32();
	t.cpt_user = distinct32();
	t.cpt_uid = distinct32();
	t.cpt_euid = distinct32();
	t.cpt_suid = distinct32();
	t.cpt_fsuid = distinct32();
	t.cpt_gid = distinct32();
	t.cpt_egid = distinct32();
	t.cpt_sgid = distinct32();
	t.cpt_fsgid = distinct32();
	strncpy((char *)t.cpt_comm, comm, TASK_COMM_LEN);
	for (i = 0; i < GDT_ENTRY_TLS_ENTRIES; i++)
		t.cpt_tls[i] = distinct64();
	t.cpt_utime = distinct64();
	t.cpt_stime = distinct64();
	t.cpt_utimescaled = distinct64();
	t.cpt_stimescaled = distinct64();
	t.cpt_gtime = distinct64();
	t.cpt_prev_utime = distinct64();
	t.cpt_prev_stime = distinct64();
	t.cpt_start_time = distinct64();
	t.cpt_real_start_time = distinct64();
	t.cpt_nvcsw = distinct64();
	t.cpt_nivcsw = distinct64();
	t.cpt_min_flt = distinct64();
	t.cpt_maj_flt = distinct64();
	t.cpt_children_num = children;

	begin("CPT_OBJ_TASK", sizeof(t));
	H(t);
	F(t, cpt_state); F(t, cpt_flags); F(t, cpt_thrflags); F(t, cpt_thrstatus);
	F(t, cpt_pid); F(t, cpt_tgid); F(t, cpt_ppid); F(t, cpt_rppid); F(t, cpt_pgrp);
	F(t, cpt_session); F(t, cpt_old_pgrp); F(t, cpt_leader); F(t, cpt_set_tid);
	F(t, cpt_clear_tid); F(t, cpt_exit_code); F(t, cpt_exit_signal);
	F(t, cpt_pdeath_signal); F(t, cpt_user); F(t, cpt_uid); F(t, cpt_euid); F(t, cpt_suid);
	F(t, cpt_fsuid); F(t, cpt_gid); F(t, cpt_egid); F(t, cpt_sgid); F(t, cpt_fsgid);
	printf(", \"cpt_comm\": \"%s\"", comm);
	A(t, cpt_tls, GDT_ENTRY_TLS_ENTRIES);
	F(t, cpt_utime); F(t, cpt_stime); F(t, cpt_utimescaled); F(t, cpt_stimescaled);
	F(t, cpt_gtime); F(t, cpt_prev_utime); F(t, cpt_prev_stime); F(t, cpt_start_time);
	F(t, cpt_real_start_time); F(t, cpt_nvcsw); F(t, cpt_nivcsw); F(t, cpt_min_flt);
	F(t, cpt_maj_flt); F(t, cpt_children_num);
	end();
	emit(&t, sizeof(t));
}

static void write_mm(__u64 map_count)
{
	struct cpt_mm_image m;

	memset(&m, 0, sizeof(m));
	m.cpt_len = sizeof(m);
	m.cpt_type = CPT_OBJ_MM;
	m.cpt_hdrlen = sizeof(m);
	m.cpt_content = CPT_CONTENT_ARRAY;
	m.cpt_start_code = distinct64();
	m.cpt_end_code = distinct64();
	m.cpt_start_data = distinct64();
	m.cpt_end_data = distinct64();
	m.cpt_start_brk = distinct64();
	m.cpt_brk = distinct64();
	m.cpt_start_stack = distinct64();
	m.cpt_start_arg = distinct64();
	m.cpt_end_arg = distinct64();
	m.cpt_start_env = distinct64();
	m.cpt_end_env = distinct64();
	m.cpt_def_flags = distinct64();
	m.cpt_flags = distinct64();
	m.cpt_map_count = map_count;

	begin("CPT_OBJ_MM", sizeof(m));
	H(m);
	F(m, cpt_start_code); F(m, cpt_end_code); F(m, cpt_start_data); F(m, cpt_end_data);
	F(m, cpt_start_brk); F(m, cpt_brk); F(m, cpt_start_stack); F(m, cpt_start_arg);
	F(m, cpt_end_arg); F(m, cpt_start_env); F(m, cpt_end_env); F(m, cpt_def_flags);
	F(m, cpt_flags); F(m, cpt_map_count);
	end();
	emit(&m, sizeof(m));
}

static void write_vma(__u64 start, __u64 end_addr, __u64 page_num, const char *path)
{
	struct cpt_vma_image v;

	memset(&v, 0, sizeof(v));	/* kzalloc */
	v.cpt_len = sizeof(v);
	v.cpt_type = CPT_OBJ_VMA;
	v.cpt_hdrlen = sizeof(v);
	v.cpt_content = CPT_CONTENT_ARRAY;
	v.cpt_start = start;
	v.cpt_end = end_addr;
	v.cpt_flags = distinct32();
	v.cpt_pgprot = distinct32();
	v.cpt_pgoff = distinct32();
	v.cpt_file = path ? 0 : CPT_NULL;
	v.cpt_vma_type = path ? CPT_VMA_FILE : CPT_VMA_TYPE_0;
	v.cpt_page_num = page_num;

	begin("CPT_OBJ_VMA", sizeof(v));
	H(v);
	F(v, cpt_file); F(v, cpt_vma_type); F(v, cpt_start); F(v, cpt_end); F(v, cpt_flags);
	F(v, cpt_pgprot); F(v, cpt_pgoff); F(v, cpt_page_num);
	end();
	emit(&v, sizeof(v));

	if (path) {	/* cpt_dump_dentry: header + string + NUL, no padding */
		struct cpt_object_hdr o;
		size_t len = strlen(path);

		o.cpt_len = sizeof(o) + len + 1;
		o.cpt_type = CPT_OBJ_NAME;
		o.cpt_hdrlen = sizeof(o);
		o.cpt_content = CPT_CONTENT_NAME;
		begin("CPT_OBJ_NAME", o.cpt_len);
		H(o);
		printf(", \"name\": \"%s\"", path);
		end();
		emit(&o, sizeof(o));
		emit(path, len + 1);
	}
}

static void write_pages(__u64 start, __u64 end_addr, int content)
{
	struct cpt_page_block pgb;
	__u64 size = content == CPT_CONTENT_DATA ? end_addr - start : 0;
	__u8 *data = malloc(size ? size : 1);
	__u64 i;

	for (i = 0; i < size; i++)
		data[i] = (__u8)((start >> 12) * 7 + i * 13 + (i >> 12));
	pgb.cpt_len = sizeof(pgb) + size;
	pgb.cpt_type = CPT_OBJ_PAGES;
	pgb.cpt_hdrlen = sizeof(pgb);
	pgb.cpt_content = content;
	pgb.cpt_start = start;
	pgb.cpt_end = end_addr;

	begin("CPT_OBJ_PAGES", sizeof(pgb) + size);
	H(pgb);
	F(pgb, cpt_start); F(pgb, cpt_end);
	num("fnv", fnv1a(data, size));
	end();
	emit(&pgb, sizeof(pgb));
	emit(data, size);
	free(data);
}

/* An anonymous VMA fully dumped page by page, as dump_one_vma does. */
static void write_anon_vma(__u64 start, int pages)
{
	int i;

	write_vma(start, start + pages * PAGE_SIZE, pages, NULL);
	for (i = 0; i < pages; i++)
		write_pages(start + i * PAGE_SIZE, start + (i + 1) * PAGE_SIZE, CPT_CONTENT_DATA);
}

static void write_file_vma(__u64 start, int pages, const char *path)
{
	int i;

	write_vma(start, start + pages * PAGE_SIZE, pages, path);
	for (i = 0; i < pages; i++)
		write_pages(start + i * PAGE_SIZE, start + (i + 1) * PAGE_SIZE, CPT_CONTENT_DATA);
}

/* cpt_dump_mm_context: cpt_len excludes the payload, cpt_hdrlen and pad never set. */
static void write_ldt(int entries)
{
	struct cpt_obj_bits b;
	__u32 ldt[2 * 16];
	int i;

	memset(&b, 0xcc, sizeof(b));	/* kernel stack garbage */
	b.cpt_type = CPT_OBJ_BITS;
	b.cpt_len = sizeof(b);
	b.cpt_content = CPT_CONTENT_MM_CONTEXT;
	b.cpt_size = entries * 8;
	for (i = 0; i < 2 * entries; i++)
		ldt[i] = distinct32();

	begin("CPT_OBJ_BITS", sizeof(b) + b.cpt_size);
	H(b);
	F(b, cpt_size); F(b, __cpt_pad1);
	num("fnv", fnv1a(ldt, b.cpt_size));
	end();
	emit(&b, sizeof(b));
	emit(ldt, b.cpt_size);
}

static void write_fpu(int content, __u32 size)
{
	struct cpt_obj_bits hdr;
	__u8 state[512];
	__u32 i;

	for (i = 0; i < size; i++)
		state[i] = (__u8)(counter * 31 + i);
	counter++;
	hdr.cpt_len = sizeof(hdr) + size;
	hdr.cpt_type = CPT_OBJ_BITS;
	hdr.cpt_hdrlen = sizeof(hdr);
	hdr.cpt_content = content;
	hdr.cpt_size = size;
	hdr.__cpt_pad1 = 0xdeadbeef;	/* never set by cpt_dump_fpustate */

	begin("CPT_OBJ_BITS", sizeof(hdr) + size);
	H(hdr);
	F(hdr, cpt_size); F(hdr, __cpt_pad1);
	num("fnv", fnv1a(state, size));
	end();
	emit(&hdr, sizeof(hdr));
	emit(state, size);
}

static void selector(const char *name, __u32 value)
{
	printf(", \"sel_%s\": %u", name, value);
}

#ifdef __x86_64__
static void write_regs(void)
{
	struct cpt_x86_64_regs r;
	__u32 cs = __USER_CS, ss = __USER_DS, ds = 0, es = __USER32_DS;
	__u32 fs = TLS_SELECTOR(1), gs = LDT_SELECTOR(5);
	int i;

	memset(&r, 0, sizeof(r));
	r.cpt_len = sizeof(r);
	r.cpt_type = CPT_OBJ_X86_64_REGS;
	r.cpt_hdrlen = sizeof(r);
	r.cpt_content = CPT_CONTENT_VOID;
	for (i = 0; i < 8; i++)
		r.cpt_debugreg[i] = (i == 4 || i == 5) ? 0 : distinct64();
	r.cpt_fsbase = distinct64();
	r.cpt_gsbase = distinct64();
	r.cpt_fsindex = encode_segment(fs);
	r.cpt_gsindex = encode_segment(gs);
	r.cpt_ds = encode_segment(ds);
	r.cpt_es = encode_segment(es);
	r.cpt_r15 = distinct64(); r.cpt_r14 = distinct64(); r.cpt_r13 = distinct64();
	r.cpt_r12 = distinct64(); r.cpt_rbp = distinct64(); r.cpt_rbx = distinct64();
	r.cpt_r11 = distinct64(); r.cpt_r10 = distinct64(); r.cpt_r9 = distinct64();
	r.cpt_r8 = distinct64(); r.cpt_rax = distinct64(); r.cpt_rcx = distinct64();
	r.cpt_rdx = distinct64(); r.cpt_rsi = distinct64(); r.cpt_rdi = distinct64();
	r.cpt_orig_rax = distinct64(); r.cpt_rip = distinct64();
	r.cpt_cs = encode_segment(cs);
	r.cpt_eflags = distinct64();
	r.cpt_rsp = distinct64();
	r.cpt_ss = encode_segment(ss);

	begin("CPT_OBJ_X86_64_REGS", sizeof(r));
	H(r);
	A(r, cpt_debugreg, 8);
	F(r, cpt_fsbase); F(r, cpt_gsbase); F(r, cpt_fsindex); F(r, cpt_gsindex);
	F(r, cpt_ds); F(r, cpt_es); F(r, cpt_r15); F(r, cpt_r14); F(r, cpt_r13); F(r, cpt_r12);
	F(r, cpt_rbp); F(r, cpt_rbx); F(r, cpt_r11); F(r, cpt_r10); F(r, cpt_r9); F(r, cpt_r8);
	F(r, cpt_rax); F(r, cpt_rcx); F(r, cpt_rdx); F(r, cpt_rsi); F(r, cpt_rdi);
	F(r, cpt_orig_rax); F(r, cpt_rip); F(r, cpt_cs); F(r, cpt_eflags); F(r, cpt_rsp);
	F(r, cpt_ss);
	selector("cs", cs); selector("ss", ss); selector("ds", ds); selector("es", es);
	selector("fs", fs); selector("gs", gs);
	end();
	emit(&r, sizeof(r));
}
#else
static void write_regs(void)
{
	struct cpt_x86_regs r;
	__u32 cs = __USER_CS, ss = __USER_DS, ds = __USER_DS, es = 0;
	__u32 fs = TLS_SELECTOR(0), gs = LDT_SELECTOR(2);
	int i;

	memset(&r, 0x5e, sizeof(r));	/* the tail padding keeps this stack garbage */
	r.cpt_len = sizeof(r);
	r.cpt_type = CPT_OBJ_X86_REGS;
	r.cpt_hdrlen = sizeof(r);
	r.cpt_content = CPT_CONTENT_VOID;
	for (i = 0; i < 8; i++)
		r.cpt_debugreg[i] = (i == 4 || i == 5) ? 0 : distinct32();
	r.cpt_fs = encode_segment(fs);
	r.cpt_gs = encode_segment(gs);
	r.cpt_bx = distinct32(); r.cpt_cx = distinct32(); r.cpt_dx = distinct32();
	r.cpt_si = distinct32(); r.cpt_di = distinct32(); r.cpt_bp = distinct32();
	r.cpt_ax = distinct32();
	r.cpt_ds = encode_segment(ds);
	r.cpt_es = encode_segment(es);
	r.cpt_orig_ax = distinct32();
	r.cpt_ip = distinct32();
	r.cpt_cs = encode_segment(cs);
	r.cpt_flags = distinct32();
	r.cpt_sp = distinct32();
	r.cpt_ss = encode_segment(ss);

	begin("CPT_OBJ_X86_REGS", sizeof(r));
	H(r);
	A(r, cpt_debugreg, 8);
	F(r, cpt_gs); F(r, cpt_bx); F(r, cpt_cx); F(r, cpt_dx); F(r, cpt_si); F(r, cpt_di);
	F(r, cpt_bp); F(r, cpt_ax); F(r, cpt_ds); F(r, cpt_es); F(r, cpt_fs); F(r, cpt_orig_ax);
	F(r, cpt_ip); F(r, cpt_cs); F(r, cpt_flags); F(r, cpt_sp); F(r, cpt_ss);
	bytes("tail", (__u8 *)&r + sizeof(r) - 4, 4);
	selector("cs", cs); selector("ss", ss); selector("ds", ds); selector("es", es);
	selector("fs", fs); selector("gs", gs);
	end();
	emit(&r, sizeof(r));
}
#endif

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s IMAGE\n", argv[0]);
		return 2;
	}
	image = fopen(argv[1], "wb");
	if (!image) {
		perror(argv[1]);
		return 1;
	}
	printf("[");
	write_head();

	/* pid 1: anon VMA, file VMA with an odd-length name, an LDT; two children */
	write_task(1, 0, "init", 2);
	write_mm(2);
	write_anon_vma(0x08048000, 3);
	write_file_vma(0x40000000, 2, "/lib/ld-2.7.so");
	write_ldt(3);
	write_fpu(CPT_CONTENT_X86_FPUSTATE, 512);
	write_regs();

	/* pid 2: a VMA of a VOID block and a two-page DATA block; one child */
	write_task(2, 1, "fifteen-chars-x", 1);
	write_mm(1);
	write_vma(0x10000000, 0x10003000, 2, NULL);
	write_pages(0x10000000, 0x10001000, CPT_CONTENT_VOID);
	write_pages(0x10001000, 0x10003000, CPT_CONTENT_DATA);
#ifdef __x86_64__
	write_fpu(CPT_CONTENT_X86_FPUSTATE, 512);
#else
	write_fpu(CPT_CONTENT_X86_FPUSTATE_OLD, 112);	/* i386 without FXSR */
#endif
	write_regs();

	/* pid 4, child of 2: no VMA at all */
	write_task(4, 2, "grandchild", 0);
	write_mm(0);
	write_fpu(CPT_CONTENT_X86_FPUSTATE, 512);
	write_regs();

	/* pid 3, second child of 1: a file VMA after which objects are unaligned */
	write_task(3, 1, "sibling", 0);
	write_mm(1);
	write_file_vma(0xb7f00000, 1, "/usr/lib/locale/C.utf8/LC_CTYPE");
	write_fpu(CPT_CONTENT_X86_FPUSTATE, 512);
	write_regs();

	printf("\n]\n");
	if (fclose(image)) {
		perror("fclose");
		return 1;
	}
	return 0;
}
