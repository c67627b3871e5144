#!/usr/bin/env python3
"""Benchmark (issue #15): gdb on a CRIU dump through crfs vs through criu-coredump.

In the qemu guest (where Debian's criu works), bench/dirty_heap.c with MiB of heap is
dumped by `criu dump`, for each size of --mib. Then, from that dump directory:
  criu-coredump  CRIU's own tool (coredump/ of the CRIU source tree: Debian does not
                 package it) writes an ELF core per process: its time and peak memory,
                 or "not done in --limit seconds" (it looks each page up by a walk of the
                 whole pagemap, so its time grows with the square of the memory);
  crfs           the directory in a crfs store, mounted: the time from the mount command
                 until tasks/<pid>/core can be opened (the core is made as it is read),
                 and the daemon's peak memory;
and `gdb -batch -nx -ex "info threads" -ex bt EXE CORE` is timed on both cores, and on
a copy of crfs's core in the guest's tmpfs (first run, then the median of --runs,
alternating). Target: gdb on crfs's core <= 1.0x. The copy separates what serving the
core through the mount costs from what gdb does with a core whose NT_FILE note names the
libraries (it loads their symbols and names every frame; on criu-coredump's it names none),
and gdb told not to load libraries, libthread_db or separate debug files (PLAIN) does the
same work on both cores.

criu-coredump must be the one of the criu that dumps (3.17 in the guest; the current one
reads 3.17's pagemap entries wrongly): give a CRIU source tree at that tag, e.g.
  git clone -b v3.17.1 https://github.com/checkpoint-restore/criu
  python3 bench/core_vs_criu_coredump.py --criu-source criu --mib 1,4,16
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


def run_measured(argv, limit, **kwargs):
    """(seconds, peak RSS in KiB, exit status) of one command; (None, None, None) when it
    is not done in `limit` seconds (it is killed)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, **kwargs)
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            return time.perf_counter() - t0, usage.ru_maxrss, os.waitstatus_to_exitcode(status)
        if time.perf_counter() - t0 > limit:
            proc.kill()
            proc.wait()
            return None, None, None
        time.sleep(0.05)


