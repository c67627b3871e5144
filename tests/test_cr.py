"""linux-cr cr_hdr images (v4 and the v14-rc2 dialect): golden C images on -m32/-m64."""

import io
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crfs.errors import FormatError
from crfs.formats import cr as fcr
from crfs.formats.source import MemorySource, Source
from crfs.model import Image, Mm, Registers, ShmSegment, Task, Vma, registry
from crfs.model import cr

PAGE = 4096
GOLDEN = [(32, "v4"), (64, "v4"), (32, "v14"), (64, "v14")]
IDS = [f"m{bits}-{mode}" for bits, mode in GOLDEN]


def only(mode):
    """Run a golden test on the images of one dialect only."""
    params = [g for g in GOLDEN if g[1] == mode]
    return pytest.mark.parametrize("golden", params, indirect=True,
                                   ids=[f"m{bits}-{mode}" for bits, _ in params])

# cr_hdr_cpu field -> gdb name, restated here so the test does not trust the module's table
GDB = {
    "i386": dict(ax="eax", cx="ecx", dx="edx", bx="ebx", sp="esp", bp="ebp", si="esi",
                 di="edi", ip="eip", flags="eflags", cs="cs", ss="ss", ds="ds", es="es",
                 fs="fs", gs="gs", orig_ax="orig_eax"),
    "x86_64": dict(ax="rax", bx="rbx", cx="rcx", dx="rdx", si="rsi", di="rdi", bp="rbp",
                   sp="rsp", r8="r8", r9="r9", r10="r10", r11="r11", r12="r12", r13="r13",
                   r14="r14", r15="r15", ip="rip", flags="eflags", cs="cs", ss="ss",
                   ds="ds", es="es", fs="fs", gs="gs", orig_ax="orig_rax"),
}
KINDS = {1: "anon", 2: "file", 3: "shm-anon", 4: "shm-anon", 5: "shm-file", 6: "shm-file"}
TASK_FIELDS = ("exit_state", "exit_code", "exit_signal", "utime", "stime", "utimescaled",
               "stimescaled", "gtime", "prev_utime", "prev_stime", "nvcsw", "nivcsw",
               "start_time_sec", "start_time_nsec", "real_start_time_sec",
               "real_start_time_nsec", "min_flt", "maj_flt")


@pytest.fixture(params=GOLDEN, ids=IDS)
def golden(request, run_golden):
    """(image bytes, JSON the C program printed, bits, mode)."""
    bits, mode = request.param
    path, expected = run_golden("cr_golden", bits, mode)
    return path.read_bytes(), expected, bits, mode


def task_fields(task):
    """The TASK and CPU record fields the model keeps for a task, by their C names."""
    return {"exit_state": task.exit.state, "exit_code": task.exit.code,
            "exit_signal": task.exit.signal,
            **dict(zip([f"debugreg{i}" for i in range(8)], task.debugregs or [])),
            **(task.native.shown() if task.native else {})}


def load(data):
    return registry.load(MemorySource(data))


def dumped(image, **options):
    out = io.BytesIO()
    cr.dump(image, out, **options)
    return out.getvalue()


def walked(data):
    return list(fcr.Walker(MemorySource(data)).walk())


# ---- golden values: every parsed field against what C wrote ----

def test_sniff_and_identity(golden):
    data, exp, bits, mode = golden
    assert fcr.sniff(data[:16])
    image = load(data)
    assert image.format == "linux-cr"
    assert image.dialect == f"cr_hdr {mode}"
    assert image.arch == exp["arch"] == ("i386" if bits == 32 else "x86_64")
    assert image.has_trailer is True
    assert image.record_count == len(walked(data))


def test_header(golden):
    data, exp, _, _ = golden
    image = load(data)
    head = exp["head"]
    for key in ("release", "version", "machine", "rev", "time", "flags"):
        assert image.header[key] == head[key], key
    assert image.header["kernel"] == f"{head['major']}.{head['minor']}.{head['patch']}"
    assert image.time == head["time"]
    if "xstate_size" in head:
        for key in ("has_fxsr", "has_xsave", "xstate_size"):
            assert image.header[key] == head[key]


def test_tasks(golden):
    data, exp, _, mode = golden
    image = load(data)
    assert len(image.tasks) == len(exp["tasks"])
    for task, want in zip(image.tasks, exp["tasks"]):
        fields = want["task"]
        assert (task.pid, task.tgid, task.ppid) == (fields["pid"], want["tgid"], want["ppid"])
        assert task.comm == fields["comm"]
        assert task.state == fields["state"]
        for key in TASK_FIELDS:
            if key in fields:
                assert task_fields(task)[key] == fields[key], key
        if mode == "v4":
            assert fields["task_len"] == {"i386": 144, "x86_64": 152}[image.arch]


