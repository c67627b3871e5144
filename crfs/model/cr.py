"""linux-cr `cr_hdr` images <-> the model: load() indexes, dump() writes (streaming).

The record grammar lives in crfs.formats.cr.Walker; load() only turns the walked
records into Image/Task/Mm/Vma. Pages are never read while loading: each VMA's PageMap
holds the file offset of each dumped page.
"""

from array import array

from construct import ConstructError

from crfs.formats import cr
from crfs.formats.common import c_chars, decode_text, encode_text, kernel_version
from crfs.formats.pagewords import page_keys
from crfs.formats.x86 import FXSAVE_SIZE, GDT_ENTRY_TLS_ENTRIES, LDT_ENTRY_SIZE, PAGE_SIZE, TASK_COMM_LEN
from crfs.model.page_copy import copy_pages
from crfs.model.image import Exit, Image, Mm, ShmSegment, Task, Vma, native_record
from crfs.model.registers import Registers

FORMAT = "linux-cr"

# cr_hdr_cpu field -> gdb register name. The v4 CPU record is the x86_64 pt_regs layout
# on both arches; on i386 r8..r15 are never written (garbage) and are not registers.
CPU_TO_GDB = {
    "i386": {"ax": "eax", "cx": "ecx", "dx": "edx", "bx": "ebx", "sp": "esp", "bp": "ebp",
             "si": "esi", "di": "edi", "ip": "eip", "flags": "eflags", "cs": "cs",
             "ss": "ss", "ds": "ds", "es": "es", "fs": "fs", "gs": "gs",
             "orig_ax": "orig_eax"},
    "x86_64": {"ax": "rax", "bx": "rbx", "cx": "rcx", "dx": "rdx", "si": "rsi", "di": "rdi",
               "bp": "rbp", "sp": "rsp", **{f"r{i}": f"r{i}" for i in range(8, 16)},
               "ip": "rip", "flags": "eflags", "cs": "cs", "ss": "ss", "ds": "ds",
               "es": "es", "fs": "fs", "gs": "gs", "orig_ax": "orig_rax"},
}
VMA_KIND = {"CR_VMA_ANON": "anon", "CR_VMA_FILE": "file",
            "CR_VMA_SHM_ANON": "shm-anon", "CR_VMA_SHM_ANON_SKIP": "shm-anon",
            "CR_VMA_SHM_FILE": "shm-file", "CR_VMA_SHM_FILE_SKIP": "shm-file"}
HEAD_ARCH_FIELDS = ("has_fxsr", "has_xsave", "xstate_size")

# What only cr_hdr stores: the TASK record's times, the CPU record's flags, THREAD's ntls.
CrTaskFields = native_record("CrTaskFields",
                             cr.TASK_TIMES + ("uses_debug", "used_math", "has_fxsr", "ntls"))
CrVmaFields = native_record("CrVmaFields", ("vma_type", "nr_pages", "vma_objref", "shm_objref"))
CPU_FLAGS = ("uses_debug", "used_math", "has_fxsr")


def load(source):
    """Index a cr_hdr image into an Image (metadata and page offsets only)."""
    walker = cr.Walker(source)
    builder = _Builder(walker)
    for record in walker.walk():
        builder.add(record)
    return builder.image()


