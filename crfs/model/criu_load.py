"""A CRIU image directory (crfs.formats.criu.CriuDir) into the model: Image -> Task -> Mm.

Read: inventory, pstree, core-TID (registers with fs/gs base, FPU/xsave, comm, creds,
signal actions, blocked mask, altstack, rlimits, pending signals, timers, rseq, seccomp
mode, oom_score_adj; a zombie's exit), ids-PID, mm-PID (VMAs, mm fields, auxv, exe),
pagemap-PID with its pages-N.img, pagemap-shmem-SHMID for shared anonymous memory (page
offsets are in the dump's row of files, Mm.source being the CriuDir: read by pread, never
whole), fs-PID (cwd, root, umask) and the open files of files.img / reg-files.img with
what crfs's checkpointer keeps of them: pipes-data / fifo-data, ghost files
(remap-fpath, ghost-file-N), memfd bytes, UNIX sockets with sk-queues, owners.
docs/format-criu.md.
"""

import stat
from dataclasses import dataclass
from stat import S_IFBLK, S_IFCHR, S_IFDIR, S_IFREG, S_IFMT
from typing import Optional

from crfs.errors import FormatError
from crfs.formats import criu
from crfs.formats.ckpt import CRFS_PIPE_NO_READER, CRFS_PIPE_NO_WRITER
from crfs.formats.source import MemorySource
from crfs.formats.x86 import PAGE_SIZE, VmFlags
from crfs.model import criu_ns
from crfs.model.ckpt_load import CkptFileFields
from crfs.model.image import (EXIT_ZOMBIE, SS_DISABLE, AltStack, Blob, Creds, EpollWatch,
                              Exit, Fd, FdTable, FdTimer, FileId, FsStruct, Futex, Image,
                              Itimers, Mm, NativeFields, OpenFile, Pending, PosixTimer, Rseq,
                              ShmSegment, SigAction, SigHand, Signals, Task, ThreadGroup,
                              UnixSock, Vma)
from crfs.model.registers import Registers
from crfs.model.siginfo import mark_pending, siginfo

TASK_ALIVE, TASK_DEAD, TASK_STOPPED = 1, 2, 3
TASK_STATE_BITS = {TASK_DEAD: 0x20, TASK_STOPPED: 0x4}   # /proc state bits (alive: unknown)
IMG_VERSION_NAMES = {1: "v1", 2: "v1.1"}
MAP_SHARED, MAP_GROWSDOWN = 0x1, 0x100
VMA_AREA_VSYSCALL, VMA_AREA_VDSO, VMA_AREA_VVAR = 1 << 2, 1 << 3, 1 << 12
VMA_FILE_PRIVATE, VMA_FILE_SHARED, VMA_ANON_SHARED = 1 << 6, 1 << 7, 1 << 8
VMA_AREA_SYSVIPC, VMA_AREA_MEMFD = 1 << 10, 1 << 14
SIGKILL, SIGSTOP, SIGCHLD, SIGMAX = 9, 19, 17, 64
SIGINFO_MIN = 48             # bytes of a siginfo_entry: at least the x86_64 kernel_siginfo
FD_CLOEXEC, O_CLOEXEC = 1, 0o2000000
O_RDONLY, O_WRONLY, O_ACCMODE = 0, 1, 3
TCP_LISTEN, SCM_RIGHTS = 10, 1
MAX_GHOST = 64 << 20         # bytes of a chunked ghost file assembled (crfs's checkpoint's)
MM_FIELDS = ("start_code", "end_code", "start_data", "end_data", "start_stack", "start_brk",
             "brk", "arg_start", "arg_end", "env_start", "env_end")
GDB_NAMES = {"ax": "rax", "bx": "rbx", "cx": "rcx", "dx": "rdx", "si": "rsi", "di": "rdi",
             "bp": "rbp", "sp": "rsp", "ip": "rip", "flags": "eflags", "orig_ax": "orig_rax"}


@dataclass
class CriuVmaFields(NativeFields):
    """What vma_entry stores beyond the model's fields."""
    status: Optional[int] = None
    shmid: Optional[int] = None
    flags: Optional[int] = None
    madv: Optional[int] = None
    memory: Optional[int] = None         # shmid of the shared memory's pages, if any
    sysv: Optional[str] = None           # a SysV segment's mapping: where the dump has it


@dataclass
class CriuTaskFields(NativeFields):
    """What a task's images store beyond the model: its open files and a few numbers."""
    fds: Optional[str] = None            # "fd path-or-type" per open fd
    personality: Optional[int] = None
    oom_score_adj: Optional[int] = None
    loginuid: Optional[int] = None


def load(source):
    """Index the CRIU directory `source` into an Image."""
    if not isinstance(source, criu.CriuDir):
        raise FormatError("a CRIU inventory.img alone: the image is the dump directory "
                          "that holds it", offset=0, record="inventory.img")
    return _Loader(source).load()


