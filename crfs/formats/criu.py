"""CRIU image directories, byte level: file framing, a protobuf wire decoder and the few
messages crfs reads, declared here with CRIU's field numbers (images/*.proto of
github.com/checkpoint-restore/criu). Why a hand-written decoder: docs/format-criu.md.

A CRIU dump is a directory of files. Each `X.img` but the raw pages-N.img starts with
magics (u32, little-endian): inventory.img with INVENTORY_MAGIC alone, every other file
with IMG_COMMON_MAGIC (IMG_SERVICE_MAGIC for service files) and then the file's own magic;
then entries, each a u32 length and that many bytes of one protobuf message. pages-N.img
holds page bytes only, in the order of the PE_PRESENT entries of the pagemap that names
it (pagemap_head.pages_id = N).

The directory is opened once (O_DIRECTORY|O_NOFOLLOW) and every member relative to it with
O_NOFOLLOW, and must be a regular file: a symlink in a dump is never followed. Member
metadata files are read whole but bounded (MAX_META_FILE); pages files never are.
"""

import os
import stat
import struct
from bisect import bisect_right

from crfs.errors import FormatError
from crfs.formats.source import RecordInfo, Source

IMG_COMMON_MAGIC = 0x54564319
IMG_SERVICE_MAGIC = 0x55105940
INVENTORY_MAGIC = 0x58313116
MAGICS = {
    "INVENTORY": INVENTORY_MAGIC, "PSTREE": 0x50273030, "FDINFO": 0x56213732,
    "PAGEMAP": 0x56084025, "CORE": 0x55053847, "IDS": 0x54432030, "FS": 0x51403912,
    "MM": 0x57492820, "FILES": 0x56303138, "REG_FILES": 0x50363636, "SIGACT": 0x55344201,
    "CREDS": 0x54023547, "SECCOMP": 0x64413049, "TIMENS": 0x43114433, "STATS": 0x57093306,
    "MEMFD_INODE": 0x48453499, "PIPES_DATA": 0x56453709, "FIFO_DATA": 0x59333054,
    "REMAP_FPATH": 0x59133954, "GHOST_FILE": 0x52583605, "SK_QUEUES": 0x56264026,
    "CGROUP": 0x59383330, "UTSNS": 0x54473203, "IPCNS_VAR": 0x53115007,
    "IPCNS_SHM": 0x46283044, "IPCNS_MSG": 0x55453737, "IPCNS_SEM": 0x59573019,
}
MAGIC_NAMES = {v: k for k, v in MAGICS.items()}
IMG_VERSIONS = (1, 2)        # inventory img_version: CRTOOLS_IMAGES_V1, V1_1

PE_PARENT, PE_LAZY, PE_PRESENT = 1, 2, 4
MAX_META_FILE = 64 << 20     # a metadata file larger than this is not a dump of ours
MAX_ENTRY = 16 << 20
MAX_DEPTH = 8
XCR0_AVX = 0x7               # x87 | SSE | AVX

# -------------------------------------------------------------------- wire decoding

U32, U64, I32, S32, S64, BOOL, STR, BYTES = "u32", "u64", "i32", "s32", "s64", "bool", "str", "bytes"
VARINTS = (U32, U64, I32, S32, S64, BOOL)     # the types a varint (wire type 0) may carry
REQ, OPT, REP = "required", "optional", "repeated"


class Message:
    """A protobuf message: field number -> (name, type, label). type is a scalar name
    above or another Message; enums are U32."""

    def __init__(self, name, *fields):
        self.name = name
        self.fields = {number: (fname, ftype, label) for label, ftype, fname, number in fields}
        self.required = [f[0] for f in self.fields.values() if f[2] == REQ]


class WireError(Exception):
    """A decoding failure at `pos`, an offset in the entry's bytes."""

    def __init__(self, message, pos):
        super().__init__(message)
        self.pos = pos


def _varint(data, pos, end):
    result = shift = 0
    while True:
        if pos >= end:
            raise WireError("varint runs past the end", pos)
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise WireError("varint longer than 10 bytes", pos)


def varint(n):
    """The protobuf varint of unsigned `n` (what _varint reads back); for writers of test
    and benchmark images."""
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _scalar(ftype, value):
    """A varint as its declared type."""
    value &= (1 << 64) - 1
    if ftype == U32:
        return value & 0xFFFFFFFF
    if ftype == I32:
        value &= 0xFFFFFFFF
        return value - (1 << 32) if value >> 31 else value
    if ftype in (S32, S64):
        return (value >> 1) ^ -(value & 1)
    if ftype == BOOL:
        return bool(value)
    return value


