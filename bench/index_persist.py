#!/usr/bin/env python3
"""Benchmark: the persistent index, and serving while an image is indexed.

A store with a big cpt image (--pages, default 524288 = 2 GiB; cpt has a header before
every page, so parsing it touches the whole file) and a small ckpt image. In one run:
  format   the index of the big image: encode/decode with crfs.model.index_codec (what the
           cache stores) against pickle of the same model (not usable: reference only)
  ls       first `ls big/tasks/` after a fresh mount, the image file's page cache dropped:
           index_dir=off (parse) vs a saved index (index_dir=D, saved by an earlier mount)
  reads    100 x open+read+close of small/tasks/<pid>/comm while big is being indexed
           cold (index_dir=off), against the same 100 reads with nothing else going on;
           p50/p99 in ms, and how many reads finished before the indexing did.
With --compare TREE (a checkout of older crfs, e.g. `git archive main | tar -x -C TREE`),
the reads are also measured against that code in the same run.
"""

import argparse
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crfs.model import index_codec, registry  # noqa: E402
from crfs.model.synth import synthetic_image  # noqa: E402
from open_index import drop_cache  # noqa: E402  (bench/ is this script's sys.path[0])


def median_time(func, repeat=5):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class Mounted:
    def __init__(self, tree, store, mnt, log, index_dir):
        self.mnt = mnt
        options = f"store={store},log={log}"
        if index_dir is not None:
            options += f",index_dir={index_dir}"
        # cwd too: `python -m` puts the working directory first on sys.path.
        subprocess.run([sys.executable, "-m", "crfs", str(mnt), "-o", options], check=True,
                       env={**os.environ, "PYTHONPATH": str(tree)}, cwd=tree)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        subprocess.run(["fusermount3", "-u", str(self.mnt)], check=True)
        time.sleep(0.3)


def first_ls(tree, store, mnt, log, index_dir, big):
    with Mounted(tree, store, mnt, log, index_dir):
        drop_cache(big)
        start = time.perf_counter()
        subprocess.run(["ls", str(mnt / big.name / "tasks")], check=True,
                       stdout=subprocess.DEVNULL)
        return time.perf_counter() - start


def read_small(path):
    start = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    os.read(fd, 4096)
    os.close(fd)
    return time.perf_counter() - start


def reads_while_indexing(tree, store, mnt, log, big, small_file):
    """(idle latencies, latencies of reads issued while big is indexed, how many)."""
    with Mounted(tree, store, mnt, log, "off" if tree == ROOT else None):
        read_small(small_file)      # small indexed, its nodes known
        idle = [read_small(small_file) for _ in range(100)]
        drop_cache(big)
        lister = subprocess.Popen(["ls", str(mnt / big.name / "tasks")],
                                  stdout=subprocess.DEVNULL)
        time.sleep(0.1)             # let the lookups reach the daemon
        busy = []
        # One read every 5 ms while the big image is indexed; at least 100.
        while lister.poll() is None or len(busy) < 100:
            busy.append(read_small(small_file))
            time.sleep(0.005)
            if lister.poll() is not None and len(busy) >= 100:
                break
        during = len(busy)
        lister.wait()
        return idle, busy[:max(100, during)], during


def ms(values, q):
    values = sorted(values)
    return 1000 * values[min(len(values) - 1, int(q * len(values)))]


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=512 * 1024, help="pages of the big image")
    parser.add_argument("--compare", type=Path, help="an older crfs tree to compare reads with")
    parser.add_argument("--dir", default="/var/tmp", help="where to write the images")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tmp = Path(tmp)
        store, mnt, index_dir = tmp / "store", tmp / "mnt", tmp / "index"
        store.mkdir()
        mnt.mkdir()
        big, small = store / "big.cpt", store / "small.ckpt"
        with open(big, "wb") as out:
            registry.dump(synthetic_image("x86_64", heap_pages=args.pages), out, "cpt",
                          arch="x86_64")
        small_image = synthetic_image("x86_64", heap_pages=8, comm="small", pid=7)
        with open(small, "wb") as out:
            registry.dump(small_image, out, "ckpt")
        small_file = mnt / small.name / "tasks" / "7" / "comm"
        log = tmp / "crfs.log"
        print(f"big image: cpt, {args.pages} pages, {big.stat().st_size / 2**30:.2f} GiB")

        image = registry.open_image(str(big))
        blob = index_codec.encode(image, {})
        src, image.source = image.source, None
        for mm in image.mms():
            mm.source = None
        for name, cls in index_codec.classes().items():    # pickle finds them by module
            for module in ("crfs.model.cpt", "crfs.model.cr", "crfs.model.ckpt_load"):
                if getattr(sys.modules[module], name, None) is cls:
                    cls.__module__ = module
        pickled = pickle.dumps(image, protocol=pickle.HIGHEST_PROTOCOL)
        image.source = src
        enc = median_time(lambda: index_codec.encode(image, {}))
        dec = median_time(lambda: index_codec.decode(blob, src))
        penc = median_time(lambda: pickle.dumps(image, protocol=pickle.HIGHEST_PROTOCOL))
        pdec = median_time(lambda: pickle.loads(pickled))
        parse = median_time(lambda: registry.open_image(str(big)).close(), repeat=3)
        print(f"\nindex of the big image (warm page cache), median of 5; parse: {parse:.3f} s")
        print(f"{'format':<22} {'bytes':>8} {'encode ms':>10} {'decode ms':>10} "
              f"{'decode/parse':>13}")
        print(f"{'index_codec (cache)':<22} {len(blob):8d} {enc * 1000:10.2f} "
              f"{dec * 1000:10.2f} {dec / parse:12.2%}")
        print(f"{'pickle (reference)':<22} {len(pickled):8d} {penc * 1000:10.2f} "
              f"{pdec * 1000:10.2f} {pdec / parse:12.2%}")

        rows = []
        for _ in range(3):
            off = first_ls(ROOT, store, mnt, log, "off", big)
            first_ls(ROOT, store, mnt, log, index_dir, big)      # saves the index
            saved = first_ls(ROOT, store, mnt, log, index_dir, big)
            rows.append((off, saved))
        off = statistics.median(r[0] for r in rows)
        saved = statistics.median(r[1] for r in rows)
        print("\nfirst `ls big/tasks/` after mount, page cache dropped (median of 3)")
        print(f"  parsed (index_dir=off): {off:.3f} s   saved index: {saved:.3f} s   "
              f"ratio {saved / off:.1%}")

        trees = [("this tree", ROOT)] + ([("--compare", args.compare)] if args.compare else [])
        print("\nreads of small/tasks/7/comm (open+read+close), ms: 100 idle; busy = one every"
          " 5 ms from 0.1 s after `ls big/tasks` starts (cold) until it ends, at least 100")
        print(f"{'code':<10} {'idle p50':>9} {'idle p99':>9} {'busy p50':>9} {'busy p99':>9} "
              f"{'p99 busy/idle':>14} {'busy max':>9} {'busy n':>7}")
        for label, tree in trees:
            idle, busy, overlapped = reads_while_indexing(tree, store, mnt, log, big,
                                                          small_file)
            print(f"{label:<10} {ms(idle, .5):9.2f} {ms(idle, .99):9.2f} {ms(busy, .5):9.2f} "
                  f"{ms(busy, .99):9.2f} {ms(busy, .99) / ms(idle, .99):13.1f}x "
                  f"{max(busy) * 1000:9.1f} {overlapped:>7}")


if __name__ == "__main__":
    main()
