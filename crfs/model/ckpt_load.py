"""Index a linux-cr ckpt_hdr image (v19-rc3..v21, x86_32/x86_64) into an Image.

The grammar, with every check of the image, is crfs.formats.ckpt_grammar: this module only
turns the parts it yields into the model, one handler per record type (HANDLERS). Metadata
only: page contents stay in the file, PageMaps point at them.
"""

from crfs.formats import ckpt as fmt
from crfs.formats.ckpt_grammar import Walker
from crfs.formats.common import decode_text, name_of
from crfs.formats.pagewords import page_keys
from crfs.model.ckpt_cpu import CPU_ONLY_FIELDS, registers_from_cpu
from crfs.model.image import (ID_NAMES, RLIM_INFINITY, AltStack, Blob, Creds, EpollWatch,
                              Fd, FdTable, FdTimer, FileId, FsStruct, Image, Itimers, Mm,
                              OpenFile, ParentRef, Pending, PosixTimer, Rseq, ShmSegment,
                              SigAction, SigHand, SigInfo, Signals, Task, ThreadGroup,
                              TaskMisc, UnixSock, Vma, native_record, set_field)
from crfs.model.registers import Registers

DIALECT = "ckpt_hdr v21"

VMA_KIND = {
    "CKPT_VMA_IGNORE": "ignore",
    "CKPT_VMA_VDSO": "vdso",
    "CKPT_VMA_ANON": "anon",
    "CKPT_VMA_FILE": "file",
    "CKPT_VMA_SHM_ANON": "shm-anon",
    "CKPT_VMA_SHM_ANON_SKIP": "shm-anon",
    "CKPT_VMA_SHM_FILE": "shm-file",
    "CKPT_VMA_SHM_IPC": "shm-ipc",
    "CKPT_VMA_SHM_IPC_SKIP": "shm-ipc",
}

# ckpt_hdr_task field -> where the model keeps it (see image.get_field).
TASK_FIELDS = {
    "exit_state": ("exit", "state"), "exit_code": ("exit", "code"),
    "exit_signal": ("exit", "signal"), "pdeath_signal": ("exit", "pdeath_signal"),
    "compat_robust_futex_head_len": ("futex", "compat_robust_list_len"),
    "compat_robust_futex_list": ("futex", "compat_robust_list"),
    "robust_futex_head_len": ("futex", "robust_list_len"),
    "robust_futex_list": ("futex", "robust_list"),
    "set_child_tid": ("futex", "set_child_tid"), "clear_child_tid": ("futex", "clear_child_tid"),
}
TASK_OBJREFS = ("files_objref", "fs_objref", "sighand_objref", "signal_objref")
FILE_FIELDS = ("f_mode", "f_flags", "f_credref", "f_pos", "f_version", "f_secref")
# FILE f_type -> OpenFile.kind (sockets, ttys and epoll of a linux-cr kernel image are
# shown, not interpreted).
FILE_KIND = {
    "CKPT_FILE_GENERIC": "file", "CKPT_FILE_PIPE": "pipe", "CKPT_FILE_FIFO": "fifo",
    "CKPT_FILE_EVENTFD": "eventfd", "CKPT_FILE_SOCKET": "socket", "CKPT_FILE_TTY": "chr",
    "CKPT_FILE_EPOLL": "epoll", "CRFS_FILE_DELETED": "deleted",
    "CRFS_FILE_TIMERFD": "timerfd", "CRFS_FILE_SIGNALFD": "signalfd",
}
# CRFS_FILE_OPAQUE kind <-> OpenFile.kind.
OPAQUE_KIND = {"CRFS_OPAQUE_OTHER": "other", "CRFS_OPAQUE_SOCKET": "socket",
               "CRFS_OPAQUE_ANON": "anon", "CRFS_OPAQUE_DELETED": "deleted"}
# What FILE records keep that the model does not: f_type, f_version, the cred and LSM
# objrefs, eventfd flags, the stat mode of an opaque file, its owner for SIGIO (FILE_OWNER).
CkptFileFields = native_record("CkptFileFields", ("f_type", "f_version", "f_credref",
                                                  "f_secref", "eventfd_flags", "st_mode",
                                                  "sfd_flags", "st_uid", "st_gid",
                                                  "atime_ns", "mtime_ns", "owner_pid",
                                                  "owner_type", "signum"))

