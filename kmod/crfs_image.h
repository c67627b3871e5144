/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * The linux-cr ckpt_hdr records (v19-rc3..v21 numbering) that the crfs
 * module reads, as they lie in an x86_64 image: little-endian, not padded between records.
 *
 * One declaration per record. The layouts mirror crfs/formats/ckpt.py (construct);
 * tests/test_kmod_layout.py compiles this header and checks every size and offset against
 * it. Only x86_64 images are restarted, so the vaddr arrays after PGARR are __u64.
 * Usable from the kernel and from user space (only <linux/types.h> is needed).
 */
#ifndef CRFS_IMAGE_H
#define CRFS_IMAGE_H

#include <linux/types.h>

/* struct ckpt_hdr->type */
enum {
	CKPT_HDR_HEADER = 1,
	CKPT_HDR_HEADER_ARCH = 2,
	CKPT_HDR_CONTAINER = 3,
	CKPT_HDR_BUFFER = 4,
	CKPT_HDR_STRING = 5,
	CKPT_HDR_OBJREF = 6,
	CKPT_HDR_LSM_INFO = 7,
	CKPT_HDR_SECURITY = 8,
	CKPT_HDR_TREE = 101,
	CKPT_HDR_TASK = 102,
	CKPT_HDR_TASK_NS = 103,
	CKPT_HDR_TASK_OBJS = 104,
	CKPT_HDR_RESTART_BLOCK = 105,
	CKPT_HDR_THREAD = 106,
	CKPT_HDR_CPU = 107,
	CKPT_HDR_USER_NS = 113,		/* user namespaces: skipped */
	CKPT_HDR_CRED = 114,
	CKPT_HDR_USER = 115,		/* user_struct: skipped */
	CKPT_HDR_GROUPINFO = 116,
	CKPT_HDR_TASK_CREDS = 117,
	CKPT_HDR_CPU_FPU = 201,
	CKPT_HDR_MM_CONTEXT_LDT = 202,
	CKPT_HDR_FILE_TABLE = 301,
	CKPT_HDR_FILE_DESC = 302,
	CKPT_HDR_FILE_NAME = 303,
	CKPT_HDR_FILE = 304,
	CKPT_HDR_PIPE_BUF = 305,
	CKPT_HDR_EPOLL_ITEMS = 308,
	CKPT_HDR_MM = 401,
	CKPT_HDR_VMA = 402,
	CKPT_HDR_PGARR = 403,
	CKPT_HDR_MM_CONTEXT = 404,
	CKPT_HDR_FS = 451,
	CKPT_HDR_SIGHAND = 601,
	CKPT_HDR_SIGNAL = 602,
	CKPT_HDR_SIGNAL_TASK = 603,
	CKPT_HDR_SIGPENDING = 604,
	CRFS_HDR_SIGALTSTACK = 8001,	/* crfs extensions */
	CRFS_HDR_FS_EXT = 8002,
	CRFS_HDR_FILE_OWNER = 8009,	/* the last record of a FILE object */
	CRFS_HDR_FILE_ID = 8010,	/* after a FILE's FILE_NAME */
	CRFS_HDR_OOM_SCORE_ADJ = 8020,	/* per process, after its SIGNAL_TASK */
	CRFS_HDR_RSEQ = 8021,		/* per live task, after its SIGNAL_TASK */
	CRFS_HDR_SIGINFO_RAW = 8022,	/* right after a SIGPENDING */
	CRFS_HDR_DELETED_STAT = 8023,	/* after a DELETED file's BUFFER */
	CRFS_HDR_SECCOMP = 8041,	/* per live task, after its RSEQ */
	CRFS_HDR_POSIX_TIMER = 8024,	/* per process, one a timer (crfs_timers.c) */
	CRFS_HDR_TASK_MISC = 8050,	/* per live task, after its SECCOMP */
	CKPT_HDR_TAIL = 9001,
	CKPT_HDR_ERROR = 9999,
};

/* ckpt_hdr_header->arch_id */
enum {
	CKPT_ARCH_X86_32 = 1,
	CKPT_ARCH_X86_64 = 2,
};