def dump(exe, mib, work):
    """dirty_heap started, its heap written, then `criu dump`: (dump dir, pid, seconds)."""
    out = open(os.path.join(work, f"heap{mib}.out"), "w")
    proc = subprocess.Popen([exe, str(mib), "100"], stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and os.path.getsize(out.name) == 0:
        time.sleep(0.2)     # its first line: the heap is written
    images = os.path.join(work, f"store{mib}", "heap.criu")
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


def criu_coredump(source, images, out, limit):
    """criu-coredump of `images` into `out`: (seconds, peak KiB), both None past `limit`."""
    os.makedirs(out)
    code = ("import sys; sys.path.insert(0, sys.argv.pop(1)); import coredump; "
            "coredump.main()")
    seconds, peak, rc = run_measured(["/usr/bin/python3", "-c", code, source, "-i", images,
                                      "-o", out], limit, stdout=subprocess.DEVNULL)
    if rc:
        raise SystemExit(f"criu-coredump failed ({rc})")
    return seconds, peak


def crfs_mount(store, mnt):
    """Mount, then open tasks/<pid>/core: seconds until it opens, the core's path and the
    daemon's pid."""
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


# gdb told to do on any core what it can do on criu-coredump's, whose libraries it does
# not find: no shared library's symbols, no auto-loaded libthread_db, no separate debug
# files, no library file opened (sysroot: without it gdb still reads the section tables
# of the libraries crfs's core names). The "-plain" runs use it, on both cores: the same
# work on the same executable (bench/gdb_instructions.py's "same-work").
PLAIN = ("-iex", "set auto-solib-add off", "-iex", "set auto-load off",
         "-iex", "set sysroot /nonexistent", "-iex", "set debug-file-directory /nonexistent")


def time_gdb(exe, who, core):
    """(seconds, gdb's output) of `info threads` and `bt` on `core`."""
    early = PLAIN if who.endswith("-plain") else ()
    t0 = time.perf_counter()
    out = subprocess.run(["gdb", "-batch", "-nx", *early, "-ex", "info threads", "-ex", "bt",
                          exe, core], capture_output=True, text=True, timeout=600).stdout
    return time.perf_counter() - t0, out


def symbolized(bt):
    """How many of the backtrace's frames gdb named (not `?? ()`), and whether main is."""
    frames = [line for line in bt.splitlines() if line.startswith("#")]
    named = [line for line in frames if "?? ()" not in line]
    return {"frames": len(frames), "named": len(named),
            "main": any(" main " in line or " main (" in line for line in frames)}


def peak_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def gdb_runs(exe, cores, runs):
    """The first gdb run on each core (its time and what its backtrace names), then the
    median of `runs` alternating runs."""
    first, shown = {}, {}
    for who, core in cores.items():
        first[who], out = time_gdb(exe, who, core)
        shown[who] = symbolized(out)
        print(f"guest: gdb on {who}'s core:\n{out[-1500:]}", flush=True)
    times = {who: [] for who in cores}
    for i in range(runs):
        for who in (sorted(cores) if i % 2 else sorted(cores, reverse=True)):
            times[who].append(time_gdb(exe, who, cores[who])[0])
    return first, {who: statistics.median(t) for who, t in times.items()}, shown


def measure(exe, mib, work, args):
    """One size: dump, criu-coredump, crfs mount, gdb on both cores."""
    images, pid, dump_s = dump(exe, mib, work)
    print(f"guest: {mib} MiB dumped in {dump_s:.2f} s", flush=True)
    row = {"mib": mib, "dump_s": dump_s}
    row["coredump_s"], row["coredump_kib"] = criu_coredump(
        os.path.join(args.tmp, "coredump"), images, os.path.join(work, f"cores{mib}"),
        args.limit)
    print(f"guest: criu-coredump {row['coredump_s']} s", flush=True)
    mnt = os.path.join(work, f"mnt{mib}")
    os.makedirs(mnt)
    row["crfs_ready_s"], ours, daemon = crfs_mount(os.path.dirname(images), mnt)
    print(f"guest: crfs core open in {row['crfs_ready_s']:.2f} s", flush=True)
    local = os.path.join(work, f"crfs-core{mib}")
    shutil.copyfile(ours, local)
    cores = {"crfs": ours, "crfs-local": local, "crfs-plain": ours}
    if row["coredump_s"] is not None:
        cores["criu"] = cores["criu-plain"] = os.path.join(work, f"cores{mib}", f"core.{pid}")
    try:
        row["first"], row["median"], row["bt"] = gdb_runs(exe, cores, args.runs)
        row["sizes"] = {who: os.stat(core).st_size for who, core in cores.items()}
        row["daemon_kib"] = peak_kib(daemon) if daemon else None
    finally:
        subprocess.run(["fusermount3", "-u", mnt], capture_output=True)
    return row


def guest_main(args):
    work = tempfile.mkdtemp(prefix="cvc.", dir="/tmp")      # the guest's tmpfs
    exe = os.path.join(work, "dirty_heap")
    shutil.copy(os.path.join(args.tmp, "dirty_heap"), exe)
    setup = guest_setup(args.tmp)       # criu's modules, as `criu check` wants them
    subprocess.run(["modprobe", "fuse"], capture_output=True)
    print(f"guest: {setup['criu_version']}; criu check: {setup['criu_check'][:60]}", flush=True)
    rows = [measure(exe, mib, work, args) for mib in args.mib]
    with open(os.path.join(args.tmp, "results.json"), "w") as f:
        json.dump({"limit": args.limit, "rows": rows}, f, indent=1)
    return 0


# ----------------------------------------------------------------------------- host side


def report(results):
    mib = 1024 * 1024
    print("| heap | criu dump | criu-coredump: core written (peak memory) | crfs: mount + "
          "core open (daemon peak) | gdb, criu-coredump's core | gdb, crfs's core | ratio | "
          "gdb, crfs's core copied to tmpfs | mount / copy | gdb told to do the same work: "
          "criu-coredump's core / crfs's | ratio, the same work |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results["rows"]:
        daemon = f"{r['daemon_kib'] / 1024:.0f} MiB" if r["daemon_kib"] else "?"
        ours = f"{r['median']['crfs']:.2f} s, {bt_text(r['bt']['crfs'])}"
        if r["coredump_s"] is None:
            theirs = f"not done in {results['limit']} s"
            gdb_theirs = ratio = "-"
        else:
            theirs = f"{r['coredump_s']:.2f} s ({r['coredump_kib'] / 1024:.0f} MiB)"
            gdb_theirs = f"{r['median']['criu']:.2f} s, {bt_text(r['bt']['criu'])}"
            ratio = f"{r['median']['crfs'] / r['median']['criu']:.2f}x"
        local = r["median"]["crfs-local"]
        plain = r["median"]
        same = (f"{plain['criu-plain']:.2f} s / {plain['crfs-plain']:.2f} s | "
                f"{plain['crfs-plain'] / plain['criu-plain']:.2f}x" if "criu" in plain else
                f"- / {plain['crfs-plain']:.2f} s | -")
        print(f"| {r['mib']} MiB | {r['dump_s']:.2f} s | {theirs} | {r['crfs_ready_s']:.2f} s "
              f"({daemon}) | {gdb_theirs} | {ours} | {ratio} | {local:.2f} s | "
              f"{r['median']['crfs'] / local:.2f}x | {same} |")
    print(f"\nratio: gdb's median time on crfs's core / on criu-coredump's (target <= 1.0x). "
          f"crfs's core is {results['rows'][-1]['sizes']['crfs'] / mib:.0f} MiB at the "
          "largest size, made as it is read.")
    return 0


def bt_text(shown):
    return (f"bt names {shown['named']}/{shown['frames']} frames"
            f"{', main' if shown['main'] else ', no main'}")


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
        run_guest(tmp, __file__, ["--mib", ",".join(map(str, args.mib)), "--runs",
                                  str(args.runs), "--limit", str(args.limit)],
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
    parser.add_argument("--mib", type=lambda v: [int(x) for x in v.split(",")],
                        default=[1, 4, 16], help="dirty heap sizes in MiB (1,4,16)")
    parser.add_argument("--limit", type=int, default=300,
                        help="seconds criu-coredump may take per size (300)")
    parser.add_argument("--runs", type=int, default=3, help="timed gdb runs, median (3)")
    parser.add_argument("--timeout", type=int, default=1500, help="guest timeout, s (1500)")
    parser.add_argument("--in-guest", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    args = parser.parse_args()
    return guest_main(args) if args.in_guest else host_main(args)


if __name__ == "__main__":
    sys.exit(main())
