"""CRFS_HDR_FILE_ID: the identity of a mapped file (dev, inode, size, mtime) in ckpt images.

Golden bytes from C (tests/c/ckpt_fileid_golden.c, -m32 and -m64), the writer and reader
round trip, hostile lengths and placements, what the mount shows (maps, VMA info, verify)
and what `crfs checkpoint` captures from a live process. The module's RESTART check runs
in the guest (tests/test_kmod_guest.py, step file_id).
"""

import io
import os
import subprocess
import sys

import pytest

from crfs.errors import FormatError
from crfs.formats import ckpt as fmt
from crfs.formats.common import dev_text
from crfs.formats.source import MemorySource
from crfs.model import index_codec
from crfs.model.ckpt import dump, load
from crfs.model.image import FileId
from crfs.model.verify import verify
from crfs.render import maps_line, vma_info

GOLDEN_ID = FileId(dev=os.makedev(259, 65537), ino=(1 << 40) + 5, size=(1 << 33) + 7,
                   mtime_ns=-1234567890123)


@pytest.fixture(scope="module")
def golden64(build_c, tmp_path_factory):
    path = tmp_path_factory.mktemp("fileid") / "golden.img"
    subprocess.run([str(build_c("ckpt_golden", 64)), str(path)], check=True,
                   capture_output=True)
    return path.read_bytes()


def load_bytes(data):
    return load(MemorySource(data))


def dump_bytes(image):
    out = io.BytesIO()
    dump(image, out)
    return out.getvalue()


def records(data):
    return list(fmt.records(MemorySource(data)))


def with_ids(data):
    """The golden image written again with an identity on every file VMA (one per file:
    the VMAs of a file share its FILE object)."""
    image = load_bytes(data)
    files = [v for mm in image.mms() for v in mm.vmas if v.file is not None]
    assert files
    names = sorted({v.file for v in files})
    for vma in files:
        n = names.index(vma.file)
        vma.file_id = FileId(dev=0x801, ino=1000 + n, size=4096 * (n + 1),
                             mtime_ns=1_700_000_000_123_456_789 + n)
    return image, dump_bytes(image)


@pytest.mark.parametrize("bits", [32, 64])
def test_golden_record_from_c(run_golden, bits):
    path, expected = run_golden("ckpt_fileid_golden", bits)
    raw = path.read_bytes()
    assert expected["sizeof"] == fmt.SIZE["CRFS_HDR_FILE_ID"] == len(raw) == 40
    assert (expected["size_offset"], expected["mtime_offset"]) == (24, 32)
    rec = fmt.crfs_hdr_file_id.parse(raw)
    assert (rec.h.type, rec.h.len) == (fmt.CKPT_HDR["CRFS_HDR_FILE_ID"], 40) == \
        (expected["type"], 40)
    assert (rec.dev, rec.ino, rec.size, rec.mtime_ns) == \
        (expected["dev"], expected["ino"], expected["size"], expected["mtime_ns"])
    assert FileId(rec.dev, rec.ino, rec.size, rec.mtime_ns) == GOLDEN_ID
    assert fmt.crfs_hdr_file_id.build(rec) == raw
    assert dev_text(rec.dev) == "103:10001"


def test_the_writer_writes_the_c_bytes(golden64, run_golden):
    path, _ = run_golden("ckpt_fileid_golden", 64)
    image = load_bytes(golden64)
    vma = next(v for mm in image.mms() for v in mm.vmas if v.file is not None)
    vma.file_id = GOLDEN_ID
    written = dump_bytes(image)
    info = next(i for i in records(written) if i.name == "CRFS_HDR_FILE_ID")
    assert written[info.offset:info.offset + info.length] == path.read_bytes()


def test_round_trip_and_placement(golden64):
    image, written = with_ids(golden64)
    names = [i.name for i in records(written)]
    for i, name in enumerate(names):
        if name == "CRFS_HDR_FILE_ID":
            assert names[i - 2:i] == ["CKPT_HDR_FILE", "CKPT_HDR_FILE_NAME"]
    files = {v.file for mm in image.mms() for v in mm.vmas if v.file is not None}
    assert names.count("CRFS_HDR_FILE_ID") == len(files)
    again = load_bytes(written)
    assert again.header["uflags"] & fmt.CRFS_UFLAG_EXT
    assert [v.file_id for mm in again.mms() for v in mm.vmas] == \
        [v.file_id for mm in image.mms() for v in mm.vmas]
    assert dump_bytes(again) == written
    for info in records(written):
        if info.name == "CRFS_HDR_FILE_ID":
            raw = written[info.offset:info.offset + info.length]
            assert fmt.crfs_hdr_file_id.build(fmt.crfs_hdr_file_id.parse(raw)) == raw


