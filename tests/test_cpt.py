"""OpenVZ cpt v2: golden images written by tests/c/cpt_golden.c on both ABIs, the writer,
and malformed input."""

import io
import struct
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from crfs.errors import FormatError
from crfs.formats import cpt
from crfs.formats.source import MemorySource, Source
from crfs.formats.x86 import PAGE_SIZE, cpt_decode_segment
from crfs.model import Image, Mm, Registers, Task, Vma, cpt as cpt_model, registry
from digests import fnv1a64

ARCH_OF_BITS = {32: "i386", 64: "x86_64"}
REGS_OF_BITS = {32: "CPT_OBJ_X86_REGS", 64: "CPT_OBJ_X86_64_REGS"}


@pytest.fixture(scope="session")
def goldens(build_c, tmp_path_factory):
    """{bits: (image bytes, the objects cpt_golden.c wrote, in file order)}."""
    import json
    import subprocess
    out = {}
    for bits in ARCH_OF_BITS:
        path = tmp_path_factory.mktemp("cpt") / f"golden-m{bits}.img"
        proc = subprocess.run([str(build_c("cpt_golden", bits)), str(path)], check=True,
                              capture_output=True, text=True)
        out[bits] = (path.read_bytes(), json.loads(proc.stdout))
    return out


@pytest.fixture(params=sorted(ARCH_OF_BITS))
def golden(request, goldens):
    data, objects = goldens[request.param]
    return request.param, data, objects


def of_type(objects, name):
    return [o for o in objects if o["type"] == name]


def per_task(objects):
    """The C objects grouped by task, in file order."""
    groups = []
    for obj in objects[1:]:
        if obj["type"] == "CPT_OBJ_TASK":
            groups.append([])
        groups[-1].append(obj)
    return groups


# ---- golden images: every field against the values C wrote ----

def test_golden_with_run_golden_fixture(run_golden):
    path, objects = run_golden("cpt_golden", 32)
    with Source.open(path) as source:
        assert registry.detect(source) == "cpt"
        assert registry.load(source).record_count == len(objects)


def test_records_are_the_objects_c_wrote(golden):
    _, data, objects = golden
    found = [(r.offset, r.name, r.length) for r in cpt.records(MemorySource(data))]
    assert found == [(o["offset"], o["type"], o["length"]) for o in objects]


def test_bits_notes_name_the_content(golden):
    _, data, _ = golden
    notes = [r.note for r in cpt.records(MemorySource(data)) if r.name == "CPT_OBJ_BITS"]
    assert notes[:2] == ["content MM_CONTEXT", "content X86_FPUSTATE"]


def test_header(golden):
    bits, data, objects = golden
    head = objects[0]
    image = cpt_model.load(MemorySource(data))
    assert (image.format, image.dialect, image.arch) == ("openvz", "cpt v2", ARCH_OF_BITS[bits])
    assert image.header == {
        "kernel": f"{head['cpt_image_major']}.{head['cpt_image_minor']}."
                  f"{head['cpt_image_sublevel']}",
        "extra": head["cpt_image_extra"], "arch": head["cpt_arch"],
        "time": head["cpt_time"], "hdrlen": head["cpt_hdrlen"]}
    assert image.time == head["cpt_time"]
    assert image.has_trailer is None
    assert image.record_count == len(objects)


def test_tasks(golden):
    _, data, objects = golden
    image = cpt_model.load(MemorySource(data))
    expected = of_type(objects, "CPT_OBJ_TASK")
    assert [t.pid for t in image.tasks] == [1, 2, 4, 3]
    for task, c in zip(image.tasks, expected, strict=True):
        assert (task.pid, task.tgid, task.ppid, task.comm, task.state) == (
            c["cpt_pid"], c["cpt_tgid"], c["cpt_ppid"], c["cpt_comm"], c["cpt_state"])
        assert {name: getattr(task.creds, name) for name in cpt_model.CRED_NAMES} == {
            name: c[f"cpt_{name}"] for name in cpt_model.CRED_NAMES}
        assert task.tls == c["cpt_tls"]
        assert task.native.flags == ["CPT_PF_FORKNOEXEC", "CPT_PF_USED_MATH"]
        for field in cpt_model.TASK_NATIVE_FIELDS:
            if field != "cpt_flags":
                assert getattr(task.native, field[len("cpt_"):]) == c[field], field
        assert (task.pgid, task.sid) == (c["cpt_pgrp"], c["cpt_session"])
        assert (task.exit.code, task.exit.signal, task.exit.pdeath_signal) == (
            c["cpt_exit_code"], c["cpt_exit_signal"], c["cpt_pdeath_signal"])
        assert (task.futex.set_child_tid, task.futex.clear_child_tid) == (
            c["cpt_set_tid"], c["cpt_clear_tid"])


