"""Image, Task, Mm, Vma: what a checkpoint holds, whatever format it came in."""

from bisect import bisect_right
from dataclasses import dataclass, field, fields, make_dataclass
from typing import Optional

from crfs.formats.x86 import PAGE_SIZE
from crfs.model.pages import PageMap
from crfs.model.registers import Registers

# Vma.kind values, format-neutral.
VMA_KINDS = ("anon", "file", "shm-anon", "shm-file", "shm-ipc", "vdso", "ignore", "vvar")


class NativeFields:
    """Base of the typed records a format keeps for what only it stores (the VMA record
    type, objrefs, times ...): its loader fills one, its writer reads it back, so an image
    written in its own format loses nothing. Other formats ignore it."""

    def shown(self):
        """The fields worth showing, in declared order (None: not stored)."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) is not None}

    @classmethod
    def of(cls, owner):
        """`owner.native` when it is one of ours, else a record of defaults."""
        return owner.native if isinstance(owner.native, cls) else cls()


def native_record(name, field_names):
    """A NativeFields dataclass with one field per stored field name (None: not stored)."""
    return make_dataclass(name, [(n, Optional[object], None) for n in field_names],
                          bases=(NativeFields,))


def get_field(task, where):
    """The value at `where`, a (part, attribute) pair: ("exit", "code") is task.exit.code,
    (None, "pgid") is task.pgid. Formats map their record fields to the model with these."""
    part, attribute = where
    return getattr(getattr(task, part) if part else task, attribute)


def set_field(task, where, value):
    part, attribute = where
    setattr(getattr(task, part) if part else task, attribute, value)


ID_NAMES = ("uid", "euid", "suid", "fsuid", "gid", "egid", "sgid", "fsgid")


@dataclass
class Creds:
    """Real, effective, saved and filesystem ids; supplementary groups, capability sets
    (64-bit masks) and securebits where the format or the capture has them (None: not
    stored)."""
    uid: int = 0
    euid: int = 0
    suid: int = 0
    fsuid: int = 0
    gid: int = 0
    egid: int = 0
    sgid: int = 0
    fsgid: int = 0
    groups: Optional[list] = None
    cap_inh: Optional[int] = None
    cap_prm: Optional[int] = None
    cap_eff: Optional[int] = None
    cap_bnd: Optional[int] = None
    cap_amb: Optional[int] = None
    securebits: Optional[int] = None
    no_new_privs: Optional[int] = None

    @classmethod
    def names(cls):
        """The eight ids (the fields every format stores)."""
        return ID_NAMES


# --------------------------------------------------------------------------- signals

NSIG = 64                    # signals 1..64 (x86)
RLIM_NLIMITS = 16            # RLIMIT_CPU .. RLIMIT_RTTIME
RLIM_INFINITY = (1 << 64) - 1   # "unlimited", whatever the image's word size
SIG_DFL, SIG_IGN = 0, 1
SS_ONSTACK, SS_DISABLE = 1, 2


@dataclass
class SigAction:
    """One signal's disposition: handler (SIG_DFL, SIG_IGN or an address), SA_* flags,
    sa_restorer and the mask blocked while the handler runs (bit n-1: signal n)."""
    handler: int = SIG_DFL
    flags: int = 0
    restorer: int = 0
    mask: int = 0


@dataclass(eq=False)
class SigHand:
    """The signal handlers, shared by the threads of a process (CLONE_SIGHAND) as an Mm
    is: actions[n - 1] is signal n's."""
    actions: list = field(default_factory=lambda: [SigAction() for _ in range(NSIG)])


@dataclass
class SigInfo:
    """One queued signal: siginfo's fields as a checkpoint keeps them (which union member
    pid/uid/sigval/utime/stime hold depends on the signal's class, see docs/format-ckpt.md)."""
    signo: int = 0
    errno: int = 0
    code: int = 0
    pid: int = 0
    uid: int = 0
    sigval_int: int = 0
    sigval_ptr: int = 0
    utime: int = 0
    stime: int = 0
    raw: Optional[bytes] = None     # the x86_64 kernel_siginfo, whole (48 bytes), if known


@dataclass
class Pending:
    """A pending-signal set (bit n-1: signal n) and its queued siginfo, in queue order."""
    mask: int = 0
    queue: list = field(default_factory=list)


@dataclass
class Itimers:
    """setitimer(2) timers: remaining value and interval of each, in ns (0: disarmed)."""
    real_value: int = 0
    real_incr: int = 0
    virt_value: int = 0
    virt_incr: int = 0
    prof_value: int = 0
    prof_incr: int = 0


