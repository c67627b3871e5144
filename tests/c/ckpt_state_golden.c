/*
 * Golden linux-cr ckpt_hdr image (v21) of process state beyond memory and registers:
 * credentials, fs_struct, signal handlers, signal_struct (rlimits, itimers), pending signals
 * and blocked masks, plus crfs's extension records (sigaltstack, umask).
 *
 * Layouts: user-cr include/linux/checkpoint_hdr.h and include/asm-x86/checkpoint_hdr.h at
 * commit f678773 (v21, CHECKPOINT_VERSION 6); write order: linux-cr v20 postings 64-71 and
 * 84 ("[C/R v20][PATCH nn/96]"), v18 patches 60 and 65 for creds and pending signals.
 *
 * Built with gcc -m32 and -m64: every struct here has the same layout on both (asserted).
 * Writes argv[1] and prints, as JSON, the values it wrote.
 *
 * Image: process 500 (threads 500, 501: one CRED, GROUPINFO, USER, USER_NS, FS, SIGHAND and
 * SIGNAL shared; each thread its own SIGPENDING and SIGNAL_TASK; thread 500 an alternate
 * stack) and process 600 (its own objects; different real and effective CRED; no umask).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IS64 (sizeof(long) == 8)
#define NSIG 64
#define NLIMITS 16

enum {
	CKPT_HDR_HEADER = 1, CKPT_HDR_HEADER_ARCH, CKPT_HDR_CONTAINER, CKPT_HDR_BUFFER,
	CKPT_HDR_STRING, CKPT_HDR_OBJREF,
	CKPT_HDR_TREE = 101, CKPT_HDR_TASK, CKPT_HDR_TASK_NS, CKPT_HDR_TASK_OBJS,
	CKPT_HDR_RESTART_BLOCK, CKPT_HDR_THREAD, CKPT_HDR_CPU, CKPT_HDR_NS, CKPT_HDR_UTS_NS,
	CKPT_HDR_IPC_NS, CKPT_HDR_MNT_NS, CKPT_HDR_CAPABILITIES, CKPT_HDR_USER_NS, CKPT_HDR_CRED,
	CKPT_HDR_USER, CKPT_HDR_GROUPINFO, CKPT_HDR_TASK_CREDS,
	CKPT_HDR_FILE_NAME = 303,
	CKPT_HDR_FS = 451,
	CKPT_HDR_SIGHAND = 601, CKPT_HDR_SIGNAL, CKPT_HDR_SIGNAL_TASK, CKPT_HDR_SIGPENDING,
	CRFS_HDR_SIGALTSTACK = 8001, CRFS_HDR_FS_EXT = 8002,	/* crfs extensions */
	CRFS_HDR_OOM_SCORE_ADJ = 8020, CRFS_HDR_RSEQ = 8021, CRFS_HDR_SIGINFO_RAW = 8022,
	CRFS_HDR_SECCOMP = 8041, CRFS_HDR_TASK_MISC = 8050,
	CRFS_HDR_POSIX_TIMER = 8024,
	CKPT_HDR_TAIL = 9001,
};
_Static_assert(CKPT_HDR_TASK_CREDS == 117 && CKPT_HDR_USER_NS == 113, "v21 numbers");
enum {
	CKPT_OBJ_IGNORE = 0, CKPT_OBJ_INODE, CKPT_OBJ_FILE_TABLE, CKPT_OBJ_FILE, CKPT_OBJ_MM,
	CKPT_OBJ_FS, CKPT_OBJ_SIGHAND, CKPT_OBJ_SIGNAL, CKPT_OBJ_NS, CKPT_OBJ_UTS_NS,
	CKPT_OBJ_IPC_NS, CKPT_OBJ_MNT_NS, CKPT_OBJ_USER_NS, CKPT_OBJ_CRED, CKPT_OBJ_USER,
	CKPT_OBJ_GROUPINFO,
};
#define CRFS_UFLAG_EXT 0x8000

#include "ckpt_v21.h"

struct ckpt_hdr_restart_block {
	struct ckpt_hdr h;
	uint64_t function_type, arg_0, arg_1, arg_2, arg_3, arg_4;
} __attribute__((aligned(8)));
/* ---- the records of this image, as in checkpoint_hdr.h at f678773 ---- */

