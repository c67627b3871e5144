#!/usr/bin/env python3
"""Benchmark: `ls -R` of a big image's directory through the crfs mount (issue #14, item 4).

A 1 GiB synthetic ckpt image (262,144 entries in tasks/*/mm/pages/) in a store; measured in
the same run, each `--repeat` times (median):
  tmpfs        `ls -R` of the same tree (same names, empty files) on tmpfs: the floor set by
               ls itself and the kernel's VFS
  crfs cold    `ls -R` right after a fresh mount (the image indexed from its saved index)
  crfs warm    `ls -R` again on that mount (entries and attributes cached by the kernel)
and, with `--compare DIR`, the same rows for another checkout of crfs (e.g. main, made with
`git archive main | tar -x -C /tmp/crfs-main`) so a change is measured against its parent in
one run. Target (issue #14): crfs cold <= 2 s.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crfs.model import registry  # noqa: E402
from crfs.model.synth import synthetic_image  # noqa: E402


def timed_ls(path):
    start = time.perf_counter()
    subprocess.run(["ls", "-R", str(path)], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def wait_unmounted(path, timeout=30):
    deadline = time.time() + timeout
    while os.path.ismount(path):
        if time.time() > deadline:
            raise SystemExit(f"{path} did not unmount")
        time.sleep(0.05)


def mirror(src, dst):
    """The tree under `src` with empty files, under `dst` (on tmpfs)."""
    for dirpath, dirnames, filenames in os.walk(src):
        out = Path(dst) / os.path.relpath(dirpath, src)
        out.mkdir(exist_ok=True)
        for name in filenames:
            os.close(os.open(out / name, os.O_CREAT | os.O_WRONLY, 0o444))


def crfs_runs(code, store, tmp, repeat):
    """(cold times, warm times) of `ls -R` of the image with crfs from `code`."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    mnt = tmp / "mnt"
    mnt.mkdir(exist_ok=True)
    cold, warm = [], []
    for _ in range(repeat):
        subprocess.run([sys.executable, "-m", "crfs", str(mnt), "-o",
                        f"store={store},log={tmp / 'crfs.log'},index_dir={tmp / 'index'}"],
                       check=True, env=env)
        try:
            cold.append(timed_ls(mnt / "big.img"))
            warm.append(timed_ls(mnt / "big.img"))
        finally:
            subprocess.run(["fusermount3", "-u", str(mnt)], check=False)
            wait_unmounted(mnt)
    return cold, warm


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=256 * 1024, help="heap pages (1 GiB)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--compare", metavar="DIR", help="another crfs checkout to measure")
    args = parser.parse_args()
    codes = [("this", ROOT)] + ([("compare", Path(args.compare))] if args.compare else [])
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp, \
            tempfile.TemporaryDirectory(dir="/dev/shm") as shm:
        tmp = Path(tmp)
        store = tmp / "store"
        store.mkdir()
        with open(store / "big.img", "wb") as out:
            registry.dump(synthetic_image("x86_64", heap_pages=args.pages), out, "ckpt")
        results = {}
        for label, code in codes:
            results[label] = crfs_runs(code, store, tmp, 1)    # warm-up: index saved
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        subprocess.run([sys.executable, "-m", "crfs", str(tmp / "mnt"), "-o",
                        f"store={store},log={tmp / 'crfs.log'},index_dir={tmp / 'index'}"],
                       check=True, env=env)
        try:
            mirror(tmp / "mnt" / "big.img", Path(shm) / "big.img")
        finally:
            subprocess.run(["fusermount3", "-u", str(tmp / "mnt")], check=False)
            wait_unmounted(tmp / "mnt")
        tmpfs = [timed_ls(Path(shm) / "big.img") for _ in range(args.repeat)]
        for label, code in codes:
            results[label] = crfs_runs(code, store, tmp, args.repeat)
        count = sum(len(files) + len(dirs) for _, dirs, files in os.walk(Path(shm) / "big.img"))
    base = statistics.median(tmpfs)
    print(f"ls -R of a {args.pages}-page image ({count} entries), median of {args.repeat}:")
    print(f"{'tree':<14} {'cold s':>7} {'cold/tmpfs':>11} {'warm s':>7} {'warm/tmpfs':>11}")
    print(f"{'tmpfs':<14} {base:7.2f} {1:10.1f}x {base:7.2f} {1:10.1f}x")
    for label, _ in codes:
        cold, warm = (statistics.median(t) for t in results[label])
        print(f"{'crfs ' + label:<14} {cold:7.2f} {cold / base:10.1f}x {warm:7.2f} "
              f"{warm / base:10.1f}x")


if __name__ == "__main__":
    main()
