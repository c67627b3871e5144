"""The record grammar of linux-cr `ckpt_hdr` images: walk() checks it and yields each part.

    IMAGE   ::= HEADER BUFFER{release} BUFFER{version} BUFFER{machine} HEADER_ARCH
                [CRFS_PARENT STRING{parent}] ... TREE BUFFER{pids} [BUFFER{vpids}] { TASK STRING{comm} TASK_PART* } TAIL
    TASK_PART ::= THREAD | CPU [CPU_FPU] | TASK_OBJS | OBJECT | a record to skip
    TASK_PART ::= ... | TASK_CREDS | TASK_OBJS [SIGNAL_PART] | CRFS_SIGALTSTACK
    SIGNAL_PART ::= [SIGNAL SIGPENDING{shared}]  if TASK_OBJS.signal_objref is new
                    SIGPENDING{private} SIGNAL_TASK [CRFS_SIGALTSTACK]
                    [CRFS_OOM_SCORE_ADJ] [CRFS_RSEQ] [CRFS_SECCOMP] [CRFS_TASK_MISC]
                    CRFS_POSIX_TIMER*
                                                   if TASK_OBJS.signal_objref != 0
    OBJECT  ::= OBJREF MM BUFFER{auxv} { VMA [CONTENTS] }*map_count [CRFS_PARENT_PAGES]
                MM_CONTEXT MM_CONTEXT_LDT
              | OBJREF FILE_TABLE { [OBJECT] FILE_DESC }*fdt_nfds
                { EPOLL_ITEMS [BUFFER{items}] }*   one per EPOLL file first read in it
              | OBJREF FILE FILE_PART | OBJREF SIGHAND
              | OBJREF FS FILE_NAME{pwd} FILE_NAME{root} [CRFS_FS_EXT]
              | OBJREF CRED (objects nested before CRED: GROUPINFO, USER, SECURITY)
              | OBJREF GROUPINFO | OBJREF USER (nested: USER, USER_NS) | OBJREF USER_NS
              | OBJREF of a type crfs does not interpret
    FILE_PART ::= (by f_type) GENERIC FILE_NAME | PIPE [PIPE_BUF] | FIFO FILE_NAME [PIPE_BUF]
                | EVENTFD | CRFS_OPAQUE STRING{readlink text}
                | CRFS_DELETED STRING{readlink text} BUFFER{content} | nothing (other types)
                  PIPE_BUF follows the first end written of each pipe_objref (an INODE
                  object without OBJREF)
    CONTENTS ::= { PGARR{n > 0} BUFFER{ulong vaddr[n]; n pages} }* PGARR{0}

SIGNAL has no OBJREF: its objref is the TASK_OBJS signal_objref of the thread group's first
task, whose SIGNAL follows that TASK_OBJS (linux-cr v21 checkpoint_task_objs and
checkpoint_task_signal). CRFS_* records are crfs extensions (docs/format-ckpt.md).

Records that belong to objects crfs does not interpret (CONTAINER and LSM info,
namespaces, unknown types) are skipped by their length; an OBJREF may appear wherever the
kernel could first use a shared object. Every length and count is checked against the file
before anything is read or allocated for it, every objref against the objects seen before
it. Page bytes are never read: a page chunk is yielded as its vaddr words and the offset of
its first page.
"""

import struct
from dataclasses import dataclass

from construct import Array, Int32sl

from crfs.errors import FormatError
from crfs.formats import ckpt as fmt
from crfs.formats.common import name_of
from crfs.formats.pagewords import (aligned_ascending, first_word, indices_ascending,
                                    last_word, widen)
from crfs.formats.source import parse_bytes
from crfs.formats.x86 import (GDT_ENTRY_TLS_ENTRIES, LDT_ENTRY_SIZE, PAGE_SIZE,
                              USER_END, ckpt_decode_segment)

MAX_STRING = 4096      # longest STRING/FILE_NAME/small BUFFER accepted
MAX_PID_NS_DEPTH = 32  # MAX_PID_NS_LEVEL
LDT_ENTRIES = 8192
AT_NULL = 0
TLS_ARRAY_SIZE = 24

# Record types the grammar places: met out of place they are an error, not something to skip.
PLACED = set(fmt.CKPT_HDR.__members__) - {
    "CKPT_HDR_CONTAINER", "CKPT_HDR_LSM_INFO", "CKPT_HDR_SECURITY", "CKPT_HDR_TASK_NS",
    "CKPT_HDR_RESTART_BLOCK", "CKPT_HDR_BUFFER", "CKPT_HDR_STRING"}