struct ckpt_capabilities {
	uint32_t cap_i_0, cap_i_1, cap_p_0, cap_p_1, cap_e_0, cap_e_1, cap_b_0, cap_b_1;
	uint32_t securebits;
	uint32_t padding;
} __attribute__((aligned(8)));
struct ckpt_hdr_task_creds { struct ckpt_hdr h; int32_t cred_ref, ecred_ref; } __attribute__((aligned(8)));
struct ckpt_hdr_cred {
	struct ckpt_hdr h;
	uint32_t uid, suid, euid, fsuid, gid, sgid, egid, fsgid;
	int32_t user_ref, groupinfo_ref, sec_ref;
	struct ckpt_capabilities cap_s;
} __attribute__((aligned(8)));
struct ckpt_hdr_groupinfo {
	struct ckpt_hdr h;
	uint32_t ngroups;
	uint32_t groups[];	/* at 12, but sizeof is 16: see write_groupinfo() */
} __attribute__((aligned(8)));
struct ckpt_hdr_user_struct { struct ckpt_hdr h; uint32_t uid; int32_t userns_ref; } __attribute__((aligned(8)));
struct ckpt_hdr_user_ns { struct ckpt_hdr h; int32_t creator_ref; } __attribute__((aligned(8)));
struct ckpt_hdr_fs { struct ckpt_hdr h; } __attribute__((aligned(8)));
struct ckpt_sigset { uint8_t sigset[NSIG / 8]; } __attribute__((aligned(8)));
struct ckpt_sigaction {
	uint64_t _sa_handler, sa_flags, sa_restorer;
	struct ckpt_sigset sa_mask;
} __attribute__((aligned(8)));
struct ckpt_hdr_sighand { struct ckpt_hdr h; struct ckpt_sigaction action[0]; } __attribute__((aligned(8)));
struct ckpt_rlimit { uint64_t rlim_cur, rlim_max; } __attribute__((aligned(8)));
struct ckpt_hdr_signal {
	struct ckpt_hdr h;
	struct ckpt_rlimit rlim[NLIMITS];
	uint64_t it_real_value, it_real_incr, it_virt_value, it_virt_incr, it_prof_value,
		 it_prof_incr;
	int32_t tty_objref, tty_pgrp, tty_old_pgrp;
} __attribute__((aligned(8)));
struct ckpt_siginfo {
	uint32_t csi_signo, csi_errno, csi_code, csi_pid;
	int32_t csi_uid;
	uint32_t csi_sigval_int;
	uint64_t csi_sigval_ptr, csi_utime, csi_stime;
} __attribute__((aligned(8)));
struct ckpt_hdr_sigpending {
	struct ckpt_hdr h;
	uint32_t nr_pending;
	struct ckpt_sigset signal;
	struct ckpt_siginfo siginfo[0];
} __attribute__((aligned(8)));
struct ckpt_hdr_signal_task { struct ckpt_hdr h; struct ckpt_sigset blocked; } __attribute__((aligned(8)));
/* crfs extensions (docs/format-ckpt.md) */
struct crfs_hdr_sigaltstack {
	struct ckpt_hdr h;
	uint64_t ss_sp, ss_size;
	uint32_t ss_flags;
} __attribute__((aligned(8)));
struct crfs_hdr_fs_ext { struct ckpt_hdr h; uint32_t umask; } __attribute__((aligned(8)));
struct crfs_hdr_oom_score_adj { struct ckpt_hdr h; int32_t oom_score_adj; } __attribute__((aligned(8)));
struct crfs_hdr_rseq {
	struct ckpt_hdr h;
	uint64_t rseq;
	uint32_t rseq_len, rseq_sig;
} __attribute__((aligned(8)));