def test_mm_and_vmas(golden):
    _, data, objects = golden
    image = cpt_model.load(MemorySource(data))
    for task, group in zip(image.tasks, per_task(objects), strict=True):
        mm_c = of_type(group, "CPT_OBJ_MM")[0]
        assert task.mm.fields == {name: mm_c[c_name]
                                  for name, c_name in cpt_model.MM_FIELDS.items()}
        assert list(task.mm.fields) == list(cpt_model.MM_FIELDS)
        vmas_c = of_type(group, "CPT_OBJ_VMA")
        names_c = [o["name"] for o in of_type(group, "CPT_OBJ_NAME")]
        assert len(task.mm.vmas) == len(vmas_c)
        for vma, c in zip(task.mm.vmas, vmas_c):
            is_file = c["cpt_vma_type"] == 1
            assert (vma.start, vma.end, vma.vm_flags, vma.prot, vma.pgoff) == (
                c["cpt_start"], c["cpt_end"], c["cpt_flags"], c["cpt_pgprot"], c["cpt_pgoff"])
            assert vma.kind == ("file" if is_file else "anon")
            assert vma.file == (names_c.pop(0) if is_file else None)
            assert vma.native.shown() == {
                "vma_type": "CPT_VMA_FILE" if is_file else "CPT_VMA_TYPE_0",
                "page_num": c["cpt_page_num"]}
        assert task.mm.source is not None


def test_page_bytes_match_c(golden):
    _, data, objects = golden
    image = cpt_model.load(MemorySource(data))
    for task, group in zip(image.tasks, per_task(objects)):
        data_pages = 0
        for block in of_type(group, "CPT_OBJ_PAGES"):
            size = block["cpt_end"] - block["cpt_start"]
            got = task.mm.read(block["cpt_start"], size)
            if block["cpt_content"] == 2:
                assert fnv1a64(got) == block["fnv"]
                data_pages += size // PAGE_SIZE
            else:                                   # VOID: zero pages, nothing stored
                assert got == bytes(size)
                assert task.mm.page_offset(block["cpt_start"]) is None
        assert task.mm.page_count() == data_pages


def test_ldt_and_fpu(golden):
    _, data, objects = golden
    image = cpt_model.load(MemorySource(data))
    for task, group in zip(image.tasks, per_task(objects)):
        bits = of_type(group, "CPT_OBJ_BITS")
        ldt = [b for b in bits if b["cpt_content"] == 7]
        fpu = [b for b in bits if b["cpt_content"] in (5, 6)]
        assert len(fpu) == 1
        assert fnv1a64(task.fpu) == fpu[0]["fnv"] and len(task.fpu) == fpu[0]["cpt_size"]
        if ldt:
            assert ldt[0]["cpt_len"] == 24 and ldt[0]["cpt_hdrlen"] != 24   # the v2 dumper bug
            assert fnv1a64(task.mm.ldt) == ldt[0]["fnv"]
        else:
            assert task.mm.ldt is None
    assert image.tasks[0].mm.ldt is not None


def test_registers(golden):
    bits, data, objects = golden
    image = cpt_model.load(MemorySource(data))
    arch = ARCH_OF_BITS[bits]
    for task, c in zip(image.tasks, of_type(objects, REGS_OF_BITS[bits]), strict=True):
        assert task.regs.arch == arch
        for name, field in cpt_model.REGISTERS[arch].items():
            assert task.regs[name] == c[field], name
        for name in cpt_model.SEGMENTS[arch]:
            assert task.regs[name] == c[f"sel_{name}"], name
        assert task.debugregs == c["cpt_debugreg"]


