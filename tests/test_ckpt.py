"""linux-cr ckpt_hdr images: golden images written by C (tests/c/ckpt_golden.c, -m32 and -m64),
record round trips, the writer, and hostile input."""

import io
import struct
import subprocess
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crfs import render
from crfs.errors import FormatError
from crfs.formats import ckpt as fmt
from crfs.formats.source import MemorySource, Source
from crfs.model import Image, Mm, Registers, ShmSegment, Task, Vma, registry
from crfs.model.ckpt import dump, load
from crfs.model import page_copy
from crfs.model.ckpt_load import TASK_FIELDS
from crfs.model.image import (RLIM_INFINITY, AltStack, Pending, PosixTimer, Rseq, SigInfo,
                              TaskMisc,
                              get_field)
from digests import fnv1a64

ARCH_BITS = {"i386": 32, "x86_64": 64}
TASK_EXTRA = ("pgid", "sid", "depth", "exit_state", "exit_code", "exit_signal", "pdeath_signal",
              "compat_robust_futex_head_len", "compat_robust_futex_list",
              "robust_futex_head_len", "robust_futex_list", "set_child_tid", "clear_child_tid",
              "thread_info_flags", "files_objref", "fs_objref", "sighand_objref",
              "signal_objref")
# Records of process state beyond memory and registers: tests/c/ckpt_state_golden.c.
STATE_RECORDS = {"CKPT_HDR_USER_NS", "CKPT_HDR_CRED", "CKPT_HDR_USER", "CKPT_HDR_GROUPINFO",
                 "CKPT_HDR_TASK_CREDS", "CKPT_HDR_FS", "CKPT_HDR_SIGHAND", "CKPT_HDR_SIGNAL",
                 "CKPT_HDR_SIGNAL_TASK", "CKPT_HDR_SIGPENDING", "CRFS_HDR_SIGALTSTACK",
                 "CRFS_HDR_FS_EXT", "CRFS_HDR_OOM_SCORE_ADJ", "CRFS_HDR_RSEQ",
                 "CRFS_HDR_SIGINFO_RAW", "CRFS_HDR_SECCOMP", "CRFS_HDR_POSIX_TIMER",
                 "CRFS_HDR_TASK_MISC"}
# Records of open files: tests/c/ckpt_files_golden.c.
FILE_RECORDS = {"CKPT_HDR_FILE_TABLE", "CKPT_HDR_FILE_DESC", "CKPT_HDR_PIPE_BUF",
                "CKPT_HDR_EPOLL_ITEMS", "CRFS_HDR_DELETED_STAT", "CRFS_HDR_FILE_OWNER"}
# Incremental images' records: their C golden is tests/c/ckpt_chain_golden.c
# (tests/test_incremental.py).
CHAIN_RECORDS = {"CRFS_HDR_PARENT", "CRFS_HDR_PARENT_PAGES"}
FILE_EXTRA = ("f_type", "f_mode", "f_flags", "f_credref", "f_pos", "f_version", "f_secref")


def task_fields(task):
    """What the model keeps of a task's ckpt_hdr records, by their C field names."""
    fields = {"pgid": task.pgid, "sid": task.sid}
    fields.update({name: get_field(task, where) for name, where in TASK_FIELDS.items()})
    fields.update(task.native.shown())
    return fields


# What the writer renumbers or writes as 0 (objects it does not write).
NOT_KEPT = {"files_objref", "fs_objref", "sighand_objref", "signal_objref", "exe_objref",
            "vma_objref", "ino_objref", "f_credref", "f_secref"}


@pytest.fixture(params=sorted(ARCH_BITS.values()), ids=lambda bits: f"m{bits}")
def golden(request, run_golden):
    """(image bytes, expected values from C) for one ABI."""
    path, expected = run_golden("ckpt_golden", request.param)
    return path.read_bytes(), expected


@pytest.fixture(scope="module")
def golden64(build_c, tmp_path_factory):
    """The x86_64 golden image bytes, once per module (for hypothesis)."""
    path = tmp_path_factory.mktemp("ckpt") / "golden.img"
    subprocess.run([str(build_c("ckpt_golden", 64)), str(path)], check=True,
                   capture_output=True)
    return path.read_bytes()


def load_bytes(data):
    return load(MemorySource(data))


def dump_bytes(image, **options):
    out = io.BytesIO()
    dump(image, out, **options)
    return out.getvalue()


def record_list(data):
    return list(fmt.records(MemorySource(data)))


# --------------------------------------------------------------------------- declarations

def test_record_sizes_match_the_spec():
    expected = {"CKPT_HDR_HEADER": 72, "CKPT_HDR_HEADER_ARCH": 16, "CKPT_HDR_TREE": 16,
                "CKPT_HDR_TASK": 64, "CKPT_HDR_TASK_OBJS": 32, "CKPT_HDR_THREAD": 40,
                "CKPT_HDR_CPU": 192, "CKPT_HDR_OBJREF": 16, "CKPT_HDR_MM": 120,
                "CKPT_HDR_VMA": 72, "CKPT_HDR_PGARR": 16, "CKPT_HDR_MM_CONTEXT": 24,
                "CKPT_HDR_TAIL": 16, "CKPT_HDR_ERROR": 8}
    assert {name: fmt.SIZE[name] for name in expected} == expected
    assert fmt.MIN_SIZE["CKPT_HDR_FILE"] == 48
    assert fmt.ckpt_pids.sizeof() == 24


@pytest.mark.parametrize("table", [fmt.CKPT_HDR.__members__, fmt.CKPT_VMA.__members__,
                                   fmt.CKPT_OBJ.__members__, fmt.CKPT_FILE.__members__,
                                   fmt.CKPT_ARCH.__members__, fmt.MAGIC])
def test_constant_tables_have_unique_values(table):
    assert len(set(table.values())) == len(table)


def test_sniff(golden64):
    assert fmt.sniff(golden64[:16])
    assert not fmt.sniff(golden64[:15])
    cr_head = struct.pack("<hhIQ", 1, 224, 0, fmt.MAGIC["CHECKPOINT_MAGIC_HEAD"])
    assert not fmt.sniff(cr_head)
    assert not fmt.sniff(struct.pack("<IIQ", 1, 72, fmt.MAGIC["CHECKPOINT_MAGIC_TAIL"]))


