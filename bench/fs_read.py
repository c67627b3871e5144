#!/usr/bin/env python3
"""Benchmark: read a big image's VMA data through the crfs mount.

Measured in the same run, on the same page bytes:
  raw           cat of the image file
  passthrough   cat of the image through bench/passthrough.py (minimal pyfuse3 fs)
  crfs          cat of every tasks/*/mm/vmas/*/data of the image
each cold (first read through FUSE; the image file itself in the page cache, so FUSE is what
is measured) and again (second read, served by the kernel's cache where allowed).
Also `ls -R` of the image's directory. Targets (issue #3): crfs >= 70% of passthrough;
second read >= 50% of raw.
"""

import argparse
import glob
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crfs.model import registry  # noqa: E402
from crfs.model.synth import synthetic_image  # noqa: E402


def timed_cat(paths):
    start = time.perf_counter()
    total = 0
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                total += len(chunk)
    return time.perf_counter() - start, total


def wait_mounted(path, timeout=30):
    deadline = time.time() + timeout
    while not os.path.ismount(path):
        if time.time() > deadline:
            raise SystemExit(f"{path} did not mount")
        time.sleep(0.05)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=256 * 1024, help="heap pages (1 GiB)")
    parser.add_argument("--format", default="ckpt", help="image format to write")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store, mnt, pmnt = tmp / "store", tmp / "mnt", tmp / "pmnt"
        for d in (store, mnt, pmnt):
            d.mkdir()
        image_path = store / "big.img"
        with open(image_path, "wb") as out:
            registry.dump(synthetic_image("x86_64", heap_pages=args.pages), out, args.format)
        subprocess.run([sys.executable, "-m", "crfs", str(mnt), "-o",
                        f"store={store},log={tmp / 'crfs.log'}"], check=True, env=env)
        passthrough = subprocess.Popen([sys.executable, str(ROOT / "bench" / "passthrough.py"),
                                        str(image_path), str(pmnt)], env=env)
        try:
            wait_mounted(pmnt)
            start = time.perf_counter()
            subprocess.run(["ls", "-R", str(mnt / "big.img")], stdout=subprocess.DEVNULL,
                           check=True)
            ls_seconds = time.perf_counter() - start
            datas = sorted(glob.glob(str(mnt / "big.img" / "tasks" / "*" / "mm" / "vmas" /
                                         "*" / "data")))
            timed_cat([image_path])  # the image file itself in the page cache for everyone
            rows = []
            for run in ("first", "second"):
                raw = timed_cat([image_path])
                thru = timed_cat([pmnt / "data"])
                ours = timed_cat(datas)
                rows.append((run, raw, thru, ours))
        finally:
            subprocess.run(["fusermount3", "-u", str(mnt)], check=False)
            subprocess.run(["fusermount3", "-u", str(pmnt)], check=False)
            passthrough.wait(timeout=30)
    print(f"image: {args.format}, {args.pages} heap pages; ls -R of the image: "
          f"{ls_seconds:.2f} s")
    print(f"{'read':<7} {'raw MB/s':>9} {'passthrough MB/s':>17} {'crfs MB/s':>10} "
          f"{'crfs/passthrough':>17} {'crfs/raw':>9}")
    for run, raw, thru, ours in rows:
        mbs = [n / s / 1e6 for s, n in (raw, thru, ours)]
        print(f"{run:<7} {mbs[0]:9.0f} {mbs[1]:17.0f} {mbs[2]:10.0f} "
              f"{mbs[2] / mbs[1]:16.0%} {mbs[2] / mbs[0]:9.0%}")


if __name__ == "__main__":
    main()
