"""linux-cr `ckpt_hdr` images (v19-rc3 .. v21), x86_32 and x86_64: records and framing.

Spec: the linux-cr headers include/linux/checkpoint_hdr.h and include/asm-x86/checkpoint_hdr.h
as carried by user-cr (https://github.com/columbia/user-cr) for ckpt-v19-rc3..v21; see
docs/format-ckpt.md.

    IMAGE   ::= HEADER BUFFER{release} BUFFER{version} BUFFER{machine} HEADER_ARCH
                [CONTAINER BUFFER{lsm_name} LSM_INFO ...]
                TREE BUFFER{ckpt_pids[nr_tasks]} [BUFFER{s32 vpids[sum(depth)]}]
                { TASK STRING{comm} TASK_PART* } TAIL
    TASK_PART ::= THREAD | CPU [CPU_FPU] | TASK_OBJS | OBJECT | other record
    OBJECT  ::= OBJREF{type, ref} records of that object, e.g.
                MM BUFFER{auxv} { [OBJECT] VMA [CONTENTS] }*map_count MM_CONTEXT MM_CONTEXT_LDT
                FILE_TABLE { [OBJECT] FILE_DESC }*fdt_nfds { EPOLL_ITEMS [BUFFER] }*
                FILE [FILE_NAME [CRFS_FILE_ID]] [PIPE_BUF] [STRING] [CRFS_FILE_OWNER]
    CONTENTS ::= { PGARR{n > 0} BUFFER{ulong vaddr[n]; n pages} }* PGARR{0}

Every record starts with `struct ckpt_hdr {u32 type; u32 len}` and `len` counts the whole
record, header included, so every byte of an image belongs to exactly one record and records of
unknown type can be skipped. Records are not padded to 8 bytes in the file.

Only the vaddr arrays differ between the ABIs (`unsigned long`: 4 bytes on x86_32, 8 on
x86_64); every struct below has the same layout on both (aligned(8), explicit padding).
"""

import struct
from dataclasses import dataclass
from enum import IntEnum

from construct import (Array, Bytes, Int8ul, Int16ul, Int32sl, Int32ul, Int64sl, Int64ul, Struct,
                       this)

from crfs.errors import FormatError
from crfs.formats.common import Pad, dev_text, name_of
from crfs.formats.source import RecordInfo, parse_bytes
from crfs.formats.x86 import PAGE_SIZE

# --------------------------------------------------------------------------- numbers

CKPT_HDR = IntEnum("CKPT_HDR", {
    "CKPT_HDR_HEADER": 1,
    "CKPT_HDR_HEADER_ARCH": 2,
    "CKPT_HDR_CONTAINER": 3,
    "CKPT_HDR_BUFFER": 4,
    "CKPT_HDR_STRING": 5,
    "CKPT_HDR_OBJREF": 6,
    "CKPT_HDR_LSM_INFO": 7,
    "CKPT_HDR_SECURITY": 8,
    "CKPT_HDR_TREE": 101,
    "CKPT_HDR_TASK": 102,
    "CKPT_HDR_TASK_NS": 103,
    "CKPT_HDR_TASK_OBJS": 104,
    "CKPT_HDR_RESTART_BLOCK": 105,
    "CKPT_HDR_THREAD": 106,
    "CKPT_HDR_CPU": 107,
    "CKPT_HDR_USER_NS": 113,          # v21 numbers (MNT_NS 111 and CAPABILITIES 112 unused)
    "CKPT_HDR_CRED": 114,
    "CKPT_HDR_USER": 115,
    "CKPT_HDR_GROUPINFO": 116,
    "CKPT_HDR_TASK_CREDS": 117,
    "CKPT_HDR_CPU_FPU": 201,          # x86 arch-specific (201-299)
    "CKPT_HDR_MM_CONTEXT_LDT": 202,   # x86 arch-specific
    "CKPT_HDR_FILE_TABLE": 301,
    "CKPT_HDR_FILE_DESC": 302,
    "CKPT_HDR_FILE_NAME": 303,
    "CKPT_HDR_FILE": 304,
    "CKPT_HDR_PIPE_BUF": 305,
    "CKPT_HDR_EPOLL_ITEMS": 308,
    "CKPT_HDR_MM": 401,
    "CKPT_HDR_VMA": 402,
    "CKPT_HDR_PGARR": 403,
    "CKPT_HDR_MM_CONTEXT": 404,
    "CKPT_HDR_FS": 451,
    "CKPT_HDR_SIGHAND": 601,
    "CKPT_HDR_SIGNAL": 602,
    "CKPT_HDR_SIGNAL_TASK": 603,
    "CKPT_HDR_SIGPENDING": 604,
    "CRFS_HDR_SIGALTSTACK": 8001,     # crfs extensions (8001-8099), not in linux-cr
    "CRFS_HDR_FS_EXT": 8002,
    "CRFS_HDR_FILE_OWNER": 8009,      # last record of a FILE object: F_SETOWN_EX, F_SETSIG
    "CRFS_HDR_FILE_ID": 8010,         # 8003-8008 are proposed for other state
    "CRFS_HDR_PARENT": 8011,          # incremental images (docs/checkpoint.md)
    "CRFS_HDR_PARENT_PAGES": 8012,
    "CRFS_HDR_OOM_SCORE_ADJ": 8020,   # per process, after its first task's SIGNAL_TASK
    "CRFS_HDR_RSEQ": 8021,            # per live task, after its SIGNAL_TASK
    "CRFS_HDR_SIGINFO_RAW": 8022,     # right after a SIGPENDING: its siginfo, whole
    "CRFS_HDR_DELETED_STAT": 8023,    # after a CRFS_FILE_DELETED's BUFFER
    "CRFS_HDR_SECCOMP": 8041,         # per live task, after its RSEQ: seccomp strict mode
    "CRFS_HDR_POSIX_TIMER": 8024,     # per process, one a timer, after its first task's RSEQ
    "CRFS_HDR_TASK_MISC": 8050,       # per live task, after its SECCOMP: personality, sched
    "CKPT_HDR_TAIL": 9001,
    "CKPT_HDR_ERROR": 9999,
})

