"""Write an Image as a linux-cr ckpt_hdr image (v19-rc3..v21 numbers), x86_32 or x86_64.

This is crfs's native format, so the output is exactly what the grammar in crfs.formats.ckpt
describes and nothing more:

    HEADER BUFFER*3 HEADER_ARCH TREE BUFFER{pids} [BUFFER{vpids}]
    per task: TASK STRING{comm} [THREAD CPU [CPU_FPU]]
              [CRED objects TASK_CREDS] [FILE_TABLE, MM, FS, SIGHAND objects on first use]
              [TASK_OBJS]
              [[SIGNAL SIGPENDING{shared}] SIGPENDING{private} SIGNAL_TASK [CRFS_SIGALTSTACK]]
    TAIL

in linux-cr v21's order (checkpoint_task, checkpoint_task_objs, checkpoint_task_signal).

Objects are numbered from 1 in first-use order, as the kernel's objhash does: an MM (written
once however many threads share it) with its VMAs, the FILE of a file-backed VMA, the shmem
inode of shared VMAs and of pipes (an objref without records), a file table with the FILE
of each open file description once. A VMA's FILE object is OBJREF FILE FILE_NAME
[CRFS_FILE_ID]: the file's identity when the model knows it (Vma.file_id). Objects the model
does not have (the exe file, creds of files) are referred to as 0. No CONTAINER section is
written. Pages are streamed from mm.source, never held all at once.
"""

import struct
from array import array

from construct import Array, ConstructError

from crfs.formats import ckpt as fmt
from crfs.formats.common import c_field, encode_text, kernel_version
from crfs.formats.x86 import FXSAVE_SIZE, LDT_ENTRY_SIZE, PAGE_SIZE, TASK_COMM_LEN
from crfs.model.ckpt_cpu import CPU_ONLY_FIELDS, cpu_fields
from crfs.model.chain_records import write_parent, write_parent_pages
from crfs.model.ckpt_load import (CAP_FIELDS, FILE_FIELDS, ITIMER_FIELDS, OPAQUE_KIND,
                                   RLIM_INFINITY_OF, SIGINFO_FIELDS, SIGNAL_TTY_FIELDS,
                                   TASK_FIELDS, CkptFileFields, CkptSignalFields,
                                   CkptTaskFields, CkptVmaFields)
from crfs.model.page_copy import copy_pages
from crfs.model.image import (ID_NAMES, OPAQUE_KINDS, PATH_KINDS, RLIM_INFINITY,
                              RLIM_NLIMITS, SS_DISABLE, FdTimer, Itimers, ShmSegment,
                              ThreadGroup, get_field)

KERNEL = "2.6.34"   # the v21 base
FMODE_READ = 1
O_LARGEFILE = 0o100000            # x86's, as the kernel sets it on an executable
PATH_MAX = 4096
SFD_FLAGS = 0o4000 | 0o2000000   # SFD_NONBLOCK | SFD_CLOEXEC, as signalfd(2) takes them
COPY_CHUNK = 1 << 20      # bytes of a deleted file's content copied at a time
MACHINE = {"i386": "i686", "x86_64": "x86_64"}
ARCH_ID = {"i386": fmt.CKPT_ARCH["CKPT_ARCH_X86_32"], "x86_64": fmt.CKPT_ARCH["CKPT_ARCH_X86_64"]}

# struct ckpt_const of a 2.6.34 x86 kernel.
DEFAULT_CONSTANTS = {
    "task_comm_len": TASK_COMM_LEN, "at_vector_size": 44, "signal_nsig": 64,
    "uts_sysname_len": 65, "uts_nodename_len": 65, "uts_release_len": 65,
    "uts_version_len": 65, "uts_machine_len": 65, "uts_domainname_len": 65,
    "rlimit_nlimits": 16, "n_tty_buf_size": 4096, "tty_termios_ncc": 8,
}


def dump(image, out, arch=None):
    """Write `image` to the binary file `out`; `arch` (default image.arch) picks the layout
    of the vaddr arrays. ValueError for a model the format cannot express."""
    _Writer(image, out, arch or image.arch).write()