# What only ckpt_hdr stores: pid-namespace depth and its vpids, objrefs of what crfs does
# not restore, and the CPU record fields an i386 task has no register for.
CkptTaskFields = native_record("CkptTaskFields", ("depth", "vpids", "thread_info_flags",
                                                  *TASK_OBJREFS, *CPU_ONLY_FIELDS,
                                                  "ecreds"))
# The controlling tty fields of SIGNAL (kept with the ThreadGroup).
SIGNAL_TTY_FIELDS = ("tty_objref", "tty_pgrp", "tty_old_pgrp")
CkptSignalFields = native_record("CkptSignalFields", SIGNAL_TTY_FIELDS)
# SIGNAL's itimers -> Itimers fields; CRED capability words -> Creds fields.
ITIMER_FIELDS = dict(zip(fmt.ITIMERS, ("real_value", "real_incr", "virt_value", "virt_incr",
                                       "prof_value", "prof_incr")))
CAP_FIELDS = {"cap_inh": "cap_i", "cap_prm": "cap_p", "cap_eff": "cap_e", "cap_bnd": "cap_b"}
SIGINFO_FIELDS = {"signo": "signo", "errno": "_errno", "code": "code", "pid": "pid",
                  "uid": "uid", "sigval_int": "sigval_int", "sigval_ptr": "sigval_ptr",
                  "utime": "utime", "stime": "stime"}
# RLIM_INFINITY is ~0UL: 32 bits wide in an x86_32 image.
RLIM_INFINITY_OF = {"i386": 0xFFFFFFFF, "x86_64": RLIM_INFINITY}
CkptVmaFields = native_record("CkptVmaFields", ("vma_type", "vma_objref", "ino_objref",
                                                "ino_size", "f_type", *FILE_FIELDS))


def load(source):
    """Index `source` into an Image. FormatError for anything the format does not allow."""
    walker = Walker(source)
    builder = _Builder(walker)
    for part in walker.walk():
        handler = HANDLERS.get((part.name, part.role))
        if handler is not None:
            handler(builder, part)
    return builder.image()


def _fields(container, names):
    return {name: container[name] for name in names}