@pytest.mark.parametrize("code, arch, selector", [
    (5, "i386", 0x73), (4, "i386", 0x7B), (1, "i386", 0x33), (256 + 2, "i386", 0x17),
    (7, "x86_64", 0x33), (4, "x86_64", 0x2B), (6, "x86_64", 0x2B), (5, "x86_64", 0x23),
    (2, "x86_64", 0x6B), (0, "x86_64", 0)])
def test_segment_ids_decoded(code, arch, selector):
    assert cpt_decode_segment(code, arch) == selector


def test_unknown_segment_id_is_a_format_error(golden):
    bits, data, objects = golden
    regs = of_type(objects, REGS_OF_BITS[bits])[0]
    declaration = cpt.DECLARATIONS[REGS_OF_BITS[bits]]
    bad = patch(data, regs["offset"], declaration, cpt_cs=9)
    with pytest.raises(FormatError, match="cpt_cs 9 is not a CPT_SEG_") as info:
        cpt_model.load(MemorySource(bad))
    assert (info.value.offset, info.value.record) == (regs["offset"], REGS_OF_BITS[bits])


def test_task_flags_decode_to_names_and_back():
    value = (1 << 0) | (1 << 5) | (1 << 40)
    names = cpt_model.decode_flags(value)
    assert names == ["CPT_PF_EXITING", "CPT_PF_USED_MATH", "0x10000000000"]
    assert cpt_model.encode_flags(names) == value


# ---- declarations: build(parse(b)) == b, garbage kept ----

def declaration_of(obj):
    if obj["type"] == "cpt_head":
        return cpt.cpt_head
    if obj["type"] == "CPT_OBJ_NAME":
        return cpt.cpt_name
    return cpt.DECLARATIONS[obj["type"]]


def test_build_parse_is_identity_for_every_object(golden):
    _, data, objects = golden
    seen = set()
    for obj in objects:
        declaration = declaration_of(obj)
        size = obj["length"] if obj["type"] == "CPT_OBJ_NAME" else declaration.sizeof()
        raw = data[obj["offset"]:obj["offset"] + size]
        assert declaration.build(declaration.parse(raw)) == raw, obj["type"]
        seen.add(obj["type"])
    assert len(seen) == 8      # head, TASK, MM, VMA, NAME, PAGES, BITS, REGS


def test_garbage_is_kept_as_fields(golden):
    bits, data, objects = golden
    ldt = of_type(objects, "CPT_OBJ_BITS")[0]
    parsed = cpt.cpt_obj_bits.parse(data[ldt["offset"]:])
    assert parsed.cpt_hdrlen == ldt["cpt_hdrlen"]
    assert parsed["__cpt_pad1"] == struct.pack("<I", ldt["__cpt_pad1"])
    if bits == 32:
        regs = of_type(objects, "CPT_OBJ_X86_REGS")[0]
        parsed = cpt.cpt_x86_regs.parse(data[regs["offset"]:])
        assert parsed.cpt_tail_pad == bytes.fromhex(regs["tail"]) != bytes(4)


def test_sizes_match_the_c_structs():
    assert {name: d.sizeof() for name, d in cpt.DECLARATIONS.items()} == {
        "CPT_OBJ_TASK": 296, "CPT_OBJ_MM": 128, "CPT_OBJ_VMA": 80, "CPT_OBJ_PAGES": 32,
        "CPT_OBJ_NAME": 16, "CPT_OBJ_BITS": 24, "CPT_OBJ_X86_REGS": 120,
        "CPT_OBJ_X86_64_REGS": 280}
    assert cpt.cpt_head.sizeof() == 32


def test_sniff():
    assert cpt.sniff(b"\x79\x1c\x01\x63" + bytes(12))
    assert not cpt.sniff(b"\x79\x1c\x01\x64" + bytes(12))


# ---- writer ----

def dumped(image, **options):
    out = io.BytesIO()
    cpt_model.dump(image, out, **options)
    return out.getvalue()