_Static_assert(sizeof(struct ckpt_hdr_header) == 72, "HEADER");
_Static_assert(sizeof(struct ckpt_hdr_task) == 64, "TASK");
_Static_assert(sizeof(struct ckpt_hdr_restart_block) == 56, "RESTART_BLOCK");
_Static_assert(sizeof(struct ckpt_hdr_task_objs) == 32, "TASK_OBJS");
_Static_assert(sizeof(struct ckpt_hdr_task_creds) == 16, "TASK_CREDS");
_Static_assert(sizeof(struct ckpt_hdr_cred) == 96, "CRED");
_Static_assert(sizeof(struct ckpt_hdr_groupinfo) == 16, "GROUPINFO");
_Static_assert(__builtin_offsetof(struct ckpt_hdr_groupinfo, groups) == 12, "groups[]");
_Static_assert(sizeof(struct ckpt_hdr_user_struct) == 16, "USER");
_Static_assert(sizeof(struct ckpt_hdr_user_ns) == 16, "USER_NS");
_Static_assert(sizeof(struct ckpt_hdr_fs) == 8, "FS");
_Static_assert(sizeof(struct ckpt_sigaction) == 32, "sigaction");
_Static_assert(sizeof(struct ckpt_hdr_sighand) == 8, "SIGHAND head");
_Static_assert(sizeof(struct ckpt_hdr_signal) == 328, "SIGNAL");
_Static_assert(sizeof(struct ckpt_siginfo) == 48, "siginfo");
_Static_assert(sizeof(struct ckpt_hdr_sigpending) == 24, "SIGPENDING");
_Static_assert(sizeof(struct ckpt_hdr_signal_task) == 16, "SIGNAL_TASK");
_Static_assert(sizeof(struct crfs_hdr_sigaltstack) == 32, "SIGALTSTACK");
_Static_assert(sizeof(struct crfs_hdr_fs_ext) == 16, "FS_EXT");
_Static_assert(sizeof(struct crfs_hdr_oom_score_adj) == 16, "OOM_SCORE_ADJ");
_Static_assert(sizeof(struct crfs_hdr_rseq) == 24, "RSEQ");
struct crfs_hdr_seccomp { struct ckpt_hdr h; uint32_t mode; } __attribute__((aligned(8)));
_Static_assert(sizeof(struct crfs_hdr_seccomp) == 16, "SECCOMP");
struct crfs_hdr_task_misc { struct ckpt_hdr h; uint32_t personality; uint32_t flags;
	uint32_t policy; uint32_t rt_priority; int32_t nice; uint8_t pad[4]; }
	__attribute__((aligned(8)));
_Static_assert(sizeof(struct crfs_hdr_task_misc) == 32, "TASK_MISC");
/* crfs extension: one POSIX timer of a thread group, ids increasing (kmod/crfs_image.h) */
struct crfs_hdr_posix_timer {
	struct ckpt_hdr h;
	int32_t it_id, clockid, signo, notify, notify_tid;
	uint32_t flags;
	uint64_t sigev_value, value_ns, interval_ns;
	int64_t overrun;
} __attribute__((aligned(8)));
_Static_assert(sizeof(struct crfs_hdr_posix_timer) == 64, "POSIX_TIMER");
/* CRFS_HDR_SIGINFO_RAW: u32 nr_pending, pad, then nr_pending x86_64 kernel_siginfo (48) */
struct crfs_hdr_siginfo_raw { struct ckpt_hdr h; uint32_t nr_pending; } __attribute__((aligned(8)));
_Static_assert(sizeof(struct crfs_hdr_siginfo_raw) == 16, "SIGINFO_RAW");

/* ---- values ---- */

static unsigned tag;
static uint64_t v64(void) { tag++; return 0x5a00000000000000ULL | ((uint64_t)tag << 32) | (tag * 0x1111u); }
static uint32_t v32(void) { tag++; return 0x3a000000u | (tag << 12) | tag; }
static uint64_t sigbit(int sig) { return 1ULL << (sig - 1); }
static const uint64_t INFINITY_RLIM = (unsigned long)-1;	/* RLIM_INFINITY, ~0UL */

#define U(x) ((unsigned long long)(x))

/* ---- credentials ---- */

#define USERNS_REF 4	/* the container's user namespace: written with the first USER */

struct cred_desc {
	int32_t ref, groupinfo_ref, user_ref, userns_ref;	/* 0: written before */
	struct ckpt_hdr_cred rec;
	uint32_t groups[4];
	uint32_t ngroups;
	int written;
};

static void write_groupinfo(struct cred_desc *c)
{
	/* The kernel: h = ckpt_hdr_get_type(ctx, sizeof(*h) + 4 * ngroups, ...) */
	size_t len = sizeof(struct ckpt_hdr_groupinfo) + 4 * c->ngroups;
	struct ckpt_hdr_groupinfo *g = calloc(1, len);
	g->ngroups = c->ngroups;
	memcpy(g->groups, c->groups, 4 * c->ngroups);
	emit(g, CKPT_HDR_GROUPINFO, len);
	free(g);
}

static void write_cred(struct cred_desc *c)
{
	if (c->written)
		return;
	c->written = 1;
	emit_objref(CKPT_OBJ_CRED, c->ref);
	emit_objref(CKPT_OBJ_GROUPINFO, c->rec.groupinfo_ref);
	write_groupinfo(c);
	if (c->user_ref) {	/* OBJREF{USER} [OBJREF{USER_NS} USER_NS] USER */
		emit_objref(CKPT_OBJ_USER, c->user_ref);
		if (c->userns_ref) {
			struct ckpt_hdr_user_ns ns = { .creator_ref = 0 };
			emit_objref(CKPT_OBJ_USER_NS, c->userns_ref);
			emit(&ns, CKPT_HDR_USER_NS, sizeof(ns));
		}
		struct ckpt_hdr_user_struct u = { .uid = c->rec.uid, .userns_ref = USERNS_REF };
		emit(&u, CKPT_HDR_USER, sizeof(u));
	}
	emit(&c->rec, CKPT_HDR_CRED, sizeof(c->rec));
}