class _Builder:
    """Turns the walked records, in grammar order, into the model."""

    def __init__(self, walker):
        self.walker = walker
        self.source = walker.source
        self.header = {}
        self.tasks = []
        self.pids = []          # v14 TREE entries, one per task in order
        self.segments = {}      # shm_objref -> ShmSegment (image-wide)
        self.task = self.vma = None
        self.count = 0
        self.has_trailer = False

    def add(self, record):
        self.count += 1
        HANDLERS[record.name](self, record)

    def image(self):
        return Image(FORMAT, self.walker.dialect, self.walker.arch, header=self.header,
                     time=self.header["time"], tasks=self.tasks, source=self.source,
                     record_count=self.count, has_trailer=self.has_trailer)

    # -- one method per record type --

    def _head(self, record):
        f = record.fields
        for name in cr.UTS_NAMES:
            if name in f:
                self.header[name] = decode_text(f[name])
        self.header.update(kernel=f"{f.major}.{f.minor}.{f.patch}", rev=f.rev,
                           time=f.time, flags=f.flags)

    def _buffer(self, record):
        self.header[record.role] = decode_text(record.data)

    def _head_arch(self, record):
        self.header.update({name: record.fields[name] for name in HEAD_ARCH_FIELDS})

    def _tree(self, record):
        self.pids = [(p.vpid, p.vtgid, p.vppid) for p in record.data]

    def _task(self, record):
        f = record.fields
        pid, tgid, ppid = self.pids[len(self.tasks)] if self.pids else (0, 0, 0)
        self.task = Task(pid, tgid, ppid, comm="", state=f.state,
                         native=CrTaskFields(**{name: f[name] for name in cr.TASK_TIMES
                                                if name in f}))
        if "exit_state" in f:
            self.task.exit = Exit(f.exit_state, f.exit_code, f.exit_signal)
        self.tasks.append(self.task)

    def _string(self, record):
        self.task.comm = decode_text(record.data)

    def _mm(self, record):
        if record.parent is not None:   # v4 is single-task: its pid is only here
            self.task.pid = self.task.tgid = record.parent
        f = record.fields
        fields = {"objref": f.objref, **{name: f[name] for name in cr.MM_FIELDS}}
        self.task.mm = Mm(fields=fields, source=self.source)

    def _vma(self, record):
        f = record.fields
        vma_type = cr.VMA_TYPES(f.vma_type).name
        native = CrVmaFields(vma_type=vma_type, nr_pages=f.get("nr_pages"),
                             vma_objref=f.get("vma_objref"), shm_objref=f.get("shm_objref"))
        self.vma = Vma(f.vm_start, f.vm_end, f.vm_flags, f.vm_page_prot, f.vm_pgoff,
                       VMA_KIND[vma_type], native=native)
        self.task.mm.vmas.append(self.vma)
        if vma_type.startswith("CR_VMA_SHM"):
            self._attach_segment(f, vma_type)
        self._add_pages(record)

    def _attach_segment(self, f, vma_type):
        if vma_type in cr.VMA_SKIP_BASE:     # the walker checked it was dumped before
            self.vma.shm = self.segments[f.shm_objref]
        else:
            self.vma.shm = self.segments[f.shm_objref] = ShmSegment(f.shm_objref, f.shm_size)
        if vma_type != "CR_VMA_SHM_ANON":    # its pages arrive in the PGARRs that follow
            self.vma.map_segment(self.vma.shm)

    def _fname(self, record):
        self.vma.file = decode_text(record.data)
        self._add_pages(record)

    def _pgarr(self, record):
        if self.vma.kind == "shm-anon":
            indices, first = record.pages
            self.vma.shm.pages.add_words(page_keys(indices), first)
            if record.fields.nr_pages == 0:
                self.vma.map_segment(self.vma.shm)
        else:
            self._add_pages(record)

    def _add_pages(self, record):
        if record.pages is not None:
            self.vma.pages.add_words(*record.pages)

    def _mm_context(self, record):
        self.task.mm.ldt = record.data

    def _thread(self, record):
        f = record.fields
        self.task.native.ntls = f.ntls
        tls = record.data or bytes(cr.TLS_ARRAY_SIZE)
        self.task.tls = [int.from_bytes(tls[i + 4:i + 8], "little") << 32
                         | int.from_bytes(tls[i:i + 4], "little")
                         for i in range(0, cr.TLS_ARRAY_SIZE, 8)]

    def _cpu(self, record):
        f = record.fields
        arch = self.walker.arch
        self.task.regs = Registers(arch, {gdb: f[name] for name, gdb in
                                          CPU_TO_GDB[arch].items()})
        self.task.debugregs = [f[name] for name in cr.DEBUG_REGS]
        for name in CPU_FLAGS:
            setattr(self.task.native, name, f.get(name))
        self.task.fpu = f.xstate if "xstate" in f else record.data

    def _tail(self, record):
        self.has_trailer = True