CKPT_ARCH = IntEnum("CKPT_ARCH", {
    "CKPT_ARCH_X86_32": 1,
    "CKPT_ARCH_X86_64": 2,
    "CKPT_ARCH_S390X": 3,
    "CKPT_ARCH_PPC32": 4,
    "CKPT_ARCH_PPC64": 5,
})

CKPT_OBJ = IntEnum("CKPT_OBJ", {
    "CKPT_OBJ_IGNORE": 0,
    "CKPT_OBJ_INODE": 1,
    "CKPT_OBJ_FILE_TABLE": 2,
    "CKPT_OBJ_FILE": 3,
    "CKPT_OBJ_MM": 4,
    "CKPT_OBJ_FS": 5,
    "CKPT_OBJ_SIGHAND": 6,
    "CKPT_OBJ_SIGNAL": 7,
    "CKPT_OBJ_NS": 8,
    "CKPT_OBJ_UTS_NS": 9,
    "CKPT_OBJ_IPC_NS": 10,
    "CKPT_OBJ_MNT_NS": 11,
    "CKPT_OBJ_USER_NS": 12,
    "CKPT_OBJ_CRED": 13,
    "CKPT_OBJ_USER": 14,
    "CKPT_OBJ_GROUPINFO": 15,
    "CKPT_OBJ_SOCK": 16,
    "CKPT_OBJ_TTY": 17,
    "CKPT_OBJ_SECURITY_PTR": 18,
    "CKPT_OBJ_SECURITY": 19,
    "CKPT_OBJ_NET_NS": 20,
    "CKPT_OBJ_NETDEV": 21,
})

CKPT_FILE = IntEnum("CKPT_FILE", {
    "CKPT_FILE_IGNORE": 0,
    "CKPT_FILE_GENERIC": 1,
    "CKPT_FILE_PIPE": 2,
    "CKPT_FILE_FIFO": 3,
    "CKPT_FILE_SOCKET": 4,
    "CKPT_FILE_TTY": 5,
    "CKPT_FILE_EPOLL": 6,
    "CKPT_FILE_EVENTFD": 7,
    "CRFS_FILE_TIMERFD": 100,     # crfs extensions (from 100), formats-state §3.2
    "CRFS_FILE_SIGNALFD": 101,
    "CRFS_FILE_OPAQUE": 110,      # crfs extension (from 100): recorded, not restorable
    "CRFS_FILE_DELETED": 111,     # crfs extension: a regular file deleted while open
    "CRFS_FILE_UNIX": 112,        # crfs extension: a UNIX socket (crfs_hdr_file_unix)
})

# CRFS_FILE_OPAQUE.kind: why crfs cannot restore the file (its readlink text follows).
CRFS_OPAQUE = IntEnum("CRFS_OPAQUE", {
    "CRFS_OPAQUE_OTHER": 0,
    "CRFS_OPAQUE_SOCKET": 1,
    "CRFS_OPAQUE_ANON": 2,        # anon_inode:[...] other than eventfd (epoll, timerfd ...)
    "CRFS_OPAQUE_DELETED": 3,     # a file unlinked while open
})

CKPT_VMA = IntEnum("CKPT_VMA", {
    "CKPT_VMA_IGNORE": 0,
    "CKPT_VMA_VDSO": 1,
    "CKPT_VMA_ANON": 2,          # private anonymous
    "CKPT_VMA_FILE": 3,          # private mapped file
    "CKPT_VMA_SHM_ANON": 4,      # shared anonymous, contents follow
    "CKPT_VMA_SHM_ANON_SKIP": 5,  # shared anonymous, contents dumped earlier
    "CKPT_VMA_SHM_FILE": 6,      # shared mapped file, no contents
    "CKPT_VMA_SHM_IPC": 7,       # SysV shm, contents live with the IPC namespace
    "CKPT_VMA_SHM_IPC_SKIP": 8,
})

MAGIC = {
    "CHECKPOINT_MAGIC_HEAD": 0x00FEED0CC0A2D200,
    "CHECKPOINT_MAGIC_TAIL": 0x002D2A0CC0DEEF00,
}

# ckpt_hdr_header.rev: CHECKPOINT_VERSION of the kernel that wrote the image. linux-cr
# restart accepts only its own. user-cr's headers carry 5 from c97c03d (v19-rc3, also the v20
# posting) and 6 from 78d18cf (30 Mar 2010) to f678773 (v21); crfs wrote 1 before it knew.
CHECKPOINT_VERSION = 6
READABLE_REVS = (1, 5, 6)
HDR_SIZE = 8
MAX_RECORD_DATA = 0xFFFFFFFF - HDR_SIZE     # ckpt_hdr.len is a u32
# Pages per PGARR chunk the kernel writes: 16 * (PAGE_SIZE / sizeof(void *)).
CKPT_PGARR_BATCH = {"i386": 16 * 1024, "x86_64": 16 * 512}
VADDR_SIZE = {"i386": 4, "x86_64": 8}
# HEADER.uflags bit of images holding crfs extension records: a stock linux-cr restart
# refuses unknown uflags up front instead of failing on the first extension record.
CRFS_UFLAG_EXT = 0x8000
# HEADER.uflags bit of images crfs checkpoint wrote from a copy-on-write snapshot (the
# processes ran on while it was written), crfs/checkpoint/snapshot.py.
CRFS_UFLAG_SNAPSHOT = 0x10000
CKPT_ARCH_NSIG = 64
CKPT_RLIM_NLIMITS = 16
NGROUPS_MAX = 65536
ARCH_BY_ID = {CKPT_ARCH["CKPT_ARCH_X86_32"]: "i386", CKPT_ARCH["CKPT_ARCH_X86_64"]: "x86_64"}


# --------------------------------------------------------------------------- records

ckpt_hdr = Struct("type" / Int32ul, "len" / Int32ul)

# Header-only records and records whose payload is raw bytes (BUFFER, STRING, FILE_NAME,
# CPU_FPU, MM_CONTEXT_LDT, and ERROR's header).
ckpt_hdr_raw = Struct("h" / ckpt_hdr, "data" / Bytes(this.h.len - HDR_SIZE))

