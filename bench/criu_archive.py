#!/usr/bin/env python3
"""Benchmark: compressed container checkpoint archives, a cached extraction against a
gzip seek-point index, both against the uncompressed tar in the same run.

    python3 bench/criu_archive.py [--mib N] [--random N] [--spacing KIB]

The archive: the real criu 3.17 dump tests/data/criu/fork, its parent given one more
anonymous private VMA of N MiB (default 256) whose pages are all dumped (each half random
bytes, half zeros: gzip/zstd make it about half its size), laid out as podman's export
(config.dump, spec.dump, checkpoint/), written as .tar, .tar.gz (gzip -6) and .tar.zst
(zstd -3). Each variant, in this process, page cache warm, best of 3:

  open      registry.open_image: decompression (if any), tar scan, CRIU index
  seq       every page of the big VMA read in order, 64 KiB at a time (cat mem)
  random    N single 4 KiB pages at random offsets of the big VMA (gdb, pages/)

  tar         the uncompressed tar, served in place (the baseline: ratio 1.00)
  gz-extract  .tar.gz extracted once into a file, then served in place (crfs's way);
              open = a cache miss; gz-cached: the same archive's next open (a hit)
  gz-index    .tar.gz through indexed_gzip (zran seek points every --spacing KiB, 1 MiB
              by default): no extra disk, each read inflates from the nearest point
  zst-extract .tar.zst extracted (zstandard), then in place

Also printed: the extraction's size on disk, and the seek-point index's memory (32 KiB
of window per point). indexed_gzip is the optional `bench` extra of pyproject.toml;
without it that row says so.
"""

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crfs.formats import criu, criu_tar  # noqa: E402
from crfs.formats.source import Source  # noqa: E402
from crfs.fs.archive_cache import ArchiveCache  # noqa: E402
from crfs.model import registry  # noqa: E402

DUMP = ROOT / "tests" / "data" / "criu" / "fork"
PAGE = 4096
BASE = 0x10000000


def field(number, value):
    return criu.varint(number << 3) + criu.varint(value)


def message(number, body):
    return criu.varint(number << 3 | 2) + criu.varint(len(body)) + body


def first_field(body, wanted):
    """Where the first field `wanted` of a protobuf message starts."""
    pos = 0
    while pos < len(body):
        start = pos
        key, pos = criu._varint(body, pos, len(body))
        if key >> 3 == wanted:
            return start
        wire = key & 7
        if wire == 0:
            _, pos = criu._varint(body, pos, len(body))
        elif wire == 2:
            length, pos = criu._varint(body, pos, len(body))
            pos += length
        else:
            pos += 8 if wire == 1 else 4
    raise ValueError(f"no field {wanted}")


