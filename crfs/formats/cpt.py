"""OpenVZ cpt v2 stream (Andrey Mirkin's patchset v2, 17 Oct 2008): objects and grammar.

The image is a flat depth-first stream with no index and no trailer::

    image   := cpt_head  task(root)
    task    := TASK MM vma{MM.cpt_map_count} [LDT BITS] FPU BITS REGS task{TASK.cpt_children_num}
    vma     := VMA [NAME if CPT_VMA_FILE] PAGES{VMA.cpt_page_num}

`walk` checks that grammar once; `records` lists it and crfs.model.cpt builds the
model from it. Every object header is `cpt_object_hdr`; the x86_64 registers object
is the extension of docs/format-cpt.md (production layout, v2 header names).
"""

import struct
from array import array
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import Optional, Sequence

from construct import Array, Bytes, Const, Int16ul, Int32ul, Int64ul, Struct, this

from crfs.errors import FormatError
from crfs.formats.common import Pad, name_of, u64_array
from crfs.formats.pagewords import aligned_ascending, each_page_after, first_word, last_word
from crfs.formats.source import RecordInfo, parse_bytes
from crfs.formats.x86 import GDT_ENTRY_TLS_ENTRIES, LDT_ENTRY_SIZE, PAGE_SIZE, TASK_COMM_LEN, USER_END

# ---- constants of cpt_image.h (OpenVZ v2, patch 03/10), one table each, by C spelling ----

SIGNATURE = bytes((0x79, 0x1C, 0x01, 0x63))     # CPT_SIGNATURE0..3
CPT_NULL = 2**64 - 1

OBJECT_TYPES = IntEnum("OBJECT_TYPES", {
    "CPT_OBJ_TASK": 0,
    "CPT_OBJ_MM": 1,
    "CPT_OBJ_HEAD": 1024,            # defined by the v2 patchset, never written
    "CPT_OBJ_VMA": 1025,
    "CPT_OBJ_PAGES": 1026,
    "CPT_OBJ_NAME": 1027,
    "CPT_OBJ_X86_REGS": 1028,
    "CPT_OBJ_BITS": 1029,
    "CPT_OBJ_X86_64_REGS": 4097,     # x86_64 extension: production OpenVZ's value
})

CONTENT_TYPES = IntEnum("CONTENT_TYPES", {
    "CPT_CONTENT_VOID": 0,
    "CPT_CONTENT_ARRAY": 1,
    "CPT_CONTENT_DATA": 2,
    "CPT_CONTENT_NAME": 3,
    "CPT_CONTENT_REF": 4,
    "CPT_CONTENT_X86_FPUSTATE": 5,
    "CPT_CONTENT_X86_FPUSTATE_OLD": 6,
    "CPT_CONTENT_MM_CONTEXT": 7,
})

VMA_TYPES = IntEnum("VMA_TYPES", {"CPT_VMA_TYPE_0": 0, "CPT_VMA_FILE": 1})

# cpt_task_image.cpt_flags: the C header numbers the bits, cpt_flags is the OR of 1 << bit.
TASK_FLAGS = IntFlag("TASK_FLAGS", {
    "CPT_PF_EXITING": 1 << 0,
    "CPT_PF_FORKNOEXEC": 1 << 1,
    "CPT_PF_SUPERPRIV": 1 << 2,
    "CPT_PF_DUMPCORE": 1 << 3,
    "CPT_PF_SIGNALED": 1 << 4,
    "CPT_PF_USED_MATH": 1 << 5,
})

ARCH_IDS = {"CPT_ARCH_I386": 0, "CPT_ARCH_X86_64": 1}   # X86_64: extension, production value

# crfs arch name and registers object of each cpt_arch.
ARCHES = {
    ARCH_IDS["CPT_ARCH_I386"]: ("i386", "CPT_OBJ_X86_REGS"),
    ARCH_IDS["CPT_ARCH_X86_64"]: ("x86_64", "CPT_OBJ_X86_64_REGS"),
}

FPU_CONTENTS = ("CPT_CONTENT_X86_FPUSTATE", "CPT_CONTENT_X86_FPUSTATE_OLD")

# ---- declarations: one per object; garbage and padding kept as named Bytes ----

_HEADER = ("cpt_len" / Int64ul, "cpt_hdrlen" / Int32ul,
           "cpt_type" / Int16ul, "cpt_content" / Int16ul)


def _u64s(*names):
    return tuple(name / Int64ul for name in names)


def _u32s(*names):
    return tuple(name / Int32ul for name in names)