def test_every_record_builds_back_to_its_bytes(golden):
    data, expected = golden
    seen, nr_pages = set(), 0
    for info in record_list(data):
        raw = data[info.offset:info.offset + info.length]
        struct_ = fmt.FIXED.get(info.name) or fmt.AT_LEAST.get(info.name) or fmt.ckpt_hdr_raw
        if info.name == "CKPT_HDR_BUFFER" and nr_pages:
            struct_ = fmt.pgarr_buffer(expected["arch"], nr_pages)
        assert struct_.build(struct_.parse(raw)) == raw, info
        nr_pages = fmt.parse_record(MemorySource(raw), fmt.record_at(MemorySource(raw), 0)
                                    ).nr_pages if info.name == "CKPT_HDR_PGARR" else 0
        seen.add(info.name)
    assert seen == set(fmt.CKPT_HDR.__members__) - {"CKPT_HDR_SECURITY", "CKPT_HDR_TASK_NS",
                                        "CKPT_HDR_RESTART_BLOCK", "CKPT_HDR_ERROR"} \
        - STATE_RECORDS - FILE_RECORDS - CHAIN_RECORDS - {"CRFS_HDR_FILE_ID"} \
        | {"type 777"}   # FILE_ID: test_file_id.py


def test_records_cover_the_file_and_name_unknown_types(golden):
    data, expected = golden
    infos = record_list(data)
    assert sum(i.length for i in infos) == len(data)
    assert [i.offset for i in infos[1:]] == [i.offset + i.length for i in infos[:-1]]
    assert [i.name for i in infos].count(f"type {expected['unknown_type']}") == 3
    pgarrs = [i.note for i in infos if i.name == "CKPT_HDR_PGARR"]
    assert "nr_pages 3" in pgarrs and "nr_pages 2" in pgarrs


# --------------------------------------------------------------------------- golden values

def test_golden_header(golden):
    data, expected = golden
    image = load_bytes(data)
    assert (image.format, image.dialect, image.arch) == ("linux-cr", "ckpt_hdr v21",
                                                         expected["arch"])
    assert image.header == expected["header"]
    assert image.time == expected["header"]["time"]
    assert image.has_trailer is True
    assert image.record_count == len(record_list(data))


def test_golden_tasks(golden):
    data, expected = golden
    image = load_bytes(data)
    assert len(image.tasks) == len(expected["tasks"])
    for task, want in zip(image.tasks, expected["tasks"]):
        assert (task.pid, task.ppid, task.tgid, task.comm, task.state) == (
            want["pid"], want["ppid"], want["tgid"], want["comm"], want["state"])
        assert {k: task_fields(task)[k] for k in TASK_EXTRA} == {k: want[k] for k in TASK_EXTRA}
        assert task.native.vpids == want["vpids"]
        assert task.tls == want["tls"]
        assert task.regs == Registers(image.arch, want["regs"])
        assert task.regs.as_dict() == want["regs"]
        assert {k: task_fields(task)[k] for k in want["cpu_extra"]} == want["cpu_extra"]
        assert task.fpu == (bytes.fromhex(want["fpu"]) if want["fpu"] else None)
    main, thread, child = image.tasks
    assert main.mm is thread.mm and child.mm is not main.mm
    assert len(image.mms()) == 2


def test_golden_mms_and_vmas(golden):
    data, expected = golden
    image = load_bytes(data)
    mms = [image.tasks[0].mm, image.tasks[2].mm]
    for mm, want in zip(mms, expected["mms"]):
        assert mm.fields == want["fields"]
        assert mm.auxv == [tuple(pair) for pair in want["auxv"]]
        assert mm.ldt == (bytes.fromhex(want["ldt"]) if want["ldt"] else None)
        assert mm.source is image.source
        assert len(mm.vmas) == len(want["vmas"])
        for vma, want_vma in zip(mm.vmas, want["vmas"]):
            assert (vma.start, vma.end, vma.vm_flags, vma.prot, vma.pgoff, vma.kind,
                    vma.file) == tuple(want_vma[k] for k in (
                        "start", "end", "vm_flags", "prot", "pgoff", "kind", "file"))
            keys = ["vma_type", "vma_objref", "ino_objref", "ino_size"]
            keys += list(FILE_EXTRA) if want_vma["file"] else []
            assert vma.native.shown() == {k: want_vma[k] for k in keys}


def test_golden_pages_read_back(golden):
    data, expected = golden
    image = load_bytes(data)
    for mm, want in zip([image.tasks[0].mm, image.tasks[2].mm], expected["mms"]):
        for vma, want_vma in zip(mm.vmas, want["vmas"]):
            assert [addr for addr, _ in vma.pages] == [addr for addr, _ in want_vma["pages"]]
            for addr, digest in want_vma["pages"]:
                assert fnv1a64(mm.read(addr, 4096)) == digest
            if vma.pages:
                assert mm.read(vma.end - 4096, 8192) == mm.read(vma.end - 4096, 4096)


def test_golden_shm_segment_is_shared(golden):
    data, expected = golden
    image = load_bytes(data)
    shm_vmas = [v for mm in image.mms() for v in mm.vmas if v.kind == "shm-anon"]
    assert len(shm_vmas) == 2 and shm_vmas[0].shm is shm_vmas[1].shm
    segment, want = shm_vmas[0].shm, expected["shm"]
    assert (segment.objref, segment.size) == (want["ino_objref"], want["size"])
    assert [key for key, _ in segment.pages] == [key for key, _ in want["pages"]]
    for (_, offset), (_, digest) in zip(segment.pages, want["pages"]):
        assert fnv1a64(image.source.pread(offset, 4096)) == digest


# --------------------------------------------------------------------------- writer

