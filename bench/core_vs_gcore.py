#!/usr/bin/env python3
"""Benchmark: gdb start-up on tasks/<pid>/core (through the mount) vs on a gcore file.

One run of tests/c/core_target.c (-g -O0), blocked in a known place, is captured twice:
  gcore   gdb's gcore of the process (a plain file on disk): the baseline
  crfs    tasks/<pid>/core of its checkpoint image, generated on the fly through the mount
and `gdb -batch -nx -ex bt EXE CORE` is timed on each (first run, then the median of
--runs runs, alternating). Target (issue #6): crfs within 1.5x of gcore.

The image comes from crfs.checkpoint.checkpoint() when that exists; otherwise it is the
ckpt image of a model built from the same gcore file (tests/gcore_model.py), which holds the
same registers, VMAs and pages, and the output says so.
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
sys.path.insert(0, str(ROOT / "tests"))

from crfs.model import registry  # noqa: E402
from gcore_model import gcore, image_from_gcore  # noqa: E402


def start_target(exe):
    proc = subprocess.Popen([str(exe)], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    pid = int(line.split()[1].split("=")[1])
    return proc, pid


def checkpoint_image(pid, gcore_path, out):
    """Write the process's image to `out`; returns how it was made."""
    try:
        from crfs.checkpoint import checkpoint
    except ImportError:
        checkpoint = None
    if checkpoint is not None:
        checkpoint(pid, str(out), fmt="ckpt", tree=False, after="kill")
        return "crfs.checkpoint"
    image = image_from_gcore(gcore_path)
    with open(out, "wb") as f:
        registry.dump(image, f, "ckpt")
    image.close()
    return "model of the gcore file (crfs.checkpoint not available)"


def time_gdb(exe, core):
    start = time.perf_counter()
    out = subprocess.run(["gdb", "-batch", "-nx", "-ex", "bt", str(exe), str(core)],
                         capture_output=True, text=True, timeout=300).stdout
    elapsed = time.perf_counter() - start
    if " main () " not in out:
        raise SystemExit(f"gdb did not show main on {core}:\n{out}")
    return elapsed


def mount(store, mnt, log):
    subprocess.run([sys.executable, "-m", "crfs", str(mnt), "-o", f"store={store},log={log}"],
                   check=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7, help="timed runs of each (median)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store, mnt = tmp / "store", tmp / "mnt"
        store.mkdir()
        mnt.mkdir()
        exe = tmp / "core_target"
        subprocess.run(["gcc", "-g", "-O0", "-o", str(exe), str(ROOT / "tests/c/core_target.c")],
                       check=True)
        proc, pid = start_target(exe)
        try:
            gcore_path = gcore(pid, tmp / "gcore")
            how = checkpoint_image(pid, gcore_path, store / "target.img")
        finally:
            proc.kill()
            proc.wait()
        mount(store, mnt, tmp / "crfs.log")
        try:
            core = mnt / "target.img" / "tasks" / str(pid) / "core"
            first = {"crfs": time_gdb(exe, core), "gcore": time_gdb(exe, gcore_path)}
            runs = {"crfs": [], "gcore": []}
            for _ in range(args.runs):
                runs["crfs"].append(time_gdb(exe, core))
                runs["gcore"].append(time_gdb(exe, gcore_path))
            sizes = {"crfs": core.stat().st_size, "gcore": os.path.getsize(gcore_path)}
        finally:
            subprocess.run(["fusermount3", "-u", str(mnt)], check=True)
    print(f"image: {how}")
    for name in ("gcore", "crfs"):
        print(f"{name:6} core {sizes[name] / 1024:8.0f} KiB  first {first[name] * 1000:7.1f} ms  "
              f"median {statistics.median(runs[name]) * 1000:7.1f} ms")
    ratio = statistics.median(runs["crfs"]) / statistics.median(runs["gcore"])
    first_ratio = first["crfs"] / first["gcore"]
    print(f"ratio crfs/gcore (median): {ratio:.2f}x  (first run {first_ratio:.2f}x)"
          f"  target <= 1.5x: {'met' if ratio <= 1.5 else 'NOT met'}")


if __name__ == "__main__":
    main()