def test_registers_fpu_tls(golden):
    data, exp, _, mode = golden
    image = load(data)
    for task, want in zip(image.tasks, exp["tasks"]):
        cpu = want["cpu"]
        assert cpu["len"] == (784 if mode == "v4" else 272)
        assert task.regs.arch == image.arch
        expected = {gdb: cpu[name] for name, gdb in GDB[image.arch].items()}
        if image.arch == "x86_64":   # cr_hdr_cpu stores no FS/GS base
            expected.update(fs_base=0, gs_base=0)
        assert task.regs.as_dict() == expected
        for key in [f"debugreg{i}" for i in range(8)] + ["uses_debug", "used_math"]:
            assert task_fields(task)[key] == cpu[key], key
        fpu = want["fpu"]
        assert task.fpu == (None if fpu is None else bytes.fromhex(fpu))
        assert task.tls == [b << 32 | a for a, b in want["tls"]]
        assert task.native.ntls == want["ntls"]


def test_mm_and_vmas(golden):
    data, exp, _, mode = golden
    image = load(data)
    for task, want in zip(image.tasks, exp["tasks"]):
        mm = task.mm
        wanted_fields = {k: v for k, v in want["mm"].items() if k != "map_count"}
        assert mm.fields == wanted_fields
        assert list(mm.fields)[1:] == list(fcr.MM_FIELDS)
        assert mm.ldt == bytes.fromhex(want["ldt"])
        assert mm.source is image.source
        assert len(mm.vmas) == want["mm"]["map_count"] == len(want["vmas"])
        for vma, w in zip(mm.vmas, want["vmas"]):
            assert (vma.start, vma.end, vma.prot, vma.vm_flags, vma.pgoff) == (
                w["start"], w["end"], w["prot"], w["flags"], w["pgoff"])
            assert vma.kind == KINDS[w["vma_type"]]
            assert vma.file == w["file"]
            assert vma.native.vma_type == fcr.VMA_TYPES(w["vma_type"]).name
            if mode == "v4":
                assert vma.native.nr_pages == len(w["pages"])
            else:
                assert vma.native.shm_objref == w["shm_objref"]


def test_private_pages_read_back(golden):
    data, exp, _, _ = golden
    image = load(data)
    for task, want in zip(image.tasks, exp["tasks"]):
        for vma, w in zip(task.mm.vmas, want["vmas"]):
            if vma.kind not in ("anon", "file"):
                continue
            assert [addr for addr, _ in vma.pages] == [addr for addr, _ in w["pages"]]
            for addr, fill in w["pages"]:
                assert task.mm.read(addr, PAGE) == bytes([fill]) * PAGE
            holes = set(range(vma.start, vma.end, PAGE)) - {a for a, _ in w["pages"]}
            for addr in holes:
                assert task.mm.read(addr, PAGE) == bytes(PAGE)   # not dumped: zeros


@only("v14")
def test_shared_memory_segments(golden):
    data, exp, _, _ = golden
    image = load(data)
    segments, fills = {}, {}
    for task, want in zip(image.tasks, exp["tasks"]):
        for vma, w in zip(task.mm.vmas, want["vmas"]):
            if not vma.kind.startswith("shm"):
                continue
            seg = vma.shm
            assert (seg.objref, seg.size) == (w["shm_objref"], w["shm_size"])
            assert segments.setdefault(seg.objref, seg) is seg   # _SKIP reuses the object
            if w["vma_type"] == 3:
                assert [key for key, _ in seg.pages] == [i * PAGE for i, _ in w["pages"]]
                fills[seg.objref] = dict(w["pages"])
            for index, fill in fills.get(seg.objref, {}).items():
                addr = vma.start + (index - vma.pgoff) * PAGE
                if vma.start <= addr < vma.end:
                    assert task.mm.read(addr, PAGE) == bytes([fill]) * PAGE
                    assert vma.pages.lookup(addr) == seg.pages.lookup(index * PAGE)
            shown = {a for a, _ in vma.pages}
            assert all(vma.start <= a < vma.end for a in shown)
    assert image.tasks[1].mm.vmas[1].shm is image.tasks[0].mm.vmas[2].shm
    assert len(image.tasks[1].mm.vmas[1].pages) == 2      # indices 0 and 2 of the segment