ckpt_const = Struct(
    "task_comm_len" / Int16ul,
    "at_vector_size" / Int16ul,
    "signal_nsig" / Int16ul,
    "uts_sysname_len" / Int16ul,
    "uts_nodename_len" / Int16ul,
    "uts_release_len" / Int16ul,
    "uts_version_len" / Int16ul,
    "uts_machine_len" / Int16ul,
    "uts_domainname_len" / Int16ul,
    "rlimit_nlimits" / Int16ul,
    "n_tty_buf_size" / Int16ul,
    "tty_termios_ncc" / Int16ul,
)

ckpt_hdr_header = Struct(
    "h" / ckpt_hdr,
    "magic" / Int64ul,
    "arch_id" / Int16ul,
    "major" / Int16ul,
    "minor" / Int16ul,
    "patch" / Int16ul,
    "rev" / Int16ul,
    "_padding" / Pad(6),          # ckpt_const is aligned(8)
    "constants" / ckpt_const,
    "time" / Int64ul,
    "uflags" / Int64ul,
)

ckpt_hdr_header_arch = Struct(
    "h" / ckpt_hdr,
    "has_fxsr" / Int16ul,
    "has_xsave" / Int16ul,
    "xstate_size" / Int16ul,
    "_pading" / Pad(2),           # sic, the kernel's spelling
)

ckpt_hdr_container = Struct("h" / ckpt_hdr)

ckpt_hdr_lsm = Struct(
    "h" / ckpt_hdr,
    "ptrref" / Int32sl,
    "sectype" / Int8ul,
    "_padding" / Pad(3),
)

ckpt_hdr_objref = Struct("h" / ckpt_hdr, "objtype" / Int32ul, "objref" / Int32sl)

ckpt_hdr_tree = Struct("h" / ckpt_hdr, "nr_tasks" / Int32sl, "_padding" / Pad(4))

ckpt_pids = Struct(
    "vpid" / Int32sl,
    "vppid" / Int32sl,
    "vtgid" / Int32sl,
    "vpgid" / Int32sl,
    "vsid" / Int32sl,
    "depth" / Int32sl,
)

ckpt_hdr_task = Struct(
    "h" / ckpt_hdr,
    "state" / Int32ul,
    "exit_state" / Int32ul,
    "exit_code" / Int32ul,
    "exit_signal" / Int32ul,
    "pdeath_signal" / Int32ul,
    "compat_robust_futex_head_len" / Int32ul,
    "compat_robust_futex_list" / Int32ul,
    "robust_futex_head_len" / Int32ul,
    "robust_futex_list" / Int64ul,
    "set_child_tid" / Int64ul,
    "clear_child_tid" / Int64ul,
)

ckpt_hdr_task_objs = Struct(
    "h" / ckpt_hdr,
    "files_objref" / Int32sl,
    "mm_objref" / Int32sl,
    "fs_objref" / Int32sl,
    "sighand_objref" / Int32sl,
    "signal_objref" / Int32sl,
    "_padding" / Pad(4),
)

ckpt_hdr_thread = Struct(
    "h" / ckpt_hdr,
    "thread_info_flags" / Int32ul,
    "gdt_entry_tls_entries" / Int16ul,
    "sizeof_tls_array" / Int16ul,
    "tls_array" / Array(3, Int64ul),  # struct desc_struct {u32 a, b} read as b << 32 | a
)

# One layout for both archs: pt_regs x86_64 order, selectors as CKPT_X86_SEG_* codes.
CPU_REGS = ("r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8", "ax", "cx", "dx",
            "si", "di", "orig_ax", "ip", "sp", "flags", "fs", "gs")
CPU_SEGMENTS = ("fsindex", "gsindex", "cs", "ss", "ds", "es")

ckpt_hdr_cpu = Struct(
    "h" / ckpt_hdr,
    *[name / Int64ul for name in CPU_REGS],
    *[name / Int16ul for name in CPU_SEGMENTS],
    "used_math" / Int32ul,
)

ckpt_hdr_file = Struct(
    "h" / ckpt_hdr,
    "f_type" / Int32ul,
    "f_mode" / Int32ul,
    "f_flags" / Int32ul,
    "f_credref" / Int32sl,
    "f_pos" / Int64ul,
    "f_version" / Int64ul,
    "f_secref" / Int32sl,
    "_padding" / Pad(4),
)

# --- files (FILE_TABLE object: FILE_TABLE { [OBJECT{FILE}] FILE_DESC }*fdt_nfds)

ckpt_hdr_file_table = Struct("h" / ckpt_hdr, "fdt_nfds" / Int32sl, "_padding" / Pad(4))

ckpt_hdr_file_desc = Struct(
    "h" / ckpt_hdr,
    "fd_objref" / Int32sl,
    "fd_descriptor" / Int32sl,
    "fd_close_on_exec" / Int32ul,
    "_padding" / Pad(4),
)

# FILE subtypes: the common 48 bytes, then their own fields (restart checks len exactly).
# PIPE and FIFO: both ends carry the pipe inode's objref (no OBJREF record); the first end
# written is followed by PIPE_BUF, a raw record of the bytes buffered in the pipe.
# crfs uses v21's 4 padding bytes (0 in older images): pipe_flags (CRFS_PIPE_*, a PIPE's
# ends that no process at all had open) and pipe_size_log2 (capacity 1 << n bytes, 0: not
# known, a default 64 KiB pipe).
ckpt_hdr_file_pipe = Struct(*ckpt_hdr_file.subcons, "pipe_objref" / Int32sl,
                            "pipe_flags" / Int16ul, "pipe_size_log2" / Int8ul,
                            "_pipe_padding" / Pad(1))
CRFS_PIPE_NO_READER = 0x1
CRFS_PIPE_NO_WRITER = 0x2
ckpt_hdr_file_eventfd = Struct(*ckpt_hdr_file.subcons, "count" / Int64ul,
                               "flags" / Int32ul, "_eventfd_padding" / Pad(4))