cpt_head = Struct(
    "cpt_signature" / Const(SIGNATURE),
    "cpt_hdrlen" / Int32ul,
    "cpt_image_major" / Int16ul,
    "cpt_image_minor" / Int16ul,
    "cpt_image_sublevel" / Int16ul,
    "cpt_image_extra" / Int16ul,
    "cpt_arch" / Int16ul,
    "cpt_pad1" / Pad(2),
    "cpt_pad2" / Pad(4),
    "cpt_time" / Int64ul,
)

cpt_object_hdr = Struct(*_HEADER)

cpt_task_image = Struct(
    *_HEADER,
    *_u64s("cpt_state", "cpt_flags", "cpt_thrflags", "cpt_thrstatus"),
    *_u32s("cpt_pid", "cpt_tgid", "cpt_ppid", "cpt_rppid", "cpt_pgrp", "cpt_session",
           "cpt_old_pgrp", "cpt_leader"),
    *_u64s("cpt_set_tid", "cpt_clear_tid"),
    *_u32s("cpt_exit_code", "cpt_exit_signal", "cpt_pdeath_signal", "cpt_user",
           "cpt_uid", "cpt_euid", "cpt_suid", "cpt_fsuid",
           "cpt_gid", "cpt_egid", "cpt_sgid", "cpt_fsgid"),
    "cpt_comm" / Bytes(TASK_COMM_LEN),
    "cpt_tls" / Array(GDT_ENTRY_TLS_ENTRIES, Int64ul),
    *_u64s("cpt_utime", "cpt_stime", "cpt_utimescaled", "cpt_stimescaled", "cpt_gtime",
           "cpt_prev_utime", "cpt_prev_stime", "cpt_start_time", "cpt_real_start_time",
           "cpt_nvcsw", "cpt_nivcsw", "cpt_min_flt", "cpt_maj_flt"),
    "cpt_children_num" / Int32ul,
    "cpt_pad" / Pad(4),
)

cpt_mm_image = Struct(
    *_HEADER,
    *_u64s("cpt_start_code", "cpt_end_code", "cpt_start_data", "cpt_end_data",
           "cpt_start_brk", "cpt_brk", "cpt_start_stack", "cpt_start_arg", "cpt_end_arg",
           "cpt_start_env", "cpt_end_env", "cpt_def_flags", "cpt_flags", "cpt_map_count"),
)

cpt_vma_image = Struct(
    *_HEADER,
    "cpt_file" / Int64ul,
    "cpt_vma_type" / Int32ul,
    "cpt_pad" / Pad(4),
    *_u64s("cpt_start", "cpt_end", "cpt_flags", "cpt_pgprot", "cpt_pgoff", "cpt_page_num"),
)

cpt_page_block = Struct(*_HEADER, *_u64s("cpt_start", "cpt_end"))

# NAME: a bare object header, then the d_path string with its NUL, unpadded.
cpt_name = Struct(*_HEADER, "cpt_name" / Bytes(this.cpt_len - cpt_object_hdr.sizeof()))

cpt_obj_bits = Struct(*_HEADER, "cpt_size" / Int32ul, "__cpt_pad1" / Pad(4))

cpt_x86_regs = Struct(
    *_HEADER,
    "cpt_debugreg" / Array(8, Int32ul),
    *_u32s("cpt_gs", "cpt_bx", "cpt_cx", "cpt_dx", "cpt_si", "cpt_di", "cpt_bp", "cpt_ax",
           "cpt_ds", "cpt_es", "cpt_fs", "cpt_orig_ax", "cpt_ip", "cpt_cs", "cpt_flags",
           "cpt_sp", "cpt_ss"),
    "cpt_tail_pad" / Bytes(4),       # aligned(8) tail padding: kernel stack garbage
)

cpt_x86_64_regs = Struct(
    *_HEADER,
    "cpt_debugreg" / Array(8, Int64ul),
    *_u64s("cpt_fsbase", "cpt_gsbase"),
    *_u32s("cpt_fsindex", "cpt_gsindex", "cpt_ds", "cpt_es"),
    *_u64s("cpt_r15", "cpt_r14", "cpt_r13", "cpt_r12", "cpt_rbp", "cpt_rbx", "cpt_r11",
           "cpt_r10", "cpt_r9", "cpt_r8", "cpt_rax", "cpt_rcx", "cpt_rdx", "cpt_rsi",
           "cpt_rdi", "cpt_orig_rax", "cpt_rip", "cpt_cs", "cpt_eflags", "cpt_rsp", "cpt_ss"),
)