HANDLERS = {
    "CR_HDR_HEAD": _Builder._head,
    "CR_HDR_BUFFER": _Builder._buffer,
    "CR_HDR_HEAD_ARCH": _Builder._head_arch,
    "CR_HDR_TREE": _Builder._tree,
    "CR_HDR_TASK": _Builder._task,
    "CR_HDR_STRING": _Builder._string,
    "CR_HDR_MM": _Builder._mm,
    "CR_HDR_VMA": _Builder._vma,
    "CR_HDR_FNAME": _Builder._fname,
    "CR_HDR_PGARR": _Builder._pgarr,
    "CR_HDR_MM_CONTEXT": _Builder._mm_context,
    "CR_HDR_THREAD": _Builder._thread,
    "CR_HDR_CPU": _Builder._cpu,
    "CR_HDR_TAIL": _Builder._tail,
}


def dump(image, out, arch=None, dialect=None):
    """Write `image` to the binary file `out` as a cr_hdr stream, one page at a time.

    arch/dialect default to the image's (dialect "cr_hdr v4" if the image is not cr_hdr).
    Unused and garbage fields are written as zeros. ValueError if the model does not fit
    the dialect (v4: one task, anon/file VMAs only).
    """
    if dialect is None:
        dialect = image.dialect if image.dialect in cr.DIALECTS else cr.V4
    arch = arch or image.arch
    if dialect not in cr.DIALECTS or arch not in cr.WORD_SIZE:
        raise ValueError(f"cannot write {dialect!r} for arch {arch!r}")
    _Writer(image, out, arch, dialect).write()