class _Loader:
    def __init__(self, source):
        self.dir = source
        self.names = set(source.names())
        self.count = 0
        self.paths = None
        self.segments = {}
        self.memfds = None
        self.tables = {}        # files_id -> FdTable
        self.open_files = {}    # file id -> OpenFile
        self.file_ids = {}      # id(OpenFile) -> file id
        self.ghosts = None      # file id -> remap id, then (ghost_file_entry, Blob)
        self.queues = None      # socket id -> [(offset, sk_packet_entry)] (sk-queues.img)
        self.unix_states = {}   # UNIX socket inode -> its state
        self.data = {}          # pipes-data.img / fifo-data.img -> {pipe id: (offset, entry)}
        self.ipcs = {}          # criu's IPC ns id -> IpcNamespace (None: not in the dump)
        self.ipc = None         # the IpcNamespace of the process being read
        self.cg_sets = None     # cgroup.img: cg_set id -> cg_set_entry

    def entries(self, name, optional=False):
        if name not in self.names:
            if optional:
                return []
            raise FormatError("missing from the dump directory", record=name)
        found = criu.read_entries(self.dir, name)
        self.count += len(found)
        return found

    def one(self, name, optional=False):
        found = self.entries(name, optional)
        if not found:
            if optional:
                return None
            raise FormatError("no entry", record=name)
        return found[0].fields

    def load(self):
        inventory = self.one("inventory.img")
        version = inventory["img_version"]
        if version not in criu.IMG_VERSIONS:
            raise FormatError(f"img_version {version} is not one crfs reads "
                              f"({', '.join(map(str, criu.IMG_VERSIONS))})",
                              offset=8, record="inventory.img: entry 0 (inventory_entry)")
        tree = [e.fields for e in self.entries("pstree.img")]
        if not tree:
            raise FormatError("no process", record="pstree.img")
        image = Image(format="criu", dialect=IMG_VERSION_NAMES[version], arch="x86_64",
                      source=self.dir, has_trailer=None,
                      header={"img_version": version, "root pid": tree[0]["pid"],
                              "processes": len(tree),
                              "lsmtype": inventory.get("lsmtype", 0)})
        if "dump_uptime" in inventory:
            image.header["dump_uptime"] = inventory["dump_uptime"]
        self.inventory = inventory
        for proc in tree:
            image.tasks += self.process(proc)
        _settle_pipes(image.tasks)
        if any(t.namespaces for t in image.tasks):
            image.namespaces = criu_ns.image_namespaces(
                image.tasks, inventory.get("root_ids"), self.names, self.uts)
        image.record_count = self.count
        return image

    # -- one process --

    def process(self, proc):
        pid = proc["pid"]
        # tid 0: criu's slot of a thread that ended while it dumped (no core of its own)
        threads = [tid for tid in proc.get("threads") or [] if tid] or [pid]
        cores = {pid: self.one(f"core-{pid}.img")} if f"core-{pid}.img" in self.names else {}
        tc = (cores.get(pid) or {}).get("tc")
        if tc and tc["task_state"] == TASK_DEAD:
            return [_zombie(pid, proc, tc)]     # its threads are not criu's (garbage)
        for tid in threads:
            if tid not in cores:
                cores[tid] = self.one(f"core-{tid}.img")
        leader = cores.get(pid) or cores[threads[0]]
        tc = leader.get("tc")
        if tc is None:
            raise FormatError("the leader's core has no task_core_entry",
                              record=f"core-{pid}.img: entry 0 (core_entry)")
        where = f"core-{pid}.img: entry 0 (core_entry)"
        ids = leader.get("ids") or self.one(f"ids-{pid}.img", optional=True) or {}
        namespaces = criu_ns.task_namespaces(ids)
        self.ipc = self.ipc_of(ids.get("ipc_ns_id"))
        cgroup = criu_ns.cgroup_text(tc, self.inventory, self.cgroup_sets(), where)
        mm = self.mm(pid) if f"mm-{pid}.img" in self.names else None
        handlers = _handlers(tc)
        group = ThreadGroup(rlimits=_rlimits(tc), oom_score_adj=tc.get("oom_score_adj"),
                            shared_pending=_pending(tc.get("signals_s"), where + " signals_s"))
        _timers(tc.get("timers"), group)
        fs = self.fs(pid)
        files = self.fd_table(pid, leader)
        native = CriuTaskFields(fds=self.fds(pid, leader), personality=tc["personality"],
                                oom_score_adj=tc.get("oom_score_adj"),
                                loginuid=tc.get("loginuid"))
        tasks = []
        for tid in threads:
            core = cores[tid]
            task = _task(tid, pid, proc, core, tc)
            task.mm, task.fs, task.native, task.files = mm, fs, native, files
            task.namespaces, task.cgroup, task.ipc = namespaces, cgroup, self.ipc
            if task.signals is not None:
                task.signals.handlers, task.signals.group = handlers, group
            tasks.append(task)
        if group.posix_timers:
            mark_pending(group.posix_timers, [*group.shared_pending.queue, *(
                info for t in tasks if t.signals for info in t.signals.pending.queue)])
        return tasks

    def mm(self, pid):
        name = f"mm-{pid}.img"
        entry = self.one(name)
        fields = {key: entry[f"mm_{key}"] for key in MM_FIELDS}
        auxv = entry.get("mm_saved_auxv", [])
        pairs = [(auxv[i], auxv[i + 1]) for i in range(0, len(auxv) - 1, 2)]
        while pairs and pairs[-1] == (0, 0) and len(pairs) > 1 and pairs[-2] == (0, 0):
            pairs.pop()
        mm = Mm(fields=fields, auxv=pairs or None, exe=self.path_of(entry["exe_file_id"]))
        last_end = 0
        for i, v in enumerate(entry.get("vmas", [])):
            if v["start"] >= v["end"] or v["start"] < last_end or v["start"] % PAGE_SIZE \
                    or v["end"] % PAGE_SIZE:
                raise FormatError(f"VMA {v['start']:#x}-{v['end']:#x} is empty, unaligned or "
                                  f"overlaps the one before", record=f"{name}: vma {i}")
            last_end = v["end"]
            mm.vmas.append(self.vma(v))
            if v["status"] & VMA_AREA_SYSVIPC:
                self.sysv_vma(mm.vmas[-1], f"{name}: vma {i}")
        self.pages(pid, mm)
        return mm

    def vma(self, v):
        status = v["status"]
        shmid = None
        vm_flags = v["prot"] & 0x7
        if v["flags"] & MAP_SHARED:
            vm_flags |= VmFlags.VM_SHARED
        if v["flags"] & MAP_GROWSDOWN:
            vm_flags |= VmFlags.VM_GROWSDOWN
        kind, file = "anon", None
        if status & VMA_AREA_VDSO:
            kind = "vdso"
        elif status & VMA_AREA_VVAR:
            kind = "vvar"
        elif status & VMA_AREA_VSYSCALL:
            kind = "ignore"
        elif status & VMA_AREA_MEMFD:
            # Shared memory criu keeps as a memfd (an anonymous MAP_SHARED area is one
            # too: "/dev/zero"): file id -> memfd inode -> its pages, by the inode's shmid.
            name, shmid = self.memfd_of(v["shmid"])
            kind = "shm-anon" if name == "/dev/zero" else "shm-file"
            if kind == "shm-file":
                file = (name if name.startswith("/") else f"/memfd:{name}") + " (deleted)"
        elif status & (VMA_FILE_PRIVATE | VMA_FILE_SHARED):
            kind = "file" if status & VMA_FILE_PRIVATE else "shm-file"
            file = self.path_of(v["shmid"])
        elif status & VMA_ANON_SHARED:
            kind, shmid = "shm-anon", v["shmid"]
        return Vma(start=v["start"], end=v["end"], vm_flags=int(vm_flags), prot=v["prot"],
                   pgoff=v["pgoff"] // PAGE_SIZE, kind=kind, file=file,
                   native=CriuVmaFields(status=status, shmid=v["shmid"], flags=v["flags"],
                                        madv=v.get("madv"), memory=shmid))

    def sysv_vma(self, vma, where):
        """A SysV segment's mapping: kind shm-ipc, named as /proc names it, its pages the
        segment's (ipcns-shm-ID.img of the process's IPC namespace)."""
        shmid = vma.native.shmid
        vma.kind, vma.native.memory = "shm-ipc", None
        shm = criu_ns.sysv_shm(self.ipc, shmid, where)
        vma.file = f"/SYSV{shm.key:08x} (deleted)" if shm else f"/SYSV (shmid {shmid})"
        ns = shm.where if shm else "its IPC namespace not in the dump"
        vma.native.sysv = f"{where}: SysV shm segment {shmid} ({ns})"
        if shm is not None:
            vma.map_segment(shm.segment)

    def ipc_of(self, ns_id):
        if ns_id is None:
            return None
        if ns_id not in self.ipcs:
            self.ipcs[ns_id] = criu_ns.ipc_namespace(self, ns_id)
        return self.ipcs[ns_id]

    def cgroup_sets(self):
        if self.cg_sets is None:
            self.cg_sets = {s["id"]: s for e in self.entries("cgroup.img", optional=True)
                            for s in e.fields.get("sets", [])}
        return self.cg_sets

    def uts(self, ns_id):
        f = self.one(f"utsns-{ns_id}.img")
        return f["nodename"], f["domainname"]

    def pages(self, pid, mm):
        mm.source = self.dir        # offsets in the dump's row of files (CriuDir.offset_of)
        self.walk_pagemap(f"pagemap-{pid}.img",
                          lambda vaddr, count, offset, e, what:
                          self.place(mm, vaddr, count, offset, e.offset, what))
        for vma in mm.vmas:
            if vma.native.memory is not None:
                segment = self.segment(vma.native.memory, vma)
                # as large as its mappings (criu sizes it so): pages not dumped are zeros
                segment.size = max(segment.size, vma.pgoff * PAGE_SIZE + vma.size)
                vma.map_segment(segment)

    def walk_pagemap(self, name, add):
        """add(vaddr, count, offset, entry, what) for each run of pages a pagemap file
        says are in its pages-N.img (offset: in the dump's row of files)."""
        entries = self.entries(name, optional=True)
        if not entries:
            return
        pages_name = f"pages-{entries[0].fields['pages_id']}.img"
        if pages_name not in self.names:
            raise FormatError(f"{pages_name} is missing from the dump",
                              record=f"{name}: entry 0 (pagemap_head)")
        base, size = self.dir.offset_of(pages_name), self.dir.member(pages_name).size
        offset = 0
        for e in entries[1:]:
            f = e.fields
            count = f.get("nr_pages", f["compat_nr_pages"])
            flags = f.get("flags")
            present = bool(flags & criu.PE_PRESENT) if flags is not None \
                else not f.get("in_parent")
            if not present:
                continue
            what = f"{name}: entry {e.index} (pagemap_entry)"
            if f["vaddr"] % PAGE_SIZE or count > (size - offset) // PAGE_SIZE:
                raise FormatError(f"{count} pages at {f['vaddr']:#x} are unaligned or run past "
                                  f"the end of {pages_name} ({size} bytes, "
                                  f"{offset} used)", offset=e.offset, record=what)
            add(f["vaddr"], count, base + offset, e, what)
            offset += count * PAGE_SIZE

    def segment(self, shmid, vma, key=None):
        """The ShmSegment of shared anonymous memory `shmid` (pagemap-shmem-SHMID.img,
        pages keyed by their offset in it), once per dump (per `key`: a SysV segment's
        shmid is its namespace's); without pages when criu dumped none (it writes no
        pagemap for memory never written)."""
        key = shmid if key is None else key
        if key in self.segments:
            return self.segments[key]
        name = f"pagemap-shmem-{shmid}.img"
        segment = ShmSegment(objref=shmid, size=0)
        if name in self.names:

            def add(vaddr, count, offset, e, what):
                if len(segment.pages) and segment.pages.last >= vaddr:
                    raise FormatError(f"page {vaddr:#x} is not after the pages before it",
                                      offset=e.offset, record=what)
                segment.pages.add_run(range(vaddr, vaddr + count * PAGE_SIZE, PAGE_SIZE),
                                      offset)
                segment.size = max(segment.size, vaddr + count * PAGE_SIZE)
            self.walk_pagemap(name, add)
        self.segments[key] = segment
        return segment

    @staticmethod
    def place(mm, vaddr, count, offset, entry_offset, what):
        """Add pages [vaddr, +count) at `offset`, split among the VMAs they cover."""
        end = vaddr + count * PAGE_SIZE
        addr = vaddr
        while addr < end:
            vma = mm.vma_at(addr)
            if vma is None:
                raise FormatError(f"page {addr:#x} is in no VMA", offset=entry_offset,
                                  record=what)
            stop = min(end, vma.end)
            if len(vma.pages) and vma.pages.last >= addr:
                raise FormatError(f"page {addr:#x} is not after the pages before it",
                                  offset=entry_offset, record=what)
            vma.pages.add_run(range(addr, stop, PAGE_SIZE), offset + (addr - vaddr))
            addr = stop

    def memfd_of(self, file_id):
        """(name, shmid) of the memfd behind file id `file_id` (files.img, memfd.img)."""
        found = self.memfd_inode(file_id)
        return found["name"], found["shmid"]

    def memfd_inode(self, file_id):
        """The memfd_inode_entry of the memfd behind file id `file_id`."""
        self.path_of(file_id)
        inode = self.memfd_files.get(file_id)
        if self.memfds is None:
            self.memfds = {e.fields["inode_id"]: e.fields
                           for e in self.entries("memfd.img", optional=True)}
        found = self.memfds.get(inode)
        if found is None:
            raise FormatError(f"file id {file_id}: no memfd inode for it",
                              record="memfd.img")
        return found

    def memfd_content(self, file, file_id):
        """A memfd's fd as crfs's checkpointer keeps it (a file deleted while open): its
        bytes, from its shared memory's pages (pagemap-shmem-SHMID.img; zeros where none
        was dumped), its mode and owner, and its inode's identity (fds of one memfd)."""
        inode = self.memfd_inode(file_id)
        size = inode["size"]
        if size > MAX_GHOST:
            raise FormatError(f"memfd of {size} bytes (at most {MAX_GHOST} are read)",
                              record="memfd.img")
        segment = self.segment(inode["shmid"], None)
        content = bytearray(size)
        for key, offset in segment.pages:
            if key < size:
                page = self.dir.pread(offset, min(PAGE_SIZE, size - key))
                content[key:key + len(page)] = page
        g = {"mode": S_IFREG | 0o777, "uid": inode["uid"], "gid": inode["gid"],
             "ino": inode["inode_id"]}
        _deleted(file, g, Blob(MemorySource(bytes(content)), 0, size), suffix=False)

    def fs(self, pid):
        entry = self.one(f"fs-{pid}.img", optional=True)
        if entry is None:
            return None
        return FsStruct(cwd=self.dir_path(entry["cwd_id"]), root=self.dir_path(entry["root_id"]),
                        umask=entry.get("umask"))

    def dir_path(self, file_id):
        """A directory's path; "PATH (deleted)" for one criu kept as a ghost (as d_path()
        says, which the restart makes a deleted directory again)."""
        path = self.path_of(file_id)
        return f"{path} (deleted)" if path and self.ghost(file_id) else path

    def ghost(self, file_id):
        """(ghost_file_entry, Blob of its bytes) of a file criu kept as a ghost (deleted
        while open: remap-fpath.img, ghost-file-N.img), None for the others."""
        if self.ghosts is None:
            self.ghosts = {}
            for e in self.entries("remap-fpath.img", optional=True):
                f = e.fields
                if f.get("remap_type") == criu.REMAP_GHOST:
                    self.ghosts[f["orig_id"]] = f["remap_id"]
        remap = self.ghosts.get(file_id)
        if remap is None:
            return None
        if isinstance(remap, int):
            remap = self.ghosts[file_id] = self.ghost_bytes(f"ghost-file-{remap}.img")
        return remap

    def ghost_bytes(self, name):
        entries = self.entries(name)
        if not entries:
            raise FormatError("no entry", record=name)
        head, base = entries[0], self.dir.offset_of(name)
        g = head.fields
        if stat.S_ISLNK(g["mode"]):
            target = g.get("symlnk_target", "").encode("utf-8", "surrogateescape")
            return g, Blob(MemorySource(target), 0, len(target))
        if not g.get("chunks"):
            return g, Blob(self.dir, base + head.data, head.offset + head.length - head.data)
        size = g.get("size")
        if size is None or size > MAX_GHOST:
            raise FormatError(f"chunked ghost of {size} bytes (at most {MAX_GHOST} are read)",
                              offset=head.offset, record=f"{name}: entry 0 (ghost_file_entry)")
        chunks = [(e.fields["off"], e.fields["len"], e) for e in entries[1:]]
        if len(chunks) == 1 and chunks[0][:2] == (0, size):     # one run of bytes: in place
            return g, Blob(self.dir, base + chunks[0][2].data, size)
        content = bytearray(size)           # holes: zeros
        for off, length, e in chunks:
            if off + length > size:
                raise FormatError(f"chunk of {length} bytes at {off} past the file's {size}",
                                  offset=e.offset, record=f"{name}: entry {e.index} "
                                  f"(ghost_chunk_entry)")
            content[off:off + length] = self.dir.pread(base + e.data, length)
        return g, Blob(MemorySource(bytes(content)), 0, size)

    def path_of(self, file_id):
        if self.paths is None:
            self.paths, self.types, self.memfd_files, self.files = {}, {}, {}, {}
            self.file_index = {}
            for e in self.entries("files.img", optional=True):
                f = e.fields
                self.files[f["id"]] = f
                self.file_index[f["id"]] = e.index
                self.types[f["id"]] = criu.FD_TYPES.get(f["type"], f"type {f['type']}")
                if "reg" in f:
                    self.paths[f["id"]] = f["reg"]["name"]
                if "memfd" in f:
                    self.memfd_files[f["id"]] = f["memfd"]["inode_id"]
            for e in self.entries("reg-files.img", optional=True):
                self.paths[e.fields["id"]] = e.fields["name"]
        return self.paths.get(file_id)

    def fd_table(self, pid, core):
        """The FdTable of process `pid` (fdinfo-<files_id>.img; shared by the processes
        that share it; empty without that file: criu writes none for a table without an
        open fd), or None when its images do not say."""
        ids = core.get("ids") or self.one(f"ids-{pid}.img", optional=True)
        if ids is None:
            return None
        files_id = ids["files_id"]
        table = self.tables.get(files_id)
        if table is None:
            name = f"fdinfo-{files_id}.img"
            table = self.tables[files_id] = FdTable()
            for e in self.entries(name, optional=True):
                f = e.fields
                table.fds.append(Fd(fd=f["fd"], file=self.open_file(f["id"], f["type"]),
                                    cloexec=bool(f["flags"] & FD_CLOEXEC)))
            table.fds.sort(key=lambda d: d.fd)
            self.epoll_watches(table)
        return table

    def epoll_watches(self, table):
        """An epoll's watches (eventpoll_tfd_entry: the fd it was added as, in its owner's
        table), each with the OpenFile of that fd; a target fd no longer open is left out
        (its file is not in the table)."""
        for d in table.fds:
            file = d.file
            if file.kind != "epoll" or file.watches is not None:
                continue
            entry = self.files.get(self.file_ids[id(file)]) or {}
            tfds = entry.get("epfd", {}).get("tfd", [])
            file.watches = [EpollWatch(fd=t["tfd"], file=table.get(t["tfd"]).file,
                                       events=t["events"], data=t["data"])
                            for t in sorted(tfds, key=lambda t: t["tfd"])
                            if table.get(t["tfd"]) is not None]

    def open_file(self, file_id, fd_type):
        """The OpenFile of files.img entry `file_id` (one per id, shared by its fds)."""
        found = self.open_files.get(file_id)
        if found is None:
            self.path_of(file_id)
            found = self.open_files[file_id] = open_file(
                self.files.get(file_id) or {"type": fd_type}, self.path_of, self.memfd_name)
            self.file_ids[id(found)] = file_id
            if found.kind == "fifo":      # opened by path: flags, pos of its reg_file
                regf = (self.files.get(file_id) or {}).get("fifo", {}).get("regf_id")
                reg = (self.files.get(regf) or {}).get("reg")
                if reg is not None:
                    found.flags, found.pos = reg["flags"] & ~O_CLOEXEC, reg["pos"]
            if found.kind in ("pipe", "fifo"):
                self.pipe_data(found)
            ghost = self.ghost(file_id) if found.path is not None else None
            if ghost is not None:
                _deleted(found, *ghost)
            elif "memfd" in (self.files.get(file_id) or {}):
                self.memfd_content(found, file_id)
            elif "usk" in (self.files.get(file_id) or {}):
                found.sock = self.unix_sock(self.files[file_id]["usk"])
            elif "isk" in (self.files.get(file_id) or {}):
                sk = self.files[file_id]["isk"]
                found.inet = criu_ns.inet_sock(sk, criu_ns.ns_link("net", sk["ns_id"])
                                               if "ns_id" in sk else None)
                found.inet.where = f"files.img: entry {self.file_index[file_id]} (file_entry)"
            _owner(found, self.files.get(file_id) or {})
        return found

    def unix_sock(self, sk):
        """The UnixSock of a unix_sk_entry, as crfs's checkpointer captures it: a
        connection not accepted yet (its peer a listening socket) is an icon; its messages
        from sk-queues.img. None (the socket stays opaque) for one with SCM_RIGHTS
        messages: their fds are not restored."""
        if self.queues is None:
            self.queues = {}
            base = self.dir.offset_of("sk-queues.img") if "sk-queues.img" in self.names \
                else 0
            for e in self.entries("sk-queues.img", optional=True):
                self.queues.setdefault(e.fields["id_for"], []).append(
                    (base + e.data, e.fields))
            self.unix_states = {f["usk"]["ino"]: f["usk"]["state"]
                                for f in self.files.values() if "usk" in f}
        perms = sk.get("file_perms") or {}
        sock = UnixSock(ino=sk["ino"], peer=sk["peer"], type=sk["type"], state=sk["state"],
                        shutdown=sk.get("shutdown", 0), backlog=sk["backlog"],
                        name=sk["name"], mode=perms.get("mode", 0), uid=perms.get("uid", 0),
                        gid=perms.get("gid", 0))
        if sock.peer and self.unix_states.get(sock.peer) == TCP_LISTEN \
                and sock.state != TCP_LISTEN:
            sock.icon = True
        if sock.state != TCP_LISTEN:
            sock.backlog = 0
        queued = self.queues.get(sk["id"], [])
        if any(scm["type"] == SCM_RIGHTS for _, f in queued for scm in f.get("scm", [])):
            return None
        data = b"".join(self.dir.pread(offset, f["length"]) for offset, f in queued)
        sock.msgs = tuple(f["length"] for _, f in queued)
        sock.data = Blob(MemorySource(data), 0, len(data)) if data else None
        return sock

    def pipe_data(self, file):
        """A pipe's or FIFO's buffered bytes and capacity (pipes-data.img, fifo-data.img:
        criu keeps them once per pipe, read through one of its read ends)."""
        name = "pipes-data.img" if file.kind == "pipe" else "fifo-data.img"
        if name not in self.data:
            base = self.dir.offset_of(name) if name in self.names else 0
            self.data[name] = {e.fields["pipe_id"]: (base + e.data, e.fields)
                               for e in self.entries(name, optional=True)}
        found = self.data[name].get(file.pipe)
        if found is not None:
            offset, f = found
            file.data = Blob(self.dir, offset, f["bytes"]) if f["bytes"] else None
            file.pipe_size = f.get("size", 0)

    def memfd_name(self, file_id):
        return self.memfd_of(file_id)[0]

    def fds(self, pid, core):
        ids = core.get("ids") or self.one(f"ids-{pid}.img", optional=True)
        if ids is None:
            return None
        lines = []
        for e in self.entries(f"fdinfo-{ids['files_id']}.img", optional=True):
            f = e.fields
            path = self.path_of(f["id"])
            shown = path if path is not None else self.types.get(
                f["id"], criu.FD_TYPES.get(f["type"], "?"))
            lines.append(f"{f['fd']} {shown}")
        return "\n".join(lines) + "\n" if lines else None