@dataclass(eq=False)
class ThreadGroup:
    """What the threads of a process share in the kernel's signal_struct: resource limits
    ((soft, hard) per RLIMIT_* number, RLIM_INFINITY for unlimited), interval timers and the
    process-wide pending signals."""
    rlimits: Optional[list] = None
    itimers: Optional[Itimers] = None
    shared_pending: Pending = field(default_factory=Pending)
    native: Optional["NativeFields"] = None
    oom_score_adj: Optional[int] = None   # /proc/PID/oom_score_adj (None: not stored)
    posix_timers: list = field(default_factory=list)   # PosixTimer, by increasing id


@dataclass
class PosixTimer:
    """A POSIX timer of the process (timer_create(2)), as /proc/PID/timers and
    timer_gettime(2) show it. notify: SIGEV_SIGNAL 0, SIGEV_NONE 1, SIGEV_SIGNAL |
    SIGEV_THREAD_ID 4 (notify_tid: that thread); value_ns: time left (0: disarmed);
    pending: its signal was queued (the restart makes it fire at once)."""
    id: int = 0
    clockid: int = 0
    signo: int = 0
    notify: int = 0
    notify_tid: int = 0
    sigev_value: int = 0
    value_ns: int = 0
    interval_ns: int = 0
    overrun: int = 0
    pending: bool = False


@dataclass
class TaskMisc:
    """A task's personality and scheduling, and its process's prctl flags."""
    personality: int = 0          # /proc/PID/personality
    policy: int = 0               # SCHED_NORMAL 0, FIFO 1, RR 2, BATCH 3, IDLE 5
    rt_priority: int = 0
    nice: int = 0
    thp_disable: bool = False     # prctl(PR_SET_THP_DISABLE) (/proc status THP_enabled: 0)
    child_subreaper: bool = False  # prctl(PR_SET_CHILD_SUBREAPER)


@dataclass
class Rseq:
    """rseq(2): the thread's registered struct rseq."""
    addr: int = 0
    length: int = 0
    sig: int = 0


@dataclass
class AltStack:
    """sigaltstack(2): the alternate signal stack."""
    sp: int = 0
    size: int = 0
    flags: int = SS_DISABLE


@dataclass
class Signals:
    """A thread's signal state: its process's handlers and thread group (shared objects),
    its blocked mask, its own pending signals and its alternate stack (None: not stored)."""
    handlers: Optional[SigHand] = None
    group: Optional[ThreadGroup] = None
    blocked: int = 0
    pending: Pending = field(default_factory=Pending)
    altstack: Optional[AltStack] = None


@dataclass(eq=False)
class FsStruct:
    """fs_struct, shared by threads (CLONE_FS): working directory, root, umask."""
    cwd: Optional[str] = None
    root: Optional[str] = None
    umask: Optional[int] = None


# --------------------------------------------------------------------------- files

# OpenFile.kind values. "file" is a file opened by path whose type the image does not
# record (linux-cr's GENERIC: regular file, directory or device); a capture says which.
FILE_KINDS = ("reg", "dir", "chr", "blk", "file", "pipe", "fifo", "eventfd", "timerfd",
              "signalfd", "epoll", "socket", "anon", "deleted", "other")
# Kinds that are reopened by their path.
PATH_KINDS = ("reg", "dir", "chr", "blk", "file")
# Kinds crfs records (kind and readlink text) but cannot restore.
OPAQUE_KINDS = ("socket", "anon", "deleted", "other")


@dataclass
class Blob:
    """Bytes kept where they are: `length` bytes at `offset` of `source` (never loaded
    until read)."""
    source: object
    offset: int
    length: int

    def read(self):
        return self.source.pread(self.offset, self.length) if self.length else b""


@dataclass
class FdTimer:
    """A timerfd: its clock, the time left to the next expiry and the interval (ns; 0:
    disarmed, one-shot), expirations not yet read, and timerfd_settime's flags."""
    clockid: int = 0
    value_ns: int = 0
    interval_ns: int = 0
    ticks: int = 0
    flags: int = 0


@dataclass
class InetSock:
    """An inet socket as /proc/net/{tcp,udp}[6] describe it: addresses as the kernel's u32
    words (network order in memory: 127.0.0.1 is 0x0100007f; four for IPv6), ports in
    host order, the TCP state number (UDP: 7, TCP_CLOSE, or 1 once connected)."""
    ino: int
    family: int                  # AF_INET 2, AF_INET6 10
    type: int                    # SOCK_STREAM 1, SOCK_DGRAM 2, ...
    proto: int                   # IPPROTO_TCP 6, IPPROTO_UDP 17, ...
    state: int
    src: tuple = ()
    src_port: int = 0
    dst: tuple = ()
    dst_port: int = 0
    backlog: int = 0
    netns: Optional[str] = None  # the namespace it lives in, as Task.namespaces["net"]
    where: Optional[str] = None  # its record in the image ("files.img: entry 5 (file_entry)")


