"""OpenVZ cpt v2 images <-> the model: load() indexes a stream, dump() writes one.

Every task of the stream carries its own MM (the v2 patchset has no thread groups), so
every loaded Task gets its own Mm, and dump() writes one MM per task.
"""

from collections import defaultdict

from crfs.errors import FormatError
from crfs.formats import cpt
from crfs.formats.cpt import (ARCHES, CONTENT_TYPES, CPT_NULL, OBJECT_TYPES,
                              PAGE_BLOCK_SIZE, PAGE_HEADER, SIGNATURE, TASK_FLAGS, VMA_TYPES)
from crfs.formats.common import c_chars, decode_text, encode_text, kernel_version
from crfs.formats.x86 import (FXSAVE_SIZE, GDT_ENTRY_TLS_ENTRIES, PAGE_SIZE, TASK_COMM_LEN,
                              cpt_decode_segment, cpt_encode_segment)
from crfs.model.image import (Creds, Exit, Futex, Image, Mm, Task, Vma, get_field,
                              native_record, set_field)
from crfs.model.page_copy import read_page
from crfs.model.registers import Registers

CRED_NAMES = Creds.names()
FSAVE_SIZE = 112    # the pre-FXSR FPU state (CPT_CONTENT_X86_FPUSTATE_OLD)

# Canonical Mm.fields name -> cpt_mm_image field, in stored order.
MM_FIELDS = {
    "start_code": "cpt_start_code", "end_code": "cpt_end_code",
    "start_data": "cpt_start_data", "end_data": "cpt_end_data",
    "start_brk": "cpt_start_brk", "brk": "cpt_brk", "start_stack": "cpt_start_stack",
    "arg_start": "cpt_start_arg", "arg_end": "cpt_end_arg",
    "env_start": "cpt_start_env", "env_end": "cpt_end_env",
    "def_flags": "cpt_def_flags", "flags": "cpt_flags", "map_count": "cpt_map_count",
}

# gdb register name -> registers object field; SEGMENTS hold CPT_SEG_* ids.
REGISTERS = {
    "i386": {"eax": "cpt_ax", "ecx": "cpt_cx", "edx": "cpt_dx", "ebx": "cpt_bx",
             "esp": "cpt_sp", "ebp": "cpt_bp", "esi": "cpt_si", "edi": "cpt_di",
             "eip": "cpt_ip", "eflags": "cpt_flags", "orig_eax": "cpt_orig_ax"},
    "x86_64": {**{f"r{n}": f"cpt_r{n}" for n in
                  ("ax", "bx", "cx", "dx", "si", "di", "bp", "sp", "8", "9", "10", "11",
                   "12", "13", "14", "15")},
               "rip": "cpt_rip", "eflags": "cpt_eflags", "fs_base": "cpt_fsbase",
               "gs_base": "cpt_gsbase", "orig_rax": "cpt_orig_rax"},
}
SEGMENTS = {
    "i386": {"cs": "cpt_cs", "ss": "cpt_ss", "ds": "cpt_ds", "es": "cpt_es",
             "fs": "cpt_fs", "gs": "cpt_gs"},
    "x86_64": {"cs": "cpt_cs", "ss": "cpt_ss", "ds": "cpt_ds", "es": "cpt_es",
               "fs": "cpt_fsindex", "gs": "cpt_gsindex"},
}

# cpt_task_image fields with a place in the format-neutral Task: (object, attribute).
TASK_MODEL_FIELDS = {
    "cpt_pgrp": (None, "pgid"), "cpt_session": (None, "sid"),
    "cpt_exit_code": ("exit", "code"), "cpt_exit_signal": ("exit", "signal"),
    "cpt_pdeath_signal": ("exit", "pdeath_signal"),
    "cpt_set_tid": ("futex", "set_child_tid"), "cpt_clear_tid": ("futex", "clear_child_tid"),
}
_TASK_FRAMED_FIELDS = {"cpt_len", "cpt_hdrlen", "cpt_type", "cpt_content", "cpt_pid",
                       "cpt_tgid", "cpt_ppid", "cpt_comm", "cpt_state", "cpt_tls", "cpt_pad",
                       *(f"cpt_{name}" for name in CRED_NAMES), *TASK_MODEL_FIELDS}
# The rest of cpt_task_image is what only cpt stores (cpt_flags decoded to CPT_PF_* names).
TASK_NATIVE_FIELDS = tuple(name for name in cpt.field_names(cpt.cpt_task_image)
                           if name not in _TASK_FRAMED_FIELDS)