/* ckpt_hdr_objref->objtype (the ones crfs interprets) */
enum {
	CKPT_OBJ_INODE = 1,	/* a pipe's inode: no OBJREF record, only pipe_objref */
	CKPT_OBJ_FILE_TABLE = 2,
	CKPT_OBJ_FILE = 3,
	CKPT_OBJ_MM = 4,
	CKPT_OBJ_FS = 5,
	CKPT_OBJ_SIGHAND = 6,
	CKPT_OBJ_SIGNAL = 7,	/* no OBJREF record: TASK_OBJS's ref, then SIGNAL */
	CKPT_OBJ_USER_NS = 12,	/* read past */
	CKPT_OBJ_CRED = 13,
	CKPT_OBJ_USER = 14,	/* read past */
	CKPT_OBJ_GROUPINFO = 15,
};

/* ckpt_hdr_file->f_type */
enum {
	CKPT_FILE_IGNORE = 0,
	CKPT_FILE_GENERIC = 1,
	CKPT_FILE_PIPE = 2,
	CKPT_FILE_FIFO = 3,
	CKPT_FILE_SOCKET = 4,
	CKPT_FILE_TTY = 5,
	CKPT_FILE_EPOLL = 6,
	CKPT_FILE_EVENTFD = 7,
	CKPT_FILE_MAX = 8,
	CRFS_FILE_EXT_FIRST = 100,	/* crfs extension file types: 100 and up */
	CRFS_FILE_TIMERFD = 100,	/* handed in by the restarter (crfs_anonfd.c) */
	CRFS_FILE_SIGNALFD = 101,
	CRFS_FILE_OPAQUE = 110,		/* recorded, not restorable; then STRING */
	CRFS_FILE_DELETED = 111,	/* a regular file deleted while open */
	CRFS_FILE_UNIX = 112,		/* a UNIX socket (crfs_socket.c) */
};

/* crfs_hdr_file_opaque->kind */
enum {
	CRFS_OPAQUE_OTHER = 0,
	CRFS_OPAQUE_SOCKET = 1,
	CRFS_OPAQUE_ANON = 2,		/* anon_inode:[...] other than eventfd */
	CRFS_OPAQUE_DELETED = 3,	/* a file unlinked while open */
};

/* ckpt_hdr_vma->vma_type */
enum {
	CKPT_VMA_IGNORE = 0,
	CKPT_VMA_VDSO = 1,
	CKPT_VMA_ANON = 2,		/* private anonymous */
	CKPT_VMA_FILE = 3,		/* private mapped file */
	CKPT_VMA_SHM_ANON = 4,		/* shared anonymous, contents follow */
	CKPT_VMA_SHM_ANON_SKIP = 5,	/* shared anonymous, contents dumped earlier */
	CKPT_VMA_SHM_FILE = 6,		/* shared mapped file, no contents */
	CKPT_VMA_SHM_IPC = 7,		/* SysV shm */
	CKPT_VMA_SHM_IPC_SKIP = 8,
	CKPT_VMA_MAX = CKPT_VMA_SHM_IPC_SKIP,
};

/* ckpt_hdr_cpu segment codes */
#define CKPT_X86_SEG_NULL	0
#define CKPT_X86_SEG_USER32_CS	1
#define CKPT_X86_SEG_USER32_DS	2
#define CKPT_X86_SEG_USER64_CS	3
#define CKPT_X86_SEG_USER64_DS	4
#define CKPT_X86_SEG_TLS	0x4000
#define CKPT_X86_SEG_LDT	0x8000

#define CHECKPOINT_MAGIC_HEAD	0x00feed0cc0a2d200ULL
#define CHECKPOINT_MAGIC_TAIL	0x002d2a0cc0deef00ULL
/* ckpt_hdr_header->rev: 6 in linux-cr v21, 5 in v19-rc3/v20, 1 in crfs's older images */
#define CHECKPOINT_VERSION	6
#define CHECKPOINT_VERSION_V20	5
#define CHECKPOINT_VERSION_CRFS1	1
/* ckpt_hdr_header->uflags: the image has crfs extension records (8001...) */
#define CRFS_UFLAG_EXT		0x8000
/* ... and its private memory was read from copy-on-write clones (CRFS_IOC_SNAPSHOT) */
#define CRFS_UFLAG_SNAPSHOT	0x10000

