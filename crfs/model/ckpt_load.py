"""Index a linux-cr ckpt_hdr image (v19-rc3..v21, x86_32/x86_64) into an Image.

Metadata only: page contents stay in the file, PageMaps point at them. The grammar is in
crfs.formats.ckpt. Records that belong to objects crfs does not interpret (CONTAINER and LSM
info, file tables, namespaces, unknown types) are skipped by their length; OBJREF may appear
wherever the kernel could first use a shared object. Every length and count is checked against
the file before anything is read or allocated for it.
"""

from dataclasses import dataclass

from construct import Array, Int32sl

from crfs.errors import FormatError
from crfs.formats import ckpt as fmt
from crfs.formats.common import decode_text
from crfs.formats.pagewords import (aligned_ascending, first_word, indices_ascending,
                                    last_word, page_keys, widen)
from crfs.formats.source import parse_bytes
from crfs.formats.x86 import GDT_ENTRY_TLS_ENTRIES, LDT_ENTRY_SIZE, PAGE_SIZE
from crfs.model.ckpt_cpu import CPU_ONLY_FIELDS, registers_from_cpu
from crfs.model.image import Image, Mm, ShmSegment, Task, Vma, native_record, set_field
from crfs.model.registers import Registers

DIALECT = "ckpt_hdr v21"
MAX_STRING = 4096      # longest STRING/FILE_NAME/small BUFFER accepted
MAX_PID_NS_DEPTH = 32  # MAX_PID_NS_LEVEL
LDT_ENTRIES = 8192
AT_NULL = 0

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

# Record types crfs interprets: met out of place they are an error, not something to skip.
INTERPRETED = {name for name in fmt.CKPT_HDR} - {
    "CKPT_HDR_CONTAINER", "CKPT_HDR_LSM_INFO", "CKPT_HDR_SECURITY", "CKPT_HDR_TASK_NS",
    "CKPT_HDR_RESTART_BLOCK", "CKPT_HDR_FILE_TABLE", "CKPT_HDR_FILE_DESC",
    "CKPT_HDR_BUFFER", "CKPT_HDR_STRING"}

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

# What only ckpt_hdr stores: pid-namespace depth and its vpids, objrefs of what crfs does
# not restore, and the CPU record fields an i386 task has no register for.
CkptTaskFields = native_record("CkptTaskFields", ("depth", "vpids", "thread_info_flags",
                                                  *TASK_OBJREFS, *CPU_ONLY_FIELDS))
CkptVmaFields = native_record("CkptVmaFields", ("vma_type", "vma_objref", "ino_objref",
                                                "ino_size", "f_type", *FILE_FIELDS))


@dataclass
class FileObject:
    """A CKPT_OBJ_FILE: its path (generic files only) and FILE record fields."""
    path: object
    fields: dict


def load(source):
    """Index `source` into an Image. FormatError for anything the format does not allow."""
    return _Loader(source).load()


def _fields(container, names):
    return {name: container[name] for name in names}


