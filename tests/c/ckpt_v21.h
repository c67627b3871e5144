/* The linux-cr v21 records both ckpt golden writers use, as the user-cr headers declare
 * them (include/linux/checkpoint_hdr.h at f678773): every struct aligned(8), so the same
 * layout under gcc -m32 and -m64. And how both write records to the image file `img`.
 * The includer declares its CKPT_HDR_* numbers and IS64 first. */
#ifndef CKPT_V21_H
#define CKPT_V21_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECKPOINT_MAGIC_HEAD 0x00feed0cc0a2d200ULL
#define CHECKPOINT_MAGIC_TAIL 0x002d2a0cc0deef00ULL

struct ckpt_hdr { uint32_t type; uint32_t len; } __attribute__((aligned(8)));

struct ckpt_const {
	uint16_t task_comm_len, at_vector_size, signal_nsig, uts_sysname_len, uts_nodename_len,
		 uts_release_len, uts_version_len, uts_machine_len, uts_domainname_len,
		 rlimit_nlimits, n_tty_buf_size, tty_termios_ncc;
} __attribute__((aligned(8)));

struct ckpt_hdr_header {
	struct ckpt_hdr h;
	uint64_t magic;
	uint16_t arch_id, major, minor, patch, rev;
	struct ckpt_const constants;
	uint64_t time, uflags;
} __attribute__((aligned(8)));

struct ckpt_hdr_header_arch {
	struct ckpt_hdr h;
	uint16_t has_fxsr, has_xsave, xstate_size, _pading;
} __attribute__((aligned(8)));

struct ckpt_hdr_objref { struct ckpt_hdr h; uint32_t objtype; int32_t objref; } __attribute__((aligned(8)));

struct ckpt_hdr_tree { struct ckpt_hdr h; int32_t nr_tasks; } __attribute__((aligned(8)));

struct ckpt_pids { int32_t vpid, vppid, vtgid, vpgid, vsid, depth; } __attribute__((aligned(8)));

struct ckpt_hdr_task {
	struct ckpt_hdr h;
	uint32_t state, exit_state, exit_code, exit_signal, pdeath_signal;
	uint32_t compat_robust_futex_head_len, compat_robust_futex_list, robust_futex_head_len;
	uint64_t robust_futex_list, set_child_tid, clear_child_tid;
} __attribute__((aligned(8)));

struct ckpt_hdr_task_objs {
	struct ckpt_hdr h;
	int32_t files_objref, mm_objref, fs_objref, sighand_objref, signal_objref;
} __attribute__((aligned(8)));

struct ckpt_hdr_tail { struct ckpt_hdr h; uint64_t magic; } __attribute__((aligned(8)));

/* ---- writing records ---- */

static FILE *img;

static void put(const void *p, size_t n)
{
	if (fwrite(p, 1, n, img) != n) {
		perror("write");
		exit(1);
	}
}

static void emit(void *rec, uint32_t type, size_t size)
{
	struct ckpt_hdr *h = rec;
	h->type = type;
	h->len = (uint32_t)size;
	put(rec, size);
}

static void emit_raw(uint32_t type, const void *data, size_t n)
{
	struct ckpt_hdr h = { type, (uint32_t)(n + sizeof(h)) };
	put(&h, sizeof(h));
	put(data, n);
}

static void emit_objref(uint32_t objtype, int32_t objref)
{
	struct ckpt_hdr_objref r = { .objtype = objtype, .objref = objref };
	emit(&r, CKPT_HDR_OBJREF, sizeof(r));
}

/* HEADER, its three uts strings (release, version, machine: 65 bytes each) and HEADER_ARCH */
static void emit_head(struct ckpt_hdr_header *header, struct ckpt_hdr_header_arch *arch,
		      const char *release, const char *version)
{
	const char *strings[3] = { release, version, IS64 ? "x86_64" : "i686" };
	char uts[65];

	emit(header, CKPT_HDR_HEADER, sizeof(*header));
	for (int i = 0; i < 3; i++) {
		memset(uts, 0, sizeof(uts));
		strncpy(uts, strings[i], sizeof(uts) - 1);
		emit_raw(CKPT_HDR_BUFFER, uts, sizeof(uts));
	}
	emit(arch, CKPT_HDR_HEADER_ARCH, sizeof(*arch));
}

/* TREE of n tasks, then their pids in a BUFFER */
static void emit_tree(const struct ckpt_pids *pids, int n)
{
	struct ckpt_hdr_tree tree = { .nr_tasks = n };

	emit(&tree, CKPT_HDR_TREE, sizeof(tree));
	emit_raw(CKPT_HDR_BUFFER, pids, n * sizeof(*pids));
}

static void emit_tail(void)
{
	struct ckpt_hdr_tail tail = { .magic = CHECKPOINT_MAGIC_TAIL };

	emit(&tail, CKPT_HDR_TAIL, sizeof(tail));
}

#endif