#define CKPT_TLS_ENTRIES	3	/* GDT_ENTRY_TLS_ENTRIES */
#define CKPT_LDT_ENTRY_SIZE	8
#define CKPT_PAGE_SIZE		4096
#define CKPT_PGARR_BATCH	8192	/* x86_64: 16 * (PAGE_SIZE / sizeof(void *)) */

/* Every record starts with this; len counts the whole record, header included. */
struct ckpt_hdr {
	__u32 type;
	__u32 len;
};

struct ckpt_const {
	__u16 task_comm_len;
	__u16 at_vector_size;
	__u16 signal_nsig;
	__u16 uts_sysname_len;
	__u16 uts_nodename_len;
	__u16 uts_release_len;
	__u16 uts_version_len;
	__u16 uts_machine_len;
	__u16 uts_domainname_len;
	__u16 rlimit_nlimits;
	__u16 n_tty_buf_size;
	__u16 tty_termios_ncc;
};

/* CKPT_HDR_HEADER, then BUFFER{release} BUFFER{version} BUFFER{machine} HEADER_ARCH */
struct ckpt_hdr_header {
	struct ckpt_hdr h;
	__u64 magic;
	__u16 arch_id;
	__u16 major;
	__u16 minor;
	__u16 patch;
	__u16 rev;
	__u8 __padding[6];
	struct ckpt_const constants;
	__u64 time;
	__u64 uflags;
};

struct ckpt_hdr_header_arch {
	struct ckpt_hdr h;
	__u16 has_fxsr;
	__u16 has_xsave;
	__u16 xstate_size;
	__u8 __padding[2];
};

struct ckpt_hdr_container {
	struct ckpt_hdr h;
};

struct ckpt_hdr_lsm {
	struct ckpt_hdr h;
	__s32 ptrref;
	__u8 sectype;
	__u8 __padding[3];
};

struct ckpt_hdr_objref {
	struct ckpt_hdr h;
	__u32 objtype;
	__s32 objref;
};

/* CKPT_HDR_TREE, then BUFFER{struct ckpt_pids[nr_tasks]} [BUFFER{__s32 vpids[]}] */
struct ckpt_hdr_tree {
	struct ckpt_hdr h;
	__s32 nr_tasks;
	__u8 __padding[4];
};

struct ckpt_pids {
	__s32 vpid;
	__s32 vppid;
	__s32 vtgid;
	__s32 vpgid;
	__s32 vsid;
	__s32 depth;
};

/* CKPT_HDR_TASK, then STRING{comm} */
struct ckpt_hdr_task {
	struct ckpt_hdr h;
	__u32 state;
	__u32 exit_state;
	__u32 exit_code;
	__u32 exit_signal;
	__u32 pdeath_signal;
	__u32 compat_robust_futex_head_len;
	__u32 compat_robust_futex_list;
	__u32 robust_futex_head_len;
	__u64 robust_futex_list;
	__u64 set_child_tid;
	__u64 clear_child_tid;
};

struct ckpt_hdr_task_objs {
	struct ckpt_hdr h;
	__s32 files_objref;
	__s32 mm_objref;
	__s32 fs_objref;
	__s32 sighand_objref;
	__s32 signal_objref;
	__u8 __padding[4];
};

struct ckpt_hdr_thread {
	struct ckpt_hdr h;
	__u32 thread_info_flags;
	__u16 gdt_entry_tls_entries;
	__u16 sizeof_tls_array;
	__u64 tls_array[CKPT_TLS_ENTRIES];	/* struct desc_struct */
};

/* CKPT_HDR_CPU: pt_regs in x86_64 order, selectors as CKPT_X86_SEG_* codes */
struct ckpt_hdr_cpu {
	struct ckpt_hdr h;
	__u64 r15;
	__u64 r14;
	__u64 r13;
	__u64 r12;
	__u64 bp;
	__u64 bx;
	__u64 r11;
	__u64 r10;
	__u64 r9;
	__u64 r8;
	__u64 ax;
	__u64 cx;
	__u64 dx;
	__u64 si;
	__u64 di;
	__u64 orig_ax;
	__u64 ip;
	__u64 sp;
	__u64 flags;
	__u64 fs;	/* fs base */
	__u64 gs;	/* gs base */
	__u16 fsindex;
	__u16 gsindex;
	__u16 cs;
	__u16 ss;
	__u16 ds;
	__u16 es;
	__u32 used_math;	/* then CPU_FPU{xstate_size bytes} */
};