class _Builder:
    """The model so far: the tasks, the objects by objref, the object being read."""

    def __init__(self, walker):
        self.walker = walker
        self.source = walker.source
        self.header = {}
        self.tasks = []
        self.pending = iter(())     # the tasks TREE announced, not yet met
        self.task = None
        self.objects = {}           # objref -> FileObject or Mm
        self.vma = None
        self.shm = {}               # ino_objref -> ShmSegment
        self.parent_ref = None      # CRFS_HDR_PARENT of an incremental image
        self.socks = {}             # a UNIX socket's sock_objref -> its inode number
        self.unix_files = []        # their files, whose peer (an objref) becomes an inode

    def image(self):
        for file in self.unix_files:
            file.sock.peer = self.socks.get(file.sock.peer, 0)
        return Image(format="linux-cr", dialect=DIALECT, arch=self.walker.arch,
                     header=self.header, time=self.header["time"], tasks=self.tasks,
                     source=self.source, record_count=self.walker.count, has_trailer=True,
                     parent=self.parent_ref)

    # ----------------------------------------------------------------- image

    def head(self, part):
        h = part.fields
        self.header.update(kernel=f"{h.major}.{h.minor}.{h.patch}", rev=h.rev, time=h.time,
                           uflags=h.uflags)

    def uts(self, part):
        self.header[part.role] = decode_text(part.data)

    def head_arch(self, part):
        constants = self.walker.constants
        uts = {name: self.header.pop(name) for name in ("release", "version", "machine")}
        fixed = {name: self.header.pop(name) for name in ("kernel", "rev", "time", "uflags")}
        self.header.update(**uts, **fixed, **constants,
                           **_fields(part.fields, ("has_fxsr", "has_xsave", "xstate_size")))

    def parent(self, part):
        h = part.fields
        self.parent_ref = ParentRef(name=None, size=h.size, sha256=bytes(h.sha256),
                                    tracking=fmt.CRFS_TRACKING(h.tracking).name)

    def parent_name(self, part):
        self.parent_ref.name = decode_text(part.data)

    def parent_pages(self, part):
        self.objects[part.objref].parent_runs = [(r.start, r.npages) for r in part.fields.runs]

    def pids(self, part):
        self.tasks = [Task(pid=p.vpid, tgid=p.vtgid, ppid=p.vppid, comm="", pgid=p.vpgid,
                           sid=p.vsid, native=CkptTaskFields(depth=p.depth, vpids=[]))
                      for p in part.data]
        self.pending = iter(self.tasks)

    def vpids(self, part):
        vpids = iter(part.data)
        for task in self.tasks:
            task.native.vpids = [next(vpids) for _ in range(task.native.depth)]

    # ----------------------------------------------------------------- tasks

    def task_record(self, part):
        self.task = next(self.pending)
        self.task.state = part.fields.state
        for field, where in TASK_FIELDS.items():
            set_field(self.task, where, part.fields[field])

    def comm(self, part):
        self.task.comm = decode_text(part.data)

    def thread(self, part):
        self.task.tls = list(part.fields.tls_array)
        self.task.native.thread_info_flags = part.fields.thread_info_flags

    def cpu(self, part):
        values, cpu_only = registers_from_cpu(part.fields, self.walker.arch)
        self.task.regs = Registers(self.walker.arch, values)
        for name, value in cpu_only.items():
            setattr(self.task.native, name, value)

    def fpu(self, part):
        self.task.fpu = part.data

    def task_objs(self, part):
        h = part.fields
        for name in TASK_OBJREFS:
            setattr(self.task.native, name, h[name])
        if h.files_objref:
            self.task.files = self.objects[h.files_objref]
        if h.mm_objref:
            self.task.mm = self.objects[h.mm_objref]
        if h.fs_objref:
            self.task.fs = self.objects[h.fs_objref]
        if h.sighand_objref:
            self._signals().handlers = self.objects[h.sighand_objref]
        if h.signal_objref:
            self._signals().group = self.objects.get(h.signal_objref)   # None: SIGNAL follows

    def task_creds(self, part):
        h = part.fields
        self.task.creds = self.objects[h.cred_ref]
        if h.ecred_ref != h.cred_ref:
            self.task.native.ecreds = self.objects[h.ecred_ref]

    def _signals(self):
        if self.task.signals is None:
            self.task.signals = Signals()
        return self.task.signals

    # ----------------------------------------------------------------- signals

    def sighand(self, part):
        self.objects[part.objref] = SigHand([
            SigAction(handler=a._sa_handler, flags=a.sa_flags, restorer=a.sa_restorer,
                      mask=a.sa_mask) for a in part.fields.action])

    def signal(self, part):
        h = part.fields
        infinity = RLIM_INFINITY_OF[self.walker.arch]
        rlimits = [tuple(RLIM_INFINITY if v == infinity else v
                         for v in (r.rlim_cur, r.rlim_max)) for r in h.rlim]
        group = ThreadGroup(rlimits=rlimits,
                            itimers=Itimers(**{ITIMER_FIELDS[n]: h[n] for n in fmt.ITIMERS}),
                            native=CkptSignalFields(**_fields(h, SIGNAL_TTY_FIELDS)))
        self.objects[part.objref] = group
        self._signals().group = group

    def sigpending(self, part):
        h = part.fields
        raws = getattr(part, "raw", None) or [None] * len(h.siginfo)
        pending = Pending(mask=h.signal, queue=[
            SigInfo(**{name: info[field] for name, field in SIGINFO_FIELDS.items()}, raw=raw)
            for info, raw in zip(h.siginfo, raws)])
        if part.role == "shared":
            self.objects[part.objref].shared_pending = pending
        else:
            self._signals().pending = pending

    def signal_task(self, part):
        self._signals().blocked = part.fields.blocked

    def sigaltstack(self, part):
        h = part.fields
        self._signals().altstack = AltStack(sp=h.ss_sp, size=h.ss_size, flags=h.ss_flags)

    def oom_score_adj(self, part):
        signals = self._signals()
        if signals.group is not None:
            signals.group.oom_score_adj = part.fields.oom_score_adj

    def posix_timer(self, part):
        h = part.fields
        signals = self._signals()
        if signals.group is not None:
            signals.group.posix_timers.append(PosixTimer(
                id=h.it_id, clockid=h.clockid, signo=h.signo, notify=h.notify,
                notify_tid=h.notify_tid, sigev_value=h.sigev_value, value_ns=h.value_ns,
                interval_ns=h.interval_ns, overrun=h.overrun,
                pending=bool(h.flags & fmt.CRFS_TIMER_PENDING)))

    def rseq(self, part):
        h = part.fields
        self.task.rseq = Rseq(addr=h.rseq, length=h.rseq_len, sig=h.rseq_sig)

    def seccomp(self, part):
        self.task.seccomp = part.fields.mode

    def task_misc(self, part):
        h = part.fields
        self.task.misc = TaskMisc(
            personality=h.personality, policy=h.policy, rt_priority=h.rt_priority,
            nice=h.nice, thp_disable=bool(h.flags & fmt.CRFS_TASK_THP_DISABLE),
            child_subreaper=bool(h.flags & fmt.CRFS_TASK_CHILD_SUBREAPER))

    # ----------------------------------------------------------------- fs and creds

    def fs(self, part):
        self.objects[part.objref] = FsStruct()

    def fs_path(self, part):
        setattr(self.objects[part.objref], "cwd" if part.role == "pwd" else "root",
                decode_text(part.data))

    def fs_ext(self, part):
        self.objects[part.objref].umask = part.fields.umask

    def groupinfo(self, part):
        self.objects[part.objref] = list(part.fields.groups)

    def user(self, part):
        self.objects[part.objref] = part.fields.uid

    def cred(self, part):
        h = part.fields
        caps = h.cap_s
        creds = Creds(**_fields(h, ID_NAMES), securebits=caps.securebits,
                      groups=list(self.objects[h.groupinfo_ref]) if h.groupinfo_ref else None,
                      **{name: caps[f"{word}_1"] << 32 | caps[f"{word}_0"]
                         for name, word in CAP_FIELDS.items()})
        self.objects[part.objref] = creds

    # ----------------------------------------------------------------- objects
    # Each part of an object names it (part.objref): objects may nest.

    def file_table(self, part):
        self.objects[part.objref] = FdTable()

    def file_desc(self, part):
        h = part.fields
        fd = Fd(fd=h.fd_descriptor, file=self.objects[h.fd_objref],
                cloexec=bool(h.fd_close_on_exec))
        self.objects[part.objref].fds.append(fd)

    def file(self, part):
        h = part.fields
        f_type = name_of(fmt.CKPT_FILE, h.f_type, h.f_type)
        native = CkptFileFields(f_type=f_type, **_fields(h, ("f_version", "f_credref",
                                                             "f_secref")))
        file = OpenFile(kind=FILE_KIND.get(f_type, "other"), flags=h.f_flags, mode=h.f_mode,
                        pos=h.f_pos, native=native)
        if f_type in ("CKPT_FILE_PIPE", "CKPT_FILE_FIFO"):
            file.pipe = h.pipe_objref
            file.pipe_flags = h.pipe_flags
            file.pipe_size = 1 << h.pipe_size_log2 if h.pipe_size_log2 else 0
        elif f_type == "CKPT_FILE_EVENTFD":
            file.count, native.eventfd_flags = h.count, h.flags
        elif f_type == "CRFS_FILE_OPAQUE":
            file.kind = OPAQUE_KIND.get(name_of(fmt.CRFS_OPAQUE, h.kind), "other")
            native.st_mode = h.st_mode
        elif f_type == "CRFS_FILE_DELETED":
            file.kind, native.st_mode = "deleted", h.st_mode
        elif f_type == "CRFS_FILE_TIMERFD":
            file.timer = FdTimer(clockid=h.clockid, value_ns=h.value_ns,
                                 interval_ns=h.interval_ns, ticks=h.ticks, flags=h.tfd_flags)
        elif f_type == "CRFS_FILE_SIGNALFD":
            file.sigmask, native.sfd_flags = h.sigmask, h.sfd_flags
        elif f_type == "CRFS_FILE_UNIX":
            file.kind = "socket"
            self.socks[h.sock_objref] = h.ino
            file.sock = UnixSock(ino=h.ino, peer=h.peer_objref, family=h.family,
                                 type=h.sock_type, state=h.state, shutdown=h.shutdown,
                                 backlog=h.backlog, name=bytes(h.addr[:h.addr_len]),
                                 icon=bool(h.flags & fmt.CRFS_UNIX_ICON), mode=h.mode,
                                 uid=h.uid, gid=h.gid)
            self.unix_files.append(file)
        self.objects[part.objref] = file

    def file_name(self, part):
        self.objects[part.objref].path = decode_text(part.data)

    def pipe_buf(self, part):
        _, offset, length = part.data
        self.objects[part.objref].data = Blob(self.source, offset, length)

    def epoll_items(self, part):
        epfile, items = part.data
        self.objects[epfile].watches = [
            EpollWatch(fd=i.fd, file=self.objects[i.file_objref], events=i.events, data=i.data)
            for i in items]

    def unix_queue(self, part):
        lengths, offset, length = part.data
        sock = self.objects[part.objref].sock
        sock.msgs, sock.data = tuple(lengths), Blob(self.source, offset, length)

    def content(self, part):
        self.objects[part.objref].data = Blob(self.source, *part.data)

    def deleted_stat(self, part):
        native = self.objects[part.objref].native
        h = part.fields
        native.st_uid, native.st_gid = h.uid, h.gid
        native.atime_ns, native.mtime_ns = h.atime_ns, h.mtime_ns

    def file_owner(self, part):
        native = self.objects[part.objref].native
        h = part.fields
        native.owner_pid, native.owner_type, native.signum = h.pid, h.pid_type, h.signum

    def file_id(self, part):
        h = part.fields
        self.objects[part.objref].file_id = FileId(h.dev, h.ino, h.size, h.mtime_ns)

    def mm_record(self, part):
        h = part.fields
        fields = _fields(h, ("map_count", "exe_objref", "def_flags", "flags",
                             *fmt.MM_ADDRESSES))
        mm = self.objects[part.objref] = Mm(fields=fields, source=self.source)
        if h.exe_objref:
            exe = self.objects[h.exe_objref]
            mm.exe, mm.exe_id = exe.path, exe.file_id

    def auxv(self, part):
        self.objects[part.objref].auxv = part.data

    def mm_context(self, part):
        self.objects[part.objref].fields["vdso"] = part.fields.vdso

    def ldt(self, part):
        self.objects[part.objref].ldt = part.data

    def vma_record(self, part):
        h = part.fields
        vma_type = fmt.CKPT_VMA(h.vma_type).name
        self.vma = Vma(start=h.vm_start, end=h.vm_end, vm_flags=h.vm_flags, prot=h.vm_page_prot,
                       pgoff=h.vm_pgoff, kind=VMA_KIND[vma_type],
                       native=CkptVmaFields(vma_type=vma_type, **_fields(
                           h, ("vma_objref", "ino_objref", "ino_size"))))
        if h.vma_objref:
            file = self.objects[h.vma_objref]
            self.vma.file = file.path
            self.vma.native.f_type = file.native.f_type
            self.vma.file_id = file.file_id
            for name in FILE_FIELDS:
                setattr(self.vma.native, name, _file_field(file, name))
        if vma_type == "CKPT_VMA_SHM_ANON":
            self.shm[h.ino_objref] = ShmSegment(objref=h.ino_objref, size=h.ino_size)
        elif vma_type == "CKPT_VMA_SHM_ANON_SKIP":
            self.vma.map_segment(self.shm[h.ino_objref])
        self.objects[part.objref].vmas.append(self.vma)

    def pgarr(self, part):
        """PGARR{0} ends a SHM_ANON VMA's pages: the segment is whole, map it."""
        if part.fields.nr_pages == 0 and self.vma.native.vma_type == "CKPT_VMA_SHM_ANON":
            self.vma.map_segment(self.shm[self.vma.native.ino_objref])

    def pages(self, part):
        words, first = part.data
        if self.vma.native.vma_type == "CKPT_VMA_SHM_ANON":
            self.shm[self.vma.native.ino_objref].pages.add_words(page_keys(words), first)
        else:
            self.vma.pages.add_words(words, first)