TASK_PARTS = ("CKPT_HDR_THREAD", "CKPT_HDR_CPU", "CKPT_HDR_TASK_OBJS", "CKPT_HDR_TASK_CREDS")
# TASK_OBJS objref -> the kind of object it must name (signal_objref: see signal()).
TASK_OBJ_KINDS = {"files_objref": "CKPT_OBJ_FILE_TABLE", "mm_objref": "CKPT_OBJ_MM", "fs_objref": "CKPT_OBJ_FS",
                  "sighand_objref": "CKPT_OBJ_SIGHAND"}
MAX_PARENT_NAME = 255                                 # NAME_MAX
PRIVATE_PAGES = ("CKPT_VMA_ANON", "CKPT_VMA_FILE")    # VMA types followed by their pages
MAX_OBJECT_DEPTH = 8   # objects defined inside objects (a FILE inside a FILE_TABLE ...)


@dataclass(eq=False)
class Part:
    """One record as the grammar placed it, with what it carries decoded."""
    record: fmt.Record
    fields: object = None           # the parsed struct of a fixed-layout record
    data: object = None             # text, bytes or a list, by role
    role: str = ""                  # what a BUFFER/STRING/FILE_NAME holds, e.g. "comm"
    objref: int = 0                 # the object it is or describes (OBJREF, FILE, MM ...)
    objtype: str = ""               # OBJREF: CKPT_OBJ_* name

    @property
    def name(self):
        return self.record.name

    @property
    def offset(self):
        return self.record.offset