# The fixed-size part of each object type, as read from the stream.
DECLARATIONS = {
    "CPT_OBJ_TASK": cpt_task_image,
    "CPT_OBJ_MM": cpt_mm_image,
    "CPT_OBJ_VMA": cpt_vma_image,
    "CPT_OBJ_PAGES": cpt_page_block,
    "CPT_OBJ_NAME": cpt_object_hdr,
    "CPT_OBJ_BITS": cpt_obj_bits,
    "CPT_OBJ_X86_REGS": cpt_x86_regs,
    "CPT_OBJ_X86_64_REGS": cpt_x86_64_regs,
}

HEAD_SIZE = cpt_head.sizeof()
HEADER_SIZE = cpt_object_hdr.sizeof()
TASK_SIZE = cpt_task_image.sizeof()
VMA_SIZE = cpt_vma_image.sizeof()
BITS_SIZE = cpt_obj_bits.sizeof()
PAGE_BLOCK_SIZE = cpt_page_block.sizeof()

MAX_NAME = PAGE_SIZE            # d_path() buffer of cpt_dump_dentry
MAX_BITS = 64 * 1024            # the largest LDT (8192 entries); FPU states are 112 or 512


def field_names(declaration):
    return [sub.name for sub in declaration.subcons]


def field_offset(declaration, name):
    """Byte offset of field `name` in a fixed-size Struct."""
    offset = 0
    for sub in declaration.subcons:
        if sub.name == name:
            return offset
        offset += sub.sizeof()
    raise KeyError(name)


def _struct_format(declaration):
    """The struct-module format of a Struct made only of little-endian integers."""
    return "<" + "".join(sub.subcon.fmtstr.lstrip("<") for sub in declaration.subcons)


# PAGES headers are too many for construct: packed and unpacked with struct instead.
PAGE_HEADER = struct.Struct(_struct_format(cpt_page_block))
_PAGE_FIELDS = field_names(cpt_page_block)


def content_name(obj):
    """C spelling of an object's cpt_content, or the number if it has none."""
    return name_of(CONTENT_TYPES, obj.fields.cpt_content, str(obj.fields.cpt_content))


def sniff(head):
    return head[:len(SIGNATURE)] == SIGNATURE


# ---- the grammar walk ----

@dataclass(frozen=True)
class Obj:
    """One object of the stream: where it is, what it is, its parsed fixed part."""
    offset: int
    name: str              # C spelling, "cpt_head" for the file header
    length: int            # bytes it occupies, payload included
    fields: object         # construct Container
    note: str = ""

    @property
    def end(self):
        return self.offset + self.length

    @property
    def payload(self):
        """(offset, size) of the bytes after the fixed part (BITS)."""
        return self.offset + BITS_SIZE, self.length - BITS_SIZE


@dataclass(frozen=True)
class PageRun:
    """The PAGES objects following one VMA, decoded without a construct parse each.

    `stride` is set when every block is one page of DATA stored back to back (what the
    v2 dumper writes); otherwise `has_data` says which blocks carry data (DATA) or none (VOID).
    """
    offset: int
    length: int
    block_offsets: Sequence[int]
    starts: array
    ends: array
    stride: int = 0
    has_data: Optional[list] = None
    name = "CPT_OBJ_PAGES"

    @property
    def end(self):
        return self.offset + self.length

    def data_blocks(self):
        """(start, end, file offset of the bytes) of every block stored with data."""
        for i, block in enumerate(self.block_offsets):
            if self.has_data is None or self.has_data[i]:
                yield self.starts[i], self.ends[i], block + PAGE_BLOCK_SIZE

    def records(self):
        for i, block in enumerate(self.block_offsets):
            data = self.has_data is None or self.has_data[i]
            size = self.ends[i] - self.starts[i] if data else 0
            note = f"{self.starts[i]:#x}-{self.ends[i]:#x}" + ("" if data else " VOID")
            yield RecordInfo(block, self.name, PAGE_BLOCK_SIZE + size, note)


def records(source):
    """RecordInfo of every object, in file order."""
    for item in walk(source):
        if isinstance(item, PageRun):
            yield from item.records()
        else:
            yield RecordInfo(item.offset, item.name, item.length, item.note)