def summary(image):
    """What a model says, page bytes included (VMA page counts excepted)."""
    def vma(mm, v):
        return (v.start, v.end, v.vm_flags, v.prot, v.pgoff, v.kind, v.file,
                v.native.vma_type, mm.read(v.start, v.size), [addr for addr, _ in v.pages])

    return (image.arch, image.header, image.time, [
        (t.pid, t.tgid, t.ppid, t.comm, t.state, t.creds, t.tls, t.pgid, t.sid, t.exit,
         t.futex, t.debugregs, t.native, t.fpu,
         t.regs, t.mm.fields, t.mm.ldt, [vma(t.mm, v) for v in t.mm.vmas])
        for t in image.tasks])


def test_dump_load_round_trip(golden):
    _, data, _ = golden
    first = dumped(cpt_model.load(MemorySource(data)))
    again = cpt_model.load(MemorySource(first))
    assert summary(again) == summary(cpt_model.load(MemorySource(data)))
    assert dumped(again) == first


def test_writer_fixes_the_ldt_header(golden):
    _, data, _ = golden
    written = MemorySource(dumped(cpt_model.load(MemorySource(data))))
    ldt = next(r for r in cpt.records(written) if r.note == "content MM_CONTEXT")
    header = cpt.cpt_obj_bits.parse(written.pread(ldt.offset, 24))
    assert (header.cpt_len, header.cpt_hdrlen, header["__cpt_pad1"]) == (
        ldt.length, 24, bytes(4))


def test_reader_accepts_the_fixed_ldt_header(golden):
    _, data, objects = golden
    ldt = of_type(objects, "CPT_OBJ_BITS")[0]
    fixed = patch(data, ldt["offset"], cpt.cpt_obj_bits, cpt_len=ldt["length"], cpt_hdrlen=24)
    assert summary(cpt_model.load(MemorySource(fixed))) == summary(
        cpt_model.load(MemorySource(data)))


def small_image(arch="i386", pages=((0x8048000, b"A"),), time=None):
    source = MemorySource()
    mm = Mm(fields={"start_code": 0x8048000}, source=source)
    vma = Vma(start=0x8048000, end=0x8048000 + 4 * PAGE_SIZE, vm_flags=0x73, prot=0x25,
              pgoff=0, kind="anon")
    for addr, fill in pages:
        vma.pages.add(addr, source.append(fill * PAGE_SIZE))
    mm.vmas.append(vma)
    root = Task(pid=10, tgid=10, ppid=0, comm="root", mm=mm,
                regs=Registers(arch, {"cs": 0x73 if arch == "i386" else 0x33}))
    child = Task(pid=11, tgid=11, ppid=10, comm="child", mm=mm)
    return Image(format="openvz", dialect="cpt v2", arch=arch, time=time,
                 tasks=[root, child], source=source)


@pytest.mark.parametrize("arch", ["i386", "x86_64"])
def test_writer_from_a_built_model(arch):
    pages = ((0x8048000, b"A"), (0x804A000, b"B"))       # sparse: a hole at 0x8049000
    image = cpt_model.load(MemorySource(dumped(small_image(arch, pages))))
    assert image.arch == arch and image.time is None
    root, child = image.tasks
    assert root.mm is not child.mm                       # one MM per task, as the v2 dumper
    assert root.native.children_num == 1 and child.native.children_num == 0
    assert root.mm.read(0x8048000, 3 * PAGE_SIZE) == (
        b"A" * PAGE_SIZE + bytes(PAGE_SIZE) + b"B" * PAGE_SIZE)
    assert root.regs["cs"] == (0x73 if arch == "i386" else 0x33)
    assert len(root.fpu) == 512


def test_writer_needs_one_tree():
    image = small_image()
    image.tasks[1].ppid = 99
    with pytest.raises(ValueError, match="one task tree"):
        dumped(image)


def test_file_source_and_memory_source_index_alike(tmp_path):
    pages = [(0x8048000 + i * PAGE_SIZE, bytes([i])) for i in range(4)]
    data = dumped(small_image(pages=pages))
    path = tmp_path / "img"
    path.write_bytes(data)
    with Source.open(path) as source:
        from_file = cpt_model.load(source)
        assert summary(from_file) == summary(cpt_model.load(MemorySource(data)))


# ---- bad input: FormatError and nothing else ----