class Walker:
    """A cursor over the records of one image, the objects seen so far and their kinds."""

    def __init__(self, source):
        self.source = source
        self.offset = 0
        self.count = 0
        self.arch = None
        self.constants = {}
        self.xstate_size = 0
        self.objects = {}   # objref -> CKPT_OBJ_* name, once its records are all read
        self.depth = 0      # objects being read, one inside the other
        self.epolls = None  # epoll FILEs first read in the file table being read
        self.shm = {}       # ino_objref of each SHM_ANON inode dumped -> its size in pages

    # ----------------------------------------------------------------- cursor

    def peek(self):
        """The next record. An ERROR record ends the image with its own message."""
        if self.offset >= self.source.size:
            raise FormatError("missing CKPT_HDR_TAIL at the end of the file", offset=self.offset)
        record = fmt.record_at(self.source, self.offset)
        if record.name == "CKPT_HDR_ERROR":
            raise FormatError(f"the checkpoint failed: {self.error_message(record)}",
                              offset=record.offset, record=record.name)
        return record

    def next(self):
        record = self.peek()
        self.offset = record.end
        self.count += 1
        return record

    def expect(self, name):
        """The next record, which must be of type `name`."""
        record = self.next()
        if record.name != name:
            raise FormatError(f"expected {name}", offset=record.offset, record=record.name)
        return record

    def parse(self, record):
        return fmt.parse_record(self.source, record)

    def fixed(self, name):
        record = self.expect(name)
        return Part(record, self.parse(record))

    def read_data(self, record, limit=MAX_STRING):
        """Payload of a raw record (STRING, BUFFER, ...) of at most `limit` bytes."""
        if record.data_length > limit:
            raise FormatError(f"{record.data_length} bytes, more than {limit}",
                              offset=record.offset, record=record.name)
        return self.source.read(record.data_offset, record.data_length, record.name)

    def blob(self, name, role, limit=MAX_STRING):
        record = self.expect(name)
        return Part(record, data=self.read_data(record, limit), role=role)

    def error_message(self, record):
        """The STRING after an ERROR record holds '\\0' message '\\0'."""
        try:
            string = fmt.record_at(self.source, record.end)
            if string.name != "CKPT_HDR_STRING":
                return "(no message)"
            message = self.read_data(string)[1:].split(b"\0", 1)[0]
            return message.decode("utf-8", "replace")     # for people, not kept
        except FormatError:
            return "(message truncated)"

    def check_fits(self, record, what, count, size):
        """`count` items of `size` bytes must fit in what is left of the file."""
        if count < 0 or count * size > self.source.size - self.offset:
            raise FormatError(f"{what} {count} exceeds the file", offset=record.offset,
                              record=record.name)

    # ----------------------------------------------------------------- image

    def walk(self):
        yield from self.header()
        tree = yield from self.until("CKPT_HDR_TREE")
        yield tree
        pids = self.pid_array(tree)
        yield pids
        depth = sum(pid.depth for pid in pids.data)
        if depth:
            yield self.array_buffer(Array(depth, Int32sl), "vpids", "depth", depth)
        for pid in pids.data:
            yield from self.task(pid.vpid)
        tail = yield from self.until("CKPT_HDR_TAIL")
        self.check_tail(tail)
        yield tail

    def header(self):
        record = self.next()
        if record.name != "CKPT_HDR_HEADER":
            raise FormatError("not a ckpt_hdr image", offset=record.offset, record=record.name)
        head = Part(record, self.parse(record))
        h = head.fields
        if h.magic != fmt.MAGIC["CHECKPOINT_MAGIC_HEAD"]:
            raise self.error(head, f"bad magic {h.magic:#x}")
        if h.rev not in fmt.READABLE_REVS:
            raise self.error(head, f"unsupported rev {h.rev}")
        if h.arch_id not in fmt.ARCH_BY_ID:
            raise self.error(head, f"unsupported arch_id {h.arch_id}")
        self.arch = fmt.ARCH_BY_ID[h.arch_id]
        self.constants = {k: v for k, v in h.constants.items() if not k.startswith("_")}
        yield head
        for name in ("release", "version", "machine"):
            buffer = self.blob("CKPT_HDR_BUFFER", name)
            length = self.constants[f"uts_{name}_len"]
            if buffer.record.data_length != length:
                raise self.error(buffer, f"{buffer.record.data_length} bytes, the header "
                                         f"says {length}")
            yield buffer
        arch = self.fixed("CKPT_HDR_HEADER_ARCH")
        self.xstate_size = arch.fields.xstate_size
        yield arch
        if self.peek().name == "CRFS_HDR_PARENT":
            yield from self.parent()

    def parent(self):
        """CRFS_HDR_PARENT STRING{parent}: the image an incremental image builds on."""
        parent = self.fixed("CRFS_HDR_PARENT")
        name_of(fmt.CRFS_TRACKING, parent.fields.tracking,
                f"tracking {parent.fields.tracking}")
        yield parent
        name = self.blob("CKPT_HDR_STRING", "parent", MAX_PARENT_NAME)
        if not name.data or b"/" in name.data or b"\0" in name.data or name.data in (b".", b".."):
            raise self.error(name, "the parent must be a file name in the image's directory")
        yield name

    def pid_array(self, tree):
        nr_tasks = tree.fields.nr_tasks
        if nr_tasks < 1:
            raise self.error(tree, f"nr_tasks {nr_tasks}")
        self.check_fits(tree.record, "nr_tasks", nr_tasks, fmt.ckpt_pids.sizeof())
        pids = self.array_buffer(Array(nr_tasks, fmt.ckpt_pids), "pids", "nr_tasks", nr_tasks)
        for pid in pids.data:
            if not 0 <= pid.depth <= MAX_PID_NS_DEPTH:
                raise self.error(tree, f"pid {pid.vpid}: depth {pid.depth}")
        return pids

    def array_buffer(self, struct, role, what, count):
        """A BUFFER holding exactly `struct` (an Array of `count` items)."""
        record = self.expect("CKPT_HDR_BUFFER")
        if record.data_length != struct.sizeof():
            raise FormatError(f"{record.data_length} bytes for {what} {count}",
                              offset=record.offset, record=record.name)
        data = self.source.read(record.data_offset, record.data_length, record.name)
        return Part(record, data=parse_bytes(struct, data, record.data_offset, record.name),
                    role=role)

    def check_tail(self, tail):
        if tail.fields.magic != fmt.MAGIC["CHECKPOINT_MAGIC_TAIL"]:
            raise self.error(tail, f"bad magic {tail.fields.magic:#x}")
        if tail.record.end != self.source.size:
            raise FormatError("data after the trailer", offset=tail.record.end,
                              record=tail.name)

    # ----------------------------------------------------------------- between records

    def until(self, name):
        """Yield the objects met before the next record of type `name`, skipping records
        crfs does not interpret; return that record's Part."""
        record = yield from self.until_record(name)
        return Part(record, self.parse(record))

    def until_record(self, name):
        """until(), returning the Record unparsed."""
        while True:
            record = self.next()
            if record.name == name:
                return record
            yield from self.interleaved(record)

    def interleaved(self, record):
        """A record met between the ones the grammar names: an object, or one to skip."""
        if record.name == "CKPT_HDR_OBJREF":
            yield from self.object(record)
        elif record.name in PLACED:
            raise FormatError("unexpected here", offset=record.offset, record=record.name)

    def object(self, record):
        h = self.parse(record)
        if h.objref <= 0 or h.objref in self.objects:
            raise FormatError(f"objref {h.objref} is not new", offset=record.offset,
                              record=record.name)
        if self.depth >= MAX_OBJECT_DEPTH:
            raise FormatError("objects nested too deep", offset=record.offset,
                              record=record.name)
        kind = name_of(fmt.CKPT_OBJ, h.objtype, f"objtype {h.objtype}")
        self.objects[h.objref] = None    # not usable until its records are read
        yield Part(record, h, objref=h.objref, objtype=kind)
        records = OBJECT_GRAMMAR.get(kind)
        if records is not None:
            self.depth += 1
            for part in records(self):
                part.objref = part.objref or h.objref   # nested objects stamped theirs
                yield part
            self.depth -= 1
        self.objects[h.objref] = kind

    def lookup(self, part, objref, kind):
        """Check that `objref` names a complete object of `kind`."""
        if self.objects.get(objref) != kind:
            raise self.error(part, f"objref {objref} is not a {kind} seen before")

    # ----------------------------------------------------------------- tasks

    def task(self, pid):
        task = yield from self.until("CKPT_HDR_TASK")
        yield task
        yield self.blob("CKPT_HDR_STRING", "comm")
        seen = set()
        while self.peek().name not in ("CKPT_HDR_TASK", "CKPT_HDR_TAIL"):
            record = self.next()
            if record.name not in TASK_PARTS:
                yield from self.interleaved(record)
                continue
            if record.name in seen:
                raise FormatError(f"second one for pid {pid}", offset=record.offset,
                                  record=record.name)
            seen.add(record.name)
            yield from TASK_PART_GRAMMAR[record.name](self, Part(record, self.parse(record)))

    def thread(self, part):
        h = part.fields
        if (h.gdt_entry_tls_entries, h.sizeof_tls_array) != (GDT_ENTRY_TLS_ENTRIES,
                                                             TLS_ARRAY_SIZE):
            raise self.error(part, f"{h.gdt_entry_tls_entries} TLS entries in "
                                   f"{h.sizeof_tls_array} bytes")
        yield part

    def cpu(self, part):
        for field in fmt.CPU_SEGMENTS:
            try:
                ckpt_decode_segment(part.fields[field], self.arch)
            except ValueError as exc:
                raise self.error(part, str(exc)) from exc
        yield part
        if part.fields.used_math:
            fpu = self.expect("CKPT_HDR_CPU_FPU")
            if fpu.data_length != self.xstate_size:
                raise FormatError(f"{fpu.data_length} bytes, HEADER_ARCH xstate_size is "
                                  f"{self.xstate_size}", offset=fpu.offset, record=fpu.name)
            yield Part(fpu, data=self.source.read(fpu.data_offset, self.xstate_size, fpu.name),
                       role="fpu")

    def task_objs(self, part):
        for field, kind in TASK_OBJ_KINDS.items():
            if part.fields[field]:
                self.lookup(part, part.fields[field], kind)
        yield part
        if part.fields.signal_objref:
            yield from self.signal(part, part.fields.signal_objref)

    def task_creds(self, part):
        for field in ("cred_ref", "ecred_ref"):
            self.lookup(part, part.fields[field], "CKPT_OBJ_CRED")
        yield part

    def signal(self, objs, objref):
        """What follows a TASK_OBJS with a signal_objref: the thread group's SIGNAL and
        shared SIGPENDING the first time the objref is met, then the task's own."""
        if objref not in self.objects:
            if objref < 0:
                raise self.error(objs, f"signal_objref {objref}")
            self.objects[objref] = None
            signal = yield from self.until("CKPT_HDR_SIGNAL")
            signal.objref = objref
            yield signal
            yield self.sigpending("shared", objref)
            self.objects[objref] = "CKPT_OBJ_SIGNAL"
        else:
            self.lookup(objs, objref, "CKPT_OBJ_SIGNAL")
        yield self.sigpending("private")
        yield self.fixed("CKPT_HDR_SIGNAL_TASK")
        for name in ("CRFS_HDR_SIGALTSTACK", "CRFS_HDR_OOM_SCORE_ADJ", "CRFS_HDR_RSEQ",
                     "CRFS_HDR_SECCOMP", "CRFS_HDR_TASK_MISC"):
            if self.offset < self.source.size and self.peek().name == name:
                yield self.fixed(name)
        yield from self.posix_timers()

    def posix_timers(self):
        """CRFS_POSIX_TIMER*: at most MAX_POSIX_TIMERS, ids increasing."""
        last = -1
        for count in range(fmt.MAX_POSIX_TIMERS + 1):
            if self.offset >= self.source.size or self.peek().name != "CRFS_HDR_POSIX_TIMER":
                return
            timer = self.fixed("CRFS_HDR_POSIX_TIMER")
            if count == fmt.MAX_POSIX_TIMERS:
                raise self.error(timer, f"more than {fmt.MAX_POSIX_TIMERS} POSIX timers")
            if timer.fields.it_id <= last:
                raise self.error(timer, f"timer id {timer.fields.it_id} after {last}")
            last = timer.fields.it_id
            yield timer

    def sigpending(self, role, objref=0):
        """SIGPENDING [CRFS_SIGINFO_RAW]: the raw record must repeat its signals."""
        pending = self.fixed("CKPT_HDR_SIGPENDING")
        for info in pending.fields.siginfo:
            if not 1 <= info.signo <= fmt.CKPT_ARCH_NSIG:
                raise self.error(pending, f"signo {info.signo}")
        pending.role, pending.objref = role, objref
        pending.raw = None
        if self.offset < self.source.size and self.peek().name == "CRFS_HDR_SIGINFO_RAW":
            raw = self.fixed("CRFS_HDR_SIGINFO_RAW")
            signos = [struct.unpack_from("<i", b)[0] for b in raw.fields.siginfo]
            if signos != [info.signo for info in pending.fields.siginfo]:
                raise self.error(raw, f"signals {signos} are not the SIGPENDING's")
            pending.raw = [bytes(b) for b in raw.fields.siginfo]
        return pending

    # ----------------------------------------------------------------- objects

    def file_table(self):
        """FILE_TABLE { [OBJECT] FILE_DESC }*fdt_nfds { EPOLL_ITEMS [BUFFER] }*: each
        FILE_DESC names a FILE read before it; descriptors are distinct; then the deferred
        watch lists of the epoll files first read in this table, in that order."""
        table = self.fixed("CKPT_HDR_FILE_TABLE")
        nfds = table.fields.fdt_nfds
        self.check_fits(table.record, "fdt_nfds", nfds, fmt.SIZE["CKPT_HDR_FILE_DESC"])
        yield table
        outer, self.epolls = self.epolls, []
        yield from self.file_descs(nfds)
        for epfile in self.epolls:
            yield from self.epoll_items(epfile)
        self.epolls = outer

    def file_descs(self, nfds):
        fds = set()
        for _ in range(nfds):
            desc = yield from self.until("CKPT_HDR_FILE_DESC")
            h = desc.fields
            self.lookup(desc, h.fd_objref, "CKPT_OBJ_FILE")
            if h.fd_descriptor < 0 or h.fd_descriptor in fds:
                raise self.error(desc, f"fd {h.fd_descriptor} is negative or repeated")
            if h.fd_close_on_exec > 1:
                raise self.error(desc, f"fd_close_on_exec {h.fd_close_on_exec}")
            fds.add(h.fd_descriptor)
            yield desc

    def epoll_items(self, epfile):
        """EPOLL_ITEMS of `epfile` [BUFFER{items}]; the part's data: (epfile, items)."""
        record = yield from self.until_record("CKPT_HDR_EPOLL_ITEMS")
        part = Part(record, self.parse(record), role="epoll")
        h = part.fields
        if h.epfile_objref != epfile:
            raise self.error(part, f"epfile_objref {h.epfile_objref}, expected {epfile}")
        self.check_fits(record, "num_items", h.num_items, fmt.ckpt_eventpoll_item.sizeof())
        items = []
        if h.num_items:
            items = self.array_buffer(Array(h.num_items, fmt.ckpt_eventpoll_item), "epoll",
                                      "num_items", h.num_items).data
            for item in items:
                self.lookup(part, item.file_objref, "CKPT_OBJ_FILE")
                if item.file_objref == epfile:
                    raise self.error(part, f"epoll {epfile} watches itself")
        part.data = (epfile, list(items))
        yield part

    def file(self):
        """FILE by its f_type: GENERIC FILE_NAME | PIPE [PIPE_BUF] | FIFO FILE_NAME [PIPE_BUF]
        | EVENTFD | CRFS_OPAQUE STRING{readlink text} | CRFS_DELETED STRING BUFFER{content}
        [DELETED_STAT] [CRFS_FILE_ID];
        other types: the FILE alone. Any of them ends with [CRFS_FILE_OWNER]."""
        yield from self.file_kind()
        if self.peek().name == "CRFS_HDR_FILE_OWNER":
            yield self.fixed("CRFS_HDR_FILE_OWNER")

    def file_kind(self):
        """The FILE record and the records of its f_type (file())."""
        record = yield from self.until_record("CKPT_HDR_FILE")
        file = Part(record, fmt.parse_file(self.source, record))
        f_type = name_of(fmt.CKPT_FILE, file.fields.f_type)
        yield file          # object() stamps file.objref
        if f_type == "CKPT_FILE_EPOLL":
            if self.epolls is None:
                raise self.error(file, "an epoll file outside a file table")
            self.epolls.append(file.objref)
        if f_type in ("CKPT_FILE_GENERIC", "CKPT_FILE_FIFO"):
            name = self.expect("CKPT_HDR_FILE_NAME")
            yield Part(name, data=self.read_data(name), role="path")
            if f_type == "CKPT_FILE_GENERIC" and self.peek().name == "CRFS_HDR_FILE_ID":
                yield self.fixed("CRFS_HDR_FILE_ID")
        if f_type in ("CKPT_FILE_PIPE", "CKPT_FILE_FIFO"):
            yield from self.pipe_buf(file)
        elif f_type == "CRFS_FILE_OPAQUE":
            yield self.blob("CKPT_HDR_STRING", "link")
        elif f_type == "CRFS_FILE_UNIX":
            yield from self.unix_queue(file)
        elif f_type == "CRFS_FILE_DELETED":
            yield self.blob("CKPT_HDR_STRING", "link")
            content = self.expect("CKPT_HDR_BUFFER")
            if content.data_length != file.fields.size:
                raise FormatError(f"{content.data_length} bytes for size {file.fields.size}",
                                  offset=content.offset, record=content.name)
            yield Part(content, data=(content.data_offset, content.data_length),
                       role="content")
            if self.peek().name == "CRFS_HDR_DELETED_STAT":
                yield self.fixed("CRFS_HDR_DELETED_STAT")
            if self.peek().name == "CRFS_HDR_FILE_ID":
                yield self.fixed("CRFS_HDR_FILE_ID")

    def unix_queue(self, file):
        """A UNIX socket's queue: iff nr_msgs, BUFFER{u32 lengths[nr_msgs], data}; the
        part's data is (lengths, data offset, data_len)."""
        h = file.fields
        if h.addr_len > fmt.CRFS_UNIX_NAME_MAX or h.nr_msgs > fmt.CRFS_UNIX_MAX_MSGS or \
                h.data_len > fmt.CRFS_UNIX_MAX_DATA or (h.data_len and not h.nr_msgs):
            raise self.error(file, f"UNIX socket name_len {h.addr_len}, {h.nr_msgs} "
                                   f"messages of {h.data_len} bytes")
        if h.flags & ~fmt.CRFS_UNIX_ICON or (h.mode and h.mode & 0o170000 != 0o140000):
            raise self.error(file, f"UNIX socket flags {h.flags:#x}, mode {h.mode:#o}")
        if not h.nr_msgs:
            return
        record = self.expect("CKPT_HDR_BUFFER")
        if record.data_length != 4 * h.nr_msgs + h.data_len:
            raise FormatError(f"{record.data_length} bytes for {h.nr_msgs} messages of "
                              f"{h.data_len} bytes", offset=record.offset, record=record.name)
        lengths = struct.unpack(f"<{h.nr_msgs}I", self.source.read(
            record.data_offset, 4 * h.nr_msgs, record.name))
        if sum(lengths) != h.data_len:
            raise FormatError(f"message lengths add to {sum(lengths)}, not {h.data_len}",
                              offset=record.offset, record=record.name)
        yield Part(record, data=(lengths, record.data_offset + 4 * h.nr_msgs, h.data_len),
                   role="queue")

    def pipe_buf(self, file):
        """The PIPE_BUF after the first end of a pipe: its bytes stay in the file, the
        part's data is (pipe_objref, offset, length)."""
        ref = file.fields.pipe_objref
        if ref in self.objects:
            self.lookup(file, ref, "CKPT_OBJ_INODE")
            return
        if ref <= 0:
            raise self.error(file, f"pipe_objref {ref}")
        record = self.expect("CKPT_HDR_PIPE_BUF")
        self.objects[ref] = "CKPT_OBJ_INODE"
        yield Part(record, data=(ref, record.data_offset, record.data_length), role="pipe")

    def sighand(self):
        yield self.fixed("CKPT_HDR_SIGHAND")

    def fs(self):
        yield self.fixed("CKPT_HDR_FS")
        for role in ("pwd", "root"):
            yield self.blob("CKPT_HDR_FILE_NAME", role)
        if self.peek().name == "CRFS_HDR_FS_EXT":
            yield self.fixed("CRFS_HDR_FS_EXT")

    def cred(self):
        cred = yield from self.until("CKPT_HDR_CRED")
        if cred.fields.user_ref:
            self.lookup(cred, cred.fields.user_ref, "CKPT_OBJ_USER")
        if cred.fields.groupinfo_ref:
            self.lookup(cred, cred.fields.groupinfo_ref, "CKPT_OBJ_GROUPINFO")
        yield cred

    def groupinfo(self):
        groups = self.fixed("CKPT_HDR_GROUPINFO")
        if groups.fields.ngroups > fmt.NGROUPS_MAX:
            raise self.error(groups, f"ngroups {groups.fields.ngroups}")
        yield groups

    def user(self):
        user = yield from self.until("CKPT_HDR_USER")
        if user.fields.userns_ref:
            self.lookup(user, user.fields.userns_ref, "CKPT_OBJ_USER_NS")
        yield user

    def user_ns(self):
        user_ns = self.fixed("CKPT_HDR_USER_NS")
        if user_ns.fields.creator_ref:
            self.lookup(user_ns, user_ns.fields.creator_ref, "CKPT_OBJ_USER")
        yield user_ns

    def mm(self):
        mm = yield from self.until("CKPT_HDR_MM")
        if mm.fields.exe_objref:
            self.lookup(mm, mm.fields.exe_objref, "CKPT_OBJ_FILE")
        yield mm
        yield self.auxv()
        self.check_fits(mm.record, "map_count", mm.fields.map_count, fmt.ckpt_hdr_vma.sizeof())
        prev_end = 0
        for _ in range(mm.fields.map_count):
            vma = yield from self.until("CKPT_HDR_VMA")
            yield from self.vma(vma, prev_end)
            prev_end = vma.fields.vm_end
        if self.peek().name == "CRFS_HDR_PARENT_PAGES":
            yield self.parent_pages(prev_end)
        yield from self.mm_context()

    def parent_pages(self, end):
        """The pages (ascending runs, below the last VMA's end) the parent image holds."""
        part = self.fixed("CRFS_HDR_PARENT_PAGES")
        prev = 0
        for run in part.fields.runs:
            stop = run.start + run.npages * PAGE_SIZE
            if run.start % PAGE_SIZE or run.npages < 1 or run.start < prev or stop > end:
                raise self.error(part, f"run of {run.npages} pages at {run.start:#x}")
            prev = stop
        return part

    def auxv(self):
        record = self.expect("CKPT_HDR_BUFFER")
        size = self.constants["at_vector_size"] * 8
        if record.data_length != size or size % 16:
            raise FormatError(f"auxv of {record.data_length} bytes, the header says {size}",
                              offset=record.offset, record=record.name)
        entries = parse_bytes(Array(size // 16, fmt.auxv_entry), self.read_data(record),
                              record.offset, record.name)
        auxv = []
        for entry in entries:
            auxv.append((entry.type, entry.value))
            if entry.type == AT_NULL:
                return Part(record, data=auxv, role="auxv")
        raise FormatError("auxv without AT_NULL", offset=record.offset, record=record.name)

    def mm_context(self):
        context = yield from self.until("CKPT_HDR_MM_CONTEXT")
        h = context.fields
        if h.ldt_entry_size != LDT_ENTRY_SIZE or h.nldt > LDT_ENTRIES:
            raise self.error(context, f"{h.nldt} LDT entries of {h.ldt_entry_size} bytes")
        yield context
        ldt = self.expect("CKPT_HDR_MM_CONTEXT_LDT")
        if ldt.data_length != h.nldt * LDT_ENTRY_SIZE:
            raise FormatError(f"{ldt.data_length} bytes for nldt {h.nldt}", offset=ldt.offset,
                              record=ldt.name)
        data = self.read_data(ldt, LDT_ENTRIES * LDT_ENTRY_SIZE) if h.nldt else None
        yield Part(ldt, data=data, role="ldt")

    def vma(self, part, prev_end):
        h = part.fields
        vma_type = name_of(fmt.CKPT_VMA, h.vma_type)
        if vma_type is None:
            raise self.error(part, f"unknown vma_type {h.vma_type}")
        if h.vm_start >= h.vm_end or (h.vm_start | h.vm_end) % PAGE_SIZE:
            raise self.error(part, f"bad range {h.vm_start:#x}-{h.vm_end:#x}")
        if h.vm_end > USER_END[self.arch]:
            raise self.error(part, f"VMA {h.vm_start:#x}-{h.vm_end:#x} ends past {self.arch} "
                                   f"user space ({USER_END[self.arch]:#x})")
        if h.vm_start < prev_end:
            raise self.error(part, f"VMA {h.vm_start:#x} overlaps or precedes the one before")
        if h.vma_objref:
            self.lookup(part, h.vma_objref, "CKPT_OBJ_FILE")
        if vma_type == "CKPT_VMA_SHM_ANON_SKIP" and h.ino_objref not in self.shm:
            raise self.error(part, f"ino_objref {h.ino_objref} was not dumped before")
        yield part
        if vma_type == "CKPT_VMA_SHM_ANON":
            yield from self.shm_pages(part)
        elif vma_type in PRIVATE_PAGES:
            yield from self.private_pages(part)

    def page_chunks(self):
        """(PGARR, BUFFER Part with role "pages": (raw vaddr bytes, offset of the first
        page)) per chunk, up to PGARR{0}."""
        width = fmt.VADDR_SIZE[self.arch]
        while True:
            record = self.expect("CKPT_HDR_PGARR")
            pgarr = Part(record, fmt.parse_pgarr(self.source, record))
            nr_pages = pgarr.fields.nr_pages
            if nr_pages == 0:
                yield pgarr, None
                return
            self.check_fits(record, "nr_pages", nr_pages, width + PAGE_SIZE)
            buffer = self.expect("CKPT_HDR_BUFFER")
            if buffer.data_length != nr_pages * (width + PAGE_SIZE):
                raise FormatError(f"{buffer.data_length} bytes for nr_pages {nr_pages}",
                                  offset=buffer.offset, record=buffer.name)
            raw = self.source.read(buffer.data_offset, nr_pages * width, buffer.name)
            words = widen(raw, width)
            yield pgarr, Part(buffer, data=(words, buffer.data_offset + nr_pages * width),
                              role="pages")

    def private_pages(self, vma):
        lowest, end = vma.fields.vm_start, vma.fields.vm_end
        for pgarr, buffer in self.page_chunks():
            yield pgarr
            if buffer is None:
                return
            words = buffer.data[0]
            high = last_word(words)
            if not (lowest <= first_word(words) and high < end and aligned_ascending(words)):
                raise self.error(pgarr, f"vaddrs not page-aligned, ascending and inside "
                                        f"{vma.fields.vm_start:#x}-{end:#x}")
            yield buffer
            lowest = high + PAGE_SIZE

    def shm_pages(self, vma):
        """SHM_ANON: the shmem inode's pages, its "vaddrs" being page indices in the inode."""
        objref, size = vma.fields.ino_objref, vma.fields.ino_size
        if objref <= 0 or objref in self.shm:
            raise self.error(vma, f"ino_objref {objref} is not new")
        npages = -(-size // PAGE_SIZE)
        next_index = 0
        for pgarr, buffer in self.page_chunks():
            yield pgarr
            if buffer is None:
                break
            indices = buffer.data[0]
            high = last_word(indices)
            if not (next_index <= first_word(indices) and high < npages
                    and indices_ascending(indices)):
                raise self.error(pgarr, f"page indices not ascending inside ino_size {size}")
            yield buffer
            next_index = high + 1
        self.shm[objref] = npages

    @staticmethod
    def error(part, message):
        return FormatError(message, offset=part.offset, record=part.name)


OBJECT_GRAMMAR = {
    "CKPT_OBJ_FILE_TABLE": Walker.file_table,
    "CKPT_OBJ_FILE": Walker.file,
    "CKPT_OBJ_MM": Walker.mm,
    "CKPT_OBJ_SIGHAND": Walker.sighand,
    "CKPT_OBJ_FS": Walker.fs,
    "CKPT_OBJ_CRED": Walker.cred,
    "CKPT_OBJ_GROUPINFO": Walker.groupinfo,
    "CKPT_OBJ_USER": Walker.user,
    "CKPT_OBJ_USER_NS": Walker.user_ns,
}
TASK_PART_GRAMMAR = {
    "CKPT_HDR_THREAD": Walker.thread,
    "CKPT_HDR_CPU": Walker.cpu,
    "CKPT_HDR_TASK_OBJS": Walker.task_objs,
    "CKPT_HDR_TASK_CREDS": Walker.task_creds,
}