# crfs extension: a file crfs records but cannot restore (socket, epoll, deleted ...);
# STRING{readlink text of /proc/PID/fd/N, NUL-terminated} follows.
crfs_hdr_file_opaque = Struct(*ckpt_hdr_file.subcons, "kind" / Int32ul, "st_mode" / Int32ul)
# crfs extension: a regular file unlinked while open (or a memfd), with its content:
# STRING{readlink text} then BUFFER{the size bytes of the file}.
crfs_hdr_file_deleted = Struct(*ckpt_hdr_file.subcons, "size" / Int64ul, "st_mode" / Int32ul,
                               "_deleted_padding" / Pad(4))
# crfs extension, after a CRFS_FILE_DELETED's BUFFER: the owner of the inode (ids as the
# checkpointer's user namespace sees them) and its access and modification times (ns since
# the epoch), given back to the recreated file.
crfs_hdr_deleted_stat = Struct("h" / ckpt_hdr, "uid" / Int32ul, "gid" / Int32ul,
                               "atime_ns" / Int64sl, "mtime_ns" / Int64sl)
# crfs extensions: timerfd (remaining time and interval in ns, unread expirations, the
# settime flags) and signalfd (its mask, bit n-1 = signal n).
crfs_hdr_file_timerfd = Struct(*ckpt_hdr_file.subcons, "clockid" / Int32sl,
                               "tfd_flags" / Int32ul, "value_ns" / Int64ul,
                               "interval_ns" / Int64ul, "ticks" / Int64ul)
crfs_hdr_file_signalfd = Struct(*ckpt_hdr_file.subcons, "sigmask" / Int64ul,
                                "sfd_flags" / Int32ul, "_signalfd_padding" / Pad(4))
# EPOLL_ITEMS: after the last FILE_DESC of a file table, one per epoll file first written in
# it (in that order); iff num_items, a BUFFER of num_items ckpt_eventpoll_item follows.
ckpt_hdr_eventpoll_items = Struct("h" / ckpt_hdr, "epfile_objref" / Int32sl,
                                  "num_items" / Int32ul)
ckpt_eventpoll_item = Struct("data" / Int64ul, "fd" / Int32ul, "file_objref" / Int32sl,
                             "events" / Int32ul, "_padding" / Pad(4))
# crfs extension: a UNIX socket. sock_objref names the socket, peer_objref its peer's (0:
# none in the image): a socketpair is two FILEs naming each other. state is sock_diag's
# (1 connected, 7 unconnected, 10 listening), shutdown sk_shutdown's bits, addr the bound
# address (addr_len bytes, an abstract name starts with NUL). Iff nr_msgs, a BUFFER follows:
# nr_msgs u32 message lengths, then their data_len bytes, queued for this socket.
# flags: CRFS_UNIX_ICON, a connection its listener has not accepted yet: peer_objref is
# then the listening socket's sock_objref (the restarter connects to it again). mode, uid,
# gid: the socket file a path-bound socket made (st_mode, 0 when not recorded; ids in the
# checkpointer's user namespace), given back to the file the restarter binds.
CRFS_UNIX_NAME_MAX = 108
CRFS_UNIX_MAX_MSGS = 4096
CRFS_UNIX_MAX_DATA = 4 << 20
CRFS_UNIX_ICON = 0x1
crfs_hdr_file_unix = Struct(*ckpt_hdr_file.subcons, "sock_objref" / Int32sl,
                            "peer_objref" / Int32sl, "ino" / Int64ul, "family" / Int16ul,
                            "sock_type" / Int16ul, "state" / Int32ul, "shutdown" / Int32ul,
                            "backlog" / Int32ul, "nr_msgs" / Int32ul, "data_len" / Int32ul,
                            "addr_len" / Int32ul, "flags" / Int32ul,
                            "addr" / Bytes(CRFS_UNIX_NAME_MAX), "mode" / Int32ul,
                            "uid" / Int32ul, "gid" / Int32ul)
FILE_SUBTYPES = {
    "CKPT_FILE_GENERIC": ckpt_hdr_file,
    "CKPT_FILE_PIPE": ckpt_hdr_file_pipe,
    "CKPT_FILE_FIFO": ckpt_hdr_file_pipe,
    "CKPT_FILE_EVENTFD": ckpt_hdr_file_eventfd,
    "CKPT_FILE_EPOLL": ckpt_hdr_file,
    "CRFS_FILE_OPAQUE": crfs_hdr_file_opaque,
    "CRFS_FILE_DELETED": crfs_hdr_file_deleted,
    "CRFS_FILE_TIMERFD": crfs_hdr_file_timerfd,
    "CRFS_FILE_SIGNALFD": crfs_hdr_file_signalfd,
    "CRFS_FILE_UNIX": crfs_hdr_file_unix,
}

MM_ADDRESSES = ("start_code", "end_code", "start_data", "end_data", "start_brk", "brk",
                "start_stack", "arg_start", "arg_end", "env_start", "env_end")

ckpt_hdr_mm = Struct(
    "h" / ckpt_hdr,
    "map_count" / Int32ul,
    "exe_objref" / Int32sl,
    "def_flags" / Int64ul,
    "flags" / Int64ul,
    *[name / Int64ul for name in MM_ADDRESSES],
)

# BUFFER after MM: mm->saved_auxv as u64 on both archs (v19+).
auxv_entry = Struct("type" / Int64ul, "value" / Int64ul)

ckpt_hdr_vma = Struct(
    "h" / ckpt_hdr,
    "vma_type" / Int32ul,
    "vma_objref" / Int32sl,
    "ino_objref" / Int32sl,
    "_padding" / Pad(4),
    "ino_size" / Int64ul,
    "vm_start" / Int64ul,
    "vm_end" / Int64ul,
    "vm_page_prot" / Int64ul,
    "vm_flags" / Int64ul,
    "vm_pgoff" / Int64ul,
)

ckpt_hdr_pgarr = Struct("h" / ckpt_hdr, "nr_pages" / Int64ul)