@dataclass
class UnixSock:
    """A UNIX socket: its inode (socket:[ino]) and its peer's (0: none kept), family, type
    (SOCK_STREAM 1, SOCK_DGRAM 2, SOCK_SEQPACKET 5), sock_diag state (1 connected, 7
    unconnected, 10 listening), shutdown bits, listen backlog, bound name (bytes), and the
    messages queued for it: their lengths (one for a stream's bytes) and data (a Blob).
    icon: a connection not accepted yet, `peer` then the listening socket's inode; mode,
    uid, gid: the socket file of a path-bound socket (mode 0: not known)."""
    ino: int = 0
    peer: int = 0
    family: int = 1
    type: int = 1
    state: int = 7
    shutdown: int = 0
    backlog: int = 0
    name: bytes = b""
    msgs: tuple = ()
    data: Optional[Blob] = None
    icon: bool = False
    mode: int = 0
    uid: int = 0
    gid: int = 0


@dataclass
class EpollWatch:
    """One file an epoll watches: the fd it was added as (in the epoll owner's table), the
    OpenFile, and epoll_event's events and data."""
    fd: int
    file: "OpenFile"
    events: int = 0
    data: int = 0


@dataclass(eq=False)
class OpenFile:
    """An open file description, shared by every fd (of any process) that refers to it.

    path: the path it was opened by (kinds in PATH_KINDS and fifo), or for the others the
    text /proc/PID/fd/N reads as ("socket:[123]", "anon_inode:[eventfd]", "/tmp/x
    (deleted)"). flags: f_flags (O_*, without O_CLOEXEC, which belongs to the fd); mode:
    FMODE_* bits; pos: the file position. Pipes and FIFOs: pipe is an id both ends share,
    data the bytes buffered in the pipe (with the first end met); a deleted file's data, its
    content. eventfd: count; timerfd: timer; signalfd: sigmask (bit n-1: signal n); epoll:
    watches."""
    kind: str
    path: Optional[str] = None
    flags: int = 0
    mode: int = 0
    pos: int = 0
    pipe: Optional[int] = None
    data: Optional[Blob] = None
    count: Optional[int] = None
    timer: Optional[FdTimer] = None
    sigmask: Optional[int] = None
    watches: Optional[list] = None      # epoll: EpollWatch, by fd
    native: Optional["NativeFields"] = None
    file_id: Optional["FileId"] = None  # a mapped file's identity (CRFS_FILE_ID), if stored
    pipe_size: int = 0                  # pipes, FIFOs: capacity in bytes (0: not known)
    pipe_flags: int = 0                 # a pipe: CRFS_PIPE_* (ends no process had open)
    sock: Optional[UnixSock] = None     # a UNIX socket's state (CRFS_FILE_UNIX)
    inet: Optional[InetSock] = None     # an inet socket's addresses and state (shown only)

    def link(self):
        """What readlink(/proc/PID/fd/N) shows for it."""
        if self.kind == "pipe":
            return f"pipe:[{self.pipe}]"
        if self.kind == "socket" and self.sock is not None and self.path is None:
            return f"socket:[{self.sock.ino}]"
        if self.kind in ("eventfd", "timerfd", "signalfd", "epoll") and self.path is None:
            return f"anon_inode:[{'eventpoll' if self.kind == 'epoll' else self.kind}]"
        return self.path or ""


@dataclass
class Fd:
    """One descriptor of a file table."""
    fd: int
    file: OpenFile
    cloexec: bool = False


@dataclass(eq=False)
class FdTable:
    """files_struct, shared by threads (CLONE_FILES): the descriptors, ascending."""
    fds: list = field(default_factory=list)

    def get(self, fd):
        return next((d for d in self.fds if d.fd == fd), None)


EXIT_ZOMBIE = 16    # Exit.state of a zombie, the value of the 2.6 kernels the formats follow


@dataclass
class Exit:
    """How a task ended, or will tell its parent it did."""
    state: int = 0           # exit_state: EXIT_ZOMBIE, EXIT_DEAD
    code: int = 0
    signal: int = 0          # exit_signal: sent to the parent when it ends
    pdeath_signal: int = 0   # sent to it when its parent ends