def summary(image):
    """What the writer keeps of an image, page bytes included."""
    def vma_view(mm, vma):
        extra = {k: v for k, v in vma.native.shown().items() if k not in NOT_KEPT}
        pages = [(addr, mm.read(addr, 4096)) for addr, _ in vma.pages]
        return (vma.start, vma.end, vma.vm_flags, vma.prot, vma.pgoff, vma.kind, vma.file,
                extra, pages, vma.shm and (vma.shm.size, len(vma.shm.pages)))

    def mm_view(mm):
        fields = {k: v for k, v in mm.fields.items() if k not in NOT_KEPT}
        return fields, mm.auxv, mm.ldt, [vma_view(mm, v) for v in mm.vmas]

    mms = image.mms()
    tasks = [(t.pid, t.tgid, t.ppid, t.comm, t.state, t.regs, t.fpu, t.tls,
              {k: v for k, v in task_fields(t).items() if k not in NOT_KEPT},
              mms.index(t.mm) if t.mm else None) for t in image.tasks]
    return image.arch, image.header, image.time, tasks, [mm_view(mm) for mm in mms]


def test_dump_of_a_loaded_image_is_stable(golden):
    data, _ = golden
    original = load_bytes(data)
    first = dump_bytes(original)
    again = load_bytes(first)
    assert dump_bytes(again) == first
    assert summary(again) == summary(original)


def test_dump_writes_the_documented_order(golden64):
    names = [i.name for i in record_list(dump_bytes(load_bytes(golden64)))]
    assert names[:7] == ["CKPT_HDR_HEADER", "CKPT_HDR_BUFFER", "CKPT_HDR_BUFFER",
                         "CKPT_HDR_BUFFER", "CKPT_HDR_HEADER_ARCH", "CKPT_HDR_TREE",
                         "CKPT_HDR_BUFFER"]
    assert names[-1] == "CKPT_HDR_TAIL" and "CKPT_HDR_CONTAINER" not in names
    assert names.count("CKPT_HDR_MM") == 2 and names.count("CKPT_HDR_TASK_OBJS") == 3
    first_task = names.index("CKPT_HDR_TASK")
    assert names[first_task:first_task + 6] == [
        "CKPT_HDR_TASK", "CKPT_HDR_STRING", "CKPT_HDR_THREAD", "CKPT_HDR_CPU",
        "CKPT_HDR_CPU_FPU", "CKPT_HDR_OBJREF"]


def scratch_image(arch):
    """A model built by hand: two threads sharing an mm, a second process sharing the shm."""
    source = MemorySource()
    pages = [source.append(bytes([n]) * 4096) for n in range(1, 8)]
    segment = ShmSegment(objref=0, size=3 * 4096)
    segment.pages.add(0, pages[5])
    segment.pages.add(2 * 4096, pages[6])

    def shm_vma(start):
        vma = Vma(start, start + 3 * 4096, 0xFB, 0x27, 0, "shm-anon", shm=segment)
        vma.pages.add(start, pages[5])
        vma.pages.add(start + 2 * 4096, pages[6])
        return vma

    heap = Vma(0x600000, 0x60A000, 0x73, 0x25, 0, "anon")
    for i in range(5):
        heap.pages.add(0x600000 + 2 * i * 4096, pages[i])
    text = Vma(0x400000, 0x402000, 0x75, 0x25, 0, "file", file="/bin/scratch")
    vdso = Vma(0xB0000000, 0xB0001000, 0x75, 0x25, 0, "vdso")
    mm1 = Mm(fields={"start_code": 0x400000, "brk": 0x60A000}, auxv=[(6, 4096), (0, 0)],
             vmas=[text, heap, shm_vma(0x700000), vdso], ldt=bytes(range(8)), source=source)
    mm2 = Mm(vmas=[text, shm_vma(0x800000)], source=source)
    cs, ds = (0x33, 0x2B) if arch == "x86_64" else (0x73, 0x7B)
    regs = Registers(arch, {"cs": cs, "ss": ds, "ds": ds, "es": ds})
    tasks = [Task(10, 10, 1, "leader", state=0, regs=regs, fpu=bytes(range(256)) * 2,
                  tls=[1, 2, 3], mm=mm1),
             Task(11, 10, 1, "thread", regs=regs, mm=mm1),
             Task(12, 12, 10, "child", regs=regs, mm=mm2)]
    return Image("linux-cr", "scratch", arch, time=1_234_567, tasks=tasks)


@pytest.mark.parametrize("arch", sorted(ARCH_BITS))
def test_scratch_model_round_trip(arch, monkeypatch):
    monkeypatch.setitem(fmt.CKPT_PGARR_BATCH, arch, 2)   # several chunks from 5 pages
    image = scratch_image(arch)
    data = dump_bytes(image)
    loaded = load_bytes(data)
    assert dump_bytes(loaded) == data
    assert [t.comm for t in loaded.tasks] == ["leader", "thread", "child"]
    assert loaded.tasks[0].mm is loaded.tasks[1].mm
    assert loaded.tasks[0].regs == image.tasks[0].regs
    assert loaded.tasks[0].fpu == image.tasks[0].fpu and loaded.tasks[1].fpu is None
    mm1, mm2 = loaded.tasks[0].mm, loaded.tasks[2].mm
    assert mm1.read(0x608000, 4096) == bytes([5]) * 4096
    assert mm1.read(0x601000, 4096) == bytes(4096)
    assert mm2.read(0x802000, 4096) == bytes([7]) * 4096
    assert mm1.vmas[2].shm is mm2.vmas[1].shm
    assert [v.native.vma_type for v in mm2.vmas] == ["CKPT_VMA_FILE", "CKPT_VMA_SHM_ANON_SKIP"]
    assert mm2.vmas[0].native.vma_objref == mm1.vmas[0].native.vma_objref
    infos = record_list(data)
    assert {i.note for i in infos if i.name == "CKPT_HDR_PGARR"} == {
        "nr_pages 2", "nr_pages 1", "nr_pages 0"}
    assert [i.name for i in infos].count("CKPT_HDR_FILE") == 1


def test_dump_streams_pages_from_the_source(monkeypatch):
    monkeypatch.setattr(page_copy, "MAX_RUN", 2)   # pages per read
    image = scratch_image("x86_64")
    reads = []
    source = image.tasks[0].mm.source
    original = source.pread
    source.pread = lambda offset, length: reads.append(length) or original(offset, length)
    dump_bytes(image)
    assert reads and max(reads) <= 2 * 4096


