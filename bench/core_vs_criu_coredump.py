#!/usr/bin/env python3
"""Benchmark (issue #15): gdb on a CRIU dump through crfs vs through criu-coredump.

In the qemu guest (where Debian's criu works), bench/dirty_heap.c with --mib MiB of heap
is dumped by `criu dump`. Then, from that dump directory:
  criu-coredump  CRIU's own tool (coredump/ of the CRIU source tree: Debian does not
                 package it) writes an ELF core per process: its time and peak memory;
  crfs           the directory in a crfs store, mounted: the time from the mount command
                 until tasks/<pid>/core can be opened (the core is made as it is read),
                 and the daemon's peak memory;
and `gdb -batch -nx -ex "info threads" -ex bt EXE CORE` is timed on both cores (first
run, then the median of --runs, alternating). Target: gdb on crfs's core <= 1.0x.

criu-coredump must be the one of the criu that dumps (3.17 in the guest; the current one
reads 3.17's pagemap entries wrongly): give a CRIU source tree at that tag, e.g.
  git clone -b v3.17.1 https://github.com/checkpoint-restore/criu
  python3 bench/core_vs_criu_coredump.py --criu-source criu
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from guest_bench import ROOT, guest_setup, host_ready, run_guest  # noqa: E402

# ----------------------------------------------------------------------------- guest side


def run_measured(argv, **kwargs):
    """(seconds, peak RSS in KiB, exit status) of one command."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, **kwargs)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - t0, usage.ru_maxrss, proc.returncode