def _file_field(file, name):
    """A FILE record field of a loaded OpenFile."""
    model = {"f_mode": "mode", "f_flags": "flags", "f_pos": "pos"}.get(name)
    return getattr(file, model) if model else getattr(file.native, name)


# (record type, role) -> handler; parts not named here carry nothing the model keeps.
HANDLERS = {
    ("CKPT_HDR_HEADER", ""): _Builder.head,
    ("CKPT_HDR_BUFFER", "release"): _Builder.uts,
    ("CKPT_HDR_BUFFER", "version"): _Builder.uts,
    ("CKPT_HDR_BUFFER", "machine"): _Builder.uts,
    ("CKPT_HDR_HEADER_ARCH", ""): _Builder.head_arch,
    ("CRFS_HDR_PARENT", ""): _Builder.parent,
    ("CKPT_HDR_STRING", "parent"): _Builder.parent_name,
    ("CRFS_HDR_PARENT_PAGES", ""): _Builder.parent_pages,
    ("CKPT_HDR_BUFFER", "pids"): _Builder.pids,
    ("CKPT_HDR_BUFFER", "vpids"): _Builder.vpids,
    ("CKPT_HDR_TASK", ""): _Builder.task_record,
    ("CKPT_HDR_STRING", "comm"): _Builder.comm,
    ("CKPT_HDR_THREAD", ""): _Builder.thread,
    ("CKPT_HDR_CPU", ""): _Builder.cpu,
    ("CKPT_HDR_CPU_FPU", "fpu"): _Builder.fpu,
    ("CKPT_HDR_TASK_OBJS", ""): _Builder.task_objs,
    ("CKPT_HDR_TASK_CREDS", ""): _Builder.task_creds,
    ("CKPT_HDR_SIGHAND", ""): _Builder.sighand,
    ("CKPT_HDR_SIGNAL", ""): _Builder.signal,
    ("CKPT_HDR_SIGPENDING", "shared"): _Builder.sigpending,
    ("CKPT_HDR_SIGPENDING", "private"): _Builder.sigpending,
    ("CKPT_HDR_SIGNAL_TASK", ""): _Builder.signal_task,
    ("CRFS_HDR_SIGALTSTACK", ""): _Builder.sigaltstack,
    ("CRFS_HDR_OOM_SCORE_ADJ", ""): _Builder.oom_score_adj,
    ("CRFS_HDR_RSEQ", ""): _Builder.rseq,
    ("CRFS_HDR_SECCOMP", ""): _Builder.seccomp,
    ("CRFS_HDR_TASK_MISC", ""): _Builder.task_misc,
    ("CRFS_HDR_POSIX_TIMER", ""): _Builder.posix_timer,
    ("CKPT_HDR_FS", ""): _Builder.fs,
    ("CKPT_HDR_FILE_NAME", "pwd"): _Builder.fs_path,
    ("CKPT_HDR_FILE_NAME", "root"): _Builder.fs_path,
    ("CRFS_HDR_FS_EXT", ""): _Builder.fs_ext,
    ("CKPT_HDR_GROUPINFO", ""): _Builder.groupinfo,
    ("CKPT_HDR_USER", ""): _Builder.user,
    ("CKPT_HDR_CRED", ""): _Builder.cred,
    ("CKPT_HDR_FILE_TABLE", ""): _Builder.file_table,
    ("CKPT_HDR_FILE_DESC", ""): _Builder.file_desc,
    ("CKPT_HDR_FILE", ""): _Builder.file,
    ("CKPT_HDR_FILE_NAME", "path"): _Builder.file_name,
    ("CKPT_HDR_STRING", "link"): _Builder.file_name,
    ("CKPT_HDR_PIPE_BUF", "pipe"): _Builder.pipe_buf,
    ("CKPT_HDR_BUFFER", "content"): _Builder.content,
    ("CKPT_HDR_BUFFER", "queue"): _Builder.unix_queue,
    ("CKPT_HDR_EPOLL_ITEMS", "epoll"): _Builder.epoll_items,
    ("CRFS_HDR_FILE_ID", ""): _Builder.file_id,
    ("CRFS_HDR_DELETED_STAT", ""): _Builder.deleted_stat,
    ("CRFS_HDR_FILE_OWNER", ""): _Builder.file_owner,
    ("CKPT_HDR_MM", ""): _Builder.mm_record,
    ("CKPT_HDR_BUFFER", "auxv"): _Builder.auxv,
    ("CKPT_HDR_MM_CONTEXT", ""): _Builder.mm_context,
    ("CKPT_HDR_MM_CONTEXT_LDT", "ldt"): _Builder.ldt,
    ("CKPT_HDR_VMA", ""): _Builder.vma_record,
    ("CKPT_HDR_PGARR", ""): _Builder.pgarr,
    ("CKPT_HDR_BUFFER", "pages"): _Builder.pages,
}