def walk(source):
    """Every object of the stream in file order: Obj, or PageRun for a VMA's pages.

    The task tree is walked with an explicit stack of "children still to read" counts,
    so a deep or lying tree cannot exhaust Python's recursion.
    """
    head = _parse(source, cpt_head, 0, "cpt_head")
    if head.cpt_arch not in ARCHES:
        raise FormatError(f"unknown cpt_arch {head.cpt_arch}", offset=0, record="cpt_head")
    yield Obj(0, "cpt_head", HEAD_SIZE, head)
    offset = HEAD_SIZE
    pending = [1]          # per tree level: tasks still to read
    promised = 1           # tasks announced by children counts but not read yet
    while pending:
        if pending[-1] == 0:
            pending.pop()
            continue
        pending[-1] -= 1
        promised -= 1
        task = _fixed(source, offset, "CPT_OBJ_TASK")
        yield task
        offset = yield from _task_body(source, task.end, ARCHES[head.cpt_arch])
        children = task.fields.cpt_children_num
        promised += children
        if promised * TASK_SIZE > source.size - offset:
            raise FormatError(f"cpt_children_num {children} exceeds the file",
                              offset=task.offset, record=task.name)
        pending.append(children)
    if offset != source.size:
        raise FormatError(f"{source.size - offset} bytes after the last task (the format "
                          "has no trailer)", offset=offset)


def _task_body(source, offset, arch):
    """MM, VMAs, optional LDT, FPU state and registers of one task; returns the end offset."""
    mm = _fixed(source, offset, "CPT_OBJ_MM")
    yield mm
    offset = mm.end
    count = mm.fields.cpt_map_count
    if count * VMA_SIZE > source.size - offset:
        raise FormatError(f"cpt_map_count {count} exceeds the file",
                          offset=mm.offset, record=mm.name)
    prev_end = 0
    for _ in range(count):
        offset, prev_end = yield from _vma(source, offset, prev_end, arch[0])
    bits = _bits(source, offset)
    if content_name(bits) == "CPT_CONTENT_MM_CONTEXT":   # the LDT, only when non-empty
        yield bits
        bits = _bits(source, bits.end)
    if content_name(bits) not in FPU_CONTENTS:
        raise FormatError(f"cpt_content {content_name(bits)} where the FPU state belongs",
                          offset=bits.offset, record=bits.name)
    yield bits
    regs = _fixed(source, bits.end, arch[1])
    yield regs
    return regs.end


def _vma(source, offset, prev_end, arch):
    """One VMA and what follows it; returns (end offset, the VMA's end address)."""
    vma = _fixed(source, offset, "CPT_OBJ_VMA")
    fields = vma.fields
    if name_of(VMA_TYPES, fields.cpt_vma_type) is None:
        raise FormatError(f"unknown cpt_vma_type {fields.cpt_vma_type}",
                          offset=offset, record=vma.name)
    if not _page_range(fields.cpt_start, fields.cpt_end):
        raise FormatError(f"{fields.cpt_start:#x}-{fields.cpt_end:#x} is not a page-aligned "
                          "range", offset=offset, record=vma.name)
    if fields.cpt_end > USER_END[arch]:
        raise FormatError(f"VMA {fields.cpt_start:#x}-{fields.cpt_end:#x} ends past {arch} "
                          f"user space ({USER_END[arch]:#x})", offset=offset, record=vma.name)
    if fields.cpt_start < prev_end:
        raise FormatError(f"VMA {fields.cpt_start:#x} overlaps or precedes the one before",
                          offset=offset, record=vma.name)
    yield vma
    offset = vma.end
    if fields.cpt_vma_type == VMA_TYPES["CPT_VMA_FILE"]:
        name = _name(source, offset)
        yield name
        offset = name.end
    if fields.cpt_page_num:
        run = _page_run(source, offset, vma)
        yield run
        offset = run.end
    return offset, fields.cpt_end


# ---- single objects ----

def _parse(source, declaration, offset, record):
    return parse_bytes(declaration, source.read(offset, declaration.sizeof(), record),
                       offset, record)


def _header(source, offset, name):
    """The object header at `offset`, checked to be of type `name` (as rst_get_object does)."""
    hdr = _parse(source, cpt_object_hdr, offset, name)
    if hdr.cpt_type != OBJECT_TYPES[name]:
        found = name_of(OBJECT_TYPES, hdr.cpt_type, str(hdr.cpt_type))
        raise FormatError(f"found cpt_type {found} where {name} belongs",
                          offset=offset, record=name)
    return hdr