def patch(data, offset, declaration, **values):
    """`data` with the object at `offset` rebuilt with some fields changed."""
    size = declaration.sizeof()
    fields = declaration.parse(data[offset:offset + size])
    fields.update(values)
    return data[:offset] + declaration.build(fields) + data[offset + size:]


def cut_points(objects):
    for obj in objects:
        start, length = obj["offset"], obj["length"]
        yield from sorted({start, start + 1, start + min(length, 16) - 1,
                           start + length // 2, start + length - 1})


def test_truncation_anywhere_is_a_format_error(golden):
    _, data, objects = golden
    for cut in cut_points(objects):
        with pytest.raises(FormatError):
            cpt_model.load(MemorySource(data[:cut]))
        with pytest.raises(FormatError):
            list(cpt.records(MemorySource(data[:cut])))


def test_trailing_bytes_are_a_format_error(golden):
    _, data, _ = golden
    with pytest.raises(FormatError, match="8 bytes after the last task"):
        cpt_model.load(MemorySource(data + bytes(8)))


@pytest.mark.parametrize("type_name, field, value, message", [
    ("CPT_OBJ_VMA", "cpt_page_num", 99999999, "cpt_page_num 99999999 exceeds the file"),
    ("CPT_OBJ_TASK", "cpt_children_num", 0xFFFFFFFF,
     "cpt_children_num 4294967295 exceeds the file"),
    ("CPT_OBJ_MM", "cpt_map_count", 2**63, f"cpt_map_count {2**63} exceeds the file"),
])
def test_lying_counts_fail_cleanly_without_allocating(golden, type_name, field, value, message):
    _, data, objects = golden
    target = of_type(objects, type_name)[0]
    bad = patch(data, target["offset"], cpt.DECLARATIONS[type_name], **{field: value})
    tracemalloc.start()
    try:
        with pytest.raises(FormatError) as info:
            registry.load(MemorySource(bad))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.message == message
    assert (info.value.offset, info.value.record) == (target["offset"], type_name)
    assert peak < 4 * len(data) + 1_000_000


def test_a_bad_page_header_is_reported_where_it_is(golden):
    _, data, objects = golden
    second = of_type(objects, "CPT_OBJ_PAGES")[1]
    bad = patch(data, second["offset"], cpt.cpt_page_block,
                cpt_start=second["cpt_start"] - PAGE_SIZE, cpt_end=second["cpt_start"])
    with pytest.raises(FormatError, match="outside the VMA or not ascending") as info:
        cpt_model.load(MemorySource(bad))
    assert (info.value.offset, info.value.record) == (second["offset"], "CPT_OBJ_PAGES")


def test_a_missing_fpu_state_is_a_format_error(golden):
    _, data, objects = golden
    fpu = of_type(objects, "CPT_OBJ_BITS")[1]
    bad = patch(data, fpu["offset"], cpt.cpt_obj_bits, cpt_content=3)
    with pytest.raises(FormatError, match="where the FPU state belongs"):
        cpt_model.load(MemorySource(bad))


def header_positions(objects):
    """Byte positions inside the fixed part of every object: where flips matter."""
    positions = []
    for obj in objects:
        size = 16 if obj["type"] == "CPT_OBJ_NAME" else declaration_of(obj).sizeof()
        positions.extend(range(obj["offset"] + 4 * (obj["type"] == "cpt_head"),
                               obj["offset"] + size))
    return positions


def load_everything(data):
    """Open as the CLI would, then touch what a reader touches."""
    source = MemorySource(data)
    image = registry.load(source)
    list(registry.records(source))
    for mm in image.mms():
        for vma in mm.vmas:
            mm.read(vma.start, 64)
    return image


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzzed_images_raise_only_format_errors(goldens, data):
    bits = data.draw(st.sampled_from(sorted(goldens)))
    image, objects = goldens[bits]
    mutated = bytearray(image)
    positions = header_positions(objects)
    for _ in range(data.draw(st.integers(0, 4))):
        at = data.draw(st.sampled_from(positions) | st.integers(4, len(image) - 1))
        mutated[at] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        del mutated[data.draw(st.integers(0, len(mutated))):]
    try:
        load_everything(bytes(mutated))
    except FormatError:
        pass