/* CKPT_HDR_FILE (may be longer for special files), then FILE_NAME if generic */
struct ckpt_hdr_file {
	struct ckpt_hdr h;
	__u32 f_type;
	__u32 f_mode;
	__u32 f_flags;
	__s32 f_credref;
	__u64 f_pos;
	__u64 f_version;
	__s32 f_secref;
	__u8 __padding[4];
};

/* CKPT_HDR_FILE of a PIPE or a FIFO (FIFO: then FILE_NAME); both ends share pipe_objref */
struct ckpt_hdr_file_pipe {
	struct ckpt_hdr_file common;
	__s32 pipe_objref;	/* a CKPT_OBJ_INODE; its first end is followed by PIPE_BUF */
	__u16 pipe_flags;	/* crfs, in v21's padding: CRFS_PIPE_* */
	__u8 pipe_size_log2;	/* crfs: the capacity is 1 << it bytes; 0: not known */
	__u8 __padding;
};

/* pipe_flags of a PIPE (not a FIFO): no process at all had this end open */
#define CRFS_PIPE_NO_READER	0x1
#define CRFS_PIPE_NO_WRITER	0x2
#define CRFS_PIPE_FLAGS		(CRFS_PIPE_NO_READER | CRFS_PIPE_NO_WRITER)

/* crfs extension: CKPT_HDR_FILE of a file crfs cannot reopen, then STRING{its /proc link} */
struct crfs_hdr_file_opaque {
	struct ckpt_hdr_file common;
	__u32 kind;
	__u32 st_mode;
};

/* CKPT_HDR_FILE of an EVENTFD (an EPOLL's is the common 48 bytes) */
struct ckpt_hdr_file_eventfd {
	struct ckpt_hdr_file common;
	__u64 count;
	__u32 flags;		/* EFD_SEMAPHORE, EFD_NONBLOCK, EFD_CLOEXEC */
	__u8 __padding[4];
};

/* crfs extension: a timerfd, its remaining time and interval in ns, unread expirations */
struct crfs_hdr_file_timerfd {
	struct ckpt_hdr_file common;
	__s32 clockid;
	__u32 tfd_flags;	/* timerfd_settime(2) flags */
	__u64 value_ns;
	__u64 interval_ns;
	__u64 ticks;
};

/* crfs extension: a signalfd, its mask (bit n-1: signal n) */
/*
 * CRFS_FILE_UNIX: a UNIX socket. sock_objref names the socket, peer_objref its peer's (0:
 * none); a socketpair is two FILEs naming each other. state as sock_diag gives it (1
 * connected, 7 unconnected, 10 listening), shutdown sk_shutdown's bits, addr the bound
 * address (addr_len bytes). Iff nr_msgs: BUFFER{__u32 len[nr_msgs], data_len bytes},
 * the messages queued for this socket. flags CRFS_UNIX_ICON: a connection its listener
 * has not accepted yet, peer_objref the listener's sock_objref. mode, uid, gid: the socket
 * file of a path-bound socket (mode 0: not recorded).
 */
#define CRFS_UNIX_ICON		0x1
#define CRFS_UNIX_ADDR_MAX	108
#define CRFS_UNIX_MAX_MSGS	4096
#define CRFS_UNIX_MAX_DATA	(4 << 20)
struct crfs_hdr_file_unix {
	struct ckpt_hdr_file common;
	__s32 sock_objref;
	__s32 peer_objref;
	__u64 ino;
	__u16 family;
	__u16 sock_type;
	__u32 state;
	__u32 shutdown;
	__u32 backlog;
	__u32 nr_msgs;
	__u32 data_len;
	__u32 addr_len;
	__u32 flags;		/* CRFS_UNIX_ICON */
	char addr[CRFS_UNIX_ADDR_MAX];
	__u32 mode;		/* a path-bound socket's file: st_mode, 0 unknown */
	__u32 uid;		/* ... its owner, in the checkpointer's user namespace */
	__u32 gid;
};