def _deleted(file, g, data, suffix=True):
    """`file` as crfs's checkpointer keeps a file deleted while open: its bytes (a
    symlink's target, nothing for a directory), mode, owner, times and (a regular file)
    its inode's identity, for the restart to make one inode of its fds."""
    file.kind, file.data = "deleted", data
    file.path = f"{file.path} (deleted)" if suffix else file.path
    def ns(t):
        return t["tv_sec"] * 10**9 + t["tv_usec"] * 1000 if t else 0
    file.native = CkptFileFields(st_mode=g["mode"], st_uid=g["uid"], st_gid=g["gid"],
                                 atime_ns=ns(g.get("atim")), mtime_ns=ns(g.get("mtim")))
    if stat.S_ISREG(g["mode"]) and "ino" in g:
        file.file_id = FileId(dev=g.get("dev", 0), ino=g["ino"], size=data.length,
                              mtime_ns=ns(g.get("mtim")))


def _owner(file, entry):
    """The owner F_SETOWN gave a file, and its F_SETSIG signal (a fown_entry: pid_type
    is F_GETOWN_EX's type), as crfs's checkpointer keeps them; none without one."""
    fown = next((entry[key]["fown"] for key in ("reg", "pipe", "usk")
                 if key in entry and "fown" in entry[key]), None)
    if fown is None or not (fown["pid"] or fown["signum"]):
        return
    native = file.native if isinstance(file.native, CkptFileFields) else CkptFileFields()
    native.owner_pid, native.owner_type = fown["pid"], fown["pid_type"]
    native.signum = fown["signum"]
    file.native = native