CptTaskFields = native_record("CptTaskFields", [n[len("cpt_"):] for n in TASK_NATIVE_FIELDS])
CptVmaFields = native_record("CptVmaFields", ("vma_type", "page_num"))

MAX_SELECTOR = 0xFFFF
ARCH_ID_OF = {name: arch_id for arch_id, (name, _) in ARCHES.items()}


# ---- load ----

def load(source):
    """Index the stream in `source` into an Image; page bytes stay in the file."""
    builder = _Builder(source)
    count = 0
    for item in cpt.walk(source):
        builder.add(item)
        count += len(item.block_offsets) if item.name == "CPT_OBJ_PAGES" else 1
    builder.image.record_count = count
    return builder.image


class _Builder:
    """Turns the objects of cpt.walk, in stream order, into the model."""

    def __init__(self, source):
        self.source = source
        self.image = None
        self.task = None
        self.vma = None

    def add(self, item):
        HANDLERS[item.name](self, item)

    def _cpt_head(self, obj):
        head = obj.fields
        arch = ARCHES[head.cpt_arch][0]
        self.image = Image(
            format="openvz", dialect="cpt v2", arch=arch, source=self.source,
            header={"kernel": f"{head.cpt_image_major}.{head.cpt_image_minor}."
                              f"{head.cpt_image_sublevel}",
                    "extra": head.cpt_image_extra, "arch": head.cpt_arch,
                    "time": head.cpt_time, "hdrlen": head.cpt_hdrlen},
            time=head.cpt_time or None, has_trailer=None)

    def _cpt_obj_task(self, obj):
        self.task = task_from_fields(obj.fields)
        self.image.tasks.append(self.task)

    def _cpt_obj_mm(self, obj):
        fields = {name: obj.fields[c_name] for name, c_name in MM_FIELDS.items()}
        self.task.mm = Mm(fields=fields, source=self.source)

    def _cpt_obj_vma(self, obj):
        f = obj.fields
        vma_type = VMA_TYPES(f.cpt_vma_type).name
        self.vma = Vma(start=f.cpt_start, end=f.cpt_end, vm_flags=f.cpt_flags,
                       prot=f.cpt_pgprot, pgoff=f.cpt_pgoff,
                       kind="file" if vma_type == "CPT_VMA_FILE" else "anon",
                       native=CptVmaFields(vma_type=vma_type, page_num=f.cpt_page_num))
        self.task.mm.vmas.append(self.vma)

    def _cpt_obj_name(self, obj):
        self.vma.file = decode_text(obj.fields.cpt_name)

    def _cpt_obj_pages(self, run):
        if run.stride:      # one-page blocks at a fixed stride
            self.vma.pages.add_run(run.starts, run.offset + PAGE_BLOCK_SIZE, run.stride)
        else:
            for start, end, data in run.data_blocks():
                self.vma.pages.add_run(range(start, end, PAGE_SIZE), data)

    def _cpt_obj_bits(self, obj):
        offset, size = obj.payload
        data = self.source.read(offset, size, obj.name)
        if cpt.content_name(obj) == "CPT_CONTENT_MM_CONTEXT":
            self.task.mm.ldt = data
        else:
            self.task.fpu = data

    def _cpt_obj_x86_regs(self, obj):
        arch = self.image.arch
        values = {name: obj.fields[field] for name, field in REGISTERS[arch].items()}
        for name, field in SEGMENTS[arch].items():
            values[name] = _selector(obj, field, arch)
        self.task.regs = Registers(arch, values)
        self.task.debugregs = list(obj.fields.cpt_debugreg)


HANDLERS = {
    "cpt_head": _Builder._cpt_head,
    "CPT_OBJ_TASK": _Builder._cpt_obj_task,
    "CPT_OBJ_MM": _Builder._cpt_obj_mm,
    "CPT_OBJ_VMA": _Builder._cpt_obj_vma,
    "CPT_OBJ_NAME": _Builder._cpt_obj_name,
    "CPT_OBJ_PAGES": _Builder._cpt_obj_pages,
    "CPT_OBJ_BITS": _Builder._cpt_obj_bits,
    "CPT_OBJ_X86_REGS": _Builder._cpt_obj_x86_regs,
    "CPT_OBJ_X86_64_REGS": _Builder._cpt_obj_x86_regs,   # the walk picked it by cpt_arch
}