def test_dump_rejects_what_the_format_cannot_hold():
    image = scratch_image("x86_64")
    with pytest.raises(ValueError, match="x86_64 registers"):
        dump_bytes(image, arch="i386")
    image.tasks[0].mm.vmas[0].file = None
    with pytest.raises(ValueError, match="without a file name"):
        dump_bytes(image)
    image = scratch_image("x86_64")
    image.tasks[1].state = 1 << 40
    with pytest.raises(ValueError, match="CKPT_HDR_TASK"):
        dump_bytes(image)


# --------------------------------------------------------------------------- bad input

def patched(data, offset, fmt_, value):
    out = bytearray(data)
    struct.pack_into(fmt_, out, offset, value)
    return bytes(out)


def first_record(data, name, note=None):
    return next(i for i in record_list(data)
                if i.name == name and (note is None or i.note == note))


def test_truncation_at_and_inside_every_record(golden):
    data, _ = golden
    for info in record_list(data):
        for cut in {info.offset, info.offset + 4, info.offset + info.length // 2,
                    info.offset + info.length - 1}:
            with pytest.raises(FormatError):
                load_bytes(data[:cut])


def test_an_error_record_reports_the_image_message(golden64):
    cut = first_record(golden64, "CKPT_HDR_TASK").offset
    error = struct.pack("<II", 9999, 8)
    message = b"\0checkpoint of pid 4242 failed: -EBUSY\0"
    string = struct.pack("<II", 5, 8 + len(message)) + message
    with pytest.raises(FormatError, match="pid 4242 failed: -EBUSY") as exc:
        load_bytes(golden64[:cut] + error + string)
    assert (exc.value.offset, exc.value.record) == (cut, "CKPT_HDR_ERROR")


def test_lying_nr_pages_is_refused_without_allocating(golden64):
    pgarr = first_record(golden64, "CKPT_HDR_PGARR", "nr_pages 3")
    data = patched(golden64, pgarr.offset + 8, "<Q", 99999999)
    tracemalloc.start()
    with pytest.raises(FormatError) as exc:
        load_bytes(data)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert str(exc.value) == (f"offset {pgarr.offset:#x}: CKPT_HDR_PGARR: "
                              "nr_pages 99999999 exceeds the file")
    assert peak < 1 << 20


def test_lying_nr_tasks_is_refused_without_allocating(golden64):
    tree = first_record(golden64, "CKPT_HDR_TREE")
    data = patched(golden64, tree.offset + 8, "<i", 0x7FFFFFFF)
    tracemalloc.start()
    with pytest.raises(FormatError, match="nr_tasks 2147483647 exceeds the file") as exc:
        load_bytes(data)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert exc.value.record == "CKPT_HDR_TREE" and peak < 1 << 20


@pytest.mark.parametrize("name, field_offset, fmt_, value, message", [
    ("CKPT_HDR_TAIL", 8, "<Q", 1, "bad magic"),
    ("CKPT_HDR_HEADER", 16, "<H", 5, "unsupported arch_id 5"),
    ("CKPT_HDR_CPU", 180, "<H", 0x4003, "TLS index 3"),
    ("CKPT_HDR_CPU", 180, "<H", 9, "unknown segment code"),
    ("CKPT_HDR_VMA", 8, "<I", 9, "unknown vma_type 9"),
    ("CKPT_HDR_VMA", 32, "<Q", 0x8048001, "bad range"),
    ("CKPT_HDR_TASK_OBJS", 12, "<i", 99, "objref 99 is not a CKPT_OBJ_MM"),
    ("CKPT_HDR_MM", 8, "<I", 1 << 30, "map_count 1073741824 exceeds the file"),
    ("CKPT_HDR_MM_CONTEXT", 20, "<I", 3, "bytes for nldt 3"),
    ("CKPT_HDR_THREAD", 12, "<H", 4, "4 TLS entries"),
    ("CKPT_HDR_OBJREF", 12, "<i", 0, "objref 0 is not new"),
    ("CKPT_HDR_BUFFER", 4, "<I", 7, "shorter than its header"),
])
def test_bad_fields_give_clean_errors(golden64, name, field_offset, fmt_, value, message):
    info = first_record(golden64, name)
    with pytest.raises(FormatError, match=message):
        load_bytes(patched(golden64, info.offset + field_offset, fmt_, value))


@pytest.mark.parametrize("rev", [1, 5, 6])
def test_revs_of_v19_rc3_to_v21_and_old_crfs_are_read(golden64, rev):
    head = first_record(golden64, "CKPT_HDR_HEADER")
    image = load_bytes(patched(golden64, head.offset + 24, "<H", rev))
    assert image.header["rev"] == rev
    written = dump_bytes(image)
    assert struct.unpack_from("<H", written, 24)[0] == fmt.CHECKPOINT_VERSION == 6


@pytest.mark.parametrize("rev", [0, 2, 4, 7])
def test_other_revs_are_refused(golden64, rev):
    head = first_record(golden64, "CKPT_HDR_HEADER")
    with pytest.raises(FormatError, match=f"unsupported rev {rev}"):
        load_bytes(patched(golden64, head.offset + 24, "<H", rev))


def test_vaddrs_must_ascend_inside_the_vma(golden64):
    pgarr = first_record(golden64, "CKPT_HDR_PGARR", "nr_pages 3")
    vaddrs = pgarr.offset + 16 + 8
    swapped = patched(golden64, vaddrs, "<Q", struct.unpack_from("<Q", golden64, vaddrs + 8)[0])
    with pytest.raises(FormatError, match="ascending"):
        load_bytes(swapped)
    with pytest.raises(FormatError, match="ascending"):
        load_bytes(patched(golden64, vaddrs, "<Q", 0x1000))


def test_skip_without_a_dumped_segment(golden64):
    skip = first_record(golden64, "CKPT_HDR_VMA", "CKPT_VMA_SHM_ANON_SKIP 0x50000000-0x50006000")
    with pytest.raises(FormatError, match="ino_objref 42 was not dumped before"):
        load_bytes(patched(golden64, skip.offset + 16, "<i", 42))