# BUFFER after a PGARR: vaddr[nr_pages] (unsigned long) then nr_pages pages.
VADDR = {"i386": Int32ul, "x86_64": Int64ul}


def pgarr_buffer(arch, nr_pages):
    """The BUFFER record that follows PGARR{nr_pages} (the loader reads it in bulk)."""
    return Struct("h" / ckpt_hdr, "vaddr" / Array(nr_pages, VADDR[arch]),
                  "pages" / Bytes(nr_pages * PAGE_SIZE))


ckpt_hdr_mm_context = Struct(
    "h" / ckpt_hdr,
    "vdso" / Int64ul,
    "ldt_entry_size" / Int32ul,
    "nldt" / Int32ul,
)

# --- credentials (CRED, USER, USER_NS, GROUPINFO, TASK_CREDS; v21 numbers)

ckpt_capabilities = Struct(
    "cap_i_0" / Int32ul, "cap_i_1" / Int32ul,     # kernel_cap_t.cap[0], cap[1]
    "cap_p_0" / Int32ul, "cap_p_1" / Int32ul,
    "cap_e_0" / Int32ul, "cap_e_1" / Int32ul,
    "cap_b_0" / Int32ul, "cap_b_1" / Int32ul,
    "securebits" / Int32ul,
    "_padding" / Pad(4),
)

ckpt_hdr_cred = Struct(
    "h" / ckpt_hdr,
    "uid" / Int32ul, "suid" / Int32ul, "euid" / Int32ul, "fsuid" / Int32ul,
    "gid" / Int32ul, "sgid" / Int32ul, "egid" / Int32ul, "fsgid" / Int32ul,
    "user_ref" / Int32sl,
    "groupinfo_ref" / Int32sl,
    "sec_ref" / Int32sl,
    "_padding" / Pad(4),
    "cap_s" / ckpt_capabilities,
)

ckpt_hdr_task_creds = Struct("h" / ckpt_hdr, "cred_ref" / Int32sl, "ecred_ref" / Int32sl)

ckpt_hdr_user_struct = Struct("h" / ckpt_hdr, "uid" / Int32ul, "userns_ref" / Int32sl)

ckpt_hdr_user_ns = Struct("h" / ckpt_hdr, "creator_ref" / Int32sl, "_padding" / Pad(4))

# sizeof is 16 but groups[] starts at 12 and the kernel writes len 16 + 4 * ngroups: the gids
# sit at 12 .. 12 + 4n and the record ends with 4 zero bytes.
ckpt_hdr_groupinfo = Struct(
    "h" / ckpt_hdr,
    "ngroups" / Int32ul,
    "groups" / Array(this.ngroups, Int32ul),
    "_padding" / Pad(4),
)
GROUPINFO_SIZE = 16

# --- incremental images (crfs extensions): HEADER_ARCH CRFS_HDR_PARENT STRING{parent name}
# names the image this one holds only the changes since; per MM, after the VMAs and before
# MM_CONTEXT, CRFS_HDR_PARENT_PAGES lists the pages whose bytes are the parent's.
CRFS_TRACKING = IntEnum("CRFS_TRACKING", {"CRFS_TRACKING_SOFT_DIRTY": 1,
                                          "CRFS_TRACKING_PAGEMAP_SCAN": 2})
crfs_hdr_parent = Struct(
    "h" / ckpt_hdr,
    "size" / Int64ul,             # the parent file's size in bytes
    "sha256" / Bytes(32),         # SHA-256 of the parent file's whole contents
    "tracking" / Int32ul,         # CRFS_TRACKING: how the written pages were found
    "_padding" / Pad(4),
)
crfs_page_run = Struct("start" / Int64ul, "npages" / Int64ul)
crfs_hdr_parent_pages = Struct(
    "h" / ckpt_hdr,
    "nr_runs" / Int32ul,
    "_padding" / Pad(4),
    "runs" / Array(this.nr_runs, crfs_page_run),
)
PARENT_PAGES_SIZE = 16

# --- fs_struct: FS then FILE_NAME{pwd} FILE_NAME{root}; v21 stores no umask

ckpt_hdr_fs = Struct("h" / ckpt_hdr)

# crfs extension, inside the FS object after FILE_NAME{root} (v23 put umask in FS itself).
crfs_hdr_fs_ext = Struct("h" / ckpt_hdr, "umask" / Int32ul, "_padding" / Pad(4))
# crfs extension, the last record of a FILE object whose file has an owner for SIGIO
# (fcntl F_SETOWN_EX) or a signal other than SIGIO (F_SETSIG); O_ASYNC stays in f_flags.
CRFS_F_OWNER = IntEnum("CRFS_F_OWNER", {"F_OWNER_TID": 0, "F_OWNER_PID": 1,
                                        "F_OWNER_PGRP": 2})
crfs_hdr_file_owner = Struct(
    "h" / ckpt_hdr,
    "pid" / Int32sl,              # vpid as the checkpointer saw it; 0: no owner
    "pid_type" / Int32ul,         # CRFS_F_OWNER (struct f_owner_ex.type)
    "signum" / Int32ul,           # F_SETSIG; 0: SIGIO
    "_owner_padding" / Pad(4),
)

# crfs extension, inside a generic FILE object after its FILE_NAME: what the file was when
# it was checkpointed, checked by the module's RESTART before it maps the file again.
crfs_hdr_file_id = Struct(
    "h" / ckpt_hdr,
    "dev" / Int64ul,              # st_dev as stat(2) gives it (the kernel's new_encode_dev)
    "ino" / Int64ul,
    "size" / Int64ul,
    "mtime_ns" / Int64sl,         # st_mtime in ns since the epoch
)



# --- signals

ckpt_sigset = Int64ul       # u8 sigset[CKPT_ARCH_NSIG / 8]: bit n-1 is signal n, read as u64

ckpt_sigaction = Struct(
    "_sa_handler" / Int64ul,
    "sa_flags" / Int64ul,
    "sa_restorer" / Int64ul,
    "sa_mask" / ckpt_sigset,
)

ckpt_hdr_sighand = Struct("h" / ckpt_hdr, "action" / Array(CKPT_ARCH_NSIG, ckpt_sigaction))