def task_from_fields(f):
    native = CptTaskFields(**{name[len("cpt_"):]: f[name] for name in TASK_NATIVE_FIELDS})
    native.flags = decode_flags(f.cpt_flags)
    task = Task(pid=f.cpt_pid, tgid=f.cpt_tgid, ppid=f.cpt_ppid, comm=decode_text(f.cpt_comm),
                state=f.cpt_state, creds=Creds(**{name: f[f"cpt_{name}"] for name in CRED_NAMES}),
                tls=list(f.cpt_tls), exit=Exit(), futex=Futex(), native=native)
    for field, where in TASK_MODEL_FIELDS.items():
        set_field(task, where, f[field])
    return task


def model_field_values(task):
    """The cpt_task_image fields TASK_MODEL_FIELDS reads, from `task`."""
    return {field: get_field(task, where) or 0 for field, where in TASK_MODEL_FIELDS.items()}


def decode_flags(value):
    """cpt_flags -> CPT_PF_* names, plus the unknown bits as one hex string."""
    names = [flag.name for flag in TASK_FLAGS if value & flag]
    unknown = value & ~sum(TASK_FLAGS)
    return names + ([f"{unknown:#x}"] if unknown else [])


def encode_flags(names):
    return sum(TASK_FLAGS[name] if name in TASK_FLAGS.__members__ else int(name, 16)
               for name in names)


def _selector(obj, field, arch):
    code = obj.fields[field]
    try:
        selector = cpt_decode_segment(code, arch)
    except ValueError:
        selector = None
    if selector is None or selector > MAX_SELECTOR:
        raise FormatError(f"{field} {code} is not a CPT_SEG_* id", offset=obj.offset,
                          record=obj.name)
    return selector


# ---- dump ----

def dump(image, out, arch=None):
    """Write `image` as a cpt v2 stream to the binary file `out`.

    arch: "i386" or "x86_64" (default: the image's). Tasks are written depth first from
    the one root of the ppid tree; page bytes are copied from mm.source one at a time.
    """
    arch = arch or image.arch
    if arch not in ARCH_ID_OF:
        raise ValueError(f"cpt v2 has no arch {arch!r}")
    out.write(_head(image, ARCH_ID_OF[arch]))
    for task, children in _preorder(image.tasks):
        _write_task(out, task, children, arch)


def _head(image, arch_id):
    major, minor, sublevel = kernel_version(image.header.get("kernel", ""))
    return cpt.cpt_head.build(dict(
        cpt_signature=SIGNATURE, cpt_hdrlen=cpt.HEAD_SIZE, cpt_image_major=major,
        cpt_image_minor=minor, cpt_image_sublevel=sublevel,
        cpt_image_extra=image.header.get("extra", 0), cpt_arch=arch_id,
        cpt_pad1=bytes(2), cpt_pad2=bytes(4), cpt_time=image.time or 0))


def _preorder(tasks):
    """(task, number of children) depth first from the single root of the ppid tree."""
    pids = [t.pid for t in tasks]
    if len(set(pids)) != len(pids):
        raise ValueError("cpt v2 needs distinct pids")
    roots = [t for t in tasks if t.ppid not in set(pids)]
    if len(roots) != 1:
        raise ValueError(f"cpt v2 stores one task tree; found {len(roots)} roots")
    children = defaultdict(list)
    for task in tasks:
        if task is not roots[0]:
            children[task.ppid].append(task)
    order, stack = [], [roots[0]]
    while stack:
        task = stack.pop()
        order.append((task, len(children[task.pid])))
        stack.extend(reversed(children[task.pid]))
    if len(order) != len(tasks):
        raise ValueError("tasks whose ppid chain never reaches the root (a cycle)")
    return order


def _build(declaration, name, content, **values):
    """An object's bytes: zeros, its header, then `values`."""
    size = declaration.sizeof()
    return declaration.build({
        **declaration.parse(bytes(size)), "cpt_len": size, "cpt_hdrlen": size,
        "cpt_type": OBJECT_TYPES[name], "cpt_content": CONTENT_TYPES[content], **values})


