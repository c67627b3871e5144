#!/usr/bin/env python3
"""Benchmark: how long `crfs checkpoint` stops a program with 1 GiB of dirty heap, and what
an incremental checkpoint costs, all in one run of bench/dirty_heap.c (built -O2).

Freeze (the program cannot run):
  snapshot  crfs checkpoint (the default): stopped while the copy-on-write clone is made
  compare   (--compare DIR) the same, by the crfs of another checkout (e.g. main's), so a
            change is measured against its parent on the same program in the same run
  stop      crfs checkpoint --stop: stopped for the whole write
  gcore     gdb's gcore: stopped for its whole run (the baseline)
crfs runs in this process (checkpoint(), its report: no interpreter start-up in either
figure); gcore as a command. Then incremental: a full checkpoint with --track, 1% of the
heap's pages written through /proc/PID/mem (a real write: it faults as the program's
would), and a child checkpoint with --parent: its time and size against the full one's.
Ratios are against the baseline run in the same run; medians of --runs.
"""

import argparse
import json
import os
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crfs.checkpoint import checkpoint  # noqa: E402

PAGE = 4096


def start(exe, mib):
    proc = subprocess.Popen([str(exe), str(mib), "100000"], stdout=subprocess.PIPE, text=True)
    if not select.select([proc.stdout], [], [], 300)[0]:
        proc.kill()
        raise SystemExit("dirty_heap did not get ready")
    values = dict(item.split("=") for item in proc.stdout.readline().split()[1:])
    return proc, int(values["heap"], 16)


def crfs_run(pid, path, **options):
    os.sync()
    report = {}
    checkpoint(pid, path, report=report, **options)
    size = path.stat().st_size
    return report, size


COMPARE = """
import json, os, sys
sys.path.insert(0, sys.argv[1])
from crfs.checkpoint import checkpoint
report = {}
checkpoint(int(sys.argv[2]), sys.argv[3], report=report)
os.unlink(sys.argv[3])
print(json.dumps({k: report[k] for k in ("mode", "frozen", "time")}))
"""


def compare_run(code, pid, path):
    """The report of a snapshot checkpoint by crfs from another checkout `code` (a fresh
    interpreter: its start-up is not in the figures, which checkpoint() measures)."""
    os.sync()
    out = subprocess.run([sys.executable, "-c", COMPARE, str(code), str(pid), str(path)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[-1])


def gcore_run(pid, out_dir):
    os.sync()
    started = time.perf_counter()
    subprocess.run(["gcore", "-o", str(out_dir / "core"), str(pid)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    (out_dir / f"core.{pid}").unlink()
    return seconds


def dirty(pid, heap, mib, fraction):
    """Write one byte into every (1/fraction)-th page of the heap; the pages written."""
    step = round(1 / fraction)
    pages = mib * 256
    with open(f"/proc/{pid}/mem", "r+b", buffering=0) as mem:
        for i in range(0, pages, step):
            mem.seek(heap + i * PAGE + 8)
            mem.write(b"\x5a")          # the same byte: dirty, and the program stays ok
    return len(range(0, pages, step))


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", default="/var/tmp")
    parser.add_argument("--compare", metavar="DIR",
                        help="also a snapshot checkpoint by another crfs checkout, each run")
    parser.add_argument("--freeze-only", action="store_true",
                        help="skip the incremental checkpoints")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tmp = Path(tmp)
        os.environ["CRFS_STATE_DIR"] = str(tmp / "state")
        exe = tmp / "dirty_heap"
        subprocess.run(["gcc", "-O2", "-o", str(exe), str(ROOT / "bench/dirty_heap.c")],
                       check=True)
        proc, heap = start(exe, args.mib)
        try:
            rows = {"snapshot": [], "stop": [], "gcore": [], "compare": []}
            totals = {"snapshot": [], "stop": [], "compare": []}
            for n in range(args.runs):
                # snapshot and compare take turns going first (what ran just before, e.g.
                # the last image's writeback, weighs on a clone's page-table copy)
                order = [("snapshot", {}), ("compare", {})] if args.compare else [
                    ("snapshot", {})]
                for mode, options in order[::-1] if n % 2 else order:
                    if mode == "compare":
                        report = compare_run(args.compare, proc.pid, tmp / "cmp.ckpt")
                    else:
                        report, _ = crfs_run(proc.pid, tmp / "img.ckpt", **options)
                        (tmp / "img.ckpt").unlink()
                    assert report["mode"] == "snapshot", report
                    rows[mode].append(report["frozen"])
                    totals[mode].append(report["time"])
                report, _ = crfs_run(proc.pid, tmp / "img.ckpt", stop=True)
                assert report["mode"] == "stop", report
                rows["stop"].append(report["frozen"])
                totals["stop"].append(report["time"])
                (tmp / "img.ckpt").unlink()
                if shutil.which("gcore"):
                    rows["gcore"].append(gcore_run(proc.pid, tmp))
            full_t, child_t, full_s, child_s, dirtied = [], [], [], [], 0
            for n in range(0 if args.freeze_only else args.runs):
                parent = tmp / f"full{n}.ckpt"
                report, size = crfs_run(proc.pid, parent, track=True)
                full_t.append(report["time"])
                full_s.append(size)
                dirtied = dirty(proc.pid, heap, args.mib, 0.01)
                report, size = crfs_run(proc.pid, tmp / f"child{n}.ckpt", parent=parent)
                assert report["parent"], report
                child_t.append(report["time"])
                child_s.append(size)
        finally:
            proc.kill()
            proc.wait()
    med = {k: statistics.median(v) for k, v in rows.items() if v}
    print(f"dirty heap {args.mib} MiB, {args.runs} runs, medians")
    base = med.get("gcore")
    for mode in ("snapshot", "compare", "stop", "gcore"):
        if mode in med:
            ratio = f"  {med[mode] / base:.3f}x gcore" if base else ""
            total = (f"  (whole checkpoint {statistics.median(totals[mode]) * 1000:.0f} ms)"
                     if mode in totals else "")
            least = f"  (least {min(rows[mode]) * 1000:.1f} ms)" if mode != "gcore" else ""
            print(f"freeze {mode:9s} {med[mode] * 1000:8.1f} ms{ratio}{total}{least}")
    if args.freeze_only:
        return
    ft, ct = statistics.median(full_t), statistics.median(child_t)
    fs, cs = statistics.median(full_s), statistics.median(child_s)
    print(f"incremental: {dirtied} pages written (1%); full --track {ft * 1000:.0f} ms "
          f"{fs / 2**20:.1f} MiB; child --parent {ct * 1000:.0f} ms {cs / 2**20:.2f} MiB; "
          f"time {ct / ft:.3f}x, size {cs / fs:.4f}x of the full one")


if __name__ == "__main__":
    main()
