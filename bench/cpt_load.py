#!/usr/bin/env python3
"""Benchmark: index a big OpenVZ cpt v2 image (one PAGES object per page).

Writes a one-task image of PAGES pages (default 262144 = 1 GiB) with crfs's writer, drops
it from the page cache and reads it back once (as an image copied onto the machine would be
cached), then times, warm: `cat image > /dev/null`, and crfs's load().
Target: load() a small fraction of cat.

load() maps the page-block headers, so its time follows how the kernel cached the file:
written in small pieces, the page cache holds small folios and mapping costs about 3 times
more than when it was filled by readahead or large writes.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crfs.formats.source import MemorySource, Source  # noqa: E402
from crfs.formats.x86 import PAGE_SIZE  # noqa: E402
from crfs.model import Image, Mm, Registers, Task, Vma, cpt  # noqa: E402

START = 0x10000000


def big_image(pages):
    """One task, one anonymous VMA of `pages` pages, all sharing one page of bytes."""
    source = MemorySource(bytes(range(256)) * (PAGE_SIZE // 256))
    vma = Vma(start=START, end=START + pages * PAGE_SIZE, vm_flags=0x73, prot=0x25, pgoff=0,
              kind="anon")
    vma.pages.add_run(range(START, START + pages * PAGE_SIZE, PAGE_SIZE), 0, stride=0)
    task = Task(pid=1, tgid=1, ppid=0, comm="big", regs=Registers("i386", {}),
                mm=Mm(vmas=[vma], source=source))
    return Image(format="openvz", dialect="cpt v2", arch="i386", tasks=[task], source=source)


def best_of(runs, action):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pages", type=int, default=262144)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "big.img")
        with open(path, "wb", buffering=4 << 20) as out:
            cpt.dump(big_image(args.pages), out)
            out.flush()
            os.fsync(out.fileno())
            os.posix_fadvise(out.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        cat = best_of(args.runs, lambda: subprocess.run(
            f"cat {path} > /dev/null", shell=True, check=True))

        def load():
            with Source.open(path) as source:
                assert cpt.load(source).tasks[0].mm.page_count() == args.pages

        crfs = best_of(args.runs, load)
        size = os.path.getsize(path)
    print(f"{args.pages} pages, {size / 2**20:.0f} MiB: cat {cat * 1000:.0f} ms, "
          f"load {crfs * 1000:.0f} ms ({crfs / cat:.0%} of cat)")


if __name__ == "__main__":
    main()