def decode(data, msg, pos=0, end=None, depth=0):
    """The fields of one `msg` in data[pos:end] as a dict (repeated: lists). Unknown fields
    are skipped as the wire says; WireError on malformed bytes or a missing required field.
    (One-byte varints, most keys and values, are read inline: this loop is the index's
    hot path.)"""
    end = len(data) if end is None else end
    if depth > MAX_DEPTH:
        raise WireError("messages nested too deep", pos)
    out = {}
    fields = msg.fields
    while pos < end:
        start = pos
        key = data[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = _varint(data, pos, end)
        number, wire = key >> 3, key & 7
        if wire == 0:
            if pos < end and data[pos] < 0x80:
                value = data[pos]
                pos += 1
            else:
                value, pos = _varint(data, pos, end)
        elif wire == 2:
            length, pos = _varint(data, pos, end)
            if length > end - pos:
                raise WireError(f"field {number}: {length} bytes run past the end", start)
            value = (pos, pos + length)
            pos += length
        elif wire == 1 or wire == 5:
            size = 8 if wire == 1 else 4
            if pos + size > end:
                raise WireError(f"fixed field {number} runs past the end", start)
            value = int.from_bytes(data[pos:pos + size], "little")
            pos += size
        else:
            raise WireError(f"field {number}: wire type {wire} not supported", start)
        if number == 0:
            raise WireError("field number 0", start)
        spec = fields.get(number)
        if spec is None:
            continue
        if wire == 0 and spec[2] != REP and spec[1] in VARINTS:
            ftype = spec[1]
            out[spec[0]] = value if ftype == U64 and value < (1 << 64) else \
                _scalar(ftype, value)
            continue
        _store(out, data, spec, wire, value, start, depth)    # every wire-type check
    for name in msg.required:
        if name not in out:
            missing = [n for n in msg.required if n not in out]
            raise WireError(f"{msg.name}: missing required {', '.join(missing)}", end)
    return out


def _store(out, data, spec, wire, value, start, depth):
    name, ftype, label = spec
    if isinstance(ftype, Message):
        if wire != 2:
            raise WireError(f"{name}: wire type {wire} for a message", start)
        value = decode(data, ftype, value[0], value[1], depth + 1)
    elif ftype in (STR, BYTES):
        if wire != 2:
            raise WireError(f"{name}: wire type {wire} for {ftype}", start)
        raw = bytes(data[value[0]:value[1]])
        value = raw.decode("utf-8", "surrogateescape") if ftype == STR else raw
    elif wire == 2:                             # a packed repeated scalar
        if label != REP:
            raise WireError(f"{name}: packed bytes for a single {ftype}", start)
        pos, stop = value
        items = out.setdefault(name, [])
        while pos < stop:
            item, pos = _varint(data, pos, stop)
            items.append(_scalar(ftype, item))
        return
    elif wire == 0:
        value = _scalar(ftype, value)
    elif ftype not in (U64, S64):           # fixed64/fixed32 bytes for a varint field
        raise WireError(f"{name}: wire type {wire} for {ftype}", start)
    if label == REP:
        out.setdefault(name, []).append(value)
    else:
        out[name] = value


# -------------------------------------------------------------------- the messages

def _m(name, *fields):
    return Message(name, *fields)


TASK_KOBJ_IDS = _m("task_kobj_ids_entry",
                   (REQ, U32, "vm_id", 1), (REQ, U32, "files_id", 2), (REQ, U32, "fs_id", 3),
                   (REQ, U32, "sighand_id", 4), (OPT, U32, "pid_ns_id", 5),
                   (OPT, U32, "net_ns_id", 6), (OPT, U32, "ipc_ns_id", 7),
                   (OPT, U32, "uts_ns_id", 8), (OPT, U32, "mnt_ns_id", 9),
                   (OPT, U32, "user_ns_id", 10), (OPT, U32, "cgroup_ns_id", 11),
                   (OPT, U32, "time_ns_id", 12))
INVENTORY = _m("inventory_entry", (REQ, U32, "img_version", 1), (OPT, BOOL, "fdinfo_per_id", 2),
               (OPT, TASK_KOBJ_IDS, "root_ids", 3), (OPT, BOOL, "ns_per_id", 4),
               (OPT, U32, "root_cg_set", 5), (OPT, U32, "lsmtype", 6),
               (OPT, U64, "dump_uptime", 8), (OPT, U32, "pre_dump_mode", 9),
               (OPT, BOOL, "tcp_close", 10), (OPT, U32, "network_lock_method", 11),
               (OPT, STR, "dump_criu_run_id", 13))
PSTREE = _m("pstree_entry", (REQ, U32, "pid", 1), (REQ, U32, "ppid", 2), (REQ, U32, "pgid", 3),
            (REQ, U32, "sid", 4), (REP, U32, "threads", 5))
GPREGS_NAMES = ("r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8", "ax", "cx",
                "dx", "si", "di", "orig_ax", "ip", "cs", "flags", "sp", "ss", "fs_base",
                "gs_base", "ds", "es", "fs", "gs")
USER_X86_REGS = _m("user_x86_regs_entry",
                   *[(REQ, U64, n, i) for i, n in enumerate(GPREGS_NAMES, 1)],
                   (OPT, U32, "mode", 28))
XSAVE = _m("user_x86_xsave_entry", (REQ, U64, "xstate_bv", 1), (REP, U32, "ymmh_space", 2),
           (REP, U64, "bndreg_state", 3), (REP, U64, "bndcsr_state", 4),
           (REP, U64, "opmask_reg", 5), (REP, U64, "zmm_upper", 6), (REP, U64, "hi16_zmm", 7),
           (REP, U32, "pkru", 8))
FPREGS = _m("user_x86_fpregs_entry", (REQ, U32, "cwd", 1), (REQ, U32, "swd", 2),
            (REQ, U32, "twd", 3), (REQ, U32, "fop", 4), (REQ, U64, "rip", 5),
            (REQ, U64, "rdp", 6), (REQ, U32, "mxcsr", 7), (REQ, U32, "mxcsr_mask", 8),
            (REP, U32, "st_space", 9), (REP, U32, "xmm_space", 10), (REP, U32, "padding", 11),
            (OPT, XSAVE, "xsave", 13))
USER_DESC = _m("user_desc_t", (REQ, U32, "entry_number", 1), (REQ, U32, "base_addr", 2),
               (REQ, U32, "limit", 3), (REQ, BOOL, "seg_32bit", 4),
               (REQ, BOOL, "contents_h", 5), (REQ, BOOL, "contents_l", 6),
               (REQ, BOOL, "read_exec_only", 7), (REQ, BOOL, "limit_in_pages", 8),
               (REQ, BOOL, "seg_not_present", 9), (REQ, BOOL, "usable", 10))
THREAD_INFO_X86 = _m("thread_info_x86", (REQ, U64, "clear_tid_addr", 1),
                     (REQ, USER_X86_REGS, "gpregs", 2), (REQ, FPREGS, "fpregs", 3),
                     (REP, USER_DESC, "tls", 4))
SA = _m("sa_entry", (REQ, U64, "sigaction", 1), (REQ, U64, "flags", 2),
        (REQ, U64, "restorer", 3), (REQ, U64, "mask", 4), (OPT, BOOL, "compat_sigaction", 5),
        (OPT, U64, "mask_extended", 6))
ITIMER = _m("itimer_entry", (REQ, U64, "isec", 1), (REQ, U64, "iusec", 2),
            (REQ, U64, "vsec", 3), (REQ, U64, "vusec", 4))
POSIX_TIMER = _m("posix_timer_entry", (REQ, U32, "it_id", 1), (REQ, U32, "clock_id", 2),
                 (REQ, U32, "si_signo", 3), (REQ, U32, "it_sigev_notify", 4),
                 (REQ, U64, "sival_ptr", 5), (REQ, U32, "overrun", 6), (REQ, U64, "isec", 7),
                 (REQ, U64, "insec", 8), (REQ, U64, "vsec", 9), (REQ, U64, "vnsec", 10),
                 (OPT, I32, "notify_thread_id", 11))
TASK_TIMERS = _m("task_timers_entry", (REQ, ITIMER, "real", 1), (REQ, ITIMER, "virt", 2),
                 (REQ, ITIMER, "prof", 3), (REP, POSIX_TIMER, "posix", 4))
SIGINFO = _m("siginfo_entry", (REQ, BYTES, "siginfo", 1))
SIGNAL_QUEUE = _m("signal_queue_entry", (REP, SIGINFO, "signals", 1))
RSEQ = _m("rseq_entry", (REQ, U64, "rseq_abi_pointer", 1), (REQ, U32, "rseq_abi_size", 2),
          (REQ, U32, "signature", 3), (OPT, U64, "rseq_cs_pointer", 4))
RLIMIT = _m("rlimit_entry", (REQ, U64, "cur", 1), (REQ, U64, "max", 2))
RLIMITS = _m("task_rlimits_entry", (REP, RLIMIT, "rlimits", 1))
TASK_CORE = _m("task_core_entry", (REQ, U32, "task_state", 1), (REQ, U32, "exit_code", 2),
               (REQ, U32, "personality", 3), (REQ, U32, "flags", 4),
               (REQ, U64, "blk_sigset", 5), (REQ, STR, "comm", 6),
               (OPT, TASK_TIMERS, "timers", 7), (OPT, RLIMITS, "rlimits", 8),
               (OPT, U32, "cg_set", 9),
               (OPT, SIGNAL_QUEUE, "signals_s", 10), (OPT, U32, "old_seccomp_mode", 11),
               (OPT, U32, "loginuid", 13),
               (OPT, I32, "oom_score_adj", 14), (REP, SA, "sigactions", 15),
               (OPT, BOOL, "child_subreaper", 18), (OPT, U32, "stop_signo", 21))
SAS = _m("thread_sas_entry", (REQ, U64, "ss_sp", 1), (REQ, U64, "ss_size", 2),
         (REQ, U32, "ss_flags", 3))
CREDS = _m("creds_entry", (REQ, U32, "uid", 1), (REQ, U32, "gid", 2), (REQ, U32, "euid", 3),
           (REQ, U32, "egid", 4), (REQ, U32, "suid", 5), (REQ, U32, "sgid", 6),
           (REQ, U32, "fsuid", 7), (REQ, U32, "fsgid", 8), (REP, U32, "cap_inh", 9),
           (REP, U32, "cap_prm", 10), (REP, U32, "cap_eff", 11), (REP, U32, "cap_bnd", 12),
           (REQ, U32, "secbits", 13), (REP, U32, "groups", 14),
           (OPT, U32, "no_new_privs", 18), (REP, U32, "cap_amb", 19))
THREAD_CORE = _m("thread_core_entry", (REQ, U64, "futex_rla", 1), (REQ, U32, "futex_rla_len", 2),
                 (OPT, S32, "sched_nice", 3), (OPT, U32, "sched_policy", 4),
                 (OPT, U32, "sched_prio", 5), (OPT, U64, "blk_sigset", 6),
                 (OPT, SAS, "sas", 7), (OPT, U32, "pdeath_sig", 8),
                 (OPT, SIGNAL_QUEUE, "signals_p", 9), (OPT, CREDS, "creds", 10),
                 (OPT, U32, "seccomp_mode", 11), (OPT, STR, "comm", 13),
                 (OPT, RSEQ, "rseq_entry", 15))
CORE = _m("core_entry", (REQ, U32, "mtype", 1), (OPT, THREAD_INFO_X86, "thread_info", 2),
          (OPT, TASK_CORE, "tc", 3), (OPT, TASK_KOBJ_IDS, "ids", 4),
          (OPT, THREAD_CORE, "thread_core", 5))
CORE_MARCH_X86_64 = 1
VMA = _m("vma_entry", (REQ, U64, "start", 1), (REQ, U64, "end", 2), (REQ, U64, "pgoff", 3),
         (REQ, U64, "shmid", 4), (REQ, U32, "prot", 5), (REQ, U32, "flags", 6),
         (REQ, U32, "status", 7), (REQ, S64, "fd", 8), (OPT, U64, "madv", 9),
         (OPT, U32, "fdflags", 10))
MM = _m("mm_entry", *[(REQ, U64, n, i) for i, n in enumerate(
            ("mm_start_code", "mm_end_code", "mm_start_data", "mm_end_data", "mm_start_stack",
             "mm_start_brk", "mm_brk", "mm_arg_start", "mm_arg_end", "mm_env_start",
             "mm_env_end"), 1)],
        (REQ, U32, "exe_file_id", 12), (REP, U64, "mm_saved_auxv", 13), (REP, VMA, "vmas", 14),
        (OPT, I32, "dumpable", 15))
PAGEMAP_HEAD = _m("pagemap_head", (REQ, U32, "pages_id", 1))
PAGEMAP = _m("pagemap_entry", (REQ, U64, "vaddr", 1), (REQ, U32, "compat_nr_pages", 2),
             (OPT, BOOL, "in_parent", 3), (OPT, U32, "flags", 4), (OPT, U64, "nr_pages", 5))
FS = _m("fs_entry", (REQ, U32, "cwd_id", 1), (REQ, U32, "root_id", 2), (OPT, U32, "umask", 3))
FOWN = _m("fown_entry", (REQ, U32, "uid", 1), (REQ, U32, "euid", 2), (REQ, U32, "signum", 3),
          (REQ, U32, "pid_type", 4), (REQ, U32, "pid", 5))
REG_FILE = _m("reg_file_entry", (REQ, U32, "id", 1), (REQ, U32, "flags", 2), (REQ, U64, "pos", 3),
              (REQ, FOWN, "fown", 5), (REQ, STR, "name", 6), (OPT, S32, "mnt_id", 7),
              (OPT, U64, "size", 8), (OPT, BOOL, "ext", 9), (OPT, U32, "mode", 10))
MEMFD_FILE = _m("memfd_file_entry", (REQ, U32, "id", 1), (REQ, U32, "flags", 2),
                (REQ, U64, "pos", 3), (REQ, FOWN, "fown", 4), (REQ, U32, "inode_id", 5))
MEMFD_INODE = _m("memfd_inode_entry", (REQ, STR, "name", 1), (REQ, U32, "uid", 2),
                 (REQ, U32, "gid", 3), (REQ, U64, "size", 4), (REQ, U32, "shmid", 5),
                 (REQ, U32, "seals", 6), (REQ, U64, "inode_id", 7))
# The open files crfs shows in fd/ and fdinfo/ (only the fields it reads are declared).
# inet_sk_entry: addresses are the u32 words of the in-kernel address (network order in
# memory, so 127.0.0.1 is 0x0100007f), ports in host order; ns_id is criu's net ns id.
INET_SK = _m("inet_sk_entry", (REQ, U32, "id", 1), (REQ, U32, "ino", 2),
             (REQ, U32, "family", 3), (REQ, U32, "type", 4), (REQ, U32, "proto", 5),
             (REQ, U32, "state", 6), (REQ, U32, "src_port", 7), (REQ, U32, "dst_port", 8),
             (REQ, U32, "flags", 9), (REQ, U32, "backlog", 10), (REP, U32, "src_addr", 11),
             (REP, U32, "dst_addr", 12), (OPT, BOOL, "v6only", 15), (OPT, STR, "ifname", 17),
             (OPT, U32, "ns_id", 18))
FILE_PERMS = _m("file_perms_entry", (REQ, U32, "mode", 1), (REQ, U32, "uid", 2),
                (REQ, U32, "gid", 3))
UNIX_SK = _m("unix_sk_entry", (REQ, U32, "id", 1), (REQ, U32, "ino", 2), (REQ, U32, "type", 3),
             (REQ, U32, "state", 4), (REQ, U32, "flags", 5), (REQ, U32, "uflags", 6),
             (REQ, U32, "backlog", 7), (REQ, U32, "peer", 8), (REQ, FOWN, "fown", 9),
             (REQ, BYTES, "name", 11),
             (OPT, U32, "shutdown", 12), (OPT, FILE_PERMS, "file_perms", 13),
             (OPT, STR, "name_dir", 14), (OPT, BOOL, "deleted", 15))
# sk-queues.img: a message queued for socket `id_for`, its `length` bytes after the entry
SCM = _m("scm_entry", (REQ, U32, "type", 1), (REP, U32, "rights", 2))
SK_PACKET = _m("sk_packet_entry", (REQ, U32, "id_for", 1), (REQ, U32, "length", 2),
               (REP, SCM, "scm", 4))
EVENTFD = _m("eventfd_file_entry", (REQ, U32, "id", 1), (REQ, U32, "flags", 2),
             (REQ, U64, "counter", 4))
EVENTPOLL_TFD = _m("eventpoll_tfd_entry", (REQ, U32, "id", 1), (REQ, U32, "tfd", 2),
                   (REQ, U32, "events", 3), (REQ, U64, "data", 4))
EVENTPOLL = _m("eventpoll_file_entry", (REQ, U32, "id", 1), (REQ, U32, "flags", 2),
               (REP, EVENTPOLL_TFD, "tfd", 4))
SIGNALFD = _m("signalfd_entry", (REQ, U32, "id", 1), (REQ, U32, "flags", 2),
              (REQ, U64, "sigmask", 4))
TIMERFD = _m("timerfd_entry", (REQ, U32, "id", 1), (REQ, U32, "flags", 2),
             (REQ, U32, "clockid", 4), (REQ, U64, "ticks", 5), (REQ, U32, "settime_flags", 6),
             (REQ, U64, "vsec", 7), (REQ, U64, "vnsec", 8), (REQ, U64, "isec", 9),
             (REQ, U64, "insec", 10))
FIFO = _m("fifo_entry", (REQ, U32, "id", 1), (REQ, U32, "pipe_id", 2), (OPT, U32, "regf_id", 3))
PIPE = _m("pipe_entry", (REQ, U32, "id", 1), (REQ, U32, "pipe_id", 2), (REQ, U32, "flags", 3),
          (REQ, FOWN, "fown", 4))
TTY_FILE = _m("tty_file_entry", (REQ, U32, "id", 1), (OPT, U32, "regf_id", 4))
# An fd on a namespace file (/proc/PID/ns/net opened): ns_id is criu's id of the namespace
# (as in ids-PID.img), ns_cflag its CLONE_NEW* flag.
NS_FILE = _m("ns_file_entry", (REQ, U32, "id", 1), (REQ, U32, "ns_id", 2),
             (REQ, U32, "ns_cflag", 3), (REQ, U32, "flags", 4))
FILE = _m("file_entry", (REQ, U32, "type", 1), (REQ, U32, "id", 2), (OPT, REG_FILE, "reg", 3),
          (OPT, INET_SK, "isk", 4), (OPT, NS_FILE, "nsf", 5), (OPT, EVENTFD, "efd", 8), (OPT, EVENTPOLL, "epfd", 9),
          (OPT, SIGNALFD, "sgfd", 10), (OPT, TIMERFD, "tfd", 12), (OPT, UNIX_SK, "usk", 16),
          (OPT, FIFO, "fifo", 17), (OPT, PIPE, "pipe", 18), (OPT, TTY_FILE, "tty", 19),
          (OPT, MEMFD_FILE, "memfd", 20))
# remap-fpath.img: a file (reg_file id) the dump keeps elsewhere; GHOST (1): in
# ghost-file-REMAP_ID.img, a file deleted while open
REMAP_FPATH = _m("remap_file_path_entry", (REQ, U32, "orig_id", 1), (REQ, U32, "remap_id", 2),
                 (OPT, U32, "remap_type", 3))
REMAP_GHOST = 1
TIMEVAL = _m("timeval", (REQ, U64, "tv_sec", 1), (REQ, U64, "tv_usec", 2))
GHOST_FILE = _m("ghost_file_entry", (REQ, U32, "uid", 1), (REQ, U32, "gid", 2),
                (REQ, U32, "mode", 3), (OPT, U32, "dev", 4), (OPT, U64, "ino", 5),
                (OPT, U32, "rdev", 6), (OPT, TIMEVAL, "atim", 7), (OPT, TIMEVAL, "mtim", 8),
                (OPT, BOOL, "chunks", 9), (OPT, U64, "size", 10),
                (OPT, STR, "symlnk_target", 11))
GHOST_CHUNK = _m("ghost_chunk_entry", (REQ, U64, "len", 1), (REQ, U64, "off", 2))
# pipes-data.img, fifo-data.img: each entry followed by its `bytes` bytes of pipe data
PIPE_DATA = _m("pipe_data_entry", (REQ, U32, "pipe_id", 1), (REQ, U32, "bytes", 2),
               (OPT, U32, "size", 3))
# cgroup.img: the cgroup sets of the dumped tasks (a core's tc.cg_set names one; the
# inventory's root_cg_set is criu's own) and the controllers' directories
CG_MEMBER = _m("cg_member_entry", (REQ, STR, "name", 1), (REQ, STR, "path", 2),
               (OPT, U32, "cgns_prefix", 3))
CG_SET = _m("cg_set_entry", (REQ, U32, "id", 1), (REP, CG_MEMBER, "ctls", 2))
CG_PERMS = _m("cgroup_perms", (REQ, U32, "mode", 1), (REQ, U32, "uid", 2), (REQ, U32, "gid", 3))
CG_PROP = _m("cgroup_prop_entry", (REQ, STR, "name", 1), (REQ, STR, "value", 2),
             (OPT, CG_PERMS, "perms", 3))
CG_DIR = Message("cgroup_dir_entry")          # recursive: fields set below
CG_DIR.fields = {1: ("dir_name", STR, REQ), 2: ("children", CG_DIR, REP),
                 3: ("properties", CG_PROP, REP), 4: ("dir_perms", CG_PERMS, OPT)}
CG_DIR.required = ["dir_name"]
CG_CONTROLLER = _m("cg_controller_entry", (REP, STR, "cnames", 1), (REP, CG_DIR, "dirs", 2),
                   (OPT, BOOL, "is_threaded", 3))
CGROUP = _m("cgroup_entry", (REP, CG_SET, "sets", 1), (REP, CG_CONTROLLER, "controllers", 2))
# utsns-ID.img, ipcns-shm-ID.img (ID: criu's id of the namespace, ids-PID.img's uts_ns_id,
# ipc_ns_id). A segment's pages: in_pagemaps, pagemap-shmem-SHMID.img (SHMID: desc.id);
# without it (older criu) its size bytes, rounded up to 4, follow the entry.
UTSNS = _m("utsns_entry", (REQ, STR, "nodename", 1), (REQ, STR, "domainname", 2))
IPC_DESC = _m("ipc_desc_entry", (REQ, U32, "key", 1), (REQ, U32, "uid", 2), (REQ, U32, "gid", 3),
              (REQ, U32, "cuid", 4), (REQ, U32, "cgid", 5), (REQ, U32, "mode", 6),
              (REQ, U32, "id", 7))
IPC_SHM = _m("ipc_shm_entry", (REQ, IPC_DESC, "desc", 1), (REQ, U64, "size", 2),
             (OPT, BOOL, "in_pagemaps", 3))
FDINFO = _m("fdinfo_entry", (REQ, U32, "id", 1), (REQ, U32, "flags", 2), (REQ, U32, "type", 3),
            (REQ, U32, "fd", 4))
FD_TYPES = {1: "REG", 2: "PIPE", 3: "FIFO", 4: "INETSK", 5: "UNIXSK", 6: "EVENTFD",
            7: "EVENTPOLL", 8: "INOTIFY", 9: "SIGNALFD", 10: "PACKETSK", 11: "TTY",
            12: "FANOTIFY", 13: "NETLINKSK", 14: "NS", 15: "TUNF", 16: "EXT", 17: "TIMERFD",
            18: "MEMFD", 19: "BPFMAP", 20: "PIDFD"}

# Which file holds which messages: the name's prefix -> (magic name, first entry, others).
FILE_KINDS = {
    "inventory": ("INVENTORY", INVENTORY, INVENTORY),
    "pstree": ("PSTREE", PSTREE, PSTREE),
    "core": ("CORE", CORE, CORE),
    "mm": ("MM", MM, MM),
    "pagemap": ("PAGEMAP", PAGEMAP_HEAD, PAGEMAP),
    "pagemap-shmem": ("PAGEMAP", PAGEMAP_HEAD, PAGEMAP),     # shared memory, by shmid
    "fs": ("FS", FS, FS),
    "ids": ("IDS", TASK_KOBJ_IDS, TASK_KOBJ_IDS),
    "files": ("FILES", FILE, FILE),
    "reg-files": ("REG_FILES", REG_FILE, REG_FILE),
    "fdinfo": ("FDINFO", FDINFO, FDINFO),
    "memfd": ("MEMFD_INODE", MEMFD_INODE, MEMFD_INODE),
    "remap-fpath": ("REMAP_FPATH", REMAP_FPATH, REMAP_FPATH),
    # the file's bytes follow: the rest of the file, or (chunks) each chunk's after it
    "ghost-file": ("GHOST_FILE", GHOST_FILE, GHOST_CHUNK),
    "pipes-data": ("PIPES_DATA", PIPE_DATA, PIPE_DATA),
    "sk-queues": ("SK_QUEUES", SK_PACKET, SK_PACKET),
    "fifo-data": ("FIFO_DATA", PIPE_DATA, PIPE_DATA),
    "cgroup": ("CGROUP", CGROUP, CGROUP),
    "utsns": ("UTSNS", UTSNS, UTSNS),
    "ipcns-shm": ("IPCNS_SHM", IPC_SHM, IPC_SHM),
}
# Files whose entries are each followed by raw bytes, as many as the entry's field says.
DATA_FIELDS = {"pipes-data": "bytes", "fifo-data": "bytes", "ghost-file": "len",
               "sk-queues": "length"}


def kind_of(name):
    """The FILE_KINDS key of member `name` ("core-147.img" -> "core"), or None."""
    if not name.endswith(".img"):
        return None
    stem = name[:-4]
    if stem in FILE_KINDS:
        return stem
    prefix, _, rest = stem.rpartition("-")
    return prefix if prefix in FILE_KINDS and rest.isdigit() else None


# -------------------------------------------------------------------- the directory

class Entry:
    """One message of a member file: its index, where its bytes start, the decoded dict;
    `data`: where the raw bytes after it start in the file (files of DATA_FIELDS), their
    count being the entry's field (length counts them too)."""

    __slots__ = ("index", "offset", "length", "fields", "data")

    def __init__(self, index, offset, length, fields, data=None):
        self.index, self.offset, self.length, self.fields = index, offset, length, fields
        self.data = data


def sniff(head):
    return len(head) >= 4 and int.from_bytes(head[:4], "little") == INVENTORY_MAGIC


class CriuDir(Source):
    """A CRIU image directory as one Source: its member files in a row (inventory.img
    first, then the others by name), so `pread` and `size` cover the whole dump (the
    registry sniffs its head; verify checks the records end where the files do). Member
    files are opened relative to the directory, never through a symlink."""

    format_name = "criu"       # detected as such whatever inventory.img holds: the loader
                               # then says what is wrong with it, naming the file

    def __init__(self, fd, path, listing):
        """`listing`: (name, size) of each regular *.img member."""
        super().__init__(fd, 0, path)
        self.members = []          # (virtual offset, name, size)
        self._sources = {}
        listing = sorted(listing, key=lambda m: (m[0] != "inventory.img", m[0]))
        offset = 0
        for name, size in listing:
            self.members.append((offset, name, size))
            offset += size
        self.size = offset

    @classmethod
    def open(cls, path, follow_symlinks=True):
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | (0 if follow_symlinks
                                                               else os.O_NOFOLLOW)
        fd = os.open(path, flags)
        try:
            listing = []
            for name in os.listdir(fd):
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if stat.S_ISREG(st.st_mode) and name.endswith(".img"):
                    listing.append((name, st.st_size))
            return cls(fd, path, listing)
        except BaseException:
            os.close(fd)
            raise

    def names(self):
        return [name for _, name, _ in self.members]

    def member(self, name):
        """A Source over member `name` (kept open until close), or FormatError."""
        source = self._sources.get(name)
        if source is None:
            source = self._sources[name] = self._open_member(name)
        return source

    def _open_member(self, name):
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.fd)
        except OSError as exc:
            raise FormatError(f"cannot open: {exc.strerror}", record=name) from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise FormatError("not a regular file", record=name)
        return Source(fd, st.st_size, name)

    def offset_of(self, name):
        """Where member `name` starts in the row of files (page offsets are in this space:
        one Mm reads its pages, and the shared memory it maps, from several pages files)."""
        for start, member, _ in self.members:
            if member == name:
                return start
        raise FormatError("missing from the dump", record=name)

    def pread(self, offset, length):
        out = []
        i = max(bisect_right(self._starts(), offset) - 1, 0)
        while length > 0 and i < len(self.members):
            start, name, size = self.members[i]
            if start <= offset < start + size:
                piece = self.member(name).pread(offset - start, min(length, start + size - offset))
                if not piece:
                    break
                out.append(piece)
                offset += len(piece)
                length -= len(piece)
            i += 1
        return b"".join(out)

    def readinto(self, buffer, offset):
        data = self.pread(offset, len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def _starts(self):
        starts = getattr(self, "_start_list", None)
        if starts is None:
            starts = self._start_list = [start for start, _, _ in self.members]
        return starts

    def close(self):
        for source in getattr(self, "_sources", {}).values():
            source.close()
        if getattr(self, "_sources", None) is not None:
            self._sources = {}
        super().close()


def where(name, index, offset, what):
    return f"{name}: entry {index} ({what})" if index is not None else f"{name}: {what}"


def read_entries(criu_dir, name, kind=None):
    """[Entry] of member `name`, checked from its magics to its last byte; FormatError
    naming the file, the entry and the offset in that file otherwise."""
    kind = kind or kind_of(name)
    magic_name, first_msg, msg = FILE_KINDS[kind]
    source = criu_dir.member(name)
    if source.size > MAX_META_FILE:
        raise FormatError(f"{source.size} bytes: too big for a CRIU metadata file",
                          offset=0, record=name)
    data = source.read(0, source.size, name)
    pos = _check_magic(data, name, magic_name)
    entries = []
    while pos < len(data):
        index = len(entries)
        m = first_msg if index == 0 else msg
        if kind == "ghost-file" and index == 1 and not entries[0].fields.get("chunks"):
            entries[0].data, entries[0].length = pos, len(data) - entries[0].offset
            break           # a ghost file's bytes without chunks: the rest of the file
        if pos + 4 > len(data):
            raise FormatError(f"{len(data) - pos} bytes left, less than an entry's size",
                              offset=pos, record=where(name, index, pos, m.name))
        length = int.from_bytes(data[pos:pos + 4], "little")
        if length > len(data) - pos - 4 or length > MAX_ENTRY:
            raise FormatError(f"entry of {length} bytes runs past the end "
                              f"({len(data) - pos - 4} left)",
                              offset=pos, record=where(name, index, pos, m.name))
        try:
            fields = decode(data, m, pos + 4, pos + 4 + length)
        except WireError as exc:
            raise FormatError(str(exc), offset=exc.pos,
                              record=where(name, index, pos, m.name)) from None
        entry = Entry(index, pos, 4 + length, fields)
        count = _data_count(kind, fields)
        if count is not None:
            if count > len(data) - pos - entry.length:
                raise FormatError(f"{count} bytes of data run past the end "
                                  f"({len(data) - pos - entry.length} left)",
                                  offset=pos + entry.length,
                                  record=where(name, index, pos, m.name))
            entry.data = pos + entry.length
            entry.length += count
        entries.append(entry)
        pos += entry.length
    if kind == "ghost-file" and entries and entries[0].data is None \
            and not entries[0].fields.get("chunks"):
        entries[0].data = pos          # an empty file's: no bytes after its entry
    return entries


def _data_count(kind, fields):
    """How many raw bytes follow an entry of a `kind` file (None: none)."""
    if kind == "ipcns-shm":         # older criu: the segment's bytes, to a multiple of 4
        return None if fields.get("in_pagemaps") else -(-fields["size"] // 4) * 4
    if kind in DATA_FIELDS and DATA_FIELDS[kind] in fields:
        return fields[DATA_FIELDS[kind]]
    return None


def file_magic(head, name):
    """(magic name, where the entries start) of member `name` from its first 8 bytes:
    "INVENTORY" (4), a MAGICS name or the hex of an unknown one (8); FormatError naming
    the file and the offset when the head is no CRIU image's."""
    if len(head) < 4:
        raise FormatError("no magic: file shorter than 4 bytes", offset=0, record=name)
    first = int.from_bytes(head[:4], "little")
    if first == INVENTORY_MAGIC:
        return "INVENTORY", 4
    if first not in (IMG_COMMON_MAGIC, IMG_SERVICE_MAGIC):
        raise FormatError(f"magic {first:#010x} is neither IMG_COMMON_MAGIC nor "
                          f"IMG_SERVICE_MAGIC", offset=0, record=name)
    if len(head) < 8:
        raise FormatError("no file magic after the image magic", offset=4, record=name)
    second = int.from_bytes(head[4:8], "little")
    return MAGIC_NAMES.get(second, f"{second:#010x}"), 8


def _check_magic(data, name, magic_name):
    """Where the entries of member `name` (bytes `data`) start, its magic being
    `magic_name`'s; FormatError otherwise."""
    if magic_name == "INVENTORY":
        first = int.from_bytes(data[:4], "little") if len(data) >= 4 else None
        if first != INVENTORY_MAGIC:
            raise FormatError("no magic: file shorter than 4 bytes" if first is None else
                              f"magic {first:#010x} is not INVENTORY_MAGIC", offset=0,
                              record=name)
        return 4
    found, pos = file_magic(data[:8], name)
    if found != magic_name:
        raise FormatError(f"magic {found} where {magic_name} was expected", offset=4 if
                          pos == 8 else 0, record=name)
    return pos


def member_magic(criu_dir, name):
    """The magic name of a member file (RAW for pages-*.img, '?' when unknown)."""
    try:
        found, _ = file_magic(criu_dir.member(name).pread(0, 8), name)
    except FormatError:
        return "RAW" if name.startswith("pages-") else "?"
    return found if found in MAGICS else "?"


def records(source):
    """RecordInfo of every entry of the files crfs reads, and one per other file (pages
    files and the images crfs does not decode), at offsets in the CriuDir's row of files."""
    if not isinstance(source, CriuDir):
        raise FormatError("a CRIU inventory.img alone: the image is the dump directory "
                          "that holds it", offset=0, record="inventory.img")
    for start, name, size in source.members:
        kind = kind_of(name)
        if kind is None:
            note = "raw pages" if name.startswith("pages-") else member_magic(source, name)
            yield RecordInfo(start, f"{name}", size, note)
            continue
        entries = read_entries(source, name, kind)
        head = entries[0].offset if entries else size
        yield RecordInfo(start, f"{name}: magic", head, FILE_KINDS[kind][0])
        for e in entries:
            msg = FILE_KINDS[kind][1] if e.index == 0 else FILE_KINDS[kind][2]
            yield RecordInfo(start + e.offset, f"{name}: {msg.name}", e.length,
                             f"entry {e.index} at {e.offset:#x}")


def fpu_bytes(fp):
    """The XSAVE area (FXSAVE's 512 bytes, then the xsave header and the AVX upper
    halves) of a user_x86_fpregs_entry, as the kernel's ptrace regset gives it; FXSAVE alone
    when the image has no xsave. Components past AVX are not rebuilt (their offsets are
    the CPU's): xstate_bv and the xcr0 word keep x87|SSE|AVX only."""
    def words(key, count, fmt="I"):
        values = list(fp.get(key, []))[:count]
        return struct.pack(f"<{count}{fmt}", *(values + [0] * (count - len(values))))
    head = struct.pack("<HHHHQQII", fp["cwd"] & 0xFFFF, fp["swd"] & 0xFFFF, fp["twd"] & 0xFFFF,
                       fp["fop"] & 0xFFFF, fp["rip"], fp["rdp"], fp["mxcsr"], fp["mxcsr_mask"])
    fx = bytearray(head + words("st_space", 32) + words("xmm_space", 64) + bytes(96))
    xsave = fp.get("xsave")
    if xsave is None:
        return bytes(fx)
    # The software-reserved words at 464: ptrace's regset (and so a core's NT_X86_XSTATE)
    # keeps xcr0 in the first (gdb reads the layout there): x87|SSE|AVX, the parts given.
    fx[464:472] = struct.pack("<Q", XCR0_AVX)
    header = struct.pack("<QQ", xsave["xstate_bv"] & XCR0_AVX, 0) + bytes(48)
    return bytes(fx) + header + _ymmh(xsave)


def _ymmh(xsave):
    values = list(xsave.get("ymmh_space", []))[:64]
    return struct.pack("<64I", *(values + [0] * (64 - len(values))))