def _settle_pipes(tasks):
    """pipe_flags of each pipe of the dump: the ends no process of it has open (criu
    restores such a pipe without them: CRFS_PIPE_NO_READER / NO_WRITER)."""
    ends = {}
    for table in {id(t.files): t.files for t in tasks if t.files is not None}.values():
        for d in table.fds:
            if d.file.kind == "pipe":
                ends.setdefault(d.file.pipe, []).append(d.file)
    for files in ends.values():
        modes = {f.flags & O_ACCMODE for f in files}
        flags = 0 if modes - {O_WRONLY} else CRFS_PIPE_NO_READER
        flags |= 0 if modes - {O_RDONLY} else CRFS_PIPE_NO_WRITER
        for f in files:
            f.pipe_flags = flags


def open_file(f, path_of, memfd_name):
    """An OpenFile from a file_entry (files.img) `f`: kind, flags (f_flags without
    O_CLOEXEC), pos and what /proc/PID/fd/N linked to. path_of(id): a reg_file's name;
    memfd_name(id): a memfd's."""
    kind_name = criu.FD_TYPES.get(f["type"], f"type {f['type']}")
    if "reg" in f:
        reg = f["reg"]
        kind = {S_IFDIR: "dir", S_IFCHR: "chr", S_IFBLK: "blk", S_IFREG: "reg"}.get(
            S_IFMT(reg.get("mode", S_IFREG)), "file")
        return OpenFile(kind, path=reg["name"], flags=reg["flags"] & ~O_CLOEXEC,
                        pos=reg["pos"])
    if "pipe" in f:
        p = f["pipe"]
        return OpenFile("pipe", flags=p["flags"] & ~O_CLOEXEC, pipe=p["pipe_id"])
    if "fifo" in f:
        fifo = f["fifo"]
        path = path_of(fifo["regf_id"]) if "regf_id" in fifo else None
        return OpenFile("fifo", path=path, pipe=fifo["pipe_id"])
    for key in ("isk", "usk"):
        if key in f:
            sk = f[key]
            return OpenFile("socket", path=f"socket:[{sk['ino']}]",
                            flags=sk["flags"] & ~O_CLOEXEC)
    if "nsf" in f:
        nsf = f["nsf"]
        ns_type = criu_ns.NS_BY_CLONE_FLAG.get(nsf["ns_cflag"], f"ns {nsf['ns_cflag']:#x}")
        return OpenFile("file", path=criu_ns.ns_link(ns_type, nsf["ns_id"]),
                        flags=nsf["flags"] & ~O_CLOEXEC)
    if "efd" in f:
        e = f["efd"]
        return OpenFile("eventfd", flags=e["flags"] & ~O_CLOEXEC, count=e["counter"])
    if "sgfd" in f:
        e = f["sgfd"]
        return OpenFile("signalfd", flags=e["flags"] & ~O_CLOEXEC, sigmask=e["sigmask"])
    if "epfd" in f:
        return OpenFile("epoll", flags=f["epfd"]["flags"] & ~O_CLOEXEC)
    if "tfd" in f:
        t = f["tfd"]
        timer = FdTimer(clockid=t["clockid"], value_ns=t["vsec"] * 10**9 + t["vnsec"],
                        interval_ns=t["isec"] * 10**9 + t["insec"], ticks=t["ticks"],
                        flags=t["settime_flags"])
        return OpenFile("timerfd", flags=t["flags"] & ~O_CLOEXEC, timer=timer)
    if "memfd" in f:
        m = f["memfd"]
        name = memfd_name(f["id"])
        return OpenFile("deleted", path=(name if name.startswith("/") else f"/memfd:{name}")
                        + " (deleted)", flags=m["flags"] & ~O_CLOEXEC, pos=m["pos"])
    if "tty" in f and "regf_id" in f["tty"]:
        return OpenFile("chr", path=path_of(f["tty"]["regf_id"]))
    if kind_name == "INOTIFY":
        return OpenFile("anon", path="anon_inode:inotify")
    if kind_name in ("FANOTIFY", "PIDFD"):
        return OpenFile("anon", path=f"anon_inode:[{kind_name.lower()}]")
    if kind_name.endswith("SK"):
        return OpenFile("socket", path="socket:")       # its inode is not in the image
    return OpenFile("other", path=f"criu:{kind_name}")