def test_images_without_the_record_are_unchanged(golden64):
    image = load_bytes(golden64)
    assert all(v.file_id is None for mm in image.mms() for v in mm.vmas)
    written = dump_bytes(image)
    assert "CRFS_HDR_FILE_ID" not in {i.name for i in records(written)}
    assert not load_bytes(written).header["uflags"] & fmt.CRFS_UFLAG_EXT


def first_id(data):
    return next(i for i in records(data) if i.name == "CRFS_HDR_FILE_ID")


def test_truncated_record_is_a_format_error(golden64):
    _, written = with_ids(golden64)
    info = first_id(written)
    for cut in (info.offset + 4, info.offset + 20, info.offset + info.length - 1):
        with pytest.raises(FormatError):
            load_bytes(written[:cut])


@pytest.mark.parametrize("length", [8, 32, 48, 0x7FFFFFFF])
def test_lying_length_is_a_format_error(golden64, length):
    _, written = with_ids(golden64)
    info = first_id(written)
    data = bytearray(written)
    data[info.offset + 4:info.offset + 8] = length.to_bytes(4, "little")
    with pytest.raises(FormatError) as exc:
        load_bytes(bytes(data))
    assert exc.value.offset == info.offset


def test_misplaced_record_is_a_format_error(golden64):
    """A FILE_ID anywhere but after a FILE's FILE_NAME: refused, not skipped."""
    _, written = with_ids(golden64)
    info = first_id(written)
    raw = written[info.offset:info.offset + info.length]
    without = written[:info.offset] + written[info.offset + info.length:]
    vma = next(i for i in records(without) if i.name == "CKPT_HDR_VMA")
    moved = without[:vma.offset + vma.length] + raw + without[vma.offset + vma.length:]
    with pytest.raises(FormatError) as exc:
        load_bytes(moved)
    assert exc.value.record == "CRFS_HDR_FILE_ID"
    twice = written[:info.offset + info.length] + raw + written[info.offset + info.length:]
    with pytest.raises(FormatError):
        load_bytes(twice)


def test_maps_info_and_verify_show_it(golden64):
    image, written = with_ids(golden64)
    again = load_bytes(written)
    mm = next(iter(again.mms()))
    vma = next(v for v in mm.vmas if v.file_id is not None)
    line = maps_line(vma, mm, again.arch)
    assert f" 08:01 {vma.file_id.ino} " in line and line.rstrip().endswith(vma.file)
    info = vma_info(vma)
    assert f"file inode: {vma.file_id.ino}\n" in info
    assert f"file mtime_ns: {vma.file_id.mtime_ns}\n" in info
    report = verify(MemorySource(written))
    assert report.sound
    assert "ok    file identity: recorded for" in report.text()
    assert "file identity" not in verify(MemorySource(golden64)).text()


def test_index_cache_keeps_it(golden64):
    _, written = with_ids(golden64)
    source = MemorySource(written)
    image = load(source)
    _, decoded = index_codec.decode(index_codec.encode(image, {"k": 1}), source)
    assert [v.file_id for mm in decoded.mms() for v in mm.vmas] == \
        [v.file_id for mm in image.mms() for v in mm.vmas]


def test_checkpoint_records_the_mapped_files(tmp_path):
    """`crfs checkpoint` of a real process: every mapped file's identity, as stat says."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                            stdin=subprocess.PIPE)
    try:
        out = tmp_path / "py.img"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        subprocess.run([sys.executable, "-m", "crfs", "checkpoint", str(proc.pid), "-o",
                        str(out), "--via", "ptrace"], check=True, capture_output=True,
                       env=env, timeout=120)
    finally:
        proc.kill()
        proc.wait()
    image = load_bytes(out.read_bytes())
    assert image.header["uflags"] & fmt.CRFS_UFLAG_EXT
    files = [v for mm in image.mms() for v in mm.vmas if v.kind == "file"]
    assert files
    for vma in files:
        st = os.stat(vma.file)
        assert vma.file_id == FileId(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns), \
            vma.file
