"""Inputs the fuzzers (fuzz/) found crashing crfs, crafted small: each now gets a clean
FormatError (or, for what is sound but cannot be shown, a missing file), never a traceback."""

import io

import pytest

from crfs.errors import FormatError, Unsupported
from crfs.formats.source import MemorySource
from crfs.formats.x86 import PAGE_SIZE
from crfs.fs.image_tree import TaskDir
from crfs.model import registry
from crfs.model.core import CoreFile
from crfs.model.image import Vma
from crfs.model.synth import synthetic_image

VMA_RECORD = {"cpt": "CPT_OBJ_VMA", "ckpt": "CKPT_HDR_VMA", "cr": "CR_HDR_VMA"}


def written(image, fmt, **options):
    out = io.BytesIO()
    registry.dump(image, out, fmt, **options)
    return out.getvalue()


@pytest.mark.parametrize("fmt, arch, end", [
    ("cpt", "i386", 0x100000BFFDF000),     # mount_walk: a stack end with a flipped high bit
    ("ckpt", "i386", 0x1_0000_1000),
    ("cr", "i386", 0x79000000BFFDF000),    # fuzz_formats --format cr: cr_hdr v14's u64
], ids=["cpt-i386", "ckpt-i386", "cr-v14-i386"])
def test_vma_past_user_space_is_a_format_error(fmt, arch, end):
    # Before: loaded, and an i386 core's 32-bit p_filesz then failed to build (a
    # construct error, a traceback in the daemon's log).
    image = synthetic_image(arch, heap_pages=1)
    image.tasks[0].mm.vmas[-1].end = end
    options = {"dialect": "cr_hdr v14"} if fmt == "cr" else {}
    data = written(image, fmt, **options)
    with pytest.raises(FormatError) as info:
        registry.load(MemorySource(data))
    assert info.value.offset is not None
    assert info.value.record == VMA_RECORD[fmt]
    assert "user space" in str(info.value)


def test_i386_core_past_4_gib_is_left_out():
    # VMAs below 4 GiB whose bytes, after the core's headers, end past 4 GiB: no ELF32 core
    # holds them. Before: construct's FormatFieldError building p_offset.
    image = synthetic_image("i386", heap_pages=1)
    mm = image.tasks[0].mm
    low = Vma(0, 0xFFFFF000 - PAGE_SIZE, 0x3, 0x3, 0, "anon")
    top = Vma(0xFFFFF000 - PAGE_SIZE, 0xFFFFF000, 0x3, 0x3, 0, "anon")
    top.pages.add(top.start, mm.vmas[1].pages.lookup(mm.vmas[1].start))
    mm.vmas = [low, top]
    data = written(image, "ckpt")
    loaded = registry.load(MemorySource(data))
    task = loaded.tasks[0]
    with pytest.raises(Unsupported):
        CoreFile(loaded, task)
    names = TaskDir(("img", "tasks", "1"), loaded, task, 0).names()
    assert "core" not in names and "mem" in names
    assert task.mm.read(top.start, 8) == mm.read(top.start, 8)


def test_x86_64_vma_near_2_64_lists_and_reads(tmp_path):
    # A VMA up to 0xfffffffffffff000 (x86_64 addresses are all of u64; gcore's [vsyscall]
    # page makes mem as long): its data, mem and core sizes passed what st_size holds, and
    # listing the task's directory failed with a traceback (OverflowError in pyfuse3).
    import os

    from mountfs import Mount, errors_in_log, task_dir

    mount = Mount(tmp_path)
    image = synthetic_image("x86_64", heap_pages=1)
    stack = image.tasks[0].mm.vmas[-1]
    stack.end = 0xFFFFFFFFFFFFF000
    with open(mount.store / "big.ckpt", "wb") as out:
        registry.dump(image, out, "ckpt")
    mount.mount()
    try:
        task = task_dir(mount, "big.ckpt", image.tasks[0].pid)
        assert "mem" in os.listdir(task)
        assert (task / "mem").stat().st_size == (1 << 63) - 1
        data = task / "mm" / "vmas" / f"{stack.start:08x}-{stack.end:08x}" / "data"
        assert data.stat().st_size == (1 << 63) - 1
        with open(data, "rb") as f:
            assert len(f.read(PAGE_SIZE)) == PAGE_SIZE
    finally:
        mount.unmount()
    assert not errors_in_log(mount.log_text()), mount.log_text()


def test_time_past_st_mtime_keeps_the_store_listable(tmp_path):
    # A corrupt u64 checkpoint time (seconds) times 10^9 passed st_mtime_ns: pyfuse3 raised
    # OverflowError, and listing the whole store failed with EIO, the sound images with it.
    # Found by fuzz/mount_walk.py --images 5000 --seed 2.
    import os

    from mountfs import Mount, errors_in_log

    mount = Mount(tmp_path)
    late = synthetic_image("x86_64", heap_pages=1)
    late.time = 1 << 62
    with open(mount.store / "late.ckpt", "wb") as out:
        registry.dump(late, out, "ckpt")
    with open(mount.store / "sound.ckpt", "wb") as out:
        registry.dump(synthetic_image("x86_64", heap_pages=1), out, "ckpt")
    mount.mount()
    try:
        assert {"late.ckpt", "sound.ckpt"} <= set(os.listdir(mount.path))
        # Inside an image's tree files show the checkpoint time, or the file's mtime when
        # the stored time cannot be one (the image directory itself always shows the file's).
        file_mtime = os.stat(mount.store / "late.ckpt").st_mtime_ns
        assert (mount / "late.ckpt" / "format").stat().st_mtime_ns == file_mtime
        assert "tasks" in os.listdir(mount / "late.ckpt")
        assert (mount / "sound.ckpt" / "format").stat().st_mtime_ns == 1230000000 * 10**9
    finally:
        mount.unmount()
    assert not errors_in_log(mount.log_text()), mount.log_text()
