"""Compressed container checkpoint archives (issue #15): the real criu 3.17 dumps of
tests/data/criu packed as podman's export lays them out (config.dump, spec.dump, then
checkpoint/), compressed with gzip (GNU tar -z) and zstd, put in a store and read through
a real mount with shell tools; corrupt and truncated archives give an error naming the
file and the offset, and leave the other archives of the store alone."""

import gzip
import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import pytest
import zstandard

from crfs.errors import FormatError
from crfs.formats import criu_archive
from crfs.formats.source import MemorySource
from crfs.fs.archive_cache import ArchiveCache
from mountfs import Mount, errors_in_log
from test_criu import DATA, load_error, markers

CONFIG = '{"id": "crfs-test", "rootfsImageName": "debian:12"}\n'
SPEC = '{"ociVersion": "1.0.2", "process": {"args": ["/criu_prog"]}}\n'


def export_tar(path, name="fork"):
    """An uncompressed tar as podman's checkpoint export: config.dump, spec.dump and
    rootfs-diff.tar at the top, the dump under checkpoint/ (written by GNU tar)."""
    work = Path(tempfile.mkdtemp(prefix="crfs-export-"))
    (work / "checkpoint").mkdir()
    (work / "config.dump").write_text(CONFIG)
    (work / "spec.dump").write_text(SPEC)
    (work / "rootfs-diff.tar").write_bytes(bytes(10240))
    for p in sorted((DATA / name).iterdir()):
        (work / "checkpoint" / p.name).write_bytes(p.read_bytes())
    subprocess.run(["tar", "-cf", str(path), "-C", str(work), "config.dump", "spec.dump",
                    "rootfs-diff.tar", "checkpoint"], check=True)
    shutil.rmtree(work)
    return path


def gzip_tar(path, name="fork"):
    """The export tar compressed by gzip, as `podman ... --export` writes."""
    export_tar(path.parent / f".{path.name}.tar", name)
    subprocess.run(["gzip", "-f", "-S", ".gz", str(path.parent / f".{path.name}.tar")],
                   check=True)
    os.replace(path.parent / f".{path.name}.tar.gz", path)
    return path


