#!/usr/bin/env python3
"""Benchmark: open and index a big image, as a ratio to reading it raw with cat.

For each format, a synthetic image with --pages pages is written, then measured in the same
run (the machine is noisy, so only ratios to a baseline taken alongside mean anything):
  cat     `cat image > /dev/null`, cold (page cache dropped for the file) and warm
  open    crfs.model.registry.open_image in a fresh process, cold and warm
  rss     peak RSS of that process, and of one that only imports crfs (the baseline): the
          child's own VmHWM, since wait4's ru_maxrss also counts the parent's RSS at the fork
Targets (issue #2): open <= 5% of cat; RSS <= 64 MiB + 32 bytes a page.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crfs.model import registry  # noqa: E402
from crfs.model.synth import synthetic_image  # noqa: E402

FORMATS = (("ckpt", {}), ("cr", {"dialect": "cr_hdr v4"}), ("cpt", {}))

PEAK_RSS = """
def peak_rss():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM"))
"""
CHILD_OPEN = PEAK_RSS + """
import sys, time
import crfs.model.ckpt, crfs.model.cr, crfs.model.cpt
from crfs.model.registry import open_image
t = time.perf_counter()
image = open_image(sys.argv[1])
pages = sum(mm.page_count() for mm in image.mms())
print(time.perf_counter() - t, pages, peak_rss())
"""
CHILD_IMPORT = PEAK_RSS + """
import crfs.model.registry, crfs.model.ckpt, crfs.model.cr, crfs.model.cpt
print(peak_rss())
"""


def drop_cache(path):
    """Evict the file's pages (POSIX_FADV_DONTNEED works without root for clean pages)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def run_child(argv):
    """Run argv; return its stdout."""
    proc = subprocess.run(argv, stdout=subprocess.PIPE, check=True, env={
        **os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    return proc.stdout.decode()


def time_cat(path):
    with open(os.devnull, "wb") as null:
        start = time.perf_counter()
        subprocess.run(["cat", str(path)], stdout=null, check=True)
        return time.perf_counter() - start


def time_open(path):
    seconds, pages, rss = run_child([sys.executable, "-c", CHILD_OPEN, str(path)]).split()
    return float(seconds), int(pages), int(rss)


def measure(path, repeat):
    rows = {}
    for cache in ("cold", "warm"):
        cats, opens, rss = [], [], 0
        for _ in range(repeat):
            if cache == "cold":
                drop_cache(path)
            cats.append(time_cat(path))
            if cache == "cold":
                drop_cache(path)
            seconds, pages, peak = time_open(path)
            opens.append(seconds)
            rss = max(rss, peak)
        rows[cache] = (statistics.median(cats), statistics.median(opens), rss, pages)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=256 * 1024,
                        help="pages in each image (default 262144 = 1 GiB)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--formats", default=",".join(f for f, _ in FORMATS))
    parser.add_argument("--dir", default=None, help="where to write the images")
    args = parser.parse_args()

    base_rss = int(run_child([sys.executable, "-c", CHILD_IMPORT]))
    print(f"pages per image: {args.pages} ({args.pages * 4096 / 2**30:.2f} GiB of pages)")
    print(f"baseline RSS (python + import crfs): {base_rss / 2**20:.1f} MiB")
    budget = 64 * 2**20 + 32 * args.pages
    print(f"RSS budget: {budget / 2**20:.1f} MiB\n")
    header = (f"{'format':<6} {'cache':<5} {'cat s':>8} {'open s':>8} {'open/cat':>9} "
              f"{'peak RSS MiB':>13} {'RSS-base B/page':>16}")
    print(header)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for fmt, options in FORMATS:
            if fmt not in args.formats.split(","):
                continue
            path = Path(tmp) / f"bench.{fmt}"
            image = synthetic_image("x86_64", heap_pages=args.pages)
            with open(path, "wb") as out:
                registry.dump(image, out, fmt, **options)
            rows = measure(path, args.repeat)
            for cache, (cat_s, open_s, rss, pages) in rows.items():
                per_page = (rss - base_rss) / max(pages, 1)
                print(f"{fmt:<6} {cache:<5} {cat_s:8.3f} {open_s:8.4f} {open_s / cat_s:8.1%} "
                      f"{rss / 2**20:13.1f} {per_page:16.1f}")
            path.unlink()


if __name__ == "__main__":
    main()