def test_record_list_tiles_the_file(golden):
    data, _, _, mode = golden
    infos = list(registry.records(MemorySource(data)))
    assert infos[0].name == "CR_HDR_HEAD" and infos[-1].name == "CR_HDR_TAIL"
    pos = 0
    for info in infos:
        assert info.offset == pos
        pos += info.length
    assert pos == len(data)
    names = {info.name for info in infos}
    assert names <= set(fcr.HDR_TYPES[f"cr_hdr {mode}"].__members__)
    if mode == "v4":
        assert any(i.name == "CR_HDR_VMA" and i.note.endswith("nr_pages 3") for i in infos)
    else:
        assert sum(i.name == "CR_HDR_PGARR" for i in infos) >= 8


# ---- byte-exact construct declarations ----

def test_build_parse_is_byte_exact(golden):
    data, _, _, mode = golden
    dialect = f"cr_hdr {mode}"
    garbage_seen = set()
    for record in walked(data):
        frame_struct = fcr.FRAMES[dialect]
        frame = data[record.offset:record.offset + 8]
        assert frame_struct.build(frame_struct.parse(frame)) == frame
        if record.fields is None:
            continue
        size = frame_struct.parse(frame).len
        payload = data[record.offset + 8:record.offset + 8 + size]
        layout = _layout(record, dialect, size)
        assert layout.sizeof() == size
        assert layout.build(layout.parse(payload)) == payload, record.name
        garbage_seen.update(k for k, v in record.fields.items()
                            if k.startswith("_") and k != "_io" and any(v))
    assert garbage_seen, "the golden image should carry non-zero garbage padding"
    if mode == "v14":
        tree = next(r for r in walked(data) if r.name == "CR_HDR_TREE")
        raw = data[tree.offset + 16:tree.offset + tree.length]
        assert b"".join(fcr.cr_hdr_pids.build(p) for p in tree.data) == raw


def _layout(record, dialect, size):
    if record.name == "CR_HDR_TASK" and dialect == fcr.V4:
        return fcr.V4_TASK_LAYOUTS[size][1]
    return fcr.LAYOUTS[dialect][record.name]


# ---- writer ----

def test_dump_load_round_trip(golden):
    data, exp, _, _ = golden
    image = load(data)
    first = dumped(image)
    again = load(first)
    assert dumped(again) == first
    assert _summary(again) == _summary(image)


@only("v4")     # v4 holds one task and no shared memory: only v4 -> v14 -> v4 is lossless
def test_dump_other_dialect_keeps_pages(golden):
    data = golden[0]
    image = load(data)
    with pytest.raises(ValueError, match="does not fit"):
        dumped(image, dialect=fcr.V14)          # v4 state is a u64, v14's a u32
    image.tasks[0].state = 1
    as_v14 = load(dumped(image, dialect=fcr.V14))
    assert as_v14.dialect == fcr.V14 and as_v14.arch == image.arch
    for a, b in zip(image.tasks[0].mm.vmas, as_v14.tasks[0].mm.vmas):
        assert [image.tasks[0].mm.read(p, PAGE) for p, _ in a.pages] == \
               [as_v14.tasks[0].mm.read(p, PAGE) for p, _ in b.pages]
    back = _summary(load(dumped(as_v14, dialect=fcr.V4)))["tasks"][0]
    assert back[-1] == _summary(image)["tasks"][0][-1]      # the VMAs and their pages


def _summary(image):
    """Everything the model says, page bytes included, for comparing two loads."""
    tasks = []
    for t in image.tasks:
        mm = t.mm
        vmas = [(v.start, v.end, v.vm_flags, v.prot, v.pgoff, v.kind, v.file,
                 v.shm and (v.shm.objref, v.shm.size),
                 [(a, mm.source.pread(o, PAGE)) for a, o in v.pages]) for v in mm.vmas]
        tasks.append((t.pid, t.tgid, t.ppid, t.comm, t.state, t.regs, t.fpu, t.tls,
                      sorted(task_fields(t).items()), mm.fields, mm.ldt, vmas))
    return {"header": image.header, "arch": image.arch, "tasks": tasks}