def test_missing_tail_and_trailing_bytes(golden64):
    with pytest.raises(FormatError, match="missing CKPT_HDR_TAIL"):
        load_bytes(golden64[:-16])
    with pytest.raises(FormatError, match="data after the trailer"):
        load_bytes(golden64 + bytes(8))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_damaged_images_raise_only_format_error(golden64, data):
    image = bytearray(golden64)
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(image) - 1))
        image[index] ^= data.draw(st.integers(1, 255))
    if data.draw(st.booleans()):
        del image[data.draw(st.integers(0, len(image))):]
    try:
        registry.load(MemorySource(bytes(image)))
    except FormatError:
        pass


def test_registry_finds_the_format(golden64, tmp_path):
    path = tmp_path / "golden.img"
    path.write_bytes(golden64)
    with Source.open(path) as source:
        assert registry.detect(source) == "ckpt"
        assert len(list(registry.records(source))) == len(record_list(golden64))


# --------------------------------------------------------------------------- process state
# tests/c/ckpt_state_golden.c: creds, fs_struct, signals (v21 records) and crfs extensions.

@pytest.fixture(params=sorted(ARCH_BITS.values()), ids=lambda bits: f"m{bits}")
def state_golden(request, run_golden):
    path, expected = run_golden("ckpt_state_golden", request.param)
    return path.read_bytes(), expected


def test_state_records_build_back_to_their_bytes(state_golden):
    data, _ = state_golden
    seen = set()
    for info in record_list(data):
        raw = data[info.offset:info.offset + info.length]
        struct_ = (fmt.FIXED.get(info.name) or fmt.COUNTED.get(info.name, (None,))[0]
                   or fmt.ckpt_hdr_raw)
        assert struct_.build(struct_.parse(raw)) == raw, info
        seen.add(info.name)
    assert STATE_RECORDS <= seen


def test_groupinfo_ids_start_at_12_and_end_with_4_zero_bytes(state_golden):
    data, _ = state_golden
    info = first_record(data, "CKPT_HDR_GROUPINFO")
    raw = data[info.offset:info.offset + info.length]
    assert info.length == 16 + 4 * 3
    assert struct.unpack_from("<I3I", raw, 8) == (3, 100, 107, 114) and raw[-4:] == bytes(4)


def creds_dict(creds):
    names = ("uid", "euid", "suid", "fsuid", "gid", "egid", "sgid", "fsgid", "groups",
             "cap_inh", "cap_prm", "cap_eff", "cap_bnd", "securebits")
    return {name: getattr(creds, name) for name in names}


def rlimit_value(value):
    return RLIM_INFINITY if value == "unlimited" else value


def test_state_golden_values(state_golden):
    data, expected = state_golden
    image = load_bytes(data)
    assert image.arch == expected["arch"]
    for task, want in zip(image.tasks, expected["tasks"], strict=True):
        assert (task.pid, task.tgid, task.comm) == (want["pid"], want["tgid"], want["comm"])
        assert creds_dict(task.creds) == want["creds"]
        ecreds = task.native.ecreds
        assert (creds_dict(ecreds) if ecreds else None) == want["ecreds"]
        assert (task.fs.cwd, task.fs.root, task.fs.umask) == (want["cwd"], want["root"],
                                                              want["umask"])
        signals = task.signals
        assert [[a.handler, a.flags, a.restorer, a.mask] for a in signals.handlers.actions] \
            == want["actions"]
        group = signals.group
        assert group.rlimits == [tuple(rlimit_value(v) for v in pair)
                                 for pair in want["rlimits"]]
        assert list(vars(group.itimers).values()) == want["itimers"]
        assert [group.native.tty_objref, group.native.tty_pgrp,
                group.native.tty_old_pgrp] == want["tty"]
        assert group.shared_pending == Pending(want["shared_mask"], [
            SigInfo(**info) for info in want["shared"]])
        raws = [bytes.fromhex(r) for r in want["pending_raw"] or ()] or [None] * 3
        assert signals.pending == Pending(want["pending_mask"], [
            SigInfo(**info, raw=raw) for info, raw in zip(want["pending"], raws)])
        assert signals.blocked == want["blocked"]
        assert signals.altstack == (AltStack(*want["altstack"]) if want["altstack"] else None)
        if want["oom_score_adj"] is not None:
            assert group.oom_score_adj == want["oom_score_adj"]
        assert task.rseq == (Rseq(*want["rseq"]) if want["rseq"] else None)
        assert task.seccomp == want["seccomp"]
        assert ("Seccomp:\t1\n" in render.status(task)) == (want["seccomp"] == 1)
        assert task.misc == (TaskMisc(*want["misc"]) if want["misc"] else None)
        if want["posix_timers"]:
            assert group.posix_timers == [PosixTimer(**t) for t in want["posix_timers"]]
        assert [task.native.fs_objref, task.native.sighand_objref,
                task.native.signal_objref] == want["objrefs"]
    main, thread, child = image.tasks
    assert main.signals.handlers is thread.signals.handlers is not child.signals.handlers
    assert main.signals.group is thread.signals.group is not child.signals.group
    assert main.fs is thread.fs is not child.fs


def without(data, name):
    """`data` without its records of type `name`."""
    return b"".join(data[i.offset:i.offset + i.length] for i in record_list(data)
                    if i.name != name)


def test_state_is_written_in_the_kernel_order_and_numbering(state_golden):
    """The writer's image is the C one but for RESTART_BLOCK, which crfs does not write."""
    data, _ = state_golden
    written = dump_bytes(load_bytes(data))
    assert written == without(data, "CKPT_HDR_RESTART_BLOCK")
    assert dump_bytes(load_bytes(written)) == written