ckpt_rlimit = Struct("rlim_cur" / Int64ul, "rlim_max" / Int64ul)

ITIMERS = ("it_real_value", "it_real_incr", "it_virt_value", "it_virt_incr",
           "it_prof_value", "it_prof_incr")

ckpt_hdr_signal = Struct(
    "h" / ckpt_hdr,
    "rlim" / Array(CKPT_RLIM_NLIMITS, ckpt_rlimit),
    *[name / Int64ul for name in ITIMERS],         # ns
    "tty_objref" / Int32sl,
    "tty_pgrp" / Int32sl,
    "tty_old_pgrp" / Int32sl,
    "_padding" / Pad(4),
)

ckpt_siginfo = Struct(
    "signo" / Int32ul,
    "_errno" / Int32ul,
    "code" / Int32ul,
    "pid" / Int32ul,
    "uid" / Int32sl,
    "sigval_int" / Int32ul,
    "sigval_ptr" / Int64ul,
    "utime" / Int64ul,
    "stime" / Int64ul,
)

ckpt_hdr_sigpending = Struct(
    "h" / ckpt_hdr,
    "nr_pending" / Int32ul,
    "_padding" / Pad(4),
    "signal" / ckpt_sigset,
    "siginfo" / Array(this.nr_pending, ckpt_siginfo),
)
SIGPENDING_SIZE = 24

# crfs extension, x86_64 images: the siginfo of the SIGPENDING just before, each as the
# kernel's 48-byte kernel_siginfo (all it keeps of a user's siginfo_t: padding and union
# bytes linux-cr's ckpt_siginfo leaves out, e.g. SIGSYS's syscall, bytes 12..15)
KERNEL_SIGINFO_SIZE = 48
crfs_hdr_siginfo_raw = Struct(
    "h" / ckpt_hdr,
    "nr_pending" / Int32ul,
    "_padding" / Pad(4),
    "siginfo" / Array(this.nr_pending, Bytes(KERNEL_SIGINFO_SIZE)),
)
SIGINFO_RAW_SIZE = 16

ckpt_hdr_signal_task = Struct("h" / ckpt_hdr, "blocked" / ckpt_sigset)

# crfs extension, per live task right after SIGNAL_TASK (v23 put these in TASK).
crfs_hdr_sigaltstack = Struct(
    "h" / ckpt_hdr,
    "ss_sp" / Int64ul,
    "ss_size" / Int64ul,
    "ss_flags" / Int32ul,
    "_padding" / Pad(4),
)

# crfs extension: the thread group's /proc/PID/oom_score_adj (written when not 0)
crfs_hdr_oom_score_adj = Struct(
    "h" / ckpt_hdr,
    "oom_score_adj" / Int32sl,
    "_padding" / Pad(4),
)

# crfs extension: the task's seccomp mode (written when not 0; 1 SECCOMP_MODE_STRICT is
# the only one a restart gives back, 2 FILTER is refused)
crfs_hdr_seccomp = Struct(
    "h" / ckpt_hdr,
    "mode" / Int32ul,
    "_padding" / Pad(4),
)

# crfs extension: per live task, after its [SECCOMP]: its personality, scheduling policy
# and nice, and of its process the prctl flags below (PR_SET_THP_DISABLE: MMF_DISABLE_THP
# of the mm; PR_SET_CHILD_SUBREAPER). Optional: an image without it restores none of them.
CRFS_TASK_THP_DISABLE = 0x1
CRFS_TASK_CHILD_SUBREAPER = 0x2
CRFS_TASK_FLAGS = CRFS_TASK_THP_DISABLE | CRFS_TASK_CHILD_SUBREAPER
crfs_hdr_task_misc = Struct(
    "h" / ckpt_hdr,
    "personality" / Int32ul,      # /proc/PID/personality
    "flags" / Int32ul,            # CRFS_TASK_*
    "policy" / Int32ul,           # SCHED_NORMAL 0, FIFO 1, RR 2, BATCH 3, IDLE 5
    "rt_priority" / Int32ul,      # 1..99 for FIFO and RR, else 0
    "nice" / Int32sl,             # -20..19
    "_padding" / Pad(4),
)

# crfs extension: the task's rseq(2) registration (written when it has one)
crfs_hdr_rseq = Struct(
    "h" / ckpt_hdr,
    "rseq" / Int64ul,             # user address of its struct rseq
    "rseq_len" / Int32ul,
    "rseq_sig" / Int32ul,
)

# crfs extension: one POSIX timer of the thread group (timer_create(2)), in increasing
# it_id order, after the records of the group's first task's SIGNAL_TASK.
CRFS_TIMER_PENDING = 0x1          # its signal was queued at checkpoint: it fires at once
MAX_POSIX_TIMERS = 1024           # per process (kmod CRFS_MAX_TIMERS)
crfs_hdr_posix_timer = Struct(
    "h" / ckpt_hdr,
    "it_id" / Int32sl,            # timer_t
    "clockid" / Int32sl,          # CLOCK_REALTIME 0, MONOTONIC 1, BOOTTIME 7, TAI 11
    "signo" / Int32sl,            # sigev_signo
    "notify" / Int32sl,           # SIGEV_SIGNAL 0, SIGEV_NONE 1, SIGEV_SIGNAL|THREAD_ID 4
    "notify_tid" / Int32sl,       # SIGEV_THREAD_ID: the thread's pid in the image, else 0
    "flags" / Int32ul,            # CRFS_TIMER_*
    "sigev_value" / Int64ul,      # sigev_value (sival_ptr)
    "value_ns" / Int64ul,         # time left; 0: disarmed
    "interval_ns" / Int64ul,
    "overrun" / Int64sl,          # timer_getoverrun() at checkpoint (not restored)
)

ckpt_hdr_tail = Struct("h" / ckpt_hdr, "magic" / Int64ul)