def _write_task(out, task, children, arch):
    out.write(_task_image(task, children))
    mm = task.mm or Mm()
    fields = {c_name: mm.fields.get(name, 0) for name, c_name in MM_FIELDS.items()}
    fields["cpt_map_count"] = len(mm.vmas)
    out.write(_build(cpt.cpt_mm_image, "CPT_OBJ_MM", "CPT_CONTENT_ARRAY", **fields))
    for vma in mm.vmas:
        _write_vma(out, vma, mm.source)
    if mm.ldt:
        out.write(_bits("CPT_CONTENT_MM_CONTEXT", mm.ldt))
    fpu = task.fpu if task.fpu is not None else bytes(FXSAVE_SIZE)
    out.write(_bits("CPT_CONTENT_X86_FPUSTATE_OLD" if len(fpu) == FSAVE_SIZE
                    else "CPT_CONTENT_X86_FPUSTATE", fpu))
    out.write(_registers(task, arch))


def _task_image(task, children):
    native = CptTaskFields.of(task)
    values = {name: getattr(native, name[len("cpt_"):]) or 0 for name in TASK_NATIVE_FIELDS}
    values["cpt_flags"] = encode_flags(native.flags or [])
    values["cpt_children_num"] = children
    values.update(model_field_values(task))
    creds = task.creds or Creds()
    values.update({f"cpt_{name}": getattr(creds, name) for name in CRED_NAMES})
    return _build(cpt.cpt_task_image, "CPT_OBJ_TASK", "CPT_CONTENT_ARRAY", **values,
                  cpt_pid=task.pid, cpt_tgid=task.tgid, cpt_ppid=task.ppid,
                  cpt_state=task.state or 0, cpt_tls=_tls(task.tls),
                  cpt_comm=c_chars(task.comm, TASK_COMM_LEN))


def _tls(descriptors):
    """Exactly the GDT_ENTRY_TLS_ENTRIES slots of cpt_tls, zero where the model has none."""
    slots = list(descriptors or [])[:GDT_ENTRY_TLS_ENTRIES]
    return slots + [0] * (GDT_ENTRY_TLS_ENTRIES - len(slots))


def _write_vma(out, vma, source):
    if vma.kind not in ("anon", "file"):
        raise ValueError(f"cpt v2 cannot store a {vma.kind} VMA at {vma.start:#x}")
    is_file = vma.kind == "file"
    out.write(_build(cpt.cpt_vma_image, "CPT_OBJ_VMA", "CPT_CONTENT_ARRAY",
                     cpt_file=0 if is_file else CPT_NULL,
                     cpt_vma_type=VMA_TYPES["CPT_VMA_FILE" if is_file else "CPT_VMA_TYPE_0"],
                     cpt_start=vma.start, cpt_end=vma.end, cpt_flags=vma.vm_flags,
                     cpt_pgprot=vma.prot, cpt_pgoff=vma.pgoff, cpt_page_num=len(vma.pages)))
    if is_file:
        name = encode_text(vma.file or "") + b"\0"
        out.write(cpt.cpt_name.build(dict(
            cpt_len=cpt.HEADER_SIZE + len(name), cpt_hdrlen=cpt.HEADER_SIZE,
            cpt_type=OBJECT_TYPES["CPT_OBJ_NAME"], cpt_content=CONTENT_TYPES["CPT_CONTENT_NAME"],
            cpt_name=name)))
    for addr, offset in vma.pages:
        data = read_page(source, offset)
        out.write(PAGE_HEADER.pack(PAGE_BLOCK_SIZE + PAGE_SIZE, PAGE_BLOCK_SIZE,
                                   OBJECT_TYPES["CPT_OBJ_PAGES"],
                                   CONTENT_TYPES["CPT_CONTENT_DATA"], addr, addr + PAGE_SIZE))
        out.write(data)


def _bits(content, payload):
    """A BITS object with a correct header (the v2 dumper's LDT header bug is not reproduced)."""
    return _build(cpt.cpt_obj_bits, "CPT_OBJ_BITS", content,
                  cpt_len=cpt.BITS_SIZE + len(payload), cpt_size=len(payload)) + payload


def _registers(task, arch):
    name = ARCHES[ARCH_ID_OF[arch]][1]
    regs = task.regs or Registers(arch, {})
    if regs.arch != arch:
        raise ValueError(f"task {task.pid} has {regs.arch} registers, image is {arch}")
    values = {field: regs[reg] for reg, field in REGISTERS[arch].items()}
    values.update({field: cpt_encode_segment(regs[reg], arch)
                   for reg, field in SEGMENTS[arch].items()})
    return _build(cpt.DECLARATIONS[name], name, "CPT_CONTENT_VOID", **values,
                  cpt_debugreg=list(task.debugregs or [0] * 8))