def _scratch_image(arch, dialect):
    """A model built by hand, its pages in a MemorySource."""
    source = MemorySource()
    mm = Mm(fields={"objref": 0, "start_code": 0x400000, "brk": 0x603000}, source=source,
            ldt=bytes(range(8)))
    heap = Vma(0x600000, 0x604000, 0x73, 0x27, 0, "anon")
    heap.pages.add(0x601000, source.append(b"h" * PAGE))
    text = Vma(0x400000, 0x402000, 0x75, 0x25, 0, "file", file="/bin/true")
    mm.vmas = [text, heap]
    if dialect == fcr.V14:
        seg = ShmSegment(5, 2 * PAGE)
        seg.pages.add(PAGE, source.append(b"s" * PAGE))
        mm.vmas.append(Vma(0x700000, 0x702000, 0xfb, 0x27, 0, "shm-anon", shm=seg))
    regs = Registers(arch, {"cs": 0x73 if arch == "i386" else 0x33, "eflags": 0x246})
    task = Task(7, 7, 1, "scratch", state=0, regs=regs, fpu=bytes(512), tls=[0, 0, 0], mm=mm)
    machine = "i686" if arch == "i386" else "x86_64"
    return Image("linux-cr", dialect, arch, header={"kernel": "2.6.27", "machine": machine},
                 time=99, tasks=[task])


@pytest.mark.parametrize("arch", ["i386", "x86_64"])
@pytest.mark.parametrize("dialect", fcr.DIALECTS)
def test_dump_from_scratch(arch, dialect):
    image = _scratch_image(arch, dialect)
    data = dumped(image)
    loaded = load(data)
    assert (loaded.dialect, loaded.arch, loaded.time) == (dialect, arch, 99)
    task = loaded.tasks[0]
    assert (task.pid, task.comm, task.tls) == (7, "scratch", [0, 0, 0])
    assert task.regs == image.tasks[0].regs
    assert task.mm.read(0x601000, PAGE) == b"h" * PAGE
    assert task.mm.read(0x400000, PAGE) == bytes(PAGE)
    if dialect == fcr.V14:
        assert task.mm.read(0x701000, 3) == b"sss"
    else:   # v4 writes the 24-byte TLS array even with ntls == 0
        thread = next(r for r in walked(data) if r.name == "CR_HDR_THREAD")
        assert thread.fields.ntls == 0 and thread.length == 16 + 24
    assert dumped(loaded) == data


def test_dump_streams_pages_one_at_a_time():
    image = _scratch_image("x86_64", fcr.V4)
    source = image.tasks[0].mm.source
    reads = []
    original = source.pread
    source.pread = lambda offset, length: reads.append(length) or original(offset, length)
    dumped(image)
    assert reads == [PAGE]


def test_dump_refuses_what_v4_cannot_hold():
    image = _scratch_image("i386", fcr.V14)
    with pytest.raises(ValueError, match="shm-anon"):
        dumped(image, dialect=fcr.V4)
    image.tasks.append(image.tasks[0])
    with pytest.raises(ValueError, match="one task"):
        dumped(image, dialect=fcr.V4)


# ---- bad input: FormatError and nothing else ----

def _expect_format_error(data):
    with pytest.raises(FormatError) as info:
        load(data)
    return info.value