static void print_cred(struct cred_desc *c)
{
	struct ckpt_capabilities *k = &c->rec.cap_s;
	printf("{\"uid\": %u, \"euid\": %u, \"suid\": %u, \"fsuid\": %u, \"gid\": %u, "
	       "\"egid\": %u, \"sgid\": %u, \"fsgid\": %u, \"groups\": [",
	       c->rec.uid, c->rec.euid, c->rec.suid, c->rec.fsuid, c->rec.gid, c->rec.egid,
	       c->rec.sgid, c->rec.fsgid);
	for (uint32_t i = 0; i < c->ngroups; i++)
		printf("%s%u", i ? ", " : "", c->groups[i]);
	printf("], \"cap_inh\": %llu, \"cap_prm\": %llu, \"cap_eff\": %llu, \"cap_bnd\": %llu, "
	       "\"securebits\": %u}",
	       U((uint64_t)k->cap_i_1 << 32 | k->cap_i_0), U((uint64_t)k->cap_p_1 << 32 | k->cap_p_0),
	       U((uint64_t)k->cap_e_1 << 32 | k->cap_e_0), U((uint64_t)k->cap_b_1 << 32 | k->cap_b_0),
	       k->securebits);
}

static void fill_cred(struct cred_desc *c, int32_t ref, uint32_t uid, uint32_t ngroups)
{
	c->ref = ref;
	c->ngroups = ngroups;
	for (uint32_t i = 0; i < ngroups; i++)
		c->groups[i] = 100 + 7 * i;	/* strictly ascending, as set_groups needs */
	c->rec = (struct ckpt_hdr_cred){ .uid = uid, .suid = uid + 1, .euid = uid + 2,
		.fsuid = uid + 3, .gid = uid + 4, .sgid = uid + 5, .egid = uid + 6,
		.fsgid = uid + 7, .groupinfo_ref = ref + 1,
		.cap_s = { v32(), v32(), v32(), v32(), v32(), v32(), v32(), v32(), v32() & 0x3f } };
}

/* ---- signals ---- */

struct group_desc {
	int32_t ref;
	struct ckpt_hdr_signal rec;
	struct ckpt_siginfo shared[2];
	uint32_t nshared;
	uint64_t shared_mask;
};

struct sighand_desc { int32_t ref; struct ckpt_sigaction action[NSIG]; };

struct task_desc {
	struct ckpt_pids pids;
	const char *comm;
	struct ckpt_hdr_task task;
	struct cred_desc *cred, *ecred;
	int32_t fs_ref, fs_new;
	const char *cwd, *root;
	int32_t umask;		/* -1: no FS_EXT */
	struct sighand_desc *sighand;
	int sighand_new;
	struct group_desc *group;
	int group_new;
	struct ckpt_siginfo pending[3];
	uint32_t npending;
	uint64_t pending_mask, blocked;
	int altstack;
	struct crfs_hdr_sigaltstack alt;
	int32_t oom;		/* 0: no OOM_SCORE_ADJ (at a group's first task) */
	int raw;		/* SIGINFO_RAW after the private SIGPENDING */
	uint8_t raws[3][48];
	struct crfs_hdr_rseq rseq;	/* rseq 0: no RSEQ */
	uint32_t seccomp;	/* 0: no SECCOMP */
	int misc;		/* TASK_MISC after SECCOMP */
	struct crfs_hdr_task_misc m;
	struct crfs_hdr_posix_timer timers[2];	/* at a group's first task */
	uint32_t ntimers;
};

static void fill_siginfo(struct ckpt_siginfo *s, uint32_t signo, uint32_t code)
{
	*s = (struct ckpt_siginfo){ .csi_signo = signo, .csi_errno = v32() & 0xff,
		.csi_code = code, .csi_pid = v32(), .csi_uid = (int32_t)v32(),
		.csi_sigval_int = v32(), .csi_sigval_ptr = v64(), .csi_utime = v64(),
		.csi_stime = v64() };
}

