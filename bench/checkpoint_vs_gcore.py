#!/usr/bin/env python3
"""Benchmark: `crfs checkpoint` of a process with 1 GiB of dirty heap vs gdb's `gcore`.

One run of tests/c/ckpt_heap.c (built -O2 so that filling the heap is quick) with --mib MiB
of heap, every byte written, is captured alternately by
  gcore   `gcore -o DIR/core PID` (gdb attaches, writes an ELF core, detaches): the baseline
  crfs    `crfs checkpoint PID -o DIR/img.ckpt` (default format, ckpt_hdr x86_64)
and, as the floor any tool has, a bare copy of just the heap into a file (process_vm_readv
then write(2), 1 MiB at a time, in this process: no start-up, no tool logic). gcore and crfs
run as commands (start-up included), output into the same directory (--dir: a disk
directory by default; /dev/shm takes the disk out), the file removed and everything synced
before each run so that one tool's writeback does not slow the other. Reported: the first
run and the median of --runs, output sizes, the peak RSS of crfs (the image is streamed
from the process, never held in memory), and the ratio.
Target (issue #4): crfs >= 3x faster than gcore.
"""

import argparse
import ctypes
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


def start_heap_program(exe, mib):
    """The running program and the address of its heap."""
    proc = subprocess.Popen([str(exe), str(mib)], stdout=subprocess.PIPE, text=True)
    readable, _, _ = select.select([proc.stdout], [], [], 300)
    line = proc.stdout.readline() if readable else ""
    if not line.startswith("ready"):
        proc.kill()
        raise SystemExit(f"heap program did not get ready: {line!r}")
    values = dict(item.split("=") for item in line.split()[1:])
    return proc, int(values["heap"], 16)


def timed(command):
    """Seconds `command` took and its own peak RSS in KiB (wait4 of that child)."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"{command[0]} failed with exit status {child.returncode}")
    return seconds, usage.ru_maxrss


def run_gcore(pid, out_dir):
    os.sync()
    seconds, _ = timed(["gcore", "-o", str(out_dir / "core"), str(pid)])
    core = out_dir / f"core.{pid}"
    size = core.stat().st_size
    core.unlink()
    return seconds, size


def run_copy(pid, heap, mib, out_dir):
    """Seconds to copy the heap out of the process into a file, and nothing else."""
    libc = ctypes.CDLL(None, use_errno=True)
    chunk = 1 << 20
    buffer = ctypes.create_string_buffer(chunk)
    local = (ctypes.c_void_p * 2)(ctypes.addressof(buffer), chunk)
    copy = out_dir / "heap.bin"
    os.sync()
    start = time.perf_counter()
    with open(copy, "wb", buffering=0) as out:
        for i in range(mib):
            remote = (ctypes.c_void_p * 2)(heap + i * chunk, chunk)
            if libc.process_vm_readv(pid, local, 1, remote, 1, 0) != chunk:
                raise SystemExit(f"process_vm_readv: {os.strerror(ctypes.get_errno())}")
            out.write(buffer)
    seconds = time.perf_counter() - start
    copy.unlink()
    return seconds


def run_crfs(pid, out_dir):
    image = out_dir / "img.ckpt"
    os.sync()
    seconds, rss = timed([sys.executable, "-m", "crfs", "checkpoint", str(pid),
                          "-o", str(image)])
    size = image.stat().st_size
    image.unlink()
    return seconds, size, rss


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=1024, help="dirty heap in MiB (1 GiB)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each")
    parser.add_argument("--dir", default="/var/tmp",
                        help="directory for the outputs (default /var/tmp)")
    args = parser.parse_args()
    if shutil.which("gcore") is None:
        raise SystemExit("gcore not found (it comes with gdb)")
    os.environ["PYTHONPATH"] = str(ROOT)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tmp = Path(tmp)
        exe = tmp / "ckpt_heap"
        subprocess.run(["gcc", "-O2", "-o", str(exe), str(ROOT / "tests/c/ckpt_heap.c")],
                       check=True)
        proc, heap = start_heap_program(exe, args.mib)
        try:
            gcore_times, crfs_times, copy_times = [], [], []
            for _ in range(args.runs):
                copy_times.append(run_copy(proc.pid, heap, args.mib, tmp))
                seconds, gcore_size = run_gcore(proc.pid, tmp)
                gcore_times.append(seconds)
                seconds, crfs_size, rss = run_crfs(proc.pid, tmp)
                crfs_times.append(seconds)
        finally:
            proc.kill()
            proc.wait()
    g, c = statistics.median(gcore_times), statistics.median(crfs_times)
    floor = statistics.median(copy_times)
    print(f"process: {args.mib} MiB dirty heap, {args.runs} runs each, alternating, "
          f"outputs in {args.dir}")
    print(f"gcore:  first {gcore_times[0]:6.2f} s  median {g:6.2f} s  "
          f"output {gcore_size / 2**20:7.0f} MiB")
    print(f"crfs:   first {crfs_times[0]:6.2f} s  median {c:6.2f} s  "
          f"output {crfs_size / 2**20:7.0f} MiB  peak RSS {rss / 1024:.0f} MiB")
    print(f"floor:  bare copy of the heap into a file: median {floor:6.2f} s "
          f"(gcore takes {g / floor:.1f}x that)")
    verdict = "met" if g / c >= 3 else "NOT met"
    print(f"ratio:  crfs is {g / c:.1f}x faster than gcore (target >= 3x: {verdict})")


if __name__ == "__main__":
    main()