def _task(tid, pid, proc, core, tc):
    info = core.get("thread_info")
    thread = core.get("thread_core") or {}
    where = f"core-{tid}.img: entry 0 (core_entry)"
    if core["mtype"] != criu.CORE_MARCH_X86_64 or info is None:
        raise FormatError(f"mtype {core['mtype']}: only x86_64 (1) images are read",
                          offset=8, record=where)
    gp = info["gpregs"]
    if gp.get("mode", 1) != 1:
        raise FormatError("32-bit (compat) registers are not read", offset=8, record=where)
    regs = Registers("x86_64", {GDB_NAMES.get(n, n): gp[n] for n in criu.GPREGS_NAMES})
    comm = thread.get("comm") or tc["comm"]
    task = Task(pid=tid, tgid=pid, ppid=proc["ppid"], comm=comm,
                state=TASK_STATE_BITS.get(tc["task_state"]), pgid=proc["pgid"],
                sid=proc["sid"], regs=regs, fpu=criu.fpu_bytes(info["fpregs"]),
                creds=_creds(thread.get("creds")))
    task.futex = Futex(clear_child_tid=info["clear_tid_addr"],
                       robust_list=thread.get("futex_rla", 0),
                       robust_list_len=thread.get("futex_rla_len", 0))
    task.exit.code = tc["exit_code"] if tid == pid else 0
    task.exit.pdeath_signal = thread.get("pdeath_sig", 0)
    sas = thread.get("sas")
    task.signals = Signals(blocked=thread.get("blk_sigset", tc["blk_sigset"]),
                           altstack=AltStack(sas["ss_sp"], sas["ss_size"], sas["ss_flags"])
                           if sas else AltStack(flags=SS_DISABLE),
                           pending=_pending(thread.get("signals_p"), where + " signals_p"))
    rseq = thread.get("rseq_entry")
    if rseq and rseq["rseq_abi_pointer"]:
        task.rseq = Rseq(addr=rseq["rseq_abi_pointer"], length=rseq["rseq_abi_size"],
                         sig=rseq["signature"])
    task.seccomp = thread.get("seccomp_mode", tc.get("old_seccomp_mode", 0))
    return task