struct crfs_hdr_file_signalfd {
	struct ckpt_hdr_file common;
	__u64 sigmask;
	__u32 sfd_flags;	/* SFD_NONBLOCK, SFD_CLOEXEC */
	__u8 __padding[4];
};

/*
 * CKPT_HDR_EPOLL_ITEMS: after the last FILE_DESC of a file table, one per EPOLL file first
 * written in it; iff num_items, BUFFER{struct ckpt_eventpoll_item[num_items]} follows.
 */
struct ckpt_hdr_eventpoll_items {
	struct ckpt_hdr h;
	__s32 epfile_objref;
	__u32 num_items;
};

struct ckpt_eventpoll_item {
	__u64 data;
	__u32 fd;
	__s32 file_objref;
	__u32 events;
	__u8 __padding[4];
};

/*
 * crfs extension: CKPT_HDR_FILE of a file unlinked while open (or a memfd), then
 * STRING{its /proc link} BUFFER{its size bytes: the content; a symlink's target}
 * [CRFS_HDR_DELETED_STAT]
 */
struct crfs_hdr_file_deleted {
	struct ckpt_hdr_file common;
	__u64 size;
	__u32 st_mode;
	__u8 __padding[4];
};

/*
 * crfs extension, the last record of a FILE object: its owner for SIGIO (F_SETOWN_EX, a
 * vpid as the checkpointer saw it, 0: none) and its F_SETSIG signal (0: SIGIO)
 */
struct crfs_hdr_file_owner {
	struct ckpt_hdr h;
	__s32 pid;
	__u32 pid_type;		/* F_OWNER_TID, F_OWNER_PID, F_OWNER_PGRP */
	__u32 signum;
	__u8 __padding[4];
};

/* crfs extension: the owner and times of a deleted file's inode */
struct crfs_hdr_deleted_stat {
	struct ckpt_hdr h;
	__u32 uid;		/* as the checkpointer's user namespace sees them */
	__u32 gid;
	__s64 atime_ns;		/* since the epoch, as stat(2) gives them */
	__s64 mtime_ns;
};

/* CKPT_HDR_FILE_TABLE, then fdt_nfds x { [OBJECT of a FILE] FILE_DESC } */
struct ckpt_hdr_file_table {
	struct ckpt_hdr h;
	__s32 fdt_nfds;
	__u8 __padding[4];
};

struct ckpt_hdr_file_desc {
	struct ckpt_hdr h;
	__s32 fd_objref;
	__s32 fd_descriptor;
	__u32 fd_close_on_exec;
	__u8 __padding[4];
};

/*
 * CKPT_HDR_MM, then BUFFER{__u64 auxv[at_vector_size]}, map_count x { [OBJECT] VMA
 * [CONTENTS] }, MM_CONTEXT, MM_CONTEXT_LDT
 */
struct ckpt_hdr_mm {
	struct ckpt_hdr h;
	__u32 map_count;
	__s32 exe_objref;
	__u64 def_flags;
	__u64 flags;
	__u64 start_code;
	__u64 end_code;
	__u64 start_data;
	__u64 end_data;
	__u64 start_brk;
	__u64 brk;
	__u64 start_stack;
	__u64 arg_start;
	__u64 arg_end;
	__u64 env_start;
	__u64 env_end;
};

struct ckpt_hdr_vma {
	struct ckpt_hdr h;
	__u32 vma_type;
	__s32 vma_objref;
	__s32 ino_objref;
	__u8 __padding[4];
	__u64 ino_size;
	__u64 vm_start;
	__u64 vm_end;
	__u64 vm_page_prot;
	__u64 vm_flags;
	__u64 vm_pgoff;
};

/*
 * CONTENTS ::= { PGARR{n > 0} BUFFER{__u64 vaddr[n]; n pages} }* PGARR{0}
 * (for SHM_ANON the "vaddrs" are page indices into the shmem inode)
 */
struct ckpt_hdr_pgarr {
	struct ckpt_hdr h;
	__u64 nr_pages;
};

struct ckpt_hdr_mm_context {
	struct ckpt_hdr h;
	__u64 vdso;
	__u32 ldt_entry_size;
	__u32 nldt;
};

