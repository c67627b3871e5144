"""linux-cr `cr_hdr` streams (RFC v2..v4, Sep 2008, and the v14-rc2 dialect, Mar 2009).

Every record is an 8-byte `cr_hdr` {type, len} whose `len` counts the payload only, then
the payload; some records are followed by raw, un-headed data (vaddr arrays and pages,
the LDT, the TLS array, xstate). The stream has no index, so it is walked front to back
by one grammar (`Walker`) that both `records()` and crfs.model.cr.load use.

Dialects (see docs/format-cr.md), told apart by the length of the first (HEAD) record:
  "cr_hdr v4"  HEAD len 224. v2, v3 and v4 write the same bytes for the same records.
  "cr_hdr v14" HEAD len 40, v12/v13 record numbering, PGARR page chunks, shared memory.
"""

from dataclasses import dataclass
from enum import IntEnum
from typing import Optional

from construct import Bytes, Int16sl, Int16ul, Int32sl, Int32ul, Int64sl, Int64ul, Struct

from crfs.errors import FormatError
from crfs.formats.common import Pad, decode_text, name_of, u64_array
from crfs.formats.pagewords import (aligned_ascending, first_word, indices_ascending, last_word,
                                    widen)
from crfs.formats.source import RecordInfo
from crfs.formats.x86 import GDT_ENTRY_TLS_ENTRIES, LDT_ENTRY_SIZE, PAGE_SIZE, USER_END

V4 = "cr_hdr v4"
V14 = "cr_hdr v14"
DIALECTS = (V4, V14)

# Header types per dialect. v4: include/linux/ckpt_hdr.h of RFC v3 patch 2/9, plus
# CR_HDR_FNAME from "[RFC v4][PATCH 4/9] Memory management (dump)" (9 Sep 2008).
# v14: INFERRED. The v14-rc2 enum is not in any public archive; these are the last values
# published before it: "[RFC v12][PATCH 06/14] Dump memory address space" (29 Dec 2008),
# plus TREE/TASK/THREAD/CPU of the v9-v13 multi-process records. See docs/format-cr.md.
HDR_TYPES = {
    V4: IntEnum("CR_HDR_V4", {
        "CR_HDR_HEAD": 1, "CR_HDR_STRING": 2, "CR_HDR_FNAME": 3,
        "CR_HDR_TASK": 101, "CR_HDR_THREAD": 102, "CR_HDR_CPU": 103,
        "CR_HDR_MM": 201, "CR_HDR_VMA": 202, "CR_HDR_MM_CONTEXT": 203,
        "CR_HDR_TAIL": 5001,
    }),
    V14: IntEnum("CR_HDR_V14", {
        "CR_HDR_HEAD": 1, "CR_HDR_HEAD_ARCH": 2, "CR_HDR_BUFFER": 3, "CR_HDR_STRING": 4,
        "CR_HDR_FNAME": 5,
        "CR_HDR_TREE": 101, "CR_HDR_TASK": 102, "CR_HDR_THREAD": 103, "CR_HDR_CPU": 104,
        "CR_HDR_MM": 201, "CR_HDR_VMA": 202, "CR_HDR_PGARR": 203, "CR_HDR_MM_CONTEXT": 204,
        "CR_HDR_TAIL": 5001,
    }),
}

# enum vm_type / cr_vma_type. ANON and FILE: "[RFC v4][PATCH 4/9] Memory management
# (dump)". The SHM_* values are INFERRED: "[RFC v14-rc2][PATCH 21/29] Dump anonymous- and
# file-mapped- shared memory" names them, and Serge Hallyn's review says
# cr_vma_type_skip() amounts to "vma_type++", so each _SKIP directly follows its base.
# They continue after v4's ANON=1, FILE=2, with SHM_ANON before SHM_FILE as in the later
# CKPT_VMA_* enum.
VMA_TYPES = IntEnum("VMA_TYPES", {
    "CR_VMA_ANON": 1, "CR_VMA_FILE": 2,
    "CR_VMA_SHM_ANON": 3, "CR_VMA_SHM_ANON_SKIP": 4,
    "CR_VMA_SHM_FILE": 5, "CR_VMA_SHM_FILE_SKIP": 6,
})
VMA_TYPES_V4 = ("CR_VMA_ANON", "CR_VMA_FILE")
# VMA types followed by an FNAME record (they have a backing file) / by page contents.
VMA_WITH_FNAME = ("CR_VMA_FILE", "CR_VMA_SHM_FILE", "CR_VMA_SHM_FILE_SKIP")
VMA_WITH_PAGES = ("CR_VMA_ANON", "CR_VMA_FILE", "CR_VMA_SHM_ANON")
# A _SKIP VMA refers to the segment its base type dumped earlier.
VMA_SKIP_BASE = {"CR_VMA_SHM_ANON_SKIP": "CR_VMA_SHM_ANON",
                 "CR_VMA_SHM_FILE_SKIP": "CR_VMA_SHM_FILE"}