class _Writer:
    def __init__(self, image, out, arch):
        if arch not in fmt.VADDR_SIZE:
            raise ValueError(f"cannot write arch {arch!r}")
        self.image = image
        self.out = out
        self.arch = arch
        self.header = {**DEFAULT_CONSTANTS, **image.header}
        self.objref = 0
        self.written = {}   # object key -> objref
        self.groups = {}    # tgid -> the ThreadGroup written for tasks that have none
        self.epolls = []    # (objref, OpenFile) of the epolls first written in this table
        self.unix_inos = None   # inodes of the image's UNIX sockets (restorable_unix)

    # ----------------------------------------------------------------- records

    def emit(self, name, struct, **fields):
        """A fixed-layout record; padding fields are written as zeros."""
        values = {"h": {"type": fmt.CKPT_HDR[name], "len": struct.sizeof()}, **fields}
        try:
            data = struct.build(values)
        except ConstructError as exc:   # a model value the field cannot hold
            raise ValueError(f"{name}: {exc}") from None
        self.out.write(data)

    def frame(self, name, data_length):
        self.out.write(fmt.ckpt_hdr.build({"type": fmt.CKPT_HDR[name],
                                           "len": fmt.HDR_SIZE + data_length}))

    def emit_raw(self, name, data):
        self.frame(name, len(data))
        self.out.write(data)

    def new_object(self, key, objtype=None):
        """(objref, True) the first time `key` is met, (objref, False) after. Objects with an
        `objtype` get their OBJREF record."""
        if key in self.written:
            return self.written[key], False
        self.objref += 1
        self.written[key] = self.objref
        if objtype is not None:
            self.emit("CKPT_HDR_OBJREF", fmt.ckpt_hdr_objref,
                      objtype=fmt.CKPT_OBJ[objtype], objref=self.objref)
        return self.objref, True

    # ----------------------------------------------------------------- image

    def write(self):
        self.write_header()
        self.write_tree()
        for task in self.image.tasks:
            self.write_task(task)
        self.emit("CKPT_HDR_TAIL", fmt.ckpt_hdr_tail, magic=fmt.MAGIC["CHECKPOINT_MAGIC_TAIL"])

    def write_header(self):
        h = self.header
        major, minor, patch = kernel_version(h.get("kernel", KERNEL))
        constants = {name: h[name] for name in DEFAULT_CONSTANTS}
        self.emit("CKPT_HDR_HEADER", fmt.ckpt_hdr_header,
                  magic=fmt.MAGIC["CHECKPOINT_MAGIC_HEAD"], arch_id=ARCH_ID[self.arch],
                  major=major, minor=minor, patch=patch, rev=fmt.CHECKPOINT_VERSION,
                  constants=constants, time=self.image.time or 0, uflags=self.uflags())
        defaults = {"release": "", "version": "", "machine": MACHINE[self.arch]}
        for name, default in defaults.items():
            self.emit_raw("CKPT_HDR_BUFFER", c_field(h.get(name, default),
                                                     h[f"uts_{name}_len"], name))
        xstate_size = self.xstate_size()
        self.emit("CKPT_HDR_HEADER_ARCH", fmt.ckpt_hdr_header_arch,
                  has_fxsr=h.get("has_fxsr", 1),
                  has_xsave=h.get("has_xsave", int(xstate_size > FXSAVE_SIZE)),
                  xstate_size=xstate_size)
        if self.image.parent is not None:
            write_parent(self, self.image.parent)

    def uflags(self):
        """The header's uflags, with CRFS_UFLAG_EXT iff extension records are written."""
        uflags = self.header.get("uflags", 0) & ~fmt.CRFS_UFLAG_EXT
        if self.image.parent is not None or any(
                _has_altstack(t) or (t.fs is not None and t.fs.umask is not None)
                or _has_opaque_files(t) or _has_file_id(t) or _has_task_state(t)
                for t in self.image.tasks):
            uflags |= fmt.CRFS_UFLAG_EXT
        return uflags

    def xstate_size(self):
        """One FPU state size for all tasks: the header's, else the tasks'."""
        sizes = {len(t.fpu) for t in self.image.tasks if t.fpu is not None}
        size = self.header.get("xstate_size")
        if size is None:
            size = sizes.pop() if len(sizes) == 1 else FXSAVE_SIZE
        if sizes - {size}:
            raise ValueError(f"FPU states of {sorted(sizes)} bytes, xstate_size is {size}")
        return size

    def write_tree(self):
        tasks = self.image.tasks
        if not tasks:
            raise ValueError("an image needs at least one task")
        root = tasks[0].tgid
        natives = [CkptTaskFields.of(t) for t in tasks]
        pids = [{"vpid": t.pid, "vppid": t.ppid, "vtgid": t.tgid,
                 "vpgid": root if t.pgid is None else t.pgid,
                 "vsid": root if t.sid is None else t.sid,
                 "depth": native.depth or 0} for t, native in zip(tasks, natives)]
        vpids = [v for native in natives for v in native.vpids or ()]
        if len(vpids) != sum(p["depth"] for p in pids):
            raise ValueError("the tasks' vpids do not match their pid namespace depths")
        self.emit("CKPT_HDR_TREE", fmt.ckpt_hdr_tree, nr_tasks=len(tasks))
        self.emit_raw("CKPT_HDR_BUFFER", Array(len(pids), fmt.ckpt_pids).build(pids))
        if vpids:
            self.emit_raw("CKPT_HDR_BUFFER", array("i", vpids).tobytes())

    # ----------------------------------------------------------------- tasks

    def write_task(self, task):
        self.emit("CKPT_HDR_TASK", fmt.ckpt_hdr_task, state=task.state or 0,
                  **{name: get_field(task, where) for name, where in TASK_FIELDS.items()})
        self.emit_raw("CKPT_HDR_STRING",
                      c_field(task.comm, self.header["task_comm_len"], "comm"))
        if task.regs is not None:
            self.write_cpu(task)
        if task.creds is not None:
            real = self.write_cred(task.creds)
            effective = CkptTaskFields.of(task).ecreds
            self.emit("CKPT_HDR_TASK_CREDS", fmt.ckpt_hdr_task_creds, cred_ref=real,
                      ecred_ref=self.write_cred(effective) if effective else real)
        signals = task.signals
        objrefs = {
            "files_objref": self.write_files(task.files) if task.files is not None else 0,
            "mm_objref": self.write_mm(task.mm) if task.mm is not None else 0,
            "fs_objref": self.write_fs(task.fs) if task.fs is not None else 0,
            "sighand_objref": self.write_sighand(signals.handlers)
            if signals and signals.handlers else 0}
        group, signal_objref, new_group = None, 0, False
        if signals is not None:
            group = signals.group or self.groups.setdefault(task.tgid, ThreadGroup())
            signal_objref, new_group = self.new_object(("signal", id(group)))
        if task.regs is not None or any(objrefs.values()) or signals is not None:
            self.emit("CKPT_HDR_TASK_OBJS", fmt.ckpt_hdr_task_objs,
                      signal_objref=signal_objref, **objrefs)
        if signals is not None:
            self.write_signals(signals, group, new_group)
            self.write_rseq(task)
            if new_group:
                self.write_posix_timers(group)

    def write_cpu(self, task):
        if task.regs.arch != self.arch:
            raise ValueError(f"pid {task.pid}: {task.regs.arch} registers in a {self.arch} image")
        tls = task.tls if task.tls is not None else [0, 0, 0]
        native = CkptTaskFields.of(task)
        self.emit("CKPT_HDR_THREAD", fmt.ckpt_hdr_thread,
                  thread_info_flags=native.thread_info_flags or 0,
                  gdt_entry_tls_entries=3, sizeof_tls_array=24, tls_array=tls)
        cpu_only = {name: getattr(native, name) for name in CPU_ONLY_FIELDS}
        self.emit("CKPT_HDR_CPU", fmt.ckpt_hdr_cpu, used_math=int(task.fpu is not None),
                  **cpu_fields(task.regs, cpu_only, self.arch))
        if task.fpu is not None:
            self.emit_raw("CKPT_HDR_CPU_FPU", task.fpu)

    # ----------------------------------------------------------------- creds

    def write_cred(self, creds):
        """OBJREF{CRED} OBJREF{GROUPINFO} GROUPINFO [USER object] CRED, once per value."""
        objref, first = self.new_object(("cred", repr(creds)), "CKPT_OBJ_CRED")
        if not first:
            return objref
        groupinfo_ref = self.write_groupinfo(creds.groups or [])
        user_ref = self.write_user(creds.uid)
        caps = {"securebits": creds.securebits or 0}
        for name, word in CAP_FIELDS.items():
            value = getattr(creds, name) or 0
            caps.update({f"{word}_0": value & 0xFFFFFFFF, f"{word}_1": value >> 32})
        self.emit("CKPT_HDR_CRED", fmt.ckpt_hdr_cred, user_ref=user_ref,
                  groupinfo_ref=groupinfo_ref, sec_ref=0, cap_s=caps,
                  **{name: getattr(creds, name) for name in ID_NAMES})
        return objref

    def write_groupinfo(self, groups):
        objref, first = self.new_object(("groups", tuple(groups)), "CKPT_OBJ_GROUPINFO")
        if first:
            if len(groups) > fmt.NGROUPS_MAX:
                raise ValueError(f"{len(groups)} supplementary groups")
            self.emit_counted("CKPT_HDR_GROUPINFO", fmt.ckpt_hdr_groupinfo,
                              ngroups=len(groups), groups=list(groups))
        return objref

    def write_user(self, uid):
        """USER of `uid` in the container's user namespace (written with the first USER)."""
        objref, first = self.new_object(("user", uid), "CKPT_OBJ_USER")
        if first:
            userns_ref, new_ns = self.new_object(("user_ns",), "CKPT_OBJ_USER_NS")
            if new_ns:
                self.emit("CKPT_HDR_USER_NS", fmt.ckpt_hdr_user_ns, creator_ref=0)
            self.emit("CKPT_HDR_USER", fmt.ckpt_hdr_user_struct, uid=uid, userns_ref=userns_ref)
        return objref

    def emit_counted(self, name, struct, **fields):
        """A GROUPINFO or SIGPENDING: its header, count items, and len to match."""
        _, count_field, head, item = fmt.COUNTED[name]
        length = head + fields[count_field] * item
        try:
            data = struct.build({"h": {"type": fmt.CKPT_HDR[name], "len": length}, **fields})
        except ConstructError as exc:
            raise ValueError(f"{name}: {exc}") from None
        self.out.write(data)

    # ----------------------------------------------------------------- files

    def write_files(self, table):
        """OBJREF{FILE_TABLE} FILE_TABLE { [FILE object] FILE_DESC }*: each open file
        description once, however many fds and tasks share it."""
        objref, first = self.new_object(("files", id(table)), "CKPT_OBJ_FILE_TABLE")
        if not first:
            return objref
        fds = sorted(table.fds, key=lambda d: d.fd)
        if len({d.fd for d in fds}) != len(fds) or (fds and fds[0].fd < 0):
            raise ValueError(f"file table with fds {[d.fd for d in fds]}")
        self.emit("CKPT_HDR_FILE_TABLE", fmt.ckpt_hdr_file_table, fdt_nfds=len(fds))
        self.epolls = []
        for fd in fds:
            file_ref = self.write_open_file(fd.file)
            self.emit("CKPT_HDR_FILE_DESC", fmt.ckpt_hdr_file_desc, fd_objref=file_ref,
                      fd_descriptor=fd.fd, fd_close_on_exec=int(bool(fd.cloexec)))
        for epfile_ref, file in self.epolls:     # deferred to the end of the table
            self.write_epoll_items(epfile_ref, file)
        return objref

    def write_epoll_items(self, epfile_ref, file):
        """EPOLL_ITEMS [BUFFER{items}]: the files watched must have been written."""
        items = []
        for watch in file.watches:
            target = self.written.get(("ofile", id(watch.file)))
            if target is None:
                raise ValueError(f"epoll watches fd {watch.fd}, which is in no file table")
            items.append({"data": watch.data, "fd": watch.fd, "file_objref": target,
                          "events": watch.events})
        self.emit("CKPT_HDR_EPOLL_ITEMS", fmt.ckpt_hdr_eventpoll_items,
                  epfile_objref=epfile_ref, num_items=len(items))
        if items:
            self.emit_raw("CKPT_HDR_BUFFER", Array(len(items), fmt.ckpt_eventpoll_item).build(
                items))

    def write_open_file(self, file):
        """OBJREF{FILE} FILE(subtype of its kind) and what follows it (FILE_NAME, PIPE_BUF,
        STRING), then its FILE_OWNER when it has an owner."""
        objref, first = self.new_object(("ofile", id(file)), "CKPT_OBJ_FILE")
        if not first:
            return objref
        native = CkptFileFields.of(file)
        common = {"f_mode": file.mode, "f_flags": file.flags, "f_pos": file.pos,
                  "f_credref": 0, "f_secref": 0, "f_version": native.f_version or 0}
        kind = file.kind
        if kind in PATH_KINDS:
            self.emit("CKPT_HDR_FILE", fmt.ckpt_hdr_file,
                      f_type=fmt.CKPT_FILE["CKPT_FILE_GENERIC"], **common)
            self.emit_raw("CKPT_HDR_FILE_NAME", _path_bytes(file.path or ""))
        elif kind in ("pipe", "fifo"):
            self.write_pipe(file, common)
        elif kind == "eventfd":
            self.emit("CKPT_HDR_FILE", fmt.ckpt_hdr_file_eventfd,
                      f_type=fmt.CKPT_FILE["CKPT_FILE_EVENTFD"], count=file.count or 0,
                      flags=native.eventfd_flags or 0, **common)
        elif kind == "epoll" and file.watches is not None:
            self.emit("CKPT_HDR_FILE", fmt.ckpt_hdr_file,
                      f_type=fmt.CKPT_FILE["CKPT_FILE_EPOLL"], **common)
            self.epolls.append((objref, file))
        elif kind == "timerfd":
            timer = file.timer or FdTimer()
            self.emit("CKPT_HDR_FILE", fmt.crfs_hdr_file_timerfd,
                      f_type=fmt.CKPT_FILE["CRFS_FILE_TIMERFD"], clockid=timer.clockid,
                      tfd_flags=timer.flags, value_ns=timer.value_ns,
                      interval_ns=timer.interval_ns, ticks=timer.ticks, **common)
        elif kind == "signalfd":
            sfd_flags = native.sfd_flags
            self.emit("CKPT_HDR_FILE", fmt.crfs_hdr_file_signalfd,
                      f_type=fmt.CKPT_FILE["CRFS_FILE_SIGNALFD"], sigmask=file.sigmask or 0,
                      sfd_flags=file.flags & SFD_FLAGS if sfd_flags is None else sfd_flags,
                      **common)
        elif kind == "socket" and self.restorable_unix(file.sock):
            self.write_unix(file.sock, common)
        elif kind == "deleted" and file.data is not None:
            self.write_deleted(file, native, common)
        elif kind in OPAQUE_KINDS or kind == "epoll":     # an epoll whose watches are unknown
            code = {v: k for k, v in OPAQUE_KIND.items()}.get(kind, "CRFS_OPAQUE_ANON")
            self.emit("CKPT_HDR_FILE", fmt.crfs_hdr_file_opaque,
                      f_type=fmt.CKPT_FILE["CRFS_FILE_OPAQUE"], kind=fmt.CRFS_OPAQUE[code],
                      st_mode=native.st_mode or 0, **common)
            self.emit_raw("CKPT_HDR_STRING", _path_bytes(file.path or ""))
        else:
            raise ValueError(f"open file of kind {kind!r}")
        if native.owner_pid is not None:
            self.emit("CRFS_HDR_FILE_OWNER", fmt.crfs_hdr_file_owner, pid=native.owner_pid,
                      pid_type=native.owner_type or 0, signum=native.signum or 0)
        return objref

    def write_deleted(self, file, native, common):
        """CRFS_FILE_DELETED STRING{link} BUFFER{content} [DELETED_STAT] [FILE_ID]: a file
        unlinked while open, with the bytes it held (streamed from where the model keeps
        them; a symlink's target), its owner when known, and its inode's identity (files
        of one inode are restored as one)."""
        data = file.data
        if data.length > fmt.MAX_RECORD_DATA:
            raise ValueError(f"deleted file {file.path} of {data.length} bytes")
        self.emit("CKPT_HDR_FILE", fmt.crfs_hdr_file_deleted,
                  f_type=fmt.CKPT_FILE["CRFS_FILE_DELETED"], size=data.length,
                  st_mode=native.st_mode or 0, **common)
        self.emit_raw("CKPT_HDR_STRING", _path_bytes(file.path or ""))
        self.frame("CKPT_HDR_BUFFER", data.length)
        for offset in range(0, data.length, COPY_CHUNK):
            length = min(COPY_CHUNK, data.length - offset)
            self.out.write(data.source.pread(data.offset + offset, length))
        if native.st_uid is not None and native.st_gid is not None:
            self.emit("CRFS_HDR_DELETED_STAT", fmt.crfs_hdr_deleted_stat,
                      uid=native.st_uid, gid=native.st_gid, atime_ns=native.atime_ns or 0,
                      mtime_ns=native.mtime_ns or 0)
        self.write_file_id(file.file_id)

    def restorable_unix(self, sock):
        """A UNIX socket written as such: its peer, if any, is a socket of the image;
        else it is written as an opaque socket (handed in at restart, as before)."""
        if sock is None:
            return False
        if self.unix_inos is None:
            self.unix_inos = {d.file.sock.ino for t in self.image.tasks if t.files
                              for d in t.files.fds if d.file.sock is not None}
        return not sock.peer or sock.peer in self.unix_inos

    def write_unix(self, sock, common):
        """CRFS_FILE_UNIX [BUFFER{lengths, data}]: the socket and its peer get objrefs
        without a record (by inode), so a pair's two FILEs name each other."""
        sock_ref, _ = self.new_object(("sock", sock.ino))
        peer_ref = self.new_object(("sock", sock.peer))[0] if sock.peer else 0
        length = sock.data.length if sock.data is not None else 0
        if len(sock.name) > fmt.CRFS_UNIX_NAME_MAX or length > fmt.CRFS_UNIX_MAX_DATA or \
                len(sock.msgs) > fmt.CRFS_UNIX_MAX_MSGS or sum(sock.msgs) != length:
            raise ValueError(f"UNIX socket {sock.ino}: {len(sock.msgs)} messages of "
                             f"{length} bytes, name of {len(sock.name)}")
        self.emit("CKPT_HDR_FILE", fmt.crfs_hdr_file_unix,
                  f_type=fmt.CKPT_FILE["CRFS_FILE_UNIX"], sock_objref=sock_ref,
                  peer_objref=peer_ref, ino=sock.ino, family=sock.family,
                  sock_type=sock.type, state=sock.state, shutdown=sock.shutdown,
                  backlog=sock.backlog, nr_msgs=len(sock.msgs), data_len=length,
                  addr_len=len(sock.name), flags=fmt.CRFS_UNIX_ICON if sock.icon else 0,
                  addr=sock.name.ljust(fmt.CRFS_UNIX_NAME_MAX, b"\0"), mode=sock.mode,
                  uid=sock.uid, gid=sock.gid, **common)
        if sock.msgs:
            self.frame("CKPT_HDR_BUFFER", 4 * len(sock.msgs) + length)
            self.out.write(struct.pack(f"<{len(sock.msgs)}I", *sock.msgs))
            if length:
                self.out.write(sock.data.source.pread(sock.data.offset, length))

    def write_pipe(self, file, common):
        """PIPE: FILE(56) [PIPE_BUF]; FIFO: FILE(56) FILE_NAME [PIPE_BUF]. The pipe's inode
        gets an objref without a record; its buffered bytes follow its first end."""
        if file.pipe is None:
            raise ValueError(f"{file.kind} without a pipe id")
        pipe_ref, first = self.new_object(("pipe", file.kind, file.pipe))
        f_type = "CKPT_FILE_PIPE" if file.kind == "pipe" else "CKPT_FILE_FIFO"
        self.emit("CKPT_HDR_FILE", fmt.ckpt_hdr_file_pipe, f_type=fmt.CKPT_FILE[f_type],
                  pipe_objref=pipe_ref, pipe_flags=file.pipe_flags,
                  pipe_size_log2=_size_log2(file.pipe_size), **common)
        if file.kind == "fifo":
            self.emit_raw("CKPT_HDR_FILE_NAME", _path_bytes(file.path or ""))
        if first:
            self.emit_raw("CKPT_HDR_PIPE_BUF", file.data.read() if file.data else b"")

    # ----------------------------------------------------------------- fs

    def write_fs(self, fs):
        """OBJREF{FS} FS FILE_NAME{pwd} FILE_NAME{root} [CRFS_FS_EXT{umask}]."""
        objref, first = self.new_object(("fs", id(fs)), "CKPT_OBJ_FS")
        if first:
            self.emit("CKPT_HDR_FS", fmt.ckpt_hdr_fs)
            for path in (fs.cwd or "/", fs.root or "/"):
                self.emit_raw("CKPT_HDR_FILE_NAME", _path_bytes(path))
            if fs.umask is not None:
                self.emit("CRFS_HDR_FS_EXT", fmt.crfs_hdr_fs_ext, umask=fs.umask)
        return objref

    # ----------------------------------------------------------------- signals

    def write_sighand(self, handlers):
        objref, first = self.new_object(("sighand", id(handlers)), "CKPT_OBJ_SIGHAND")
        if first:
            actions = handlers.actions
            if len(actions) != fmt.CKPT_ARCH_NSIG:
                raise ValueError(f"{len(actions)} signal actions, not {fmt.CKPT_ARCH_NSIG}")
            self.emit("CKPT_HDR_SIGHAND", fmt.ckpt_hdr_sighand, action=[
                {"_sa_handler": a.handler, "sa_flags": a.flags, "sa_restorer": a.restorer,
                 "sa_mask": a.mask} for a in actions])
        return objref

    def write_signals(self, signals, group, new_group):
        """[SIGNAL SIGPENDING{shared}] SIGPENDING{private} SIGNAL_TASK [CRFS_SIGALTSTACK]."""
        if new_group:
            native = CkptSignalFields.of(group)
            itimers = group.itimers or Itimers()
            self.emit("CKPT_HDR_SIGNAL", fmt.ckpt_hdr_signal, rlim=self.rlimits(group.rlimits),
                      **{name: getattr(itimers, field) for name, field in ITIMER_FIELDS.items()},
                      **{name: getattr(native, name) or 0 for name in SIGNAL_TTY_FIELDS})
            self.write_pending(group.shared_pending)
        self.write_pending(signals.pending)
        self.emit("CKPT_HDR_SIGNAL_TASK", fmt.ckpt_hdr_signal_task, blocked=signals.blocked)
        if _has_altstack_signals(signals):
            alt = signals.altstack
            self.emit("CRFS_HDR_SIGALTSTACK", fmt.crfs_hdr_sigaltstack, ss_sp=alt.sp,
                      ss_size=alt.size, ss_flags=alt.flags)
        if new_group and group.oom_score_adj:
            self.emit("CRFS_HDR_OOM_SCORE_ADJ", fmt.crfs_hdr_oom_score_adj,
                      oom_score_adj=group.oom_score_adj)

    def write_rseq(self, task):
        """[CRFS_RSEQ] [CRFS_SECCOMP], after the task's signal records."""
        if task.rseq is not None and task.rseq.addr:
            self.emit("CRFS_HDR_RSEQ", fmt.crfs_hdr_rseq, rseq=task.rseq.addr,
                      rseq_len=task.rseq.length, rseq_sig=task.rseq.sig)
        if task.seccomp:
            self.emit("CRFS_HDR_SECCOMP", fmt.crfs_hdr_seccomp, mode=task.seccomp)
        if task.misc is not None:
            m = task.misc
            flags = (fmt.CRFS_TASK_THP_DISABLE if m.thp_disable else 0) | (
                fmt.CRFS_TASK_CHILD_SUBREAPER if m.child_subreaper else 0)
            self.emit("CRFS_HDR_TASK_MISC", fmt.crfs_hdr_task_misc,
                      personality=m.personality, flags=flags, policy=m.policy,
                      rt_priority=m.rt_priority, nice=m.nice)

    def write_posix_timers(self, group):
        """CRFS_POSIX_TIMER*, by increasing id, after the first task's RSEQ."""
        for t in sorted(group.posix_timers, key=lambda t: t.id):
            self.emit("CRFS_HDR_POSIX_TIMER", fmt.crfs_hdr_posix_timer, it_id=t.id,
                      clockid=t.clockid, signo=t.signo, notify=t.notify,
                      notify_tid=t.notify_tid,
                      flags=fmt.CRFS_TIMER_PENDING if t.pending else 0,
                      sigev_value=t.sigev_value, value_ns=t.value_ns,
                      interval_ns=t.interval_ns, overrun=t.overrun)

    def rlimits(self, rlimits):
        """16 ckpt_rlimit; RLIM_INFINITY as the image's ~0UL; none known: all unlimited."""
        rlimits = rlimits or [(RLIM_INFINITY, RLIM_INFINITY)] * RLIM_NLIMITS
        if len(rlimits) != RLIM_NLIMITS:
            raise ValueError(f"{len(rlimits)} resource limits, not {RLIM_NLIMITS}")
        infinity = RLIM_INFINITY_OF[self.arch]
        out = []
        for limit in rlimits:
            values = [infinity if v == RLIM_INFINITY else v for v in limit]
            if max(values) > infinity:
                raise ValueError(f"resource limit {max(values)} does not fit {self.arch}")
            out.append(dict(zip(("rlim_cur", "rlim_max"), values)))
        return out

    def write_pending(self, pending):
        """SIGPENDING [CRFS_SIGINFO_RAW] (x86_64, when every siginfo's bytes are known)."""
        self.emit_counted("CKPT_HDR_SIGPENDING", fmt.ckpt_hdr_sigpending,
                          nr_pending=len(pending.queue), signal=pending.mask, siginfo=[
                              {field: getattr(info, name) for name, field in
                               SIGINFO_FIELDS.items()} for info in pending.queue])
        if _has_raw_siginfo(pending, self.arch):
            self.emit_counted("CRFS_HDR_SIGINFO_RAW", fmt.crfs_hdr_siginfo_raw,
                              nr_pending=len(pending.queue),
                              siginfo=[info.raw for info in pending.queue])

    # ----------------------------------------------------------------- memory

    def write_mm(self, mm):
        objref, first = self.new_object(("mm", id(mm)))
        if not first:
            return objref
        # the exe's FILE object first, then OBJREF{MM}: the order the module writes
        exe_objref = self.write_exe(mm)
        self.emit("CKPT_HDR_OBJREF", fmt.ckpt_hdr_objref, objtype=fmt.CKPT_OBJ["CKPT_OBJ_MM"],
                  objref=objref)
        fields = mm.fields
        self.emit("CKPT_HDR_MM", fmt.ckpt_hdr_mm, map_count=len(mm.vmas), exe_objref=exe_objref,
                  def_flags=fields.get("def_flags", 0), flags=fields.get("flags", 0),
                  **{name: fields.get(name, 0) for name in fmt.MM_ADDRESSES})
        self.emit_raw("CKPT_HDR_BUFFER", self.auxv_bytes(mm.auxv or []))
        for vma in mm.vmas:
            self.write_vma(vma, mm)
        if mm.parent_runs:
            write_parent_pages(self, mm.parent_runs)
        ldt = mm.ldt or b""
        if len(ldt) % LDT_ENTRY_SIZE:
            raise ValueError(f"LDT of {len(ldt)} bytes is not whole descriptors")
        vdso = next((v.start for v in mm.vmas if v.kind == "vdso"), 0)
        self.emit("CKPT_HDR_MM_CONTEXT", fmt.ckpt_hdr_mm_context,
                  vdso=fields.get("vdso", vdso), ldt_entry_size=LDT_ENTRY_SIZE,
                  nldt=len(ldt) // LDT_ENTRY_SIZE)
        self.emit_raw("CKPT_HDR_MM_CONTEXT_LDT", ldt)
        return objref

    def auxv_bytes(self, auxv):
        """saved_auxv as u64 pairs, zero-filled (so AT_NULL-terminated) to AT_VECTOR_SIZE."""
        size = self.header["at_vector_size"] * 8
        terminated = bool(auxv) and auxv[-1][0] == 0
        if size % 16 or (len(auxv) + (not terminated)) * 16 > size:
            raise ValueError(f"{len(auxv)} auxv entries do not fit at_vector_size "
                             f"{self.header['at_vector_size']}")
        data = array("Q", [word for pair in auxv for word in pair]).tobytes()
        return data + bytes(size - len(data))

    def write_vma(self, vma, mm):
        vma_objref = self.write_file(vma) if vma.file is not None else 0
        if vma.kind == "file" and not vma_objref:
            raise ValueError(f"file VMA {vma.start:#x} without a file name")
        vma_type, ino_objref, ino_size, contents = VMA_WRITERS[vma.kind](self, vma)
        self.emit("CKPT_HDR_VMA", fmt.ckpt_hdr_vma, vma_type=fmt.CKPT_VMA[vma_type],
                  vma_objref=vma_objref, ino_objref=ino_objref, ino_size=ino_size,
                  vm_start=vma.start, vm_end=vma.end, vm_page_prot=vma.prot,
                  vm_flags=vma.vm_flags, vm_pgoff=vma.pgoff)
        if contents is not None:
            self.write_pages(*contents, mm.source)

    def write_exe(self, mm):
        """The FILE object of mm.exe (GENERIC FILE_NAME [CRFS_FILE_ID]), before the MM
        record that names it; 0 without one. Keyed by path, as VMA files are."""
        if mm.exe is None:
            return 0
        objref, first = self.new_object(("path", mm.exe), "CKPT_OBJ_FILE")
        if first:
            self.emit("CKPT_HDR_FILE", fmt.ckpt_hdr_file, f_type=fmt.CKPT_FILE["CKPT_FILE_GENERIC"],
                      f_flags=O_LARGEFILE, f_pos=0, f_version=0, f_mode=FMODE_READ,
                      f_credref=0, f_secref=0)
            self.emit_raw("CKPT_HDR_FILE_NAME", _path_bytes(mm.exe))
            self.write_file_id(mm.exe_id)
        return objref

    def write_file_id(self, file_id):
        if file_id is not None:
            self.emit("CRFS_HDR_FILE_ID", fmt.crfs_hdr_file_id, dev=file_id.dev,
                      ino=file_id.ino, size=file_id.size, mtime_ns=file_id.mtime_ns)

    def write_file(self, vma):
        """The FILE object of a VMA's file: by its objref in a loaded image, else by path."""
        native = CkptVmaFields.of(vma)
        objref = native.vma_objref
        objref, first = self.new_object(("file", objref) if objref else ("path", vma.file),
                                        "CKPT_OBJ_FILE")
        if first:
            fields = {name: getattr(native, name) or 0 for name in FILE_FIELDS}
            f_mode = native.f_mode
            fields.update(f_mode=FMODE_READ if f_mode is None else f_mode, f_credref=0,
                          f_secref=0)
            self.emit("CKPT_HDR_FILE", fmt.ckpt_hdr_file,
                      f_type=fmt.CKPT_FILE["CKPT_FILE_GENERIC"], **fields)
            self.emit_raw("CKPT_HDR_FILE_NAME", _path_bytes(vma.file))
            self.write_file_id(vma.file_id)
        return objref

    def private_vma(self, vma):
        vma_type = "CKPT_VMA_ANON" if vma.kind == "anon" else "CKPT_VMA_FILE"
        return vma_type, 0, 0, vma.pages.columns()

    def shm_anon_vma(self, vma):
        segment = vma.shm or _segment_of(vma)
        key = ("inode", id(vma.shm)) if vma.shm else ("vma", id(vma))
        objref, first = self.new_object(key)
        if not first:
            return "CKPT_VMA_SHM_ANON_SKIP", objref, segment.size, None
        keys, offsets = segment.pages.columns()
        indices = array("Q", (key // PAGE_SIZE for key in keys))
        return "CKPT_VMA_SHM_ANON", objref, segment.size, (indices, offsets)

    def shm_inode_vma(self, vma):
        """SHM_FILE / SHM_IPC: an inode objref (shared with VMAs of the same inode), no pages."""
        native = CkptVmaFields.of(vma)
        ino = native.ino_objref
        key = ("inode", id(vma.shm)) if vma.shm else ("ino", ino) if ino else ("vma", id(vma))
        objref, first = self.new_object(key)
        size = vma.shm.size if vma.shm else native.ino_size or 0
        if vma.kind == "shm-file":
            return "CKPT_VMA_SHM_FILE", objref, size, None
        return ("CKPT_VMA_SHM_IPC" if first else "CKPT_VMA_SHM_IPC_SKIP"), objref, size, None

    def write_pages(self, vaddrs, offsets, source):
        """PGARR chunks of at most CKPT_PGARR_BATCH pages, then PGARR{0}."""
        width = fmt.VADDR_SIZE[self.arch]
        batch = fmt.CKPT_PGARR_BATCH[self.arch]
        if len(vaddrs) and source is None:
            raise ValueError("pages without an mm.source to read them from")
        for i in range(0, len(vaddrs), batch):
            chunk = vaddrs[i:i + batch]
            self.emit("CKPT_HDR_PGARR", fmt.ckpt_hdr_pgarr, nr_pages=len(chunk))
            self.frame("CKPT_HDR_BUFFER", len(chunk) * (width + PAGE_SIZE))
            self.out.write(_words(chunk, width))
            copy_pages(source, offsets[i:i + batch], self.out)
        self.emit("CKPT_HDR_PGARR", fmt.ckpt_hdr_pgarr, nr_pages=0)


def _size_log2(size):
    """pipe_size_log2 of a pipe of `size` bytes: n for the smallest 1 << n >= size, 0 for
    a size not known (0) or out of range."""
    if size <= 0 or size > 1 << 31:
        return 0
    return (size - 1).bit_length()


def _path_bytes(path):
    data = encode_text(path) + b"\0"
    if len(data) > PATH_MAX:
        raise ValueError(f"file name of {len(data)} bytes")
    return data


def _has_altstack_signals(signals):
    alt = signals.altstack
    return alt is not None and not alt.flags & SS_DISABLE


def _has_opaque_files(task):
    """Files written as crfs extension FILE subtypes, or with a FILE_OWNER."""
    return task.files is not None and any(
        d.file.kind in (*OPAQUE_KINDS, "deleted", "timerfd", "signalfd")
        or getattr(d.file.native, "owner_pid", None) is not None for d in task.files.fds)


def _has_raw_siginfo(pending, arch):
    return bool(pending.queue) and all(
        info.raw is not None and len(info.raw) == fmt.KERNEL_SIGINFO_SIZE
        for info in pending.queue)


def _has_task_state(task):
    """Whether the task gets CRFS_OOM_SCORE_ADJ or CRFS_RSEQ."""
    group = task.signals.group if task.signals is not None else None
    return task.signals is not None and (
        (task.rseq is not None and task.rseq.addr != 0) or bool(task.seccomp)
        or task.misc is not None
        or (group is not None and bool(group.oom_score_adj))
        or (group is not None and bool(group.posix_timers))
        or any(info.raw is not None for info in task.signals.pending.queue)
        or (group is not None and any(info.raw is not None
                                      for info in group.shared_pending.queue)))


def _has_altstack(task):
    return task.signals is not None and _has_altstack_signals(task.signals)


def _has_file_id(task):
    return task.mm is not None and (task.mm.exe_id is not None or
                                    any(v.file_id is not None for v in task.mm.vmas))


def _words(values, width):
    if width == 8:
        return values.tobytes()
    if values and max(values) >= 1 << 32:
        raise ValueError(f"vaddr {max(values):#x} does not fit x86_32")
    return array("I", values).tobytes()


def _segment_of(vma):
    """A shm-anon VMA built without a ShmSegment: its own pages as the whole segment."""
    segment = ShmSegment(objref=0, size=(vma.pgoff * PAGE_SIZE) + vma.size)
    for addr, offset in vma.pages:
        segment.pages.add(vma.pgoff * PAGE_SIZE + addr - vma.start, offset)
    return segment


VMA_WRITERS = {
    "anon": _Writer.private_vma,
    "file": _Writer.private_vma,
    "shm-anon": _Writer.shm_anon_vma,
    "shm-file": _Writer.shm_inode_vma,
    "shm-ipc": _Writer.shm_inode_vma,
    "vdso": lambda self, vma: ("CKPT_VMA_VDSO", 0, 0, None),
    "ignore": lambda self, vma: ("CKPT_VMA_IGNORE", 0, 0, None),
}