/*
 * Credentials, fs_struct and signals (v21 records, crfs extensions 8001/8002). The
 * module restores them all (crfs_restore.c, crfs_signal.c, crfs_fs.c) but USER and
 * USER_NS, which it reads past. Declared here so that their layout is checked against
 * crfs/formats/ckpt.py like every other record's.
 */
struct ckpt_capabilities {
	__u32 cap_i_0;		/* kernel_cap_t.cap[0], cap[1] */
	__u32 cap_i_1;
	__u32 cap_p_0;
	__u32 cap_p_1;
	__u32 cap_e_0;
	__u32 cap_e_1;
	__u32 cap_b_0;
	__u32 cap_b_1;
	__u32 securebits;
	__u8 __padding[4];
};

struct ckpt_hdr_cred {
	struct ckpt_hdr h;
	__u32 uid;
	__u32 suid;
	__u32 euid;
	__u32 fsuid;
	__u32 gid;
	__u32 sgid;
	__u32 egid;
	__u32 fsgid;
	__s32 user_ref;
	__s32 groupinfo_ref;
	__s32 sec_ref;
	__u8 __padding[4];
	struct ckpt_capabilities cap_s;
};

struct ckpt_hdr_task_creds {
	struct ckpt_hdr h;
	__s32 cred_ref;
	__s32 ecred_ref;
};

/*
 * GROUPINFO: ngroups gids from offset 12, then 4 zero bytes; len is exactly
 * CKPT_GROUPINFO_SIZE + 4 * ngroups (the kernel's sizeof, 16, counts the gids' offset
 * rounded up), ngroups at most NGROUPS_MAX.
 */
struct ckpt_hdr_groupinfo {
	struct ckpt_hdr h;
	__u32 ngroups;
};

#define CKPT_GROUPINFO_SIZE	16

struct ckpt_hdr_user_struct {
	struct ckpt_hdr h;
	__u32 uid;
	__s32 userns_ref;
};

struct ckpt_hdr_user_ns {
	struct ckpt_hdr h;
	__s32 creator_ref;
	__u8 __padding[4];
};

/* CKPT_HDR_FS, then FILE_NAME{pwd} FILE_NAME{root} [CRFS_HDR_FS_EXT] */
struct ckpt_hdr_fs {
	struct ckpt_hdr h;
};

struct crfs_hdr_fs_ext {
	struct ckpt_hdr h;
	__u32 umask;
	__u8 __padding[4];
};

/* HEADER.uflags of an image with crfs extension records */
#define CRFS_UFLAG_EXT		0x8000

/*
 * crfs extension: the identity of a generic file when it was checkpointed, after the
 * FILE_NAME of its FILE object. RESTART refuses a file that is no longer this one.
 */
struct crfs_hdr_file_id {
	struct ckpt_hdr h;
	__u64 dev;		/* st_dev as stat(2) gives it: new_encode_dev() */
	__u64 ino;
	__u64 size;
	__s64 mtime_ns;
};

#define CKPT_ARCH_NSIG		64
#define CKPT_RLIM_NLIMITS	16

struct ckpt_sigaction {
	__u64 _sa_handler;
	__u64 sa_flags;
	__u64 sa_restorer;
	__u64 sa_mask;		/* bit n-1: signal n */
};

struct ckpt_hdr_sighand {
	struct ckpt_hdr h;
	struct ckpt_sigaction action[CKPT_ARCH_NSIG];
};

struct ckpt_rlimit {
	__u64 rlim_cur;
	__u64 rlim_max;
};

struct ckpt_hdr_signal {
	struct ckpt_hdr h;
	struct ckpt_rlimit rlim[CKPT_RLIM_NLIMITS];
	__u64 it_real_value;	/* ns */
	__u64 it_real_incr;
	__u64 it_virt_value;
	__u64 it_virt_incr;
	__u64 it_prof_value;
	__u64 it_prof_incr;
	__s32 tty_objref;
	__s32 tty_pgrp;
	__s32 tty_old_pgrp;
	__u8 __padding[4];
};