# Records of a fixed size: len must be exactly sizeof. FILE may be longer (pipe, socket
# files extend it); the others carry raw bytes.
FIXED = {
    "CKPT_HDR_HEADER": ckpt_hdr_header,
    "CKPT_HDR_HEADER_ARCH": ckpt_hdr_header_arch,
    "CKPT_HDR_CONTAINER": ckpt_hdr_container,
    "CKPT_HDR_OBJREF": ckpt_hdr_objref,
    "CKPT_HDR_TREE": ckpt_hdr_tree,
    "CKPT_HDR_TASK": ckpt_hdr_task,
    "CKPT_HDR_TASK_OBJS": ckpt_hdr_task_objs,
    "CKPT_HDR_FILE_TABLE": ckpt_hdr_file_table,
    "CKPT_HDR_FILE_DESC": ckpt_hdr_file_desc,
    "CKPT_HDR_EPOLL_ITEMS": ckpt_hdr_eventpoll_items,
    "CKPT_HDR_THREAD": ckpt_hdr_thread,
    "CKPT_HDR_CPU": ckpt_hdr_cpu,
    "CKPT_HDR_MM": ckpt_hdr_mm,
    "CKPT_HDR_VMA": ckpt_hdr_vma,
    "CKPT_HDR_PGARR": ckpt_hdr_pgarr,
    "CKPT_HDR_MM_CONTEXT": ckpt_hdr_mm_context,
    "CKPT_HDR_TAIL": ckpt_hdr_tail,
    "CKPT_HDR_ERROR": ckpt_hdr,
    "CKPT_HDR_CRED": ckpt_hdr_cred,
    "CKPT_HDR_TASK_CREDS": ckpt_hdr_task_creds,
    "CKPT_HDR_USER": ckpt_hdr_user_struct,
    "CKPT_HDR_USER_NS": ckpt_hdr_user_ns,
    "CKPT_HDR_FS": ckpt_hdr_fs,
    "CRFS_HDR_FS_EXT": crfs_hdr_fs_ext,
    "CRFS_HDR_FILE_ID": crfs_hdr_file_id,
    "CRFS_HDR_FILE_OWNER": crfs_hdr_file_owner,
    "CRFS_HDR_DELETED_STAT": crfs_hdr_deleted_stat,
    "CKPT_HDR_SIGHAND": ckpt_hdr_sighand,
    "CKPT_HDR_SIGNAL": ckpt_hdr_signal,
    "CKPT_HDR_SIGNAL_TASK": ckpt_hdr_signal_task,
    "CRFS_HDR_SIGALTSTACK": crfs_hdr_sigaltstack,
    "CRFS_HDR_PARENT": crfs_hdr_parent,
    "CRFS_HDR_OOM_SCORE_ADJ": crfs_hdr_oom_score_adj,
    "CRFS_HDR_RSEQ": crfs_hdr_rseq,
    "CRFS_HDR_SECCOMP": crfs_hdr_seccomp,
    "CRFS_HDR_POSIX_TIMER": crfs_hdr_posix_timer,
    "CRFS_HDR_TASK_MISC": crfs_hdr_task_misc,
}
AT_LEAST = {"CKPT_HDR_FILE": ckpt_hdr_file, "CKPT_HDR_LSM_INFO": ckpt_hdr_lsm}
# Records of a header, a count and count items: (struct, count field, header size, item size).
COUNTED = {
    "CKPT_HDR_GROUPINFO": (ckpt_hdr_groupinfo, "ngroups", GROUPINFO_SIZE, 4),
    "CKPT_HDR_SIGPENDING": (ckpt_hdr_sigpending, "nr_pending", SIGPENDING_SIZE,
                            ckpt_siginfo.sizeof()),
    "CRFS_HDR_SIGINFO_RAW": (crfs_hdr_siginfo_raw, "nr_pending", SIGINFO_RAW_SIZE,
                             KERNEL_SIGINFO_SIZE),
    "CRFS_HDR_PARENT_PAGES": (crfs_hdr_parent_pages, "nr_runs", PARENT_PAGES_SIZE,
                              crfs_page_run.sizeof()),
}
SIZE = {name: struct_.sizeof() for name, struct_ in FIXED.items()}
MIN_SIZE = {name: struct_.sizeof() for name, struct_ in AT_LEAST.items()}
MIN_SIZE.update({name: head for name, (_, _, head, _) in COUNTED.items()})

# --------------------------------------------------------------------------- framing

_FRAME = struct.Struct("<II")
_SNIFF = struct.Struct("<IIQ")


def sniff(head):
    """True for a ckpt_hdr image: HEADER {type 1, len 72} then CHECKPOINT_MAGIC_HEAD.

    The older cr_hdr images also carry the magic at offset 8 but start with s16 type,
    s16 len, u32 parent, which never reads as (1, 72) here.
    """
    if len(head) < _SNIFF.size:
        return False
    return _SNIFF.unpack_from(head) == (CKPT_HDR["CKPT_HDR_HEADER"], ckpt_hdr_header.sizeof(),
                                        MAGIC["CHECKPOINT_MAGIC_HEAD"])


@dataclass(frozen=True)
class Record:
    """Where one record sits: offset of its ckpt_hdr, its type and total length."""
    offset: int
    type: int
    length: int

    @property
    def name(self):
        return record_name(self.type)

    @property
    def data_offset(self):
        return self.offset + HDR_SIZE

    @property
    def data_length(self):
        return self.length - HDR_SIZE

    @property
    def end(self):
        return self.offset + self.length


def record_name(type_):
    return name_of(CKPT_HDR, type_, f"type {type_}")


def record_at(source, offset):
    """The Record whose ckpt_hdr is at `offset`, with its length checked against the file
    and, for fixed-size types, against the struct size."""
    type_, length = _FRAME.unpack(source.read(offset, HDR_SIZE, "ckpt_hdr"))
    name = record_name(type_)
    if length < HDR_SIZE:
        raise FormatError(f"len {length} is shorter than its header", offset=offset, record=name)
    if offset + length > source.size:
        raise FormatError(f"len {length} runs past the end of the file", offset=offset,
                          record=name)
    if name in SIZE and length != SIZE[name]:
        raise FormatError(f"len {length}, expected {SIZE[name]}", offset=offset, record=name)
    if name in MIN_SIZE and length < MIN_SIZE[name]:
        raise FormatError(f"len {length}, expected at least {MIN_SIZE[name]}", offset=offset,
                          record=name)
    return Record(offset, type_, length)