@dataclass
class Futex:
    """The thread's futex words the kernel writes for it (set_tid_address, robust lists)."""
    set_child_tid: int = 0
    clear_child_tid: int = 0
    robust_list: int = 0
    robust_list_len: int = 0
    compat_robust_list: int = 0
    compat_robust_list_len: int = 0


@dataclass(eq=False)
class ShmSegment:
    """A shared memory object dumped once and mapped by one or more VMAs.

    Its pages are keyed by byte offset in the segment (page index * PAGE_SIZE).
    """
    objref: int
    size: int
    pages: PageMap = field(default_factory=PageMap)


@dataclass(eq=False)
class SysvShm:
    """A SysV shared memory segment of an IPC namespace (/proc/sysvipc/shm's fields the
    image has) and its bytes: `segment`'s pages (keyed by offset; zeros where none was
    dumped), read from `source`, or `data` when the image keeps them in one piece."""
    key: int
    shmid: int
    mode: int
    uid: int
    gid: int
    cuid: int
    cgid: int
    size: int
    segment: Optional[ShmSegment] = None
    source: object = None
    data: Optional["Blob"] = None
    where: Optional[str] = None  # its record in the image ("ipcns-shm-9.img: entry 0")

    def read(self, offset, size):
        size = max(0, min(size, self.size - offset))
        if self.data is not None:
            return self.data.source.pread(self.data.offset + offset, size)
        out = bytearray(size)
        pos = offset
        while pos < offset + size:
            page = pos - pos % PAGE_SIZE
            stop = min(page + PAGE_SIZE, offset + size)
            where = self.segment.pages.lookup(page) if self.segment is not None else None
            if where is not None:
                piece = self.source.pread(where + pos - page, stop - pos)
                out[pos - offset:pos - offset + len(piece)] = piece
            pos = stop
        return bytes(out)


@dataclass(eq=False)
class IpcNamespace:
    """The SysV objects of one IPC namespace an image carries (CRIU: ipcns-shm-ID.img)."""
    name: str                    # as Task.namespaces["ipc"]
    shms: list = field(default_factory=list)     # SysvShm, by shmid


@dataclass
class Namespace:
    """One namespace of an image's tasks: its /proc type name ("net"), the link text
    (Task.namespaces' value), whether the image carries it (else the checkpointer's own,
    whose state is not in the image), the image's files of it and a note."""
    type: str
    link: str
    own: bool
    files: tuple = ()
    note: str = ""


@dataclass(frozen=True)
class FileId:
    """What a mapped file was when it was checkpointed (stat(2) of the file the VMA maps):
    a restart refuses a file that is no longer this one."""
    dev: int                     # st_dev
    ino: int
    size: int
    mtime_ns: int


@dataclass(eq=False)
class Vma:
    start: int
    end: int
    vm_flags: int
    prot: int                    # the pgprot value as stored
    pgoff: int                   # in pages
    kind: str                    # one of VMA_KINDS
    file: Optional[str] = None
    shm: Optional[ShmSegment] = None
    pages: PageMap = field(default_factory=PageMap)   # dumped pages at their addresses
    native: Optional["NativeFields"] = None          # what only its format stores
    file_id: Optional[FileId] = None                 # its file as checkpointed, if known

    @property
    def size(self):
        return self.end - self.start

    def __contains__(self, addr):
        return self.start <= addr < self.end

    def map_segment(self, segment):
        """Map `segment`: its pages inside this VMA's window show at their addresses."""
        self.shm = segment
        base = self.pgoff * PAGE_SIZE
        self.pages.add_shifted(segment.pages, base, base + self.size, self.start - base)


@dataclass
class ParentRef:
    """The image an incremental image holds the changes since (crfs/model/chain.py): its
    file name (in the same directory), size and SHA-256, and how changes were tracked."""
    name: Optional[str]
    size: int
    sha256: bytes
    tracking: str