static void fill_sighand(struct sighand_desc *s, int32_t ref)
{
	s->ref = ref;
	for (int i = 0; i < NSIG; i++) {
		struct ckpt_sigaction *a = &s->action[i];
		if (i % 5 == 1) {		/* a handler */
			a->_sa_handler = IS64 ? 0x401000 + 16 * i : 0x8049000 + 16 * i;
			a->sa_flags = 0x04000000 | (i & 1 ? 0x10000000 : 0);	/* SA_RESTORER, SA_RESTART */
			a->sa_restorer = IS64 ? 0x7f0000001000ULL : 0xb7001000;
			uint64_t mask = sigbit(i % 31 + 1) | sigbit(64 - i % 16);
			memcpy(a->sa_mask.sigset, &mask, 8);
		} else if (i % 5 == 3) {
			a->_sa_handler = 1;		/* SIG_IGN */
		}
	}
}

static void fill_group(struct group_desc *g, int32_t ref)
{
	g->ref = ref;
	for (int i = 0; i < NLIMITS; i++) {
		g->rec.rlim[i].rlim_cur = i % 3 ? v32() : INFINITY_RLIM;
		g->rec.rlim[i].rlim_max = i % 4 ? INFINITY_RLIM : v32();
	}
	g->rec.it_real_value = v64(); g->rec.it_real_incr = v64();
	g->rec.it_virt_value = v64(); g->rec.it_virt_incr = v64();
	g->rec.it_prof_value = v64(); g->rec.it_prof_incr = v64();
	g->rec.tty_objref = 0;
	g->rec.tty_pgrp = (int32_t)v32();
	g->rec.tty_old_pgrp = -1;	/* CKPT_PID_NULL */
}

static void write_pending(const struct ckpt_siginfo *infos, uint32_t n, uint64_t mask)
{
	size_t len = sizeof(struct ckpt_hdr_sigpending) + n * sizeof(struct ckpt_siginfo);
	struct ckpt_hdr_sigpending *p = calloc(1, len);
	p->nr_pending = n;
	memcpy(p->signal.sigset, &mask, 8);
	memcpy(p->siginfo, infos, n * sizeof(*infos));
	emit(p, CKPT_HDR_SIGPENDING, len);
	free(p);
}

static void write_task(struct task_desc *t)
{
	emit(&t->task, CKPT_HDR_TASK, sizeof(t->task));
	char comm[16] = { 0 };
	strncpy(comm, t->comm, sizeof(comm) - 1);
	emit_raw(CKPT_HDR_STRING, comm, sizeof(comm));
	struct ckpt_hdr_restart_block rb = { .function_type = 1 };	/* skipped by crfs */
	emit(&rb, CKPT_HDR_RESTART_BLOCK, sizeof(rb));

	/* checkpoint_task_objs: creds, (ns), files, mm, fs, sighand, then TASK_OBJS */
	write_cred(t->cred);
	write_cred(t->ecred);
	struct ckpt_hdr_task_creds tc = { .cred_ref = t->cred->ref, .ecred_ref = t->ecred->ref };
	emit(&tc, CKPT_HDR_TASK_CREDS, sizeof(tc));
	if (t->fs_new) {
		struct ckpt_hdr_fs fs;
		emit_objref(CKPT_OBJ_FS, t->fs_ref);
		emit(&fs, CKPT_HDR_FS, sizeof(fs));
		emit_raw(CKPT_HDR_FILE_NAME, t->cwd, strlen(t->cwd) + 1);	/* pwd first */
		emit_raw(CKPT_HDR_FILE_NAME, t->root, strlen(t->root) + 1);
		if (t->umask >= 0) {
			struct crfs_hdr_fs_ext ext = { .umask = (uint32_t)t->umask };
			emit(&ext, CRFS_HDR_FS_EXT, sizeof(ext));
		}
	}
	if (t->sighand_new) {
		size_t len = sizeof(struct ckpt_hdr_sighand) + sizeof(t->sighand->action);
		struct ckpt_hdr_sighand *s = calloc(1, len);
		memcpy(s->action, t->sighand->action, sizeof(t->sighand->action));
		emit_objref(CKPT_OBJ_SIGHAND, t->sighand->ref);
		emit(s, CKPT_HDR_SIGHAND, len);
		free(s);
	}
	struct ckpt_hdr_task_objs objs = { .files_objref = 0, .mm_objref = 0,
		.fs_objref = t->fs_ref, .sighand_objref = t->sighand->ref,
		.signal_objref = t->group->ref };
	emit(&objs, CKPT_HDR_TASK_OBJS, sizeof(objs));
	if (t->group_new) {	/* SIGNAL has no OBJREF */
		emit(&t->group->rec, CKPT_HDR_SIGNAL, sizeof(t->group->rec));
		write_pending(t->group->shared, t->group->nshared, t->group->shared_mask);
	}
	write_pending(t->pending, t->npending, t->pending_mask);
	if (t->raw) {
		size_t len = sizeof(struct crfs_hdr_siginfo_raw) + t->npending * 48;
		struct crfs_hdr_siginfo_raw *r = calloc(1, len);
		r->nr_pending = t->npending;
		for (uint32_t i = 0; i < t->npending; i++) {
			memcpy(t->raws[i], &t->pending[i].csi_signo, 4);
			memcpy(t->raws[i] + 4, &t->pending[i].csi_errno, 4);
			memcpy(t->raws[i] + 8, &t->pending[i].csi_code, 4);
			for (int j = 12; j < 48; j++)
				t->raws[i][j] = (uint8_t)(i * 37 + j);
			memcpy((char *)(r + 1) + i * 48, t->raws[i], 48);
		}
		emit(r, CRFS_HDR_SIGINFO_RAW, len);
		free(r);
	}
	struct ckpt_hdr_signal_task st;
	memcpy(st.blocked.sigset, &t->blocked, 8);
	emit(&st, CKPT_HDR_SIGNAL_TASK, sizeof(st));
	if (t->altstack)
		emit(&t->alt, CRFS_HDR_SIGALTSTACK, sizeof(t->alt));
	if (t->group_new && t->oom) {
		struct crfs_hdr_oom_score_adj oom = { .oom_score_adj = t->oom };
		emit(&oom, CRFS_HDR_OOM_SCORE_ADJ, sizeof(oom));
	}
	if (t->rseq.rseq)
		emit(&t->rseq, CRFS_HDR_RSEQ, sizeof(t->rseq));
	if (t->seccomp) {
		struct crfs_hdr_seccomp sc = { .mode = t->seccomp };
		emit(&sc, CRFS_HDR_SECCOMP, sizeof(sc));
	}
	if (t->misc)
		emit(&t->m, CRFS_HDR_TASK_MISC, sizeof(t->m));
	for (uint32_t i = 0; i < t->ntimers; i++)
		emit(&t->timers[i], CRFS_HDR_POSIX_TIMER, sizeof(t->timers[i]));
}