def _check_lengths(hdr, hdrlen, offset, name):
    if hdr.cpt_hdrlen != hdrlen:
        raise FormatError(f"cpt_hdrlen {hdr.cpt_hdrlen}, expected {hdrlen}",
                          offset=offset, record=name)
    if hdr.cpt_len < hdrlen:
        raise FormatError(f"cpt_len {hdr.cpt_len} is shorter than the header",
                          offset=offset, record=name)


def _fixed(source, offset, name):
    """A fixed-size object (TASK, MM, VMA, REGS): its cpt_len says nothing more."""
    _header(source, offset, name)
    declaration = DECLARATIONS[name]
    fields = _parse(source, declaration, offset, name)
    _check_lengths(fields, declaration.sizeof(), offset, name)
    return Obj(offset, name, declaration.sizeof(), fields)


def _name(source, offset):
    record = "CPT_OBJ_NAME"
    hdr = _header(source, offset, record)
    _check_lengths(hdr, HEADER_SIZE, offset, record)
    if hdr.cpt_len - HEADER_SIZE > MAX_NAME:
        raise FormatError(f"cpt_len {hdr.cpt_len}: name longer than {MAX_NAME}",
                          offset=offset, record=record)
    fields = _parse_sized(source, cpt_name, offset, hdr.cpt_len, record)
    return Obj(offset, record, hdr.cpt_len, fields)


def _parse_sized(source, declaration, offset, size, record):
    return parse_bytes(declaration, source.read(offset, size, record), offset, record)


def _bits(source, offset):
    """A BITS object. The LDT one is written with cpt_len 24 (payload left out) and an
    unset cpt_hdrlen; the fixed writer puts 24 + size and 24. Both are accepted, and
    the payload is always measured by cpt_size."""
    record = "CPT_OBJ_BITS"
    _header(source, offset, record)
    bits = _parse(source, cpt_obj_bits, offset, record)
    obj = Obj(offset, record, BITS_SIZE + bits.cpt_size, bits)
    content = content_name(obj)
    size = bits.cpt_size
    if size > MAX_BITS:
        raise FormatError(f"cpt_size {size} exceeds {MAX_BITS}", offset=offset, record=record)
    if content == "CPT_CONTENT_MM_CONTEXT":
        if bits.cpt_len not in (BITS_SIZE, BITS_SIZE + size) or size % LDT_ENTRY_SIZE:
            raise FormatError(f"LDT with cpt_len {bits.cpt_len} and cpt_size {size}",
                              offset=offset, record=record)
    else:
        _check_lengths(bits, BITS_SIZE, offset, record)
    if obj.end > source.size:
        raise FormatError(f"cpt_size {size} exceeds the file", offset=offset, record=record)
    return Obj(offset, record, obj.length, bits, f"content {content.removeprefix('CPT_CONTENT_')}")


# ---- page runs ----

def _page_range(start, end):
    return start < end and (start | end) % PAGE_SIZE == 0


def _page_run(source, offset, vma):
    """The cpt_page_num PAGES objects after `vma`: every header is checked.

    Fast path: the v2 dumper writes one-page DATA blocks back to back, so the headers sit at
    a fixed stride; they are decoded column-wise from the run, read a window at a time.
    Anything else is walked block by block.
    """
    fields = vma.fields
    count = fields.cpt_page_num
    if count * PAGE_BLOCK_SIZE > source.size - offset:
        raise FormatError(f"cpt_page_num {count} exceeds the file",
                          offset=vma.offset, record=vma.name)
    if count > (fields.cpt_end - fields.cpt_start) // PAGE_SIZE:
        raise FormatError(f"cpt_page_num {count} exceeds the VMA",
                          offset=vma.offset, record=vma.name)
    bounds = (fields.cpt_start, fields.cpt_end)
    return (_uniform_run(source, offset, count, bounds)
            or _block_by_block(source, offset, count, bounds))


_STRIDE = PAGE_BLOCK_SIZE + PAGE_SIZE
_WORD = 8
_START_WORD = field_offset(cpt_page_block, "cpt_start") // _WORD
_END_WORD = field_offset(cpt_page_block, "cpt_end") // _WORD
# The words before cpt_start of every one-page DATA block's header are the same.
_UNIFORM_HEAD = PAGE_HEADER.pack(_STRIDE, PAGE_BLOCK_SIZE, OBJECT_TYPES["CPT_OBJ_PAGES"],
                                 CONTENT_TYPES["CPT_CONTENT_DATA"], 0, 0)
_WINDOW_BLOCKS = 1024   # blocks read at a time: 4 MiB, about the fastest window