class _Writer:
    def __init__(self, image, out, arch, dialect):
        self.image = image
        self.out = out
        self.arch = arch
        self.dialect = dialect
        self.v4 = dialect == cr.V4
        self.xstate_size = _xstate_size(image)
        self.shm_dumped = set()

    def write(self):
        tasks = self.image.tasks
        if self.v4 and len(tasks) != 1:
            raise ValueError(f"cr_hdr v4 holds exactly one task, not {len(tasks)}")
        self._head()
        if not self.v4:
            self._head_arch()
            self._tree(tasks)
        for task in tasks:
            self._task(task)
        self._record("CR_HDR_TAIL", cr.cr_hdr_tail, magic=cr.MAGICS["CHECKPOINT_MAGIC_TAIL"])

    # -- framing --

    def _emit(self, name, payload, parent=0):
        frame = {"type": cr.HDR_TYPES[self.dialect][name], "len": len(payload)}
        if self.v4:
            frame["parent"] = parent
        else:
            frame["_padding"] = bytes(4)
        self.out.write(cr.FRAMES[self.dialect].build(frame) + payload)

    def _record(self, name, layout, parent=0, **values):
        try:
            payload = layout.build(values)
        except ConstructError as exc:    # e.g. a v4 u64 state written into v14's u32
            raise ValueError(f"{name}: a value does not fit {self.dialect}: {exc}") from None
        self._emit(name, payload, parent)

    # -- image header --

    def _head(self):
        header = self.image.header
        major, minor, patch = kernel_version(header.get("kernel", "0.0.0"))
        time = self.image.time if self.image.time is not None else header.get("time", 0)
        common = dict(magic=cr.MAGICS["CHECKPOINT_MAGIC_HEAD"], major=major, minor=minor,
                      patch=patch, rev=header.get("rev", 1), time=time,
                      flags=header.get("flags", 0))
        uts = {name: header.get(name, "") for name in cr.UTS_NAMES}
        if self.v4:
            self._record("CR_HDR_HEAD", cr.cr_hdr_head, **common,
                         **{k: c_chars(v, cr.NEW_UTS_LEN) for k, v in uts.items()})
            return
        if cr.machine_arch(uts["machine"]) != self.arch:   # v14 readers take arch from it
            uts["machine"] = {"i386": "i686", "x86_64": "x86_64"}[self.arch]
        self._record("CR_HDR_HEAD", cr.cr_hdr_head_v14, **common,
                     **{f"uts_{name}_len": cr.UTS_FIELD_LEN for name in cr.UTS_NAMES})
        for name in cr.UTS_NAMES:
            self._emit("CR_HDR_BUFFER", c_chars(uts[name], cr.UTS_FIELD_LEN))

    def _head_arch(self):
        header = self.image.header
        self._record("CR_HDR_HEAD_ARCH", cr.cr_hdr_head_arch,
                     has_fxsr=header.get("has_fxsr", 1), has_xsave=header.get("has_xsave", 0),
                     xstate_size=self.xstate_size)

    def _tree(self, tasks):
        self._record("CR_HDR_TREE", cr.cr_hdr_tree, tasks_nr=len(tasks))
        for task in tasks:
            self.out.write(cr.cr_hdr_pids.build(dict(vpid=task.pid, vtgid=task.tgid,
                                                     vppid=task.ppid)))

    # -- per task --

    def _task(self, task):
        if task.mm is None:
            raise ValueError(f"task {task.pid}: cr_hdr images need an address space")
        pid = task.pid if self.v4 else 0
        fields = dict(exit_state=task.exit.state, exit_code=task.exit.code,
                      exit_signal=task.exit.signal)
        if self.v4:
            layout = {"i386": cr.cr_hdr_task_i386, "x86_64": cr.cr_hdr_task_x86_64}[self.arch]
            native = CrTaskFields.of(task)
            fields.update({name: getattr(native, name) or 0 for name in cr.TASK_TIMES})
        else:
            layout = cr.cr_hdr_task_v14
        self._record("CR_HDR_TASK", layout, state=task.state or 0, **fields,
                     task_comm_len=TASK_COMM_LEN)
        self._emit("CR_HDR_STRING", c_chars(task.comm, TASK_COMM_LEN - 1, TASK_COMM_LEN))
        self._mm(task.mm, pid)
        self._thread(task, pid)
        self._cpu(task, pid)

    def _mm(self, mm, pid):
        objref = mm.fields.get("objref", 0)
        self._record("CR_HDR_MM", cr.cr_hdr_mm, pid, objref=objref, map_count=len(mm.vmas),
                     **{name: mm.fields.get(name, 0) for name in cr.MM_FIELDS})
        for vma in mm.vmas:
            self._vma(vma, mm.source)
        ldt = mm.ldt or b""
        self._record("CR_HDR_MM_CONTEXT", cr.cr_hdr_mm_context, objref,
                     ldt_entry_size=LDT_ENTRY_SIZE, nldt=len(ldt) // LDT_ENTRY_SIZE)
        self.out.write(ldt)

    def _thread(self, task, pid):
        tls = task.tls or [0] * GDT_ENTRY_TLS_ENTRIES
        ntls = sum(1 for desc in tls if desc)
        self._record("CR_HDR_THREAD", cr.cr_hdr_thread, pid,
                     gdt_entry_tls_entries=GDT_ENTRY_TLS_ENTRIES,
                     sizeof_tls_array=cr.TLS_ARRAY_SIZE, ntls=ntls)
        # v4 always writes the array (RFC v4/v6 x86 writer); v9+ only if ntls > 0
        if self.v4 or ntls:
            self.out.write(b"".join(desc.to_bytes(8, "little") for desc in tls))

    def _cpu(self, task, pid):
        regs = _cpu_regs(task, self.arch)
        native = CrTaskFields.of(task)
        debug = dict(zip(cr.DEBUG_REGS, task.debugregs or [0] * len(cr.DEBUG_REGS)),
                     uses_debug=native.uses_debug or 0)
        if self.v4:
            fpu = task.fpu or b""
            if len(fpu) > FXSAVE_SIZE:
                raise ValueError(f"task {task.pid}: {len(fpu)} FPU bytes exceed v4's 512")
            used_math = native.used_math
            self._record("CR_HDR_CPU", cr.cr_hdr_cpu, pid, **regs, **debug,
                         used_math=int(task.fpu is not None) if used_math is None else used_math,
                         has_fxsr=native.has_fxsr or 0, xstate=fpu.ljust(FXSAVE_SIZE, b"\0"))
            return
        if task.fpu is not None and len(task.fpu) != self.xstate_size:
            raise ValueError(f"task {task.pid}: {len(task.fpu)} FPU bytes, xstate_size is "
                             f"{self.xstate_size}")
        self._record("CR_HDR_CPU", cr.cr_hdr_cpu_v14, **regs, **debug,
                     used_math=int(task.fpu is not None))
        self.out.write(task.fpu or b"")

    # -- per VMA --

    def _vma(self, vma, source):
        vma_type = self._vma_type(vma)
        common = {"vma_type": cr.VMA_TYPES[vma_type], "vm_start": vma.start,
                  "vm_end": vma.end, "vm_page_prot": vma.prot, "vm_flags": vma.vm_flags,
                  "vm_pgoff": vma.pgoff}
        if self.v4:
            self._record("CR_HDR_VMA", cr.cr_hdr_vma, nr_pages=len(vma.pages), **common)
        else:
            shm = vma.shm
            self._record("CR_HDR_VMA", cr.cr_hdr_vma_v14, **common,
                         vma_objref=CrVmaFields.of(vma).vma_objref or 0,
                         shm_objref=shm.objref if shm else 0, shm_size=shm.size if shm else 0)
        if vma_type in cr.VMA_WITH_FNAME:
            self._emit("CR_HDR_FNAME", encode_text(vma.file or "") + b"\0")
        if self.v4:
            self._page_run(*vma.pages.columns(), source)
        elif vma_type in cr.VMA_WITH_PAGES:
            self._pgarrs(vma, source)

    def _vma_type(self, vma):
        if vma.kind in ("anon", "file"):
            return "CR_VMA_ANON" if vma.kind == "anon" else "CR_VMA_FILE"
        if self.v4 or vma.kind not in ("shm-anon", "shm-file") or vma.shm is None:
            raise ValueError(f"VMA {vma.start:#x}: {vma.kind} cannot be written as "
                             f"{self.dialect}")
        base = "CR_VMA_SHM_ANON" if vma.kind == "shm-anon" else "CR_VMA_SHM_FILE"
        if vma.shm.objref in self.shm_dumped:
            return base + "_SKIP"
        self.shm_dumped.add(vma.shm.objref)
        return base

    def _pgarrs(self, vma, source):
        """v14 contents: PGARR chunks (private: vaddrs; shm: page indices), then PGARR 0."""
        if vma.kind == "shm-anon":
            keys, offsets = vma.shm.pages.columns()
            addrs = array("Q", (key // PAGE_SIZE for key in keys))
        else:
            addrs, offsets = vma.pages.columns()
        chunk = cr.CR_PGARR_CHUNK[self.arch]
        for i in range(0, len(addrs), chunk):
            self._record("CR_HDR_PGARR", cr.cr_hdr_pgarr, nr_pages=len(addrs[i:i + chunk]))
            self._page_run(addrs[i:i + chunk], offsets[i:i + chunk], source)
        self._record("CR_HDR_PGARR", cr.cr_hdr_pgarr, nr_pages=0)

    def _page_run(self, addrs, offsets, source):
        """`unsigned long` vaddr array, then the pages, read one at a time from the source."""
        word = cr.WORD_SIZE[self.arch]
        try:
            self.out.write(b"".join(a.to_bytes(word, "little") for a in addrs))
        except OverflowError:
            raise ValueError(f"a page address does not fit {self.arch}") from None
        copy_pages(source, offsets, self.out)


def _cpu_regs(task, arch):
    """cr_hdr_cpu register fields from the task's gdb-named registers (0 if absent)."""
    if task.regs is not None and task.regs.arch != arch:
        raise ValueError(f"task {task.pid}: {task.regs.arch} registers, writing {arch}")
    values = task.regs.as_dict() if task.regs is not None else {}
    fields = dict.fromkeys(cr.CPU_REGS, 0)     # i386: r8..r15 are not registers
    fields.update({name: values.get(gdb, 0) for name, gdb in CPU_TO_GDB[arch].items()})
    return fields


def _xstate_size(image):
    """v14 HEAD_ARCH xstate_size: the stored one, else the first task's FPU size, else 512."""
    if "xstate_size" in image.header:
        return image.header["xstate_size"]
    sizes = [len(t.fpu) for t in image.tasks if t.fpu is not None]
    return sizes[0] if sizes else FXSAVE_SIZE