/* a queued signal; which fields hold what depends on signo and code (format-ckpt.md) */
struct ckpt_siginfo {
	__u32 signo;
	__u32 _errno;
	__u32 code;
	__u32 pid;
	__s32 uid;
	__u32 sigval_int;
	__u64 sigval_ptr;
	__u64 utime;
	__u64 stime;
};

/* len is exactly sizeof + nr_pending * sizeof(struct ckpt_siginfo) */
struct ckpt_hdr_sigpending {
	struct ckpt_hdr h;
	__u32 nr_pending;
	__u8 __padding[4];
	__u64 signal;
};

struct ckpt_hdr_signal_task {
	struct ckpt_hdr h;
	__u64 blocked;
};

struct crfs_hdr_sigaltstack {
	struct ckpt_hdr h;
	__u64 ss_sp;
	__u64 ss_size;
	__u32 ss_flags;
	__u8 __padding[4];
};

/* crfs extension: /proc/PID/oom_score_adj of the thread group */
struct crfs_hdr_oom_score_adj {
	struct ckpt_hdr h;
	__s32 oom_score_adj;		/* OOM_SCORE_ADJ_MIN .. OOM_SCORE_ADJ_MAX */
	__u8 __padding[4];
};

/*
 * crfs extension: the task's personality and scheduling, and its process's prctl flags
 * (CRFS_TASK_*); optional: without it none of them is restored.
 */
#define CRFS_TASK_THP_DISABLE		0x1	/* MMF_DISABLE_THP of its mm */
#define CRFS_TASK_CHILD_SUBREAPER	0x2	/* signal->is_child_subreaper */
#define CRFS_TASK_FLAGS		(CRFS_TASK_THP_DISABLE | CRFS_TASK_CHILD_SUBREAPER)
struct crfs_hdr_task_misc {
	struct ckpt_hdr h;
	__u32 personality;
	__u32 flags;			/* CRFS_TASK_* */
	__u32 policy;			/* SCHED_NORMAL, FIFO, RR, BATCH, IDLE */
	__u32 rt_priority;		/* 1..99 for FIFO and RR, else 0 */
	__s32 nice;			/* MIN_NICE..MAX_NICE */
	__u8 __padding[4];
};

/* crfs extension: the task's rseq registration (rseq(2)); rseq 0: none */
/* crfs extension: the task's seccomp mode, when not 0 (1 strict; 2 filter is refused) */
struct crfs_hdr_seccomp {
	struct ckpt_hdr h;
	__u32 mode;
	__u8 __padding[4];
};

struct crfs_hdr_rseq {
	struct ckpt_hdr h;
	__u64 rseq;			/* user address of its struct rseq */
	__u32 rseq_len;
	__u32 rseq_sig;
};

/*
 * crfs extension: the siginfo of the SIGPENDING just before, each whole as an x86_64
 * kernel_siginfo (CRFS_SIGINFO_SIZE bytes), nr_pending of them after this header
 */
#define CRFS_SIGINFO_SIZE	48
struct crfs_hdr_siginfo_raw {
	struct ckpt_hdr h;
	__u32 nr_pending;
	__u8 __padding[4];
};

/*
 * crfs extension: one POSIX timer of the thread group (timer_create(2)), after the
 * records of its first task's SIGNAL_TASK, at most CRFS_MAX_TIMERS, ids increasing.
 */
#define CRFS_TIMER_PENDING	0x1	/* its signal was queued: it fires at once */
struct crfs_hdr_posix_timer {
	struct ckpt_hdr h;
	__s32 it_id;			/* timer_t */
	__s32 clockid;			/* REALTIME, MONOTONIC, BOOTTIME or TAI */
	__s32 signo;			/* sigev_signo */
	__s32 notify;			/* SIGEV_SIGNAL, SIGEV_NONE, SIGEV_SIGNAL|THREAD_ID */
	__s32 notify_tid;		/* SIGEV_THREAD_ID: the thread's image pid, else 0 */
	__u32 flags;			/* CRFS_TIMER_* */
	__u64 sigev_value;
	__u64 value_ns;			/* time left, 0: disarmed */
	__u64 interval_ns;
	__s64 overrun;			/* timer_getoverrun() (not restored) */
};

struct ckpt_hdr_tail {
	struct ckpt_hdr h;
	__u64 magic;
};

#endif /* CRFS_IMAGE_H */