def test_extensions_set_the_crfs_uflag(state_golden):
    data, _ = state_golden
    image = load_bytes(data)
    assert image.header["uflags"] & fmt.CRFS_UFLAG_EXT
    for task in image.tasks:
        task.fs.umask = None
        task.signals.altstack = None
        task.signals.group.oom_score_adj = 0
        task.rseq = None
        task.seccomp = 0
        task.misc = None
        task.signals.group.posix_timers = []
        for info in task.signals.pending.queue:
            info.raw = None
    written = dump_bytes(image)
    names = {i.name for i in record_list(written)}
    assert not names & {"CRFS_HDR_SIGALTSTACK", "CRFS_HDR_FS_EXT", "CRFS_HDR_OOM_SCORE_ADJ",
                        "CRFS_HDR_RSEQ", "CRFS_HDR_SIGINFO_RAW", "CRFS_HDR_SECCOMP",
                        "CRFS_HDR_POSIX_TIMER", "CRFS_HDR_TASK_MISC"}
    assert load_bytes(written).header["uflags"] & fmt.CRFS_UFLAG_EXT == 0


def test_rlim_infinity_is_the_word_size_of_the_image(state_golden):
    data, expected = state_golden
    image = load_bytes(data)
    signal = first_record(data, "CKPT_HDR_SIGNAL")
    raw = struct.unpack_from("<Q", data, signal.offset + 8)[0]     # rlim[0].rlim_cur
    assert raw == (0xFFFFFFFF if expected["arch"] == "i386" else RLIM_INFINITY)
    assert image.tasks[0].signals.group.rlimits[0][0] == RLIM_INFINITY
    other = "x86_64" if expected["arch"] == "i386" else "i386"
    moved = dump_bytes(image, arch=other)
    signal = first_record(moved, "CKPT_HDR_SIGNAL")
    assert struct.unpack_from("<Q", moved, signal.offset + 8)[0] == (
        0xFFFFFFFF if other == "i386" else RLIM_INFINITY)
    assert load_bytes(moved).tasks[0].signals.group.rlimits \
        == image.tasks[0].signals.group.rlimits


@pytest.mark.parametrize("name, field_offset, fmt_, value, message", [
    ("CKPT_HDR_SIGPENDING", 8, "<I", 1 << 28, "len 120 for nr_pending 268435456"),
    ("CKPT_HDR_SIGPENDING", 24, "<I", 65, "signo 65"),
    ("CKPT_HDR_GROUPINFO", 8, "<I", 2, "len 28 for ngroups 2"),
    ("CKPT_HDR_TASK_CREDS", 8, "<i", 6, "objref 6 is not a CKPT_OBJ_CRED"),
    ("CKPT_HDR_CRED", 40, "<i", 2, "objref 2 is not a CKPT_OBJ_USER"),
    ("CKPT_HDR_CRED", 44, "<i", 3, "objref 3 is not a CKPT_OBJ_GROUPINFO"),
    ("CKPT_HDR_USER", 12, "<i", 1, "objref 1 is not a CKPT_OBJ_USER_NS"),
    ("CKPT_HDR_TASK_OBJS", 16, "<i", 6, "objref 6 is not a CKPT_OBJ_FS"),
    ("CKPT_HDR_TASK_OBJS", 20, "<i", 5, "objref 5 is not a CKPT_OBJ_SIGHAND"),
    ("CKPT_HDR_TASK_OBJS", 24, "<i", -3, "signal_objref -3"),
    ("CKPT_HDR_TASK_OBJS", 24, "<i", 6, "objref 6 is not a CKPT_OBJ_SIGNAL"),
])
def test_bad_state_fields_give_clean_errors(state_golden, name, field_offset, fmt_, value,
                                            message):
    data, _ = state_golden
    info = first_record(data, name)
    with pytest.raises(FormatError, match=message):
        load_bytes(patched(data, info.offset + field_offset, fmt_, value))


def test_state_truncations_are_format_errors(state_golden):
    data, _ = state_golden
    for info in record_list(data):
        for cut in {info.offset + 4, info.offset + info.length - 1}:
            with pytest.raises(FormatError):
                load_bytes(data[:cut])


def test_a_missing_signal_record_is_an_error(state_golden):
    data, _ = state_golden
    with pytest.raises(FormatError, match="expected CKPT_HDR_SIGPENDING|unexpected here"):
        load_bytes(without(data, "CKPT_HDR_SIGNAL"))


def test_task_misc_golden_bytes_short_record_and_older_images(state_golden):
    """CRFS_HDR_TASK_MISC: its bytes as C wrote them, a short one refused with its name,
    and an image without it (an older writer's) loads with nothing of it."""
    data, _ = state_golden
    info = first_record(data, "CRFS_HDR_TASK_MISC")
    raw = data[info.offset:info.offset + info.length]
    assert raw == struct.pack("<IIIIIIi4x", 8050, 32, 0x440000, 3, 3, 0, 7)
    assert info.note == "personality 0x00440000 flags 0x3 policy 3 rt_priority 0 nice 7"
    short = patched(data, info.offset + 4, "<I", 24)
    with pytest.raises(FormatError, match="CRFS_HDR_TASK_MISC"):
        load_bytes(short[:info.offset + 24] + short[info.offset + 32:])
    older = load_bytes(without(data, "CRFS_HDR_TASK_MISC"))
    assert [t.misc for t in older.tasks] == [None] * 3


# --------------------------------------------------------------------------- open files
# tests/c/ckpt_files_golden.c: FILE_TABLE, FILE_DESC, FILE subtypes, PIPE_BUF, CRFS_OPAQUE.

@pytest.fixture(params=sorted(ARCH_BITS.values()), ids=lambda bits: f"m{bits}")
def files_golden(request, run_golden):
    path, expected = run_golden("ckpt_files_golden", request.param)
    return path.read_bytes(), expected


def test_file_record_sizes():
    assert (fmt.SIZE["CKPT_HDR_FILE_TABLE"], fmt.SIZE["CKPT_HDR_FILE_DESC"]) == (16, 24)
    assert {name: s.sizeof() for name, s in fmt.FILE_SUBTYPES.items()} == {
        "CKPT_FILE_GENERIC": 48, "CKPT_FILE_PIPE": 56, "CKPT_FILE_FIFO": 56,
        "CKPT_FILE_EVENTFD": 64, "CRFS_FILE_OPAQUE": 56, "CRFS_FILE_DELETED": 64,
        "CRFS_FILE_TIMERFD": 80, "CRFS_FILE_SIGNALFD": 64, "CKPT_FILE_EPOLL": 48,
        "CRFS_FILE_UNIX": 216}
    assert (fmt.SIZE["CKPT_HDR_EPOLL_ITEMS"], fmt.ckpt_eventpoll_item.sizeof()) == (16, 24)
    assert fmt.CKPT_FILE["CRFS_FILE_OPAQUE"] >= 100 and fmt.CKPT_HDR["CKPT_HDR_PIPE_BUF"] == 305