@dataclass(eq=False)
class Mm:
    """An address space. Threads share one Mm object."""
    fields: dict = field(default_factory=dict)   # start_code, end_code, ..., in stored order
    vmas: list = field(default_factory=list)     # ascending, non-overlapping
    auxv: Optional[list] = None                  # [(type, value), ...] up to AT_NULL
    ldt: Optional[bytes] = None
    source: object = None                        # where page offsets point (crfs.formats.source)
    parent_runs: list = field(default_factory=list)  # [(addr, npages)] the parent image holds
    exe: Optional[str] = None                    # /proc/PID/exe, when known
    exe_id: Optional[FileId] = None              # its identity (CRFS_FILE_ID), when known

    def vma_at(self, addr):
        """The VMA containing `addr`, or None. O(log n)."""
        i = bisect_right(self._starts(), addr) - 1
        if i >= 0 and addr in self.vmas[i]:
            return self.vmas[i]
        return None

    def _starts(self):
        cached = getattr(self, "_start_cache", None)
        if cached is None or len(cached) != len(self.vmas):
            cached = [v.start for v in self.vmas]
            self._start_cache = cached
        return cached

    def page_offset(self, addr):
        """File offset of the dumped page containing `addr`, or None."""
        vma = self.vma_at(addr)
        return None if vma is None else vma.pages.lookup(addr & ~(PAGE_SIZE - 1))

    def read(self, addr, size):
        """Bytes [addr, addr+size) of one VMA: dumped pages, zeros elsewhere.

        Returns fewer bytes if the range leaves the VMA, b"" if addr is in no VMA.
        """
        vma = self.vma_at(addr)
        if vma is None:
            return b""
        end = min(addr + size, vma.end)
        first_page = addr & ~(PAGE_SIZE - 1)
        extents = list(vma.pages.extents(first_page, end))
        if len(extents) == 1:
            page, length, offset = extents[0]
            if page <= addr and page + length >= end:
                # The common case, a range inside one stored run: one read, no copies.
                return self.source.pread(offset + (addr - page), end - addr)
        out = bytearray(end - addr)
        for page, length, offset in extents:
            lo, hi = max(page, addr), min(page + length, end)
            out[lo - addr:hi - addr] = self.source.pread(offset + (lo - page), hi - lo)
        return bytes(out)

    def page_count(self):
        return sum(len(v.pages) for v in self.vmas)


@dataclass(eq=False)
class Task:
    """One thread. Fields a format does not store keep their defaults (None or 0)."""
    pid: int
    tgid: int
    ppid: int
    comm: str
    state: Optional[int] = None
    pgid: Optional[int] = None            # process group and session
    sid: Optional[int] = None
    creds: Optional[Creds] = None
    regs: Optional[Registers] = None
    fpu: Optional[bytes] = None           # FPU/xstate bytes as stored
    tls: Optional[list] = None            # GDT TLS descriptors as u64 (b << 32 | a)
    debugregs: Optional[list] = None      # dr0..dr7
    mm: Optional[Mm] = None
    exit: Exit = field(default_factory=Exit)
    futex: Futex = field(default_factory=Futex)
    signals: Optional[Signals] = None
    fs: Optional[FsStruct] = None
    files: Optional[FdTable] = None
    native: Optional["NativeFields"] = None   # what only its format stores
    rseq: Optional[Rseq] = None           # its rseq registration (None: none or not stored)
    seccomp: int = 0                      # its seccomp mode (1 strict, 2 filter)
    misc: Optional[TaskMisc] = None       # personality, sched (None: not stored)
    namespaces: Optional[dict] = None     # /proc/PID/ns name -> link text (None: not stored)
    cgroup: Optional[str] = None          # /proc/PID/cgroup text (None: not stored)
    ipc: Optional[IpcNamespace] = None    # its IPC namespace's SysV objects, if stored


@dataclass(eq=False)
class Image:
    format: str                 # "linux-cr" | "openvz"
    dialect: str                # e.g. "cr_hdr v4", "ckpt_hdr v21", "cpt v2"
    arch: str                   # "i386" | "x86_64"
    header: dict = field(default_factory=dict)   # "key": value, shown as the header file
    time: Optional[int] = None  # checkpoint time, seconds since the epoch
    tasks: list = field(default_factory=list)
    source: object = None
    record_count: int = 0       # records indexed while opening
    has_trailer: Optional[bool] = None   # None: the format has no trailer
    parent: Optional[ParentRef] = None   # an incremental image's parent (ckpt only)
    chain: Optional[list] = None         # [(name, tracking)] of the parents it was resolved from
    namespaces: Optional[list] = None    # Namespace of each the tasks are in (None: not stored)

    @property
    def description(self):
        """One line, e.g. "linux-cr cr_hdr v4 i386"."""
        return f"{self.format} {self.dialect} {self.arch}"

    def task(self, pid):
        for t in self.tasks:
            if t.pid == pid:
                return t
        raise KeyError(pid)

    def mms(self):
        """Each distinct address space once."""
        seen = {}
        for t in self.tasks:
            if t.mm is not None:
                seen.setdefault(id(t.mm), t.mm)
        return list(seen.values())

    def close(self):
        if self.source is not None:
            self.source.close()