# include/linux/magic.h of RFC v3 patch 2/9
MAGICS = {
    "CHECKPOINT_MAGIC_HEAD": 0x00FEED0CC0A2D200,
    "CHECKPOINT_MAGIC_TAIL": 0x002D2A0CC0DEEF00,
}

NEW_UTS_LEN = 64
UTS_FIELD_LEN = NEW_UTS_LEN + 1   # v14 BUFFERs hold the whole new_utsname field
STRING_MAX = PAGE_SIZE              # PATH_MAX; also the bound on comm and uts strings
LDT_ENTRIES = 8192
WORD_SIZE = {"i386": 4, "x86_64": 8}    # sizeof(unsigned long): the vaddr arrays
CR_PGARR_CHUNK = {"i386": 4 * PAGE_SIZE // 4, "x86_64": 4 * PAGE_SIZE // 8}   # v12 writer

# --- construct declarations, one per record (payload only; the frame is separate) ---
# Bytes fields named _padding/_pad* hold bytes the kernel never initialised (ctx->hbuf):
# kept so build(parse(b)) == b, never interpreted; crfs writes zeros there.

cr_hdr = Struct(                     # v2..v4, RFC v3 patch 2/9
    "type" / Int16sl,
    "len" / Int16sl,                 # payload length, header excluded
    "parent" / Int32ul,
)
# INFERRED: v14-rc1 dropped `parent` and made the fields unsigned (changelog in the
# "[RFC v16][PATCH 00/43] Kernel based checkpoint/restart" cover letter); the new widths
# were never published, so we keep the 8-byte frame with the old parent word unused.
cr_hdr_v14 = Struct(
    "type" / Int16ul,
    "len" / Int16ul,
    "_padding" / Pad(4),
)
FRAMES = {V4: cr_hdr, V14: cr_hdr_v14}

cr_hdr_head = Struct(                # v4, 224 bytes, RFC v3 patch 2/9
    "magic" / Int64ul,
    "major" / Int16ul, "minor" / Int16ul, "patch" / Int16ul, "rev" / Int16ul,
    "time" / Int64ul,
    "flags" / Int64ul,
    "release" / Bytes(NEW_UTS_LEN),
    "version" / Bytes(NEW_UTS_LEN),
    "machine" / Bytes(NEW_UTS_LEN),
)
# v14: the uts strings moved to 3 BUFFERs (user-cr mktree). INFERRED: the v14 HEAD payload
# was never published; this is the v16 one ("[RFC v16][PATCH 05/43]"), see docs/format-cr.md.
cr_hdr_head_v14 = Struct(
    "magic" / Int64ul,
    "_padding" / Pad(2),
    "major" / Int16ul, "minor" / Int16ul, "patch" / Int16ul, "rev" / Int16ul,
    "uts_release_len" / Int16ul, "uts_version_len" / Int16ul, "uts_machine_len" / Int16ul,
    "time" / Int64ul,
    "flags" / Int64ul,
)
cr_hdr_head_arch = Struct(           # v9+ x86, 8 bytes
    "has_fxsr" / Int16ul, "has_xsave" / Int16ul, "xstate_size" / Int16ul,
    "_pading" / Pad(2),
)
cr_hdr_tail = Struct("magic" / Int64ul)
cr_hdr_tree = Struct("tasks_nr" / Int32ul, "_padding" / Pad(4))   # v9+, then pids
cr_hdr_pids = Struct(
    "vpid" / Int32sl, "vtgid" / Int32sl, "vppid" / Int32sl, "_padding" / Pad(4),
)

TASK_TIMES = ("utime", "stime", "utimescaled", "stimescaled", "gtime", "prev_utime",
              "prev_stime", "nvcsw", "nivcsw", "start_time_sec", "start_time_nsec",
              "real_start_time_sec", "real_start_time_nsec", "min_flt", "maj_flt")
_TASK_EXITS = ("exit_state" / Int32ul, "exit_code" / Int32ul, "exit_signal" / Int32ul)
cr_hdr_task_i386 = Struct(           # v2..v4, gcc -m32: u64 4-aligned, 144 bytes
    "state" / Int64ul, *_TASK_EXITS,
    *(name / Int64ul for name in TASK_TIMES),
    "task_comm_len" / Int32sl,
)
cr_hdr_task_x86_64 = Struct(         # INFERRED (v4 is i386-only): same C built 64-bit, 152 bytes
    "state" / Int64ul, *_TASK_EXITS,
    "_pad0" / Pad(4),
    *(name / Int64ul for name in TASK_TIMES),
    "task_comm_len" / Int32sl,
    "_pad1" / Pad(4),
)
cr_hdr_task_v14 = Struct(            # reduced v5+ form (v6/v10 postings), 24 bytes
    "state" / Int32ul, *_TASK_EXITS,
    "task_comm_len" / Int32sl,
    "_padding" / Pad(4),
)

MM_FIELDS = ("start_code", "end_code", "start_data", "end_data", "start_brk", "brk",
             "start_stack", "arg_start", "arg_end", "env_start", "env_end")
cr_hdr_mm = Struct(                  # 96 bytes, RFC v4 patch 4/9
    "objref" / Int32ul, "map_count" / Int32ul,
    *(name / Int64ul for name in MM_FIELDS),
)
VMA_FIELDS = ("vm_start", "vm_end", "vm_page_prot", "vm_flags", "vm_pgoff")
cr_hdr_vma = Struct(                 # v4, 56 bytes, RFC v4 patch 4/9
    "vma_type" / Int32ul,
    "_padding" / Pad(4),
    "nr_pages" / Int64sl,
    *(name / Int64ul for name in VMA_FIELDS),
)
cr_hdr_vma_v14 = Struct(             # v14-rc2, 64 bytes, RFC v14-rc2 patch 21/29
    "vma_type" / Int32ul,
    "vma_objref" / Int32sl,
    "shm_objref" / Int32sl,
    "_padding" / Pad(4),
    "shm_size" / Int64ul,
    *(name / Int64ul for name in VMA_FIELDS),
)
cr_hdr_pgarr = Struct("nr_pages" / Int64ul)   # v5+, then vaddrs and pages
cr_hdr_mm_context = Struct(          # 8 bytes, then nldt * 8 bytes of LDT
    "ldt_entry_size" / Int16sl, "nldt" / Int16sl, "_padding" / Pad(4),
)
cr_hdr_thread = Struct(              # 8 bytes, then the TLS array
    "gdt_entry_tls_entries" / Int16sl, "sizeof_tls_array" / Int16sl, "ntls" / Int16sl,
    "_padding" / Pad(2),
)
desc_struct = Struct("a" / Int32ul, "b" / Int32ul)
TLS_ARRAY_SIZE = GDT_ENTRY_TLS_ENTRIES * desc_struct.sizeof()

CPU_REGS = ("r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8", "ax", "cx",
            "dx", "si", "di", "orig_ax", "ip", "cs", "flags", "sp", "ss", "ds", "es", "fs",
            "gs")
DEBUG_REGS = tuple(f"debugreg{i}" for i in range(8))
cr_hdr_cpu = Struct(                 # v4, 784 bytes (asm-x86/ckpt_hdr.h, blob 44a903c)
    *(name / Int64ul for name in CPU_REGS + DEBUG_REGS),
    "uses_debug" / Int16ul, "used_math" / Int16ul, "has_fxsr" / Int16ul,
    "_padding" / Pad(2),
    "xstate" / Bytes(512),           # union thread_xstate; garbage in v4 (pointer bug)
)
cr_hdr_cpu_v14 = Struct(             # v9+, 272 bytes, then xstate_size bytes iff used_math
    *(name / Int64ul for name in CPU_REGS + DEBUG_REGS),
    "uses_debug" / Int32ul, "used_math" / Int32ul,
)

# Fixed-size payloads by record name, per dialect (TASK is chosen by its len in v4).
LAYOUTS = {
    V4: {"CR_HDR_HEAD": cr_hdr_head, "CR_HDR_TAIL": cr_hdr_tail, "CR_HDR_MM": cr_hdr_mm,
         "CR_HDR_VMA": cr_hdr_vma, "CR_HDR_MM_CONTEXT": cr_hdr_mm_context,
         "CR_HDR_THREAD": cr_hdr_thread, "CR_HDR_CPU": cr_hdr_cpu},
    V14: {"CR_HDR_HEAD": cr_hdr_head_v14, "CR_HDR_HEAD_ARCH": cr_hdr_head_arch,
          "CR_HDR_TREE": cr_hdr_tree, "CR_HDR_TASK": cr_hdr_task_v14,
          "CR_HDR_TAIL": cr_hdr_tail, "CR_HDR_MM": cr_hdr_mm, "CR_HDR_VMA": cr_hdr_vma_v14,
          "CR_HDR_PGARR": cr_hdr_pgarr, "CR_HDR_MM_CONTEXT": cr_hdr_mm_context,
          "CR_HDR_THREAD": cr_hdr_thread, "CR_HDR_CPU": cr_hdr_cpu_v14},
}
V4_TASK_LAYOUTS = {cr_hdr_task_i386.sizeof(): ("i386", cr_hdr_task_i386),
                   cr_hdr_task_x86_64.sizeof(): ("x86_64", cr_hdr_task_x86_64)}
HEAD_DIALECTS = {cr_hdr_head.sizeof(): V4, cr_hdr_head_v14.sizeof(): V14}
UTS_NAMES = ("release", "version", "machine")
FRAME_SIZE = 8
MAGIC_OFFSET = FRAME_SIZE


def machine_arch(machine):
    """Arch of a utsname machine string ("i686" -> i386), or None. Decides v14 images."""
    if machine == "x86_64":
        return "x86_64"
    return "i386" if machine in ("i386", "i486", "i586", "i686") else None


def sniff(head):
    """A first record {s16 HEAD=1, s16 len 224|40, u32} followed by CHECKPOINT_MAGIC_HEAD."""
    if len(head) < MAGIC_OFFSET + 8:
        return False
    frame = cr_hdr.parse(head[:FRAME_SIZE])
    magic = int.from_bytes(head[MAGIC_OFFSET:MAGIC_OFFSET + 8], "little")
    return (frame.type == HDR_TYPES[V4]["CR_HDR_HEAD"] and frame.len in HEAD_DIALECTS
            and magic == MAGICS["CHECKPOINT_MAGIC_HEAD"])


def records(source):
    """RecordInfo of every record in file order (raw data counted in the record it follows)."""
    for record in Walker(source).walk():
        yield record.info


@dataclass(eq=False)
class Record:
    """One record as walked: where it is, its parsed payload and decoded trailing data."""
    offset: int
    name: str                       # C enum spelling
    length: int                     # header + payload + raw data that follows it
    fields: object = None           # parsed payload (construct Container)
    parent: Optional[int] = None    # v4 cr_hdr.parent
    data: object = None             # bytes (strings, LDT, TLS, xstate) or list of pids
    role: str = ""                  # what a STRING/BUFFER/FNAME holds, e.g. "comm"
    pages: Optional[tuple] = None   # (vaddrs or shm page indices as little-endian u64s,
    #                                  offset of the first page)
    note: str = ""

    @property
    def info(self):
        return RecordInfo(self.offset, self.name, self.length, self.note)


class Walker:
    """The record grammar of both dialects; every length is bounded before it is read."""

    def __init__(self, source):
        self.source = source
        self.pos = 0
        self.dialect = None
        self.arch = None
        self.xstate_size = 0
        self.shm_types = {}     # shm_objref -> base VMA type that dumped it

    # -- the grammar --

    def walk(self):
        yield from self._head()
        if self.dialect == V14:
            yield self._fixed("CR_HDR_HEAD_ARCH")
            tree = self._tree()
            yield tree
            for _ in range(tree.fields.tasks_nr):
                yield from self._task()
        else:
            yield from self._task()
        yield self._tail()
        if self.pos != self.source.size:
            raise FormatError(f"{self.source.size - self.pos} bytes follow CR_HDR_TAIL",
                              offset=self.pos, record="CR_HDR_TAIL")

    def _head(self):
        frame = self._frame("CR_HDR_HEAD", cr_hdr)
        self.dialect = HEAD_DIALECTS.get(frame.len)
        if self.dialect is None:
            raise self._error(f"len {frame.len} is no known HEAD length", self.pos, "CR_HDR_HEAD")
        head = self._payload(frame, "CR_HDR_HEAD", LAYOUTS[self.dialect]["CR_HDR_HEAD"])
        self._check_magic(head, "CHECKPOINT_MAGIC_HEAD")
        head.note = self.dialect
        yield head
        if self.dialect == V4:
            return
        for name in UTS_NAMES:
            size = head.fields[f"uts_{name}_len"]
            buffer = self._blob("CR_HDR_BUFFER", name, STRING_MAX, exact=size)
            yield buffer
        # v14 records are the same on both ABIs except the vaddr arrays: utsname decides
        machine = decode_text(buffer.data)
        self.arch = machine_arch(machine)
        if self.arch is None:
            raise self._error(f"machine {machine!r} is neither i386 nor x86_64",
                              buffer.offset, "CR_HDR_BUFFER")

    def _tree(self):
        tree = self._fixed("CR_HDR_TREE")
        count = tree.fields.tasks_nr
        size = cr_hdr_pids.sizeof()
        if count == 0 or count * size > self._left():
            raise self._error(f"tasks_nr {count} does not fit the file", tree.offset,
                              "CR_HDR_TREE")
        raw = self._raw(tree, count * size)
        tree.data = [cr_hdr_pids.parse(raw[i:i + size]) for i in range(0, len(raw), size)]
        tree.note = f"tasks_nr {count}"
        return tree

    def _task(self):
        task = self._task_struct()
        yield task
        yield self._blob("CR_HDR_STRING", "comm", min(task.fields.task_comm_len, STRING_MAX))
        mm = self._fixed("CR_HDR_MM")
        self._check_count(mm, mm.fields.map_count, FRAME_SIZE + LAYOUTS[self.dialect]
                          ["CR_HDR_VMA"].sizeof(), "map_count")
        mm.note = f"map_count {mm.fields.map_count}"
        yield mm
        prev_end = 0
        for _ in range(mm.fields.map_count):
            vma_records = self._vma(prev_end)
            prev_end = vma_records[0].fields.vm_end
            yield from vma_records
        yield self._mm_context()
        yield self._thread()
        yield self._cpu()

    def _task_struct(self):
        if self.dialect == V14:
            task = self._fixed("CR_HDR_TASK")
        else:
            frame = self._frame("CR_HDR_TASK", cr_hdr)
            if frame.len not in V4_TASK_LAYOUTS:
                raise self._error(f"len {frame.len} is neither the i386 (144) nor the "
                                  "x86_64 (152) layout", self.pos, "CR_HDR_TASK")
            self.arch, layout = V4_TASK_LAYOUTS[frame.len]
            task = self._payload(frame, "CR_HDR_TASK", layout)
            task.note = f"{self.arch} layout"
        comm_len = task.fields.task_comm_len
        if not 0 <= comm_len <= PAGE_SIZE:
            raise self._error(f"task_comm_len {comm_len} out of range", task.offset,
                              "CR_HDR_TASK")
        return task

    def _vma(self, prev_end):
        """The VMA record and the records that carry its file name and pages."""
        vma = self._fixed("CR_HDR_VMA")
        f = vma.fields
        type_name = name_of(VMA_TYPES, f.vma_type)
        allowed = VMA_TYPES_V4 if self.dialect == V4 else VMA_TYPES.__members__
        if type_name not in allowed:
            raise self._error(f"unknown vma_type {f.vma_type}", vma.offset, "CR_HDR_VMA")
        self._check_vma_range(vma, prev_end)
        vma.note = type_name
        found = [vma]
        if type_name in VMA_WITH_FNAME:
            found.append(self._blob("CR_HDR_FNAME", "file", STRING_MAX, minimum=1))
        if self.dialect == V4:
            # v4: vaddrs and pages follow the VMA (or its FNAME) raw, nr_pages of them
            self._page_run(found[-1], f.nr_pages, f.vm_start, f.vm_end, vma.offset)
        else:
            found.extend(self._v14_contents(vma, type_name))
        return found

    def _v14_contents(self, vma, type_name):
        f = vma.fields
        if type_name in VMA_SKIP_BASE:
            if self.shm_types.get(f.shm_objref) != VMA_SKIP_BASE[type_name]:
                raise self._error(f"{type_name}: shm_objref {f.shm_objref} was not dumped "
                                  "before", vma.offset, "CR_HDR_VMA")
            return
        if type_name in VMA_SKIP_BASE.values():
            if f.shm_objref in self.shm_types:
                raise self._error(f"shm_objref {f.shm_objref} dumped twice", vma.offset,
                                  "CR_HDR_VMA")
            self.shm_types[f.shm_objref] = type_name
        if type_name not in VMA_WITH_PAGES:
            return
        if type_name == "CR_VMA_SHM_ANON":   # "vaddrs" are page indices in the segment
            lo, hi = 0, -(-f.shm_size // PAGE_SIZE)
        else:
            lo, hi = f.vm_start, f.vm_end
        while True:
            pgarr = self._fixed("CR_HDR_PGARR")
            nr_pages = pgarr.fields.nr_pages
            self._page_run(pgarr, nr_pages, lo, hi, pgarr.offset,
                           indices=type_name == "CR_VMA_SHM_ANON")
            yield pgarr
            if nr_pages == 0:
                return
            step = 1 if type_name == "CR_VMA_SHM_ANON" else PAGE_SIZE
            lo = last_word(pgarr.pages[0]) + step

    def _mm_context(self):
        ctx = self._fixed("CR_HDR_MM_CONTEXT")
        f = ctx.fields
        if f.ldt_entry_size != LDT_ENTRY_SIZE or not 0 <= f.nldt <= LDT_ENTRIES:
            raise self._error(f"ldt_entry_size {f.ldt_entry_size} nldt {f.nldt} invalid",
                              ctx.offset, "CR_HDR_MM_CONTEXT")
        ctx.data = self._raw(ctx, f.nldt * LDT_ENTRY_SIZE)
        ctx.note = f"nldt {f.nldt}"
        return ctx

    def _thread(self):
        thread = self._fixed("CR_HDR_THREAD")
        f = thread.fields
        if (f.gdt_entry_tls_entries != GDT_ENTRY_TLS_ENTRIES
                or f.sizeof_tls_array != TLS_ARRAY_SIZE
                or not 0 <= f.ntls <= GDT_ENTRY_TLS_ENTRIES):
            raise self._error(f"TLS {f.gdt_entry_tls_entries}/{f.sizeof_tls_array}/"
                              f"ntls {f.ntls} invalid", thread.offset, "CR_HDR_THREAD")
        # v4 writes the array even when ntls == 0 (x86 writer of "[RFC v6][PATCH 3/9] x86
        # support for checkpoint/restart"); from "[RFC v9][PATCH 04/13]" on, only if ntls > 0.
        if self.dialect == V4 or f.ntls > 0:
            thread.data = self._raw(thread, TLS_ARRAY_SIZE)
        thread.note = f"ntls {f.ntls}"
        return thread

    def _cpu(self):
        cpu = self._fixed("CR_HDR_CPU")
        if self.dialect == V14 and cpu.fields.used_math:
            cpu.data = self._raw(cpu, self.xstate_size)
        return cpu

    def _tail(self):
        tail = self._fixed("CR_HDR_TAIL")
        self._check_magic(tail, "CHECKPOINT_MAGIC_TAIL")
        return tail

    # -- reading, bounded --

    def _left(self):
        return self.source.size - self.pos

    def _error(self, message, offset, record):
        return FormatError(message, offset=offset, record=record)

    def _frame(self, expected, frame_struct=None):
        """The cr_hdr at pos, which must be of type `expected`."""
        if self._left() < FRAME_SIZE:
            raise self._error(f"file ends where {expected} was expected", self.pos, expected)
        frame = self.source.parse(frame_struct or FRAMES[self.dialect], self.pos, expected)
        dialect = self.dialect or V4
        found = name_of(HDR_TYPES[dialect], frame.type)
        if found != expected:
            found = found or f"unknown type {frame.type}"
            raise self._error(f"expected {expected}, found {found}", self.pos, expected)
        if frame.len < 0:
            raise self._error(f"negative len {frame.len}", self.pos, expected)
        return frame

    def _payload(self, frame, name, layout):
        """Parse the fixed payload of `frame` (at pos) and advance past it."""
        offset = self.pos
        fields = self.source.parse(layout, offset + FRAME_SIZE, name)
        self.pos += FRAME_SIZE + frame.len
        return Record(offset, name, FRAME_SIZE + frame.len, fields,
                      parent=getattr(frame, "parent", None))

    def _fixed(self, name):
        layout = LAYOUTS[self.dialect][name]
        frame = self._frame(name)
        if frame.len != layout.sizeof():
            raise self._error(f"len {frame.len}, expected {layout.sizeof()}", self.pos, name)
        record = self._payload(frame, name, layout)
        if name == "CR_HDR_HEAD_ARCH":
            self.xstate_size = record.fields.xstate_size
        return record

    def _blob(self, name, role, maximum, exact=None, minimum=0):
        """A record whose payload is raw bytes (STRING, FNAME, BUFFER)."""
        offset = self.pos
        frame = self._frame(name)
        if exact is not None and frame.len != exact:
            raise self._error(f"len {frame.len}, expected {exact}", offset, name)
        if not minimum <= frame.len <= maximum:
            raise self._error(f"len {frame.len} out of range {minimum}..{maximum}", offset,
                              name)
        data = self.source.read(offset + FRAME_SIZE, frame.len, name)
        self.pos += FRAME_SIZE + frame.len
        return Record(offset, name, FRAME_SIZE + frame.len, parent=getattr(frame, "parent",
                      None), data=data, role=role, note=repr(decode_text(data)))

    def _raw(self, record, size):
        """Raw bytes that follow `record`, counted in its length."""
        data = self.source.read(self.pos, size, record.name)
        self.pos += size
        record.length += size
        return data

    def _check_magic(self, record, magic_name):
        if record.fields.magic != MAGICS[magic_name]:
            raise self._error(f"magic {record.fields.magic:#x} is not {magic_name}",
                              record.offset, record.name)

    def _check_count(self, record, count, min_size, what):
        if count * min_size > self._left():
            raise self._error(f"{what} {count} exceeds the file", record.offset, record.name)

    def _check_vma_range(self, vma, prev_end):
        f = vma.fields
        if (f.vm_start % PAGE_SIZE or f.vm_end % PAGE_SIZE or f.vm_start >= f.vm_end
                or f.vm_start < prev_end):
            raise self._error(f"bad range {f.vm_start:#x}-{f.vm_end:#x} (previous VMA ends "
                              f"{prev_end:#x})", vma.offset, "CR_HDR_VMA")
        if f.vm_end > USER_END[self.arch]:
            raise self._error(f"VMA {f.vm_start:#x}-{f.vm_end:#x} ends past {self.arch} user "
                              f"space ({USER_END[self.arch]:#x})", vma.offset, "CR_HDR_VMA")

    def _page_run(self, record, nr_pages, lo, hi, offset, indices=False):
        """nr_pages `unsigned long`s, then the pages: one read for the vaddrs, none for pages."""
        name = "CR_HDR_PGARR" if self.dialect == V14 else "CR_HDR_VMA"
        word = WORD_SIZE[self.arch]
        if nr_pages < 0 or nr_pages * (word + PAGE_SIZE) > self._left():
            raise self._error(f"nr_pages {nr_pages} exceeds the file", offset, name)
        words = widen(self._raw(record, nr_pages * word), word)
        _check_addrs(words, lo, hi, indices, offset, name)
        record.pages = (words, self.pos)
        self.pos += nr_pages * PAGE_SIZE
        record.length += nr_pages * PAGE_SIZE
        what = "shm pages" if indices else "nr_pages"
        record.note = f"{record.note} {what} {nr_pages}".strip()


def _check_addrs(words, lo, hi, indices, offset, name):
    """Pages must be page-aligned (addresses), strictly ascending and inside [lo, hi).

    Checked on the whole array at once (crfs.formats.pagewords); only a failing array is
    gone through page by page, to name the culprit."""
    if not words:
        return
    in_order = indices_ascending(words) if indices else aligned_ascending(words)
    if not (in_order and lo <= first_word(words) and last_word(words) < hi):
        _report_bad_addrs(u64_array(words), lo, hi, indices, offset, name)


def _report_bad_addrs(addrs, lo, hi, indices, offset, name):
    """FormatError for the first page of `addrs` that breaks the rules of _check_addrs."""
    what = "page index" if indices else "vaddr"
    if not indices:
        for addr in addrs:
            if addr % PAGE_SIZE:
                raise FormatError(f"vaddr {addr:#x} is not page-aligned", offset=offset,
                                  record=name)
    for prev, addr in zip(addrs, addrs[1:]):
        if addr <= prev:
            raise FormatError(f"{what} {addr:#x} does not ascend", offset=offset, record=name)
    if addrs[0] < lo or addrs[-1] >= hi:
        raise FormatError(f"{what}s {addrs[0]:#x}..{addrs[-1]:#x} outside "
                          f"[{lo:#x}, {hi:#x})", offset=offset, record=name)