def dump(exe, mib, work):
    """dirty_heap started, its heap written, then `criu dump`: (dump dir, pid)."""
    out = open(os.path.join(work, "heap.out"), "w")
    proc = subprocess.Popen([exe, str(mib), "100"], stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and os.path.getsize(out.name) == 0:
        time.sleep(0.2)     # its first line: the heap is written
    images = os.path.join(work, "store", "heap.criu")
    os.makedirs(images)
    t0 = time.perf_counter()
    rc = subprocess.run(["criu", "dump", "-t", str(proc.pid), "-D", images, "-o", "dump.log"],
                        timeout=300).returncode
    seconds = time.perf_counter() - t0
    proc.kill()     # still running if the dump failed
    proc.wait()
    if rc:
        raise SystemExit(f"criu dump failed ({rc}): see {images}/dump.log")
    os.unlink(os.path.join(images, "dump.log"))     # a store holds images only
    return images, proc.pid, seconds


def criu_coredump(source, images, out):
    """criu-coredump of `images` into `out`: (seconds, peak KiB)."""
    os.makedirs(out)
    code = ("import sys; sys.path.insert(0, sys.argv.pop(1)); import coredump; "
            "coredump.main()")
    seconds, peak, rc = run_measured(["/usr/bin/python3", "-c", code, source, "-i", images,
                                      "-o", out], stdout=subprocess.DEVNULL)
    if rc:
        raise SystemExit(f"criu-coredump failed ({rc})")
    return seconds, peak


def crfs_mount(store, mnt):
    """Mount, then open tasks/<pid>/core: seconds until it opens, and the daemon's pid."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "crfs", mnt, "-o", f"store={store}"], check=True,
                   timeout=120)
    tasks = os.path.join(mnt, "heap.criu", "tasks")
    pid = os.listdir(tasks)[0]
    with open(os.path.join(tasks, pid, "core"), "rb") as f:
        f.read(64)
    seconds = time.perf_counter() - t0
    daemon = subprocess.run(["pgrep", "-f", f"crfs {mnt}"], capture_output=True,
                            text=True).stdout.split()
    return seconds, os.path.join(tasks, pid, "core"), int(daemon[0]) if daemon else None


def time_gdb(exe, core):
    t0 = time.perf_counter()
    out = subprocess.run(["gdb", "-batch", "-nx", "-ex", "info threads", "-ex", "bt", exe,
                          core], capture_output=True, text=True, timeout=600).stdout
    seconds = time.perf_counter() - t0
    if "main" not in out:
        raise SystemExit(f"gdb shows no main on {core}:\n{out[-2000:]}")
    return seconds


def peak_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def guest_main(args):
    work = tempfile.mkdtemp(prefix="cvc.", dir="/tmp")      # the guest's tmpfs
    exe = os.path.join(work, "dirty_heap")
    shutil.copy(os.path.join(args.tmp, "dirty_heap"), exe)
    setup = guest_setup(args.tmp)       # criu's modules, as `criu check` wants them
    subprocess.run(["modprobe", "fuse"], capture_output=True)
    print(f"guest: {setup['criu_version']}; criu check: {setup['criu_check'][:60]}", flush=True)
    images, pid, dump_s = dump(exe, args.mib, work)
    print(f"guest: dumped in {dump_s:.2f} s", flush=True)
    result = {"mib": args.mib, "dump_s": dump_s}
    result["coredump_s"], result["coredump_kib"] = criu_coredump(
        os.path.join(args.tmp, "coredump"), images, os.path.join(work, "cores"))
    print(f"guest: criu-coredump {result['coredump_s']:.2f} s", flush=True)
    theirs = os.path.join(work, "cores", f"core.{pid}")
    mnt = os.path.join(work, "mnt")
    os.makedirs(mnt)
    result["crfs_ready_s"], ours, daemon = crfs_mount(os.path.dirname(images), mnt)
    print(f"guest: crfs mounted, core open in {result['crfs_ready_s']:.2f} s", flush=True)
    try:
        result["first"] = {"crfs": time_gdb(exe, ours), "criu": time_gdb(exe, theirs)}
        runs = {"crfs": [], "criu": []}
        for i in range(args.runs):
            for who in (("crfs", "criu") if i % 2 else ("criu", "crfs")):
                runs[who].append(time_gdb(exe, ours if who == "crfs" else theirs))
        result["median"] = {who: statistics.median(t) for who, t in runs.items()}
        result["sizes"] = {"crfs": os.stat(ours).st_size, "criu": os.stat(theirs).st_size}
        result["daemon_kib"] = peak_kib(daemon) if daemon else None
    finally:
        subprocess.run(["fusermount3", "-u", mnt], capture_output=True)
    with open(os.path.join(args.tmp, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    return 0


# ----------------------------------------------------------------------------- host side


def report(r):
    mib = 1024 * 1024
    print(f"criu dump of {r['mib']} MiB: {r['dump_s']:.2f} s\n")
    print("| | ready for gdb | peak memory | core | gdb first | gdb median |")
    print("|---|---|---|---|---|---|")
    daemon = f"{r['daemon_kib'] / 1024:.0f} MiB (daemon)" if r["daemon_kib"] else "?"
    print(f"| criu-coredump | {r['coredump_s']:.2f} s (writes the core) | "
          f"{r['coredump_kib'] / 1024:.0f} MiB | {r['sizes']['criu'] / mib:.0f} MiB file | "
          f"{r['first']['criu']:.2f} s | {r['median']['criu']:.2f} s |")
    print(f"| crfs | {r['crfs_ready_s']:.2f} s (mount + open) | {daemon} | "
          f"{r['sizes']['crfs'] / mib:.0f} MiB, made as read | {r['first']['crfs']:.2f} s | "
          f"{r['median']['crfs']:.2f} s |")
    ratio = r["median"]["crfs"] / r["median"]["criu"]
    print(f"\ngdb on crfs's core / on criu-coredump's: {ratio:.2f}x (median; first run "
          f"{r['first']['crfs'] / r['first']['criu']:.2f}x); target <= 1.0x: "
          f"{'met' if ratio <= 1.0 else 'NOT met'}. Ready for gdb: crfs "
          f"{r['crfs_ready_s'] / r['coredump_s']:.2f}x criu-coredump's time")
    return 0


def host_main(args):
    missing = host_ready()
    source = Path(args.criu_source or "") / "coredump"
    if missing or not (source / "criu_coredump").is_dir():
        print(missing or f"{source}/criu_coredump is not there: --criu-source is a CRIU source "
              "tree (git clone -b v3.17.1 https://github.com/checkpoint-restore/criu)",
              file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="crfs-bench-coredump.", dir="/tmp"))
    try:
        shutil.copytree(source, tmp / "coredump", symlinks=True,
                        ignore=shutil.ignore_patterns("pycriu"))    # the system's pycriu
        subprocess.run(["gcc", "-O2", "-g", "-Wall", "-o", str(tmp / "dirty_heap"),
                        str(ROOT / "bench" / "dirty_heap.c")], check=True)
        run_guest(tmp, __file__, ["--mib", str(args.mib), "--runs", str(args.runs)],
                  args.timeout, memory="3G")
        results = tmp / "results.json"
        if not results.exists():
            print("no results from the guest", file=sys.stderr)
            return 1
        return report(json.loads(results.read_text()))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--criu-source", help="a CRIU source tree at the guest criu's tag")
    parser.add_argument("--mib", type=int, default=256, help="dirty heap in MiB (256)")
    parser.add_argument("--runs", type=int, default=3, help="timed gdb runs, median (3)")
    parser.add_argument("--timeout", type=int, default=900, help="guest timeout, s (900)")
    parser.add_argument("--in-guest", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    args = parser.parse_args()
    return guest_main(args) if args.in_guest else host_main(args)


if __name__ == "__main__":
    sys.exit(main())