def parse_record(source, record):
    """The construct Container of a fixed-layout record (header included). A counted record
    (GROUPINFO, SIGPENDING) must be exactly as long as its count says."""
    name = record.name
    if name in COUNTED:
        struct_, count_field, head, item = COUNTED[name]
        count = struct.unpack_from("<I", source.read(record.offset + HDR_SIZE, 4, name))[0]
        if record.length != head + count * item:
            raise FormatError(f"len {record.length} for {count_field} {count}",
                              offset=record.offset, record=name)
        return parse_bytes(struct_, source.read(record.offset, record.length, name),
                           record.offset, name)
    struct_, size = (FIXED[name], SIZE[name]) if name in FIXED else (AT_LEAST[name],
                                                                     MIN_SIZE[name])
    return parse_bytes(struct_, source.read(record.offset, size, name), record.offset, name)


def parse_file(source, record):
    """parse_record for FILE, by its f_type: the subtypes crfs knows must be exactly their
    size; other types (sockets, ttys, epoll) are read as the common 48 bytes."""
    common = parse_record(source, record)
    name = name_of(CKPT_FILE, common.f_type)
    struct_ = FILE_SUBTYPES.get(name)
    if struct_ is None or struct_ is ckpt_hdr_file and record.length == struct_.sizeof():
        return common
    if record.length != struct_.sizeof():
        raise FormatError(f"len {record.length}, expected {struct_.sizeof()} for {name}",
                          offset=record.offset, record=record.name)
    data = source.read(record.offset, record.length, record.name)
    return parse_bytes(struct_, data, record.offset, record.name)


_pgarr_compiled = ckpt_hdr_pgarr.compile()   # one per page chunk: the only hot record


def parse_pgarr(source, record):
    """parse_record for PGARR, with the compiled parser."""
    data = source.read(record.offset, SIZE[record.name], record.name)
    return parse_bytes(_pgarr_compiled, data, record.offset, record.name)


def walk(source, offset=0):
    """Every Record from `offset` to the end of the file, in file order."""
    while offset < source.size:
        record = record_at(source, offset)
        yield record
        offset = record.end


# --------------------------------------------------------------------------- listing

def _note(source, record):
    name = record.name
    if name in ("CKPT_HDR_BUFFER", "CKPT_HDR_STRING", "CKPT_HDR_FILE_NAME",
                "CKPT_HDR_PIPE_BUF", "CKPT_HDR_CPU_FPU", "CKPT_HDR_MM_CONTEXT_LDT"):
        return f"{record.data_length} bytes"
    describe = _NOTES.get(name)
    return describe(parse_record(source, record)) if describe else ""


_NOTES = {
    "CKPT_HDR_HEADER": lambda h: (f"{ARCH_BY_ID.get(h.arch_id, f'arch_id {h.arch_id}')} "
                                  f"kernel {h.major}.{h.minor}.{h.patch}"),
    "CKPT_HDR_OBJREF": lambda h: f"{name_of(CKPT_OBJ, h.objtype, h.objtype)} ref {h.objref}",
    "CKPT_HDR_TREE": lambda h: f"nr_tasks {h.nr_tasks}",
    "CKPT_HDR_FILE": lambda h: f"{name_of(CKPT_FILE, h.f_type, h.f_type)}",
    "CKPT_HDR_FILE_TABLE": lambda h: f"fdt_nfds {h.fdt_nfds}",
    "CKPT_HDR_EPOLL_ITEMS": lambda h: f"epfile_objref {h.epfile_objref} num_items {h.num_items}",
    "CKPT_HDR_FILE_DESC": lambda h: (f"fd {h.fd_descriptor} objref {h.fd_objref}"
                                     f"{' cloexec' if h.fd_close_on_exec else ''}"),
    "CKPT_HDR_VMA": lambda h: (f"{name_of(CKPT_VMA, h.vma_type, h.vma_type)} "
                               f"{h.vm_start:#x}-{h.vm_end:#x}"),
    "CKPT_HDR_PGARR": lambda h: f"nr_pages {h.nr_pages}",
    "CKPT_HDR_MM": lambda h: f"map_count {h.map_count}",
    "CKPT_HDR_MM_CONTEXT": lambda h: f"nldt {h.nldt}",
    "CKPT_HDR_TASK_OBJS": lambda h: f"mm_objref {h.mm_objref}",
    "CRFS_HDR_FILE_ID": lambda h: f"dev {dev_text(h.dev)} ino {h.ino} size {h.size}",
    "CRFS_HDR_OOM_SCORE_ADJ": lambda h: f"oom_score_adj {h.oom_score_adj}",
    "CRFS_HDR_SECCOMP": lambda h: f"mode {h.mode}",
    "CRFS_HDR_TASK_MISC": lambda h: (f"personality {h.personality:#010x} flags {h.flags:#x}"
                                     f" policy {h.policy} rt_priority {h.rt_priority}"
                                     f" nice {h.nice}"),
    "CRFS_HDR_RSEQ": lambda h: f"rseq {h.rseq:#x} len {h.rseq_len} sig {h.rseq_sig:#x}",
    "CRFS_HDR_POSIX_TIMER": lambda h: (f"id {h.it_id} clock {h.clockid} signo {h.signo}"
                                       f" value_ns {h.value_ns} interval_ns {h.interval_ns}"),
    "CRFS_HDR_DELETED_STAT": lambda h: f"uid {h.uid} gid {h.gid} mtime_ns {h.mtime_ns}",
    "CRFS_HDR_FILE_OWNER": lambda h: (f"owner {name_of(CRFS_F_OWNER, h.pid_type, h.pid_type)}"
                                      f" {h.pid} signum {h.signum}"),
}


def records(source):
    """RecordInfo for each record in file order; unknown types are listed as 'type N'."""
    for record in walk(source):
        yield RecordInfo(record.offset, record.name, record.length, _note(source, record))