def _zombie(pid, proc, tc):
    """A zombie's Task: its pids and the wait status its parent gets (criu's exit_code is
    /proc/PID/stat's); it ended with SIGCHLD for its parent (criu keeps no other)."""
    return Task(pid=pid, tgid=pid, ppid=proc["ppid"], comm=tc["comm"],
                state=TASK_STATE_BITS[TASK_DEAD], pgid=proc["pgid"], sid=proc["sid"],
                exit=Exit(state=EXIT_ZOMBIE, code=tc["exit_code"], signal=SIGCHLD))


def _pending(queue, where):
    """The Pending of a signal_queue_entry: each siginfo (criu keeps the 128 bytes of
    PTRACE_PEEKSIGINFO's siginfo_t) as a checkpoint keeps it, and their signals' set."""
    pending = Pending()
    for i, entry in enumerate((queue or {}).get("signals", [])):
        raw = entry["siginfo"]
        if len(raw) < SIGINFO_MIN:
            raise FormatError(f"siginfo {i} of {len(raw)} bytes, less than {SIGINFO_MIN}",
                              record=where)
        info = siginfo(raw)
        if not 1 <= info.signo <= SIGMAX:
            raise FormatError(f"siginfo {i}: signal {info.signo}", record=where)
        pending.queue.append(info)
        pending.mask |= 1 << (info.signo - 1)
    return pending