def test_file_records_build_back_to_their_bytes(files_golden):
    data, _ = files_golden
    seen = set()
    for info in record_list(data):
        raw = data[info.offset:info.offset + info.length]
        struct_ = fmt.FIXED.get(info.name) or fmt.ckpt_hdr_raw
        if info.name == "CKPT_HDR_FILE":
            struct_ = fmt.FILE_SUBTYPES[info.note]
        assert struct_.build(struct_.parse(raw)) == raw, info
        seen.add((info.name, info.note if info.name == "CKPT_HDR_FILE" else ""))
    assert {name for name, _ in seen} >= FILE_RECORDS
    assert {note for _, note in seen} >= set(fmt.FILE_SUBTYPES)


def test_files_golden_values(files_golden):
    data, expected = files_golden
    image = load_bytes(data)
    assert image.arch == expected["arch"]
    for task, want in zip(image.tasks, expected["tasks"], strict=True):
        assert (task.pid, task.tgid, task.comm) == (want["pid"], want["tgid"], want["comm"])
        assert task.native.files_objref == want["files_objref"]
        got = [(d.fd, d.cloexec) for d in task.files.fds]
        assert got == [(d["fd"], d["cloexec"]) for d in want["fds"]]
        for fd, want_fd in zip(task.files.fds, want["fds"]):
            f, w = fd.file, want_fd["file"]
            assert (f.kind, f.flags, f.mode, f.pos, f.count, f.pipe) == (
                w["kind"], w["flags"], w["mode"], w["pos"], w["count"], w["pipe"])
            assert (f.pipe_flags, f.pipe_size) == (w["pipe_flags"], w["pipe_size"])
            assert f.link() == (f"pipe:[{w['pipe']}]" if w["kind"] == "pipe" else w["path"])
            assert f.native.f_version == w["f_version"]
            owner = f.native.owner_pid, f.native.owner_type, f.native.signum
            assert owner == (tuple(w["owner"]) if w["owner"] else (None, None, None))
            if w["kind"] != "pipe":     # pipes: the first end has the bytes (below)
                assert (f.data.read().decode() if f.data else None) == w["data"]
            timer = f.timer and [f.timer.clockid, f.timer.value_ns, f.timer.interval_ns,
                                 f.timer.ticks, f.timer.flags]
            assert (timer, f.sigmask, f.native.sfd_flags) == (w["timer"], w["sigmask"],
                                                              w["sfd_flags"])
            watches = f.watches and [[x.fd, x.file, x.events, x.data] for x in f.watches]
            assert watches == (w["watches"] and [
                [fd_, _by_objref(image, ref), events, data]
                for fd_, ref, events, data in w["watches"]])
    main, thread, child = image.tasks
    assert main.files is thread.files is not child.files
    log, pipe_w = main.files.get(1).file, main.files.get(4).file
    assert main.files.get(2).file is log and child.files.get(0).file is log
    assert child.files.get(1).file is pipe_w
    assert main.files.get(3).file.data.read() == expected["pipe_data"].encode()
    assert pipe_w.data is None and main.files.get(5).file.data.read() == b""
    assert main.files.get(7).file.native.eventfd_flags == 1
    assert child.files.get(6).file.native.st_mode == 0o100600
    memfd = child.files.get(8).file
    assert (memfd.kind, memfd.data.read(), memfd.native.st_mode) == (
        "deleted", b"kept bytes", 0o100777)
    assert (memfd.native.st_uid, memfd.native.st_gid) == (1000, 100)
    assert (memfd.native.atime_ns, memfd.native.mtime_ns) == (1276732800123456789,
                                                              -1000000001)
    assert child.files.get(6).file.native.st_uid is None     # no DELETED_STAT


def _by_objref(image, objref):
    """The OpenFile written as FILE object `objref` (numbered as the golden writer does)."""
    files = []
    for task in image.tasks:
        for d in task.files.fds:
            if all(d.file is not f for f in files):
                files.append(d.file)
    written = dump_bytes(image)
    refs = [int(i.note.split()[-1]) for i in record_list(written)
            if i.name == "CKPT_HDR_OBJREF" and i.note.startswith("CKPT_OBJ_FILE ")]
    return dict(zip(refs, files))[objref]


def test_files_are_written_in_the_kernel_order_and_numbering(files_golden):
    data, _ = files_golden
    written = dump_bytes(load_bytes(data))
    assert written == without(data, "CKPT_HDR_RESTART_BLOCK")
    assert load_bytes(written).header["uflags"] & fmt.CRFS_UFLAG_EXT


def test_file_table_comes_before_the_mm(files_golden, golden64):
    image = load_bytes(data_of(files_golden))
    mm_image = load_bytes(golden64)
    image.tasks[0].mm = mm_image.tasks[0].mm
    image.arch = mm_image.arch
    names = [i.name for i in record_list(dump_bytes(image))]
    assert names.index("CKPT_HDR_FILE_TABLE") < names.index("CKPT_HDR_MM") \
        < names.index("CKPT_HDR_TASK_OBJS")


def data_of(golden):
    return golden[0]


def test_opaque_files_alone_set_the_crfs_uflag(files_golden):
    image = load_bytes(data_of(files_golden))
    for task in image.tasks:
        task.files.fds = [d for d in task.files.fds
                          if d.file.kind not in ("socket", "deleted")]
    for task in image.tasks:
        task.files.fds = [d for d in task.files.fds
                          if d.file.kind not in ("timerfd", "signalfd", "epoll")]
    assert {d.file.kind for t in image.tasks for d in t.files.fds} == {"file", "pipe", "fifo",
                                                                       "eventfd"}
    owned = [d.file for t in image.tasks for d in t.files.fds if d.file.native.owner_pid]
    assert owned and dump_bytes(image).count(b"\x49\x1f\x00\x00\x18\x00\x00\x00") == 1
    assert load_bytes(dump_bytes(image)).header["uflags"] & fmt.CRFS_UFLAG_EXT  # FILE_OWNER
    for file in owned:
        file.native.owner_pid = None
    written = dump_bytes(image)
    assert load_bytes(written).header["uflags"] & fmt.CRFS_UFLAG_EXT == 0
    assert "CRFS_FILE_OPAQUE" not in {i.note for i in record_list(written)}