def grow(dump, mib):
    """Give the root process of `dump` an anonymous VMA of `mib` MiB at BASE, all dumped."""
    d = criu.CriuDir.open(str(dump))
    pid = criu.read_entries(d, "pstree.img")[0].fields["pid"]
    mm_name, pm_name = f"mm-{pid}.img", f"pagemap-{pid}.img"
    head = criu.read_entries(d, pm_name)[0].fields
    first = criu.read_entries(d, mm_name)[0].fields["vmas"][0]["start"]
    d.close()
    pages = mib * 256
    end = BASE + pages * PAGE
    assert end < first, "the big VMA must come before the program's"
    vma = (field(1, BASE) + field(2, end) + field(3, 0) + field(4, 0) + field(5, 3)
           + field(6, 0x22) + field(7, 0x21) + field(8, 1))
    mm = (dump / mm_name).read_bytes()
    body = mm[12:]
    at = first_field(body, 14)                  # the first vma: ours goes before it
    body = body[:at] + message(14, vma) + body[at:]
    (dump / mm_name).write_bytes(mm[:8] + len(body).to_bytes(4, "little") + body)
    entry = field(1, BASE) + field(2, pages) + field(4, criu.PE_PRESENT) + field(5, pages)
    with open(dump / pm_name, "ab") as f:
        f.write(len(entry).to_bytes(4, "little") + entry)
    rng = random.Random(1)
    with open(dump / f"pages-{head['pages_id']}.img", "ab") as f:
        for _ in range(pages // 256):
            f.write(b"".join(rng.randbytes(PAGE // 2) + bytes(PAGE // 2) for _ in range(256)))
    return pid


def make_archives(work, mib):
    export = work / "export"
    shutil.copytree(DUMP, export / "checkpoint")
    pid = grow(export / "checkpoint", mib)
    (export / "config.dump").write_text('{"id": "bench"}\n')
    (export / "spec.dump").write_text('{"ociVersion": "1.0.2"}\n')
    tar = work / "ckpt.tar"
    subprocess.run(["tar", "-cf", str(tar), "-C", str(export), "config.dump", "spec.dump",
                    "checkpoint"], check=True)
    with open(work / "ckpt.tar.gz", "wb") as out:
        subprocess.run(["gzip", "-6", "-c", str(tar)], stdout=out, check=True)
    subprocess.run(["zstd", "-q", "-3", "-f", str(tar), "-o", str(work / "ckpt.tar.zst")],
                   check=True)
    shutil.rmtree(export)
    return pid


class IndexedGzipSource(Source):
    """The decompressed stream of a .gz through indexed_gzip's seek points."""

    def __init__(self, path, spacing):
        import indexed_gzip
        self.file = indexed_gzip.IndexedGzipFile(str(path), spacing=spacing)
        self.file.build_full_index()
        self.points = len(list(self.file.seek_points()))
        size = self.file.seek(0, os.SEEK_END)
        self.lock = threading.Lock()
        super().__init__(None, size, str(path), owns_fd=False)

    def pread(self, offset, length):
        with self.lock:
            self.file.seek(offset)
            return self.file.read(length)

    def readinto(self, buffer, offset):
        data = self.pread(offset, len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def close(self):
        if getattr(self, "file", None) is not None:
            self.file.close()
            self.file = None


def open_variant(name, work, cache, spacing):
    if name == "tar":
        return registry.open_image(str(work / "ckpt.tar"))
    if name == "gz-extract":
        return registry.open_image(str(work / "ckpt.tar.gz"))
    if name == "gz-cached":
        source = registry.open_source(str(work / "ckpt.tar.gz"), archive_cache=cache)
        return registry.load(source)
    if name == "zst-extract":
        return registry.open_image(str(work / "ckpt.tar.zst"))
    if name == "gz-index":
        source = IndexedGzipSource(work / "ckpt.tar.gz", spacing)
        open_variant.points = source.points
        return registry.load(criu_tar.CriuTar.from_source(source, str(work / "ckpt.tar.gz")))
    raise ValueError(name)


def measure(name, work, pid, mib, picks, cache, spacing, runs=3):
    opens, seqs, rands = [], [], []
    for _ in range(runs):
        t = time.perf_counter()
        image = open_variant(name, work, cache, spacing)
        opens.append(time.perf_counter() - t)
        mm = image.task(pid).mm
        t = time.perf_counter()
        for off in range(0, mib << 20, 1 << 16):
            assert len(mm.read(BASE + off, 1 << 16)) == 1 << 16
        seqs.append(time.perf_counter() - t)
        t = time.perf_counter()
        for page in picks:
            mm.read(BASE + page * PAGE, PAGE)
        rands.append(time.perf_counter() - t)
        image.close()
    return min(opens), min(seqs), min(rands)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--random", type=int, default=2000)
    parser.add_argument("--spacing", type=int, default=1024, help="KiB between seek points")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="crfs-bench-archive-"))
    try:
        pid = make_archives(work, args.mib)
        cache_dir = work / "cache"
        cache = ArchiveCache(str(cache_dir))
        with Source.open(str(work / "ckpt.tar.gz")) as src:     # fill it: next opens hit
            cache.extracted(src, "gzip").close()
        rng = random.Random(2)
        picks = [rng.randrange(args.mib * 256) for _ in range(args.random)]
        sizes = {s: os.stat(work / f"ckpt{s}").st_size for s in (".tar", ".tar.gz", ".tar.zst")}
        print(f"archive: {args.mib} MiB VMA; tar {sizes['.tar'] >> 20} MiB, "
              f"tar.gz {sizes['.tar.gz'] >> 20} MiB, tar.zst {sizes['.tar.zst'] >> 20} MiB; "
              f"{args.random} random pages; seek points every {args.spacing} KiB")
        rows = {}
        for name in ("tar", "gz-extract", "gz-cached", "gz-index", "zst-extract"):
            try:
                rows[name] = measure(name, work, pid, args.mib, picks, cache,
                                     args.spacing << 10)
            except ImportError as exc:
                print(f"{name:12s} not measured: {exc}")
        base = rows["tar"]
        print(f"{'variant':12s} {'open s':>8s} {'x tar':>7s} {'seq s':>8s} {'x tar':>7s} "
              f"{'random s':>9s} {'x tar':>8s}")
        for name, (o, s, r) in rows.items():
            print(f"{name:12s} {o:8.3f} {o / base[0]:7.2f} {s:8.3f} {s / base[1]:7.2f} "
                  f"{r:9.4f} {r / base[2]:8.1f}")
        print(f"extraction on disk: {sum(p.stat().st_size for p in cache_dir.iterdir()) >> 20} "
              f"MiB (the tar's size)")
        if "gz-index" in rows:
            points = open_variant.points
            print(f"seek-point index: {points} points, ~{points * 32 >> 10} MiB of windows "
                  f"in memory")
        cache.close()
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