def test_truncation_at_and_inside_every_record(golden):
    data, _, _, _ = golden
    cuts = set()
    for info in registry.records(MemorySource(data)):
        cuts.update({info.offset, info.offset + 1, info.offset + 7, info.offset + 8,
                     info.offset + info.length // 2, info.offset + info.length - 1})
    for cut in sorted(c for c in cuts if c < len(data)):
        _expect_format_error(data[:cut])


def _patch(data, offset, raw):
    return data[:offset] + raw + data[offset + len(raw):]


def _first(data, name, pred=lambda r: True):
    return next(r for r in walked(data) if r.name == name and pred(r))


def test_lying_nr_pages_is_bounded(golden):
    data, _, _, mode = golden
    if mode == "v4":
        record = _first(data, "CR_HDR_VMA")
        patched = _patch(data, record.offset + 8 + 8, (99999999).to_bytes(8, "little"))
        name = "CR_HDR_VMA"
    else:
        record = _first(data, "CR_HDR_PGARR")
        patched = _patch(data, record.offset + 8, (99999999).to_bytes(8, "little"))
        name = "CR_HDR_PGARR"
    tracemalloc.start()
    error = _expect_format_error(patched)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2_000_000
    assert (error.message, error.offset, error.record) == (
        "nr_pages 99999999 exceeds the file", record.offset, name)
    assert str(error) == f"offset {record.offset:#x}: {name}: nr_pages 99999999 exceeds the file"


@pytest.mark.parametrize("case", ["unaligned", "descending", "outside"])
def test_bad_vaddrs(golden, case):
    data, _, bits, mode = golden
    word = bits // 8
    if mode == "v4":
        record = _first(data, "CR_HDR_VMA", lambda r: r.note.endswith("nr_pages 3"))
        where = record.offset + record.length - 3 * (word + PAGE)
    else:
        record = _first(data, "CR_HDR_PGARR", lambda r: r.fields.nr_pages == 2)
        where = record.offset + 16
    first, second = (int.from_bytes(data[where + i * word:where + (i + 1) * word], "little")
                     for i in (0, 1))
    value = {"unaligned": first + 1, "descending": second, "outside": 0}[case]
    patched = _patch(data, where, value.to_bytes(word, "little"))
    error = _expect_format_error(patched)
    assert error.record in ("CR_HDR_VMA", "CR_HDR_PGARR")


def test_wrong_record_type_names_both(golden):
    data, _, _, mode = golden
    mm = _first(data, "CR_HDR_MM")
    vma_type = fcr.HDR_TYPES[f"cr_hdr {mode}"]["CR_HDR_VMA"]
    error = _expect_format_error(_patch(data, mm.offset, vma_type.to_bytes(2, "little")))
    assert error.message == "expected CR_HDR_MM, found CR_HDR_VMA"
    assert (error.offset, error.record) == (mm.offset, "CR_HDR_MM")


def test_tail_is_required(golden):
    data, _, _, _ = golden
    tail = _first(data, "CR_HDR_TAIL")
    assert "file ends where CR_HDR_TAIL" in _expect_format_error(data[:tail.offset]).message
    bad_magic = _patch(data, tail.offset + 8, bytes(8))
    assert "CHECKPOINT_MAGIC_TAIL" in _expect_format_error(bad_magic).message
    assert "follow CR_HDR_TAIL" in _expect_format_error(data + b"\0").message


def test_string_and_count_bounds(golden):
    data, _, _, mode = golden
    task = _first(data, "CR_HDR_TASK")
    comm_len_at = task.offset + task.length - (8 if mode == "v14" else 4)
    if mode == "v4" and task.length == 160:
        comm_len_at -= 4
    huge = _patch(data, comm_len_at, (PAGE + 1).to_bytes(4, "little"))
    assert "task_comm_len" in _expect_format_error(huge).message
    mm = _first(data, "CR_HDR_MM")
    lying = _patch(data, mm.offset + 12, (10 ** 9).to_bytes(4, "little"))
    assert _expect_format_error(lying).message == "map_count 1000000000 exceeds the file"
    ctx = _first(data, "CR_HDR_MM_CONTEXT")
    many = _patch(data, ctx.offset + 10, (30000).to_bytes(2, "little"))
    assert _expect_format_error(many).record == "CR_HDR_MM_CONTEXT"


@only("v14")
def test_skip_needs_an_earlier_segment(golden):
    data = golden[0]
    skip = _first(data, "CR_HDR_VMA", lambda r: r.note == "CR_VMA_SHM_ANON_SKIP")
    error = _expect_format_error(_patch(data, skip.offset + 16, (8).to_bytes(4, "little")))
    assert "shm_objref 8 was not dumped before" in error.message


def test_sniff_rejects_ckpt_hdr_heads():
    magic = fcr.MAGICS["CHECKPOINT_MAGIC_HEAD"].to_bytes(8, "little")
    ckpt_head = (1).to_bytes(4, "little") + (72).to_bytes(4, "little") + magic
    assert not fcr.sniff(ckpt_head)
    assert not fcr.sniff(b"\x01\x00\xe0\x00" + bytes(4) + bytes(8))
    assert not fcr.sniff(b"\x01\x00")


@pytest.fixture(scope="module", params=GOLDEN, ids=IDS)
def golden_bytes(request, build_c, tmp_path_factory):
    import subprocess
    bits, mode = request.param
    path = tmp_path_factory.mktemp("crfuzz") / "img"
    subprocess.run([str(build_c("cr_golden", bits)), str(path), mode], check=True,
                   capture_output=True)
    return path.read_bytes()


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_random_damage_raises_only_format_error(golden_bytes, data):
    image = bytearray(golden_bytes)
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(image) - 1),
                                         st.integers(1, 255)), max_size=4))
    for offset, xor in flips:
        image[offset] ^= xor
    cut = data.draw(st.one_of(st.none(), st.integers(0, len(image))))
    if cut is not None:
        del image[cut:]
    try:
        loaded = load(bytes(image))
    except FormatError:
        return
    for mm in loaded.mms():   # whatever loads must be readable
        for vma in mm.vmas:
            mm.read(vma.start, PAGE)


def test_real_file_source(golden, tmp_path):
    data, _, _, _ = golden
    path = tmp_path / "img"
    path.write_bytes(data)
    with Source.open(path) as source:
        assert _summary(registry.load(source)) == _summary(load(data))