@pytest.mark.parametrize("name, note, field_offset, fmt_, value, message", [
    ("CKPT_HDR_FILE_TABLE", None, 8, "<i", 1 << 30, "fdt_nfds 1073741824 exceeds the file"),
    ("CKPT_HDR_FILE_TABLE", None, 8, "<i", -1, "fdt_nfds -1 exceeds the file"),
    ("CKPT_HDR_FILE_DESC", "fd 1 objref 3", 8, "<i", 5, "objref 5 is not a CKPT_OBJ_FILE"),
    ("CKPT_HDR_FILE_DESC", "fd 1 objref 3", 8, "<i", 1, "objref 1 is not a CKPT_OBJ_FILE"),
    ("CKPT_HDR_FILE_DESC", "fd 2 objref 3", 12, "<i", 1, "fd 1 is negative or repeated"),
    ("CKPT_HDR_FILE_DESC", "fd 2 objref 3", 12, "<i", -2, "fd -2 is negative or repeated"),
    ("CKPT_HDR_FILE_DESC", "fd 2 objref 3", 16, "<I", 2, "fd_close_on_exec 2"),
    ("CKPT_HDR_FILE", "CKPT_FILE_PIPE", 48, "<i", 0, "pipe_objref 0"),
    ("CKPT_HDR_FILE", "CKPT_FILE_PIPE", 48, "<i", 2, "objref 2 is not a CKPT_OBJ_INODE"),
    ("CKPT_HDR_FILE", "CKPT_FILE_EVENTFD", 8, "<I", 2, "len 64, expected 56"),
    ("CKPT_HDR_FILE", "CKPT_FILE_GENERIC", 8, "<I", 7, "len 48, expected 64"),
    ("CKPT_HDR_TASK_OBJS", None, 8, "<i", 2, "objref 2 is not a CKPT_OBJ_FILE_TABLE"),
    ("CKPT_HDR_PIPE_BUF", "10 bytes", 4, "<I", 1 << 20, "runs past the end"),
    ("CKPT_HDR_FILE", "CRFS_FILE_DELETED", 48, "<Q", 12, "10 bytes for size 12"),
    ("CKPT_HDR_EPOLL_ITEMS", None, 8, "<i", 3, "epfile_objref 3, expected 17"),
    ("CKPT_HDR_EPOLL_ITEMS", None, 12, "<I", 1, "48 bytes for num_items 1"),
    ("CKPT_HDR_EPOLL_ITEMS", None, 12, "<I", 1 << 30, "num_items 1073741824 exceeds the file"),
    ("CKPT_HDR_BUFFER", "48 bytes", 8 + 12, "<i", 5, "objref 5 is not a CKPT_OBJ_FILE"),
    ("CKPT_HDR_BUFFER", "48 bytes", 8 + 12, "<i", 17, "epoll 17 watches itself"),
    ("CKPT_HDR_FILE", "CKPT_FILE_EPOLL", 4, "<I", 56, "len 56, expected 48"),
    ("CKPT_HDR_FILE", "CRFS_FILE_DELETED", 48, "<Q", 1 << 40, "for size 1099511627776"),
])
def test_bad_file_fields_give_clean_errors(files_golden, name, note, field_offset, fmt_, value,
                                           message):
    data = data_of(files_golden)
    info = first_record(data, name, note)
    with pytest.raises(FormatError, match=message):
        load_bytes(patched(data, info.offset + field_offset, fmt_, value))


def test_second_end_of_a_pipe_needs_no_pipe_buf_and_first_end_needs_one(files_golden):
    data = data_of(files_golden)
    with pytest.raises(FormatError, match="expected CKPT_HDR_PIPE_BUF"):
        load_bytes(without(data, "CKPT_HDR_PIPE_BUF"))
    pipe_buf = first_record(data, "CKPT_HDR_PIPE_BUF", "10 bytes")
    second = first_record(data, "CKPT_HDR_FILE_DESC", "fd 4 objref 6")
    # the buffer after the second end instead of the first: the first lacks it
    moved = (data[:pipe_buf.offset] + data[pipe_buf.offset + pipe_buf.length:second.offset]
             + data[pipe_buf.offset:pipe_buf.offset + pipe_buf.length] + data[second.offset:])
    with pytest.raises(FormatError, match="expected CKPT_HDR_PIPE_BUF"):
        load_bytes(moved)


def test_nested_objects_are_bounded(files_golden):
    data = data_of(files_golden)
    table = first_record(data, "CKPT_HDR_OBJREF", "CKPT_OBJ_FILE_TABLE ref 1")
    deep = b"".join(struct.pack("<IIIi", 6, 16, 3, 100 + i) for i in range(20))
    with pytest.raises(FormatError, match="nested too deep"):
        load_bytes(data[:table.offset] + deep + data[table.offset:])


def test_file_truncations_are_format_errors(files_golden):
    data = data_of(files_golden)
    for info in record_list(data):
        for cut in {info.offset + 4, info.offset + info.length - 1}:
            with pytest.raises(FormatError):
                load_bytes(data[:cut])


@pytest.mark.parametrize("name, field_offset, fmt_, value, message", [
    ("CRFS_HDR_SIGINFO_RAW", 16, "<i", 9, r"signals \[9, 11, 35\] are not the SIGPENDING's"),
    ("CRFS_HDR_SIGINFO_RAW", 8, "<I", 2, "nr_pending"),
])
def test_lying_raw_siginfo_is_refused(state_golden, name, field_offset, fmt_, value, message):
    """CRFS_SIGINFO_RAW must repeat the signals of the SIGPENDING before it, and its
    count must match its length."""
    data, _ = state_golden
    info = first_record(data, name)
    with pytest.raises(FormatError, match=message):
        load_bytes(patched(data, info.offset + field_offset, fmt_, value))