class _Loader:
    """A cursor over the records of one image plus the shared objects seen so far."""

    def __init__(self, source):
        self.source = source
        self.offset = 0
        self.count = 0
        self.arch = None
        self.header = {}
        self.objects = {}   # objref -> (CKPT_OBJ_* name, object or None)
        self.shm = {}       # ino_objref -> ShmSegment

    # ----------------------------------------------------------------- cursor

    def peek(self):
        """The next record. An ERROR record ends the image with its own message."""
        if self.offset >= self.source.size:
            raise FormatError("missing CKPT_HDR_TAIL at the end of the file", offset=self.offset)
        record = fmt.record_at(self.source, self.offset)
        if record.name == "CKPT_HDR_ERROR":
            raise FormatError(f"the checkpoint failed: {self._error_message(record)}",
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

    def next_of(self, name):
        """The next record of type `name`, loading shared objects and skipping records crfs
        does not interpret on the way."""
        while True:
            record = self.next()
            if record.name == name:
                return record
            self.interleaved(record)

    def interleaved(self, record):
        """A record met between the ones the grammar names: an object, or one to skip."""
        if record.name == "CKPT_HDR_OBJREF":
            self.load_object(record)
        elif record.name in INTERPRETED:
            raise FormatError("unexpected here", offset=record.offset, record=record.name)

    def parse(self, record):
        return fmt.parse_record(self.source, record)

    def read_data(self, record, limit=MAX_STRING):
        """Payload of a raw record (STRING, BUFFER, ...) of at most `limit` bytes."""
        if record.data_length > limit:
            raise FormatError(f"{record.data_length} bytes, more than {limit}",
                              offset=record.offset, record=record.name)
        return self.source.read(record.data_offset, record.data_length, record.name)

    def text(self, record):
        return decode_text(self.read_data(record))

    def _error_message(self, record):
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

    def load(self):
        self.load_header()
        tasks = self.load_tree()
        for task in tasks:
            self.load_task(task)
        self.load_tail()
        return Image(format="linux-cr", dialect=DIALECT, arch=self.arch, header=self.header,
                     time=self.header["time"], tasks=tasks, source=self.source,
                     record_count=self.count, has_trailer=True)

    def load_header(self):
        record = self.next()
        if record.name != "CKPT_HDR_HEADER":
            raise FormatError("not a ckpt_hdr image", offset=record.offset, record=record.name)
        h = self.parse(record)
        if h.magic != fmt.MAGIC["CHECKPOINT_MAGIC_HEAD"]:
            raise FormatError(f"bad magic {h.magic:#x}", offset=record.offset, record=record.name)
        if h.arch_id not in fmt.ARCH_BY_ID:
            raise FormatError(f"unsupported arch_id {h.arch_id}", offset=record.offset,
                              record=record.name)
        self.arch = fmt.ARCH_BY_ID[h.arch_id]
        constants = {k: v for k, v in h.constants.items() if not k.startswith("_")}
        uts = {name: self.uts_string(constants[f"uts_{name}_len"])
               for name in ("release", "version", "machine")}
        arch = self.parse(self.expect("CKPT_HDR_HEADER_ARCH"))
        self.header = {**uts, "kernel": f"{h.major}.{h.minor}.{h.patch}", "rev": h.rev,
                       "time": h.time, "uflags": h.uflags, **constants,
                       **_fields(arch, ("has_fxsr", "has_xsave", "xstate_size"))}

    def uts_string(self, length):
        record = self.expect("CKPT_HDR_BUFFER")
        if record.data_length != length:
            raise FormatError(f"{record.data_length} bytes, the header says {length}",
                              offset=record.offset, record=record.name)
        return self.text(record)

    def load_tree(self):
        record = self.next_of("CKPT_HDR_TREE")
        nr_tasks = self.parse(record).nr_tasks
        if nr_tasks < 1:
            raise FormatError(f"nr_tasks {nr_tasks}", offset=record.offset, record=record.name)
        self.check_fits(record, "nr_tasks", nr_tasks, fmt.ckpt_pids.sizeof())
        pids = self.parse_array(Array(nr_tasks, fmt.ckpt_pids), "nr_tasks", nr_tasks)
        for pid in pids:
            if not 0 <= pid.depth <= MAX_PID_NS_DEPTH:
                raise FormatError(f"pid {pid.vpid}: depth {pid.depth}", offset=record.offset,
                                  record=record.name)
        depth = sum(pid.depth for pid in pids)
        vpids = iter(self.parse_array(Array(depth, Int32sl), "depth", depth) if depth else ())
        return [self.new_task(pid, [next(vpids) for _ in range(pid.depth)]) for pid in pids]

    def parse_array(self, struct, what, count):
        """A BUFFER holding exactly `struct` (an Array of `count` items)."""
        record = self.expect("CKPT_HDR_BUFFER")
        if record.data_length != struct.sizeof():
            raise FormatError(f"{record.data_length} bytes for {what} {count}",
                              offset=record.offset, record=record.name)
        data = self.source.read(record.data_offset, record.data_length, record.name)
        return parse_bytes(struct, data, record.data_offset, record.name)

    @staticmethod
    def new_task(pid, vpids):
        return Task(pid=pid.vpid, tgid=pid.vtgid, ppid=pid.vppid, comm="", pgid=pid.vpgid,
                    sid=pid.vsid, native=CkptTaskFields(depth=pid.depth, vpids=list(vpids)))

    def load_tail(self):
        record = self.next_of("CKPT_HDR_TAIL")
        magic = self.parse(record).magic
        if magic != fmt.MAGIC["CHECKPOINT_MAGIC_TAIL"]:
            raise FormatError(f"bad magic {magic:#x}", offset=record.offset, record=record.name)
        if record.end != self.source.size:
            raise FormatError("data after the trailer", offset=record.end, record=record.name)

    # ----------------------------------------------------------------- tasks

    def load_task(self, task):
        h = self.parse(self.next_of("CKPT_HDR_TASK"))
        task.comm = self.text(self.expect("CKPT_HDR_STRING"))
        task.state = h.state
        for field, where in TASK_FIELDS.items():
            set_field(task, where, h[field])
        seen = set()
        while self.peek().name not in ("CKPT_HDR_TASK", "CKPT_HDR_TAIL"):
            record = self.next()
            part = TASK_PARTS.get(record.name)
            if part is None:
                self.interleaved(record)
                continue
            if record.name in seen:
                raise FormatError(f"second one for pid {task.pid}", offset=record.offset,
                                  record=record.name)
            seen.add(record.name)
            part(self, task, record)

    def load_thread(self, task, record):
        h = self.parse(record)
        if (h.gdt_entry_tls_entries, h.sizeof_tls_array) != (GDT_ENTRY_TLS_ENTRIES, 24):
            raise FormatError(f"{h.gdt_entry_tls_entries} TLS entries in {h.sizeof_tls_array} "
                              "bytes", offset=record.offset, record=record.name)
        task.tls = list(h.tls_array)
        task.native.thread_info_flags = h.thread_info_flags

    def load_cpu(self, task, record):
        h = self.parse(record)
        try:
            values, cpu_only = registers_from_cpu(h, self.arch)
        except ValueError as exc:
            raise FormatError(str(exc), offset=record.offset, record=record.name) from exc
        task.regs = Registers(self.arch, values)
        for name, value in cpu_only.items():
            setattr(task.native, name, value)
        if h.used_math:
            fpu = self.expect("CKPT_HDR_CPU_FPU")
            size = self.header["xstate_size"]
            if fpu.data_length != size:
                raise FormatError(f"{fpu.data_length} bytes, HEADER_ARCH xstate_size is {size}",
                                  offset=fpu.offset, record=fpu.name)
            task.fpu = self.source.read(fpu.data_offset, size, fpu.name)

    def load_task_objs(self, task, record):
        h = self.parse(record)
        for name in TASK_OBJREFS:
            setattr(task.native, name, h[name])
        if h.mm_objref:
            task.mm = self.lookup(h.mm_objref, "CKPT_OBJ_MM", record)

    # ----------------------------------------------------------------- objects

    def load_object(self, record):
        h = self.parse(record)
        if h.objref <= 0 or h.objref in self.objects:
            raise FormatError(f"objref {h.objref} is not new", offset=record.offset,
                              record=record.name)
        kind = fmt.OBJ_NAMES.get(h.objtype, f"objtype {h.objtype}")
        self.objects[h.objref] = (kind, None)   # not usable until its records are read
        loader = OBJECT_LOADERS.get(kind)
        if loader is not None:
            self.objects[h.objref] = (kind, loader(self))

    def lookup(self, objref, kind, record):
        found_kind, obj = self.objects.get(objref, (None, None))
        if found_kind != kind or obj is None:
            raise FormatError(f"objref {objref} is not a {kind} seen before",
                              offset=record.offset, record=record.name)
        return obj

    def load_file(self):
        h = self.parse(self.next_of("CKPT_HDR_FILE"))
        f_type = fmt.FILE_NAMES.get(h.f_type, h.f_type)
        path = None
        if f_type == "CKPT_FILE_GENERIC":
            path = self.text(self.expect("CKPT_HDR_FILE_NAME"))
        return FileObject(path, {"f_type": f_type, **_fields(h, FILE_FIELDS)})

    # ----------------------------------------------------------------- memory

    def load_mm(self):
        record = self.next_of("CKPT_HDR_MM")
        h = self.parse(record)
        fields = _fields(h, ("map_count", "exe_objref", "def_flags", "flags", *fmt.MM_ADDRESSES))
        mm = Mm(fields=fields, auxv=self.load_auxv(), source=self.source)
        self.check_fits(record, "map_count", h.map_count, fmt.ckpt_hdr_vma.sizeof())
        for _ in range(h.map_count):
            vma_record = self.next_of("CKPT_HDR_VMA")
            vma = self.load_vma(vma_record)
            try:
                mm.add_vma(vma)
            except ValueError as exc:
                raise FormatError(str(exc), offset=vma_record.offset,
                                  record=vma_record.name) from exc
        self.load_mm_context(mm)
        return mm

    def load_auxv(self):
        record = self.expect("CKPT_HDR_BUFFER")
        size = self.header["at_vector_size"] * 8
        if record.data_length != size or size % 16:
            raise FormatError(f"auxv of {record.data_length} bytes, the header says {size}",
                              offset=record.offset, record=record.name)
        data = self.read_data(record)
        entries = parse_bytes(Array(size // 16, fmt.auxv_entry), data, record.offset, record.name)
        auxv = []
        for entry in entries:
            auxv.append((entry.type, entry.value))
            if entry.type == AT_NULL:
                return auxv
        raise FormatError("auxv without AT_NULL", offset=record.offset, record=record.name)

    def load_mm_context(self, mm):
        record = self.next_of("CKPT_HDR_MM_CONTEXT")
        h = self.parse(record)
        if h.ldt_entry_size != LDT_ENTRY_SIZE or h.nldt > LDT_ENTRIES:
            raise FormatError(f"{h.nldt} LDT entries of {h.ldt_entry_size} bytes",
                              offset=record.offset, record=record.name)
        ldt = self.expect("CKPT_HDR_MM_CONTEXT_LDT")
        if ldt.data_length != h.nldt * LDT_ENTRY_SIZE:
            raise FormatError(f"{ldt.data_length} bytes for nldt {h.nldt}", offset=ldt.offset,
                              record=ldt.name)
        mm.fields["vdso"] = h.vdso
        mm.ldt = self.read_data(ldt, LDT_ENTRIES * LDT_ENTRY_SIZE) if h.nldt else None

    def load_vma(self, record):
        h = self.parse(record)
        vma_type = fmt.VMA_NAMES.get(h.vma_type)
        if vma_type is None:
            raise FormatError(f"unknown vma_type {h.vma_type}", offset=record.offset,
                              record=record.name)
        if h.vm_start >= h.vm_end or (h.vm_start | h.vm_end) % PAGE_SIZE:
            raise FormatError(f"bad range {h.vm_start:#x}-{h.vm_end:#x}", offset=record.offset,
                              record=record.name)
        vma = Vma(start=h.vm_start, end=h.vm_end, vm_flags=h.vm_flags, prot=h.vm_page_prot,
                  pgoff=h.vm_pgoff, kind=VMA_KIND[vma_type],
                  native=CkptVmaFields(vma_type=vma_type,
                                       **_fields(h, ("vma_objref", "ino_objref", "ino_size"))))
        if h.vma_objref:
            file = self.lookup(h.vma_objref, "CKPT_OBJ_FILE", record)
            vma.file = file.path
            for name, value in file.fields.items():
                setattr(vma.native, name, value)
        contents = VMA_CONTENTS.get(vma_type)
        if contents is not None:
            contents(self, vma, record)
        return vma

    def page_chunks(self):
        """(PGARR record, raw vaddr bytes, offset of the first page) per chunk up to PGARR{0}."""
        width = fmt.VADDR_SIZE[self.arch]
        while True:
            record = self.expect("CKPT_HDR_PGARR")
            nr_pages = fmt.parse_pgarr(self.source, record).nr_pages
            if nr_pages == 0:
                return
            self.check_fits(record, "nr_pages", nr_pages, width + PAGE_SIZE)
            buffer = self.expect("CKPT_HDR_BUFFER")
            if buffer.data_length != nr_pages * (width + PAGE_SIZE):
                raise FormatError(f"{buffer.data_length} bytes for nr_pages {nr_pages}",
                                  offset=buffer.offset, record=buffer.name)
            raw = self.source.read(buffer.data_offset, nr_pages * width, buffer.name)
            yield record, raw, buffer.data_offset + nr_pages * width

    def load_private_pages(self, vma, _record):
        width = fmt.VADDR_SIZE[self.arch]
        lowest = vma.start
        for record, raw, first in self.page_chunks():
            words = widen(raw, width)
            high = last_word(words)
            if not (lowest <= first_word(words) and high < vma.end and aligned_ascending(words)):
                raise FormatError(f"vaddrs not page-aligned, ascending and inside "
                                  f"{vma.start:#x}-{vma.end:#x}", offset=record.offset,
                                  record=record.name)
            vma.pages.add_words(words, first)
            lowest = high + PAGE_SIZE

    def load_shm_pages(self, vma, record):
        """SHM_ANON: the shmem inode's pages, its "vaddrs" being page indices in the inode."""
        objref, size = vma.native.ino_objref, vma.native.ino_size
        if objref <= 0 or objref in self.shm:
            raise FormatError(f"ino_objref {objref} is not new", offset=record.offset,
                              record=record.name)
        segment = ShmSegment(objref=objref, size=size)
        npages = -(-size // PAGE_SIZE)
        next_index = 0
        for chunk, raw, first in self.page_chunks():
            indices = widen(raw, fmt.VADDR_SIZE[self.arch])
            high = last_word(indices)
            if not (next_index <= first_word(indices) and high < npages
                    and indices_ascending(indices)):
                raise FormatError(f"page indices not ascending inside ino_size {size}",
                                  offset=chunk.offset, record=chunk.name)
            segment.pages.add_words(page_keys(indices), first)
            next_index = high + 1
        self.shm[objref] = segment
        vma.map_segment(segment)

    def load_shm_skip(self, vma, record):
        segment = self.shm.get(vma.native.ino_objref)
        if segment is None:
            raise FormatError(f"ino_objref {vma.native.ino_objref} was not dumped before",
                              offset=record.offset, record=record.name)
        vma.map_segment(segment)


TASK_PARTS = {
    "CKPT_HDR_THREAD": _Loader.load_thread,
    "CKPT_HDR_CPU": _Loader.load_cpu,
    "CKPT_HDR_TASK_OBJS": _Loader.load_task_objs,
}
OBJECT_LOADERS = {
    "CKPT_OBJ_FILE": _Loader.load_file,
    "CKPT_OBJ_MM": _Loader.load_mm,
}
VMA_CONTENTS = {
    "CKPT_VMA_ANON": _Loader.load_private_pages,
    "CKPT_VMA_FILE": _Loader.load_private_pages,
    "CKPT_VMA_SHM_ANON": _Loader.load_shm_pages,
    "CKPT_VMA_SHM_ANON_SKIP": _Loader.load_shm_skip,
}