def _timers(timers, group):
    """setitimer(2)'s and POSIX timers of a task_timers_entry into `group` (ns)."""
    if timers is None:
        return
    def ns(sec, frac, scale):
        return sec * 10**9 + frac * scale
    it = {name: timers[name] for name in ("real", "virt", "prof")}
    group.itimers = Itimers(**{f"{name}_value": ns(t["vsec"], t["vusec"], 1000)
                               for name, t in it.items()},
                            **{f"{name}_incr": ns(t["isec"], t["iusec"], 1000)
                               for name, t in it.items()})
    group.posix_timers = sorted(
        (PosixTimer(id=t["it_id"], clockid=t["clock_id"], signo=t["si_signo"],
                    notify=t["it_sigev_notify"], notify_tid=t.get("notify_thread_id", 0),
                    sigev_value=t["sival_ptr"], value_ns=ns(t["vsec"], t["vnsec"], 1),
                    interval_ns=ns(t["isec"], t["insec"], 1), overrun=t["overrun"])
         for t in timers.get("posix", [])), key=lambda t: t.id)


def _creds(c):
    if c is None:
        return None
    def mask(key):
        words = c.get(key, [])
        return sum(w << (32 * i) for i, w in enumerate(words[:2])) if key in c else None
    return Creds(uid=c["uid"], euid=c["euid"], suid=c["suid"], fsuid=c["fsuid"],
                 gid=c["gid"], egid=c["egid"], sgid=c["sgid"], fsgid=c["fsgid"],
                 groups=c.get("groups", []), cap_inh=mask("cap_inh"), cap_prm=mask("cap_prm"),
                 cap_eff=mask("cap_eff"), cap_bnd=mask("cap_bnd"), cap_amb=mask("cap_amb"),
                 securebits=c["secbits"], no_new_privs=c.get("no_new_privs"))


def _handlers(tc):
    """Signals 1..64 but SIGKILL and SIGSTOP, in order: CRIU's sigactions."""
    hand = SigHand()
    signals = [s for s in range(1, SIGMAX + 1) if s not in (SIGKILL, SIGSTOP)]
    for sig, sa in zip(signals, tc.get("sigactions", [])):
        hand.actions[sig - 1] = SigAction(handler=sa["sigaction"], flags=sa["flags"],
                                          restorer=sa["restorer"], mask=sa["mask"])
    return hand


def _rlimits(tc):
    limits = (tc.get("rlimits") or {}).get("rlimits")
    return [(r["cur"], r["max"]) for r in limits] if limits else None