def zstd_tar(path, name="fork", frames=1):
    """zstd of the export tar, in `frames` frames one after another (as a writer that
    flushes frames, e.g. a seekable-format one, makes)."""
    tar = export_tar(path.parent / f".{path.name}.tar", name)
    data = tar.read_bytes()
    tar.unlink()
    step = -(-len(data) // frames)
    cctx = zstandard.ZstdCompressor(write_checksum=True)
    path.write_bytes(b"".join(cctx.compress(data[i:i + step])
                              for i in range(0, len(data), step)))
    return path


MAKERS = {"tar.gz": gzip_tar, "tar.zst": zstd_tar}


def check_markers(mount, name):
    procs, _ = markers("fork")
    for pid, m in procs.items():
        with open(mount / name / "tasks" / str(pid) / "mem", "rb") as mem:
            mem.seek(m["heap"])
            assert struct.unpack("<Q", mem.read(8))[0] == 0xC0DE000000000000 | m["seed"] << 32


@pytest.fixture(scope="module")
def archive_mount(tmp_path_factory):
    root = tmp_path_factory.mktemp("archives")
    mount = Mount(root)
    gzip_tar(mount.store / "fork.tar.gz")
    zstd_tar(mount.store / "fork.tar.zst")
    zstd_tar(mount.store / "frames.tar.zst", frames=5)
    export_tar(mount.store / "fork.tar")
    good = (mount.store / "fork.tar.gz").read_bytes()
    (mount.store / "truncated.tar.gz").write_bytes(good[:len(good) // 2])
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF
    (mount.store / "corrupt.tar.gz").write_bytes(bytes(bad))
    zst = (mount.store / "fork.tar.zst").read_bytes()
    (mount.store / "truncated.tar.zst").write_bytes(zst[:len(zst) - 100])
    mount.mount()
    yield mount
    mount.unmount()
    assert not errors_in_log(mount.log_text()), mount.log_text()


@pytest.mark.parametrize("name", ["fork.tar.gz", "fork.tar.zst", "frames.tar.zst"])
def test_compressed_archive_reads_as_the_dump(archive_mount, name):
    check_markers(archive_mount, name)
    assert (archive_mount / name / "format").read_text() == "criu v1.1 x86_64\n"
    same = archive_mount.sh(f"diff -r --no-dereference --exclude=container --exclude=mem --exclude=verify fork.tar {name} && echo same")
    assert same.stdout == "same\n"
    assert (archive_mount / name / "verify").read_text().endswith("result: sound\n")


@pytest.mark.parametrize("name", ["fork.tar", "fork.tar.gz", "fork.tar.zst"])
def test_container_files_beside_the_tree(archive_mount, name):
    """config.dump and spec.dump as stored; not the dump's own files, not rootfs-diff.tar."""
    listing = archive_mount.sh(f"ls {name}/container").stdout.split()
    assert listing == ["config.dump", "spec.dump"]
    assert archive_mount.sh(f"cat {name}/container/config.dump").stdout == CONFIG
    assert archive_mount.sh(f"grep -o ociVersion {name}/container/spec.dump").stdout \
        == "ociVersion\n"


@pytest.mark.parametrize("name,what", [
    ("truncated.tar.gz", "truncated: the file ends inside a gzip member"),
    ("corrupt.tar.gz", "corrupt gzip data"),
    ("truncated.tar.zst", "truncated: the file ends inside a zstd block"),
])
def test_bad_archives_say_where_and_leave_the_others(archive_mount, name, what):
    error = (archive_mount / name / "error").read_text()
    path = archive_mount.store / name
    assert error.startswith(f"{path}: offset 0x") and what in error, error
    offset = int(error.split("offset ")[1].split(":")[0], 16)
    assert 0 <= offset <= path.stat().st_size
    assert not (archive_mount / name / "tasks").exists()
    verify = archive_mount.sh(f"cat {name}/verify").stdout
    assert what in verify and verify.endswith("result: unsound\n"), verify
    check_markers(archive_mount, "fork.tar.gz")           # the others still serve


def test_extractions_are_kept_and_reused(tmp_path):
    """A remount uses the extraction made by the first mount (keyed by the archive's
    identity); a rewritten archive gets a new one."""
    mount = Mount(tmp_path)
    gzip_tar(mount.store / "fork.tar.gz")
    archives = tmp_path / "index" / "archives"
    for _ in range(2):
        mount.mount()
        try:
            check_markers(mount, "fork.tar.gz")
        finally:
            mount.unmount()
        assert len(os.listdir(archives)) == 1
        assert os.stat(archives).st_mode & 0o777 == 0o700
    first = set(os.listdir(archives))
    gzip_tar(mount.store / "fork.tar.gz")                 # rewritten: a new identity
    mount.mount()
    try:
        check_markers(mount, "fork.tar.gz")
    finally:
        mount.unmount()
    assert set(os.listdir(archives)) != first
    assert not errors_in_log(mount.log_text()), mount.log_text()


def test_without_an_index_dir(tmp_path):
    """index_dir=off: each archive is extracted to an unnamed temporary file, once per
    mount (verify and records read the indexed copy), and nothing is left behind."""
    mount = Mount(tmp_path)
    zstd_tar(mount.store / "fork.tar.zst")
    mount.mount("-o", "index_dir=off")
    try:
        check_markers(mount, "fork.tar.zst")
        assert (mount / "fork.tar.zst" / "verify").read_text().endswith("result: sound\n")
        assert "pagemap-" in (mount / "fork.tar.zst" / "records").read_text()
    finally:
        mount.unmount()
    assert not (tmp_path / "index").exists()
    assert not errors_in_log(mount.log_text()), mount.log_text()


def test_cache_is_bounded(tmp_path):
    """Past max_bytes the least recently used extraction goes; an archive alone larger
    than the bound is refused while decompressing, naming the compressed offset."""
    one = gzip_tar(tmp_path / "one.tar.gz")
    two = zstd_tar(tmp_path / "two.tar.zst")
    size = len(gzip.decompress(one.read_bytes()))
    cache = ArchiveCache(str(tmp_path / "cache"), max_bytes=size + size // 2)
    from crfs.formats.source import Source
    for path, kind in ((one, "gzip"), (two, "zstd")):
        with Source.open(str(path)) as src:
            cache.extracted(src, kind).close()
    assert len(os.listdir(tmp_path / "cache")) == 1
    small = ArchiveCache(str(tmp_path / "small"), max_bytes=size // 2)
    with Source.open(str(one)) as src, pytest.raises(FormatError) as info:
        small.extracted(src, "gzip")
    assert info.value.record == "gzip stream" and "more than" in info.value.message
    assert os.listdir(tmp_path / "small") == []              # the partial file is gone
    cache.close()
    small.close()


def test_errors_outside_a_mount(tmp_path):
    """The CLI path (no cache): a temporary extraction, the same errors; a compressed tar
    without a dump and a compressed stream that is no tar are named as such."""
    plain = tmp_path / "plain.tar.gz"
    (tmp_path / "x").write_text("x")
    subprocess.run(["tar", "-czf", str(plain), "-C", str(tmp_path), "x"], check=True)
    err = load_error(plain)
    assert err.path == plain and "without a CRIU inventory.img" in err.message
    notar = tmp_path / "notar.gz"
    notar.write_bytes(gzip.compress(b"hello" * 1000))
    assert "not a tar archive" in load_error(notar).message
    data = gzip_tar(tmp_path / "a.tar.gz").read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(data[:1000])
    err = load_error(cut)
    assert (err.path, err.record, err.offset) == (cut, "gzip stream", 1000)


def test_gzip_members_and_zero_padding():
    """Several gzip members are one stream (as gzip's own concatenation); zeros after
    the last member are padding."""
    data = os.urandom(100000)
    parts = gzip.compress(data[:60000]) + gzip.compress(data[60000:]) + bytes(512)
    out = []
    n = criu_archive.decompress(MemorySource(parts), "gzip", out.append)
    assert n == len(data) and b"".join(out) == data


@pytest.mark.parametrize("suffix", ["tar.gz", "tar.zst"])
def test_mutated_archives_raise_format_error_only(tmp_path, suffix):
    """Flipped, cut and inserted bytes anywhere in a compressed archive: an Image (a flip
    the format does not check, e.g. in gzip's header name) or a FormatError naming the
    archive, nothing else."""
    import random
    from crfs.model import registry
    good = MAKERS[suffix](tmp_path / f"good.{suffix}").read_bytes()
    rng = random.Random(15)
    bad = tmp_path / f"bad.{suffix}"
    for i in range(60):
        data = bytearray(good)
        at = rng.randrange(len(data))
        if i % 3 == 0:
            data[at] ^= 1 << rng.randrange(8)
        elif i % 3 == 1:
            del data[at:]
        else:
            data[at:at] = os.urandom(rng.randrange(1, 16))
        bad.write_bytes(bytes(data))
        try:
            registry.open_image(str(bad)).close()
        except FormatError as exc:
            assert exc.path == str(bad) or exc.path == bad, (i, exc)


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_bombs_stop_at_the_limit_in_small_pieces(kind):
    """96 MiB of zeros compressed to a few KiB: decompressed a piece of at most 1 MiB at
    a time, and refused once past the limit, at a compressed offset inside the file."""
    zeros = bytes(96 << 20)
    data = gzip.compress(zeros, 9) if kind == "gzip" else \
        zstandard.ZstdCompressor().compress(zeros)
    biggest = [0]

    def write(piece):
        biggest[0] = max(biggest[0], len(piece))
    with pytest.raises(FormatError) as info:
        criu_archive.decompress(MemorySource(data), kind, write, limit=32 << 20)
    assert info.value.record == f"{kind} stream" and "more than 33554432" in str(info.value)
    assert 0 <= info.value.offset < len(data)
    assert 0 < biggest[0] <= criu_archive.OUT
    assert criu_archive.decompress(MemorySource(data), kind, write) == len(zeros)


def test_zstd_frame_walk_names_where_it_is_cut():
    """Cut inside a frame header, a block, the checksum: each named at its offset, before
    anything is decompressed; skippable frames are stepped over."""
    cctx = zstandard.ZstdCompressor(write_checksum=True)
    frame = cctx.compress(os.urandom(300000))
    skippable = (0x184D2A50).to_bytes(4, "little") + (5).to_bytes(4, "little") + b"hello"
    criu_archive.zstd_frames(MemorySource(skippable + frame + frame))
    # As the seekable format lays it out: frames, then the seek table in a skippable frame.
    out = []
    assert criu_archive.decompress(MemorySource(frame + frame + skippable), "zstd",
                                   out.append) == 600000
    for cut, what in ((3, "frame header"), (20, "block of"), (len(frame) - 2, "frame")):
        with pytest.raises(FormatError) as info:
            criu_archive.zstd_frames(MemorySource(frame[:cut]))
        assert f"truncated: the file ends inside a zstd {what}" in info.value.message
        assert 0 <= info.value.offset <= cut