/* ---- JSON ---- */

static void print_infos(const struct ckpt_siginfo *s, uint32_t n)
{
	printf("[");
	for (uint32_t i = 0; i < n; i++)
		printf("%s{\"signo\": %u, \"errno\": %u, \"code\": %u, \"pid\": %u, \"uid\": %d, "
		       "\"sigval_int\": %u, \"sigval_ptr\": %llu, \"utime\": %llu, \"stime\": %llu}",
		       i ? ", " : "", s[i].csi_signo, s[i].csi_errno, s[i].csi_code, s[i].csi_pid,
		       s[i].csi_uid, s[i].csi_sigval_int, U(s[i].csi_sigval_ptr), U(s[i].csi_utime),
		       U(s[i].csi_stime));
	printf("]");
}

static void print_rlim(uint64_t v)
{
	if (v == INFINITY_RLIM)
		printf("\"unlimited\"");
	else
		printf("%llu", U(v));
}

static void print_task(struct task_desc *t)
{
	struct ckpt_hdr_signal *g = &t->group->rec;
	printf("{\"pid\": %d, \"tgid\": %d, \"comm\": \"%s\", \"creds\": ", t->pids.vpid,
	       t->pids.vtgid, t->comm);
	print_cred(t->cred);
	printf(", \"ecreds\": ");
	if (t->ecred != t->cred)
		print_cred(t->ecred);
	else
		printf("null");
	printf(", \"cwd\": \"%s\", \"root\": \"%s\", \"umask\": ", t->cwd, t->root);
	if (t->umask >= 0)
		printf("%d", t->umask);
	else
		printf("null");
	printf(", \"actions\": [");
	for (int i = 0; i < NSIG; i++) {
		struct ckpt_sigaction *a = &t->sighand->action[i];
		uint64_t mask;
		memcpy(&mask, a->sa_mask.sigset, 8);
		printf("%s[%llu, %llu, %llu, %llu]", i ? ", " : "", U(a->_sa_handler),
		       U(a->sa_flags), U(a->sa_restorer), U(mask));
	}
	printf("], \"rlimits\": [");
	for (int i = 0; i < NLIMITS; i++) {
		printf("%s[", i ? ", " : "");
		print_rlim(g->rlim[i].rlim_cur);
		printf(", ");
		print_rlim(g->rlim[i].rlim_max);
		printf("]");
	}
	printf("], \"itimers\": [%llu, %llu, %llu, %llu, %llu, %llu], "
	       "\"tty\": [%d, %d, %d], \"shared_mask\": %llu, \"shared\": ",
	       U(g->it_real_value), U(g->it_real_incr), U(g->it_virt_value), U(g->it_virt_incr),
	       U(g->it_prof_value), U(g->it_prof_incr), g->tty_objref, g->tty_pgrp,
	       g->tty_old_pgrp, U(t->group->shared_mask));
	print_infos(t->group->shared, t->group->nshared);
	printf(", \"pending_mask\": %llu, \"pending\": ", U(t->pending_mask));
	print_infos(t->pending, t->npending);
	printf(", \"blocked\": %llu, \"altstack\": ", U(t->blocked));
	if (t->altstack)
		printf("[%llu, %llu, %u]", U(t->alt.ss_sp), U(t->alt.ss_size), t->alt.ss_flags);
	else
		printf("null");
	printf(", \"pending_raw\": ");
	if (t->raw) {
		printf("[");
		for (uint32_t i = 0; i < t->npending; i++) {
			printf("%s\"", i ? ", " : "");
			for (int j = 0; j < 48; j++)
				printf("%02x", t->raws[i][j]);
			printf("\"");
		}
		printf("]");
	} else {
		printf("null");
	}
	printf(", \"oom_score_adj\": ");
	if (t->group_new && t->oom)
		printf("%d", t->oom);
	else
		printf("null");
	printf(", \"rseq\": ");
	if (t->rseq.rseq)
		printf("[%llu, %u, %u]", U(t->rseq.rseq), t->rseq.rseq_len, t->rseq.rseq_sig);
	else
		printf("null");
	printf(", \"seccomp\": %u", t->seccomp);
	printf(", \"misc\": ");
	if (t->misc)
		printf("[%u, %u, %u, %d, %s, %s]", t->m.personality, t->m.policy,
		       t->m.rt_priority, t->m.nice, t->m.flags & 1 ? "true" : "false",
		       t->m.flags & 2 ? "true" : "false");
	else
		printf("null");
	printf(", \"posix_timers\": [");
	for (uint32_t i = 0; i < t->ntimers; i++) {
		const struct crfs_hdr_posix_timer *p = &t->timers[i];

		printf("%s{\"id\": %d, \"clockid\": %d, \"signo\": %d, \"notify\": %d, "
		       "\"notify_tid\": %d, \"pending\": %s, \"sigev_value\": %llu, "
		       "\"value_ns\": %llu, \"interval_ns\": %llu, \"overrun\": %lld}",
		       i ? ", " : "", p->it_id, p->clockid, p->signo, p->notify, p->notify_tid,
		       p->flags & 1 ? "true" : "false", U(p->sigev_value), U(p->value_ns),
		       U(p->interval_ns), (long long)p->overrun);
	}
	printf("]");
	printf(", \"objrefs\": [%d, %d, %d]}", t->fs_ref, t->sighand->ref, t->group->ref);
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

	/* objrefs in the kernel's first-use order: cred, groupinfo, user, user_ns, fs, sighand,
	 * signal (no OBJREF) for process 500; cred (groupinfo, user), ecred (groupinfo, user),
	 * fs, sighand, signal for process 600. */
	static struct cred_desc c500, c600, e600;
	static struct sighand_desc h500, h600;
	static struct group_desc g500, g600;
	fill_cred(&c500, 1, 1000, 3);
	c500.user_ref = 3;
	c500.userns_ref = 4;
	c500.rec.user_ref = 3;
	fill_sighand(&h500, 6);
	fill_group(&g500, 7);
	fill_cred(&c600, 8, 2000, 0);
	c600.user_ref = 10;
	c600.rec.user_ref = 10;
	fill_cred(&e600, 11, 0, 1);	/* effective differs from real: as in override_creds() */
	e600.user_ref = 13;
	e600.rec.user_ref = 13;
	fill_sighand(&h600, 15);
	h600.action[9]._sa_handler = 0x12345678;	/* SIGUSR1 differs */
	fill_group(&g600, 16);

	fill_siginfo(&g500.shared[0], 10, 0);		/* SI_USER */
	fill_siginfo(&g500.shared[1], 34, (uint32_t)-1);	/* SI_QUEUE */
	g500.nshared = 2;
	g500.shared_mask = sigbit(10) | sigbit(34);

	struct ckpt_hdr_header header = { .magic = CHECKPOINT_MAGIC_HEAD,
		.arch_id = IS64 ? 2 : 1, .major = 2, .minor = 6, .patch = 34, .rev = 6,
		.constants = { 16, 38, 64, 65, 65, 65, 65, 65, 65, 16, 4096, 8 },
		.time = 1276732800, .uflags = CRFS_UFLAG_EXT };
	struct ckpt_hdr_header_arch arch = { .has_fxsr = 1, .xstate_size = 512 };

	static struct task_desc t[3];
	t[0] = (struct task_desc){ .pids = { 500, 1, 500, 500, 500, 0 }, .comm = "state-main",
		.cred = &c500, .ecred = &c500, .fs_ref = 5, .fs_new = 1, .cwd = "/home/golden",
		.root = "/", .umask = 027, .sighand = &h500, .sighand_new = 1, .group = &g500,
		.group_new = 1, .npending = 1, .pending_mask = sigbit(12), .blocked = sigbit(12) | sigbit(34),
		.altstack = 1 };
	fill_siginfo(&t[0].pending[0], 12, 0xfffffffa);	/* SI_TKILL */
	t[0].alt = (struct crfs_hdr_sigaltstack){ .ss_sp = IS64 ? 0x7ffff7ff0000ULL : 0xb7ff0000,
		.ss_size = 16384, .ss_flags = 0 };
	t[1] = (struct task_desc){ .pids = { 501, 1, 500, 500, 500, 0 }, .comm = "state-thr",
		.cred = &c500, .ecred = &c500, .fs_ref = 5, .cwd = "/home/golden", .root = "/",
		.umask = 027, .sighand = &h500, .group = &g500, .blocked = sigbit(2) };
	t[2] = (struct task_desc){ .pids = { 600, 500, 600, 500, 500, 0 }, .comm = "state-child",
		.cred = &c600, .ecred = &e600, .fs_ref = 14, .fs_new = 1,
		.cwd = "/srv/a dir/with spaces", .root = "/srv", .umask = -1, .sighand = &h600,
		.sighand_new = 1, .group = &g600, .group_new = 1, .npending = 3,
		.pending_mask = sigbit(17) | sigbit(11) | sigbit(35) };
	fill_siginfo(&t[2].pending[0], 17, 1);		/* CLD_EXITED */
	fill_siginfo(&t[2].pending[1], 11, 2);		/* SEGV_ACCERR */
	fill_siginfo(&t[2].pending[2], 35, (uint32_t)-1);
	t[0].oom = 400;		/* a thread group's */
	t[2].oom = -17;
	t[2].raw = 1;
	t[0].ntimers = 2;	/* a CLOCK_MONOTONIC timer id 3, a thread's CLOCK_REALTIME id 10 */
	t[0].timers[0] = (struct crfs_hdr_posix_timer){ .it_id = 3, .clockid = 1, .signo = 10,
		.sigev_value = IS64 ? 0x55555555a010ULL : 0x5655a010, .value_ns = 1500000000ULL,
		.interval_ns = 250000000ULL, .overrun = 2 };
	t[0].timers[1] = (struct crfs_hdr_posix_timer){ .it_id = 10, .clockid = 0, .signo = 32,
		.notify = 4, .notify_tid = 501, .flags = 1, .sigev_value = 7, .value_ns = 1 };
	t[1].rseq = (struct crfs_hdr_rseq){ .rseq = IS64 ? 0x7ffff7d8a9e0ULL : 0xb7d8a9e0,
		.rseq_len = 32, .rseq_sig = 0x53053053 };
	t[1].seccomp = 1;	/* SECCOMP_MODE_STRICT */
	/* ADDR_NO_RANDOMIZE|READ_IMPLIES_EXEC, THP disabled, subreaper, nice 7 SCHED_BATCH */
	t[0].misc = 1;
	t[0].m = (struct crfs_hdr_task_misc){ .personality = 0x0440000, .flags = 3,
		.policy = 3, .nice = 7 };
	t[1].misc = 1;		/* a thread of it: SCHED_FIFO 12 */
	t[1].m = (struct crfs_hdr_task_misc){ .personality = 0x0440000, .flags = 3,
		.policy = 1, .rt_priority = 12, .nice = -3 };
	for (int i = 0; i < 3; i++)
		t[i].task = (struct ckpt_hdr_task){ .state = 1, .exit_signal = i == 1 ? 0xffffffff : 17 };

	emit_head(&header, &arch, "2.6.34-crfs-state", "#21 SMP");
	struct ckpt_pids pids[3] = { t[0].pids, t[1].pids, t[2].pids };
	emit_tree(pids, 3);
	for (int i = 0; i < 3; i++)
		write_task(&t[i]);
	emit_tail();
	if (fclose(img)) {
		perror("close");
		return 1;
	}

	printf("{\"arch\": \"%s\", \"tasks\": [", IS64 ? "x86_64" : "i386");
	for (int i = 0; i < 3; i++) {
		printf("%s", i ? ", " : "");
		print_task(&t[i]);
	}
	printf("]}\n");
	return 0;
}
