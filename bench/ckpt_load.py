"""Time crfs.model.ckpt.load() on a 1 GiB (256k-page) x86_64 image against `cat image`.

    python bench/ckpt_load.py [/tmp/crfs-bench.img]

The image is written by crfs's own writer (pages from a small pattern file repeated, so the
model's source stays small); both timings are taken warm, best of five.
"""

import subprocess
import sys
import time

from crfs.formats.source import MemorySource, Source
from crfs.model import Image, Mm, Registers, Task, Vma
from crfs.model.ckpt import dump, load

PAGES = 256 * 1024
START = 0x7F0000000000


def build_image():
    pattern = MemorySource()
    offsets = [pattern.append(bytes([i]) * 4096) for i in range(16)]
    vma = Vma(START, START + PAGES * 4096, 0x73, 0x25, 0, "anon")
    for i in range(PAGES):
        vma.pages.add(START + i * 4096, offsets[i % 16])
    mm = Mm(vmas=[vma], auxv=[(0, 0)], source=pattern)
    regs = Registers("x86_64", {"cs": 0x33, "ss": 0x2B})
    task = Task(pid=1, tgid=1, ppid=0, comm="bench", regs=regs, mm=mm)
    return Image("linux-cr", "ckpt_hdr v21", "x86_64", tasks=[task])


def best_of(n, run):
    times = []
    for _ in range(n):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main(path="/tmp/crfs-bench.img"):
    with open(path, "wb") as out:
        dump(build_image(), out)

    def index():
        with Source.open(path) as source:
            assert load(source).tasks[0].mm.page_count() == PAGES

    def cat():
        subprocess.run(["cat", path], stdout=subprocess.DEVNULL, check=True)

    cat()
    cat_time = best_of(5, cat)
    load_time = best_of(5, index)
    print(f"cat {cat_time * 1000:.1f} ms, load {load_time * 1000:.1f} ms, "
          f"ratio {load_time / cat_time:.1%}")


if __name__ == "__main__":
    main(*sys.argv[1:])