def _uniform_run(source, offset, count, bounds):
    """The run as one-page DATA blocks at a fixed stride, or None if it is not exactly that.

    A header precedes every page, so every page of the file is read: opening a cold image
    costs about what reading it does. The run is read a window at a time into one buffer,
    which bounds the memory it takes whatever the size of the run.
    """
    length = count * _STRIDE
    if length > source.size - offset:
        return None
    starts, ends = bytearray(), bytearray()
    buffer = memoryview(bytearray(min(count, _WINDOW_BLOCKS) * _STRIDE))
    for first in range(0, count, _WINDOW_BLOCKS):
        blocks = min(_WINDOW_BLOCKS, count - first)
        window = buffer[:blocks * _STRIDE]
        if source.readinto(window, offset + first * _STRIDE) != len(window):
            return None     # the file shrank: the block-by-block walk reports where
        columns = _columns(window, blocks)
        if not _uniform_heads(columns[:_START_WORD], blocks):
            return None
        starts += columns[_START_WORD]
        ends += columns[_END_WORD]
    if not _single_pages_inside(starts, ends, bounds):
        return None
    return PageRun(offset, length, range(offset, offset + length, _STRIDE),
                   u64_array(starts), u64_array(ends), stride=_STRIDE)


def _columns(view, count):
    """Word i of every block header, concatenated, for each header word i."""
    words = view.cast("Q")
    return [words[i::_STRIDE // _WORD].tobytes() for i in range(PAGE_BLOCK_SIZE // _WORD)]


def _uniform_heads(columns, count):
    """The header words before cpt_start are those of a one-page DATA block in every block."""
    return all(column == _UNIFORM_HEAD[word * _WORD:(word + 1) * _WORD] * count
               for word, column in enumerate(columns))


def _single_pages_inside(starts, ends, bounds):
    """Each block is one aligned page, ascending, inside the VMA (little-endian u64 columns)."""
    low, high = bounds
    return (aligned_ascending(starts) and each_page_after(ends, starts)
            and low <= first_word(starts) and last_word(ends) <= high)


def _block_by_block(source, offset, count, bounds):
    """The general run: multi-page blocks, VOID blocks, or an error to report precisely."""
    block_offsets, has_data = [], []
    starts, ends = array("Q"), array("Q")
    previous_end = bounds[0]
    start_offset = offset
    for _ in range(count):
        block = dict(zip(_PAGE_FIELDS, PAGE_HEADER.unpack(
            source.read(offset, PAGE_BLOCK_SIZE, "CPT_OBJ_PAGES"))))
        data = _check_block(block, offset, previous_end, bounds[1], source.size)
        block_offsets.append(offset)
        starts.append(block["cpt_start"])
        ends.append(block["cpt_end"])
        has_data.append(data > 0)
        previous_end = block["cpt_end"]
        offset += PAGE_BLOCK_SIZE + data
    return PageRun(start_offset, offset - start_offset, block_offsets, starts, ends,
                   has_data=has_data)


def _check_block(block, offset, low, high, file_size):
    """Validate one PAGES header; return the number of data bytes that follow it."""
    def fail(message):
        raise FormatError(message, offset=offset, record="CPT_OBJ_PAGES")

    if block["cpt_type"] != OBJECT_TYPES["CPT_OBJ_PAGES"]:
        fail(f"found cpt_type {name_of(OBJECT_TYPES, block['cpt_type'], block['cpt_type'])} "
             "where CPT_OBJ_PAGES belongs")
    if block["cpt_hdrlen"] != PAGE_BLOCK_SIZE:
        fail(f"cpt_hdrlen {block['cpt_hdrlen']}, expected {PAGE_BLOCK_SIZE}")
    content = name_of(CONTENT_TYPES, block["cpt_content"])
    if content not in ("CPT_CONTENT_DATA", "CPT_CONTENT_VOID"):
        fail(f"cpt_content {block['cpt_content']} is neither DATA nor VOID")
    start, end = block["cpt_start"], block["cpt_end"]
    if not _page_range(start, end):
        fail(f"{start:#x}-{end:#x} is not a page-aligned range")
    if start < low or end > high:
        fail(f"{start:#x}-{end:#x} is outside the VMA or not ascending")
    data = end - start if content == "CPT_CONTENT_DATA" else 0
    if block["cpt_len"] != PAGE_BLOCK_SIZE + data:
        fail(f"cpt_len {block['cpt_len']}, expected {PAGE_BLOCK_SIZE + data}")
    if offset + PAGE_BLOCK_SIZE + data > file_size:
        fail("page data exceeds the file")
    return data
