#!/usr/bin/env python3
"""Benchmark (issue #15): gdb's start-up on crfs's core of a CRIU dump against
criu-coredump's core of the same dump, counted in instructions.

Timing gdb in the TCG guest swings by tens of percent with the host's load; the number of
instructions gdb executes (valgrind's callgrind, on the host) does not. For each committed
CRIU fixture (tests/data/criu/threads and fork, dumped by criu 3.17.1) and each of its
processes, criu-coredump writes its core, crfs mounts the dump and serves
tasks/<pid>/core, and `gdb -batch -nx -ex "info threads" -ex bt EXE CORE` runs under
callgrind on both cores, three ways:

  default       gdb as it starts for anyone: it loads whatever libraries the core leads
                it to, their separate debug files and libthread_db;
  no-debug      the same without separate debug files (a machine without libc6-dbg);
  same-work     gdb opens no library file and auto-loads nothing on either core
                (auto-solib-add off, auto-load off, sysroot and debug-file-directory
                pointing nowhere): the work gdb does on criu-coredump's core, whose
                libraries it does not find.

The ratio is crfs's count over criu-coredump's. What gdb's backtrace names on each core is
printed beside it. Needs valgrind, gdb, Debian's python3-pycriu (criu-coredump imports
pycriu; run by /usr/bin/python3) and a CRIU source tree at criu 3.17.1's tag for its
coredump/ directory (criu-coredump is not packaged by Debian):

  git clone -b v3.17.1 https://github.com/checkpoint-restore/criu
  python3 bench/gdb_instructions.py --criu-source criu
"""

import argparse
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from index_persist import Mounted  # bench/ is this script's sys.path[0]

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "data" / "criu"
EXE = FIXTURES / "bin" / "criu_prog"

NOWHERE = "/nonexistent"
MODES = {
    "default": (),
    "no-debug": ("-iex", f"set debug-file-directory {NOWHERE}"),
    "same-work": ("-iex", "set auto-solib-add off", "-iex", "set auto-load off",
                  "-iex", f"set sysroot {NOWHERE}",
                  "-iex", f"set debug-file-directory {NOWHERE}"),
}


def gdb_argv(mode, core):
    return ["gdb", "-batch", "-nx", *MODES[mode], "-ex", "info threads", "-ex", "bt",
            str(EXE), core]


def instructions(mode, core):
    """The instructions gdb executes on `core` in `mode` (callgrind's total)."""
    run = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                          *gdb_argv(mode, core)], capture_output=True, text=True,
                         timeout=900)
    found = re.search(r"Collected : (\d+)", run.stderr)
    if not found:
        raise SystemExit(f"callgrind gave no count for {core}:\n{run.stderr[-2000:]}")
    return int(found.group(1))


def named_frames(mode, core):
    """'named/frames' of gdb's backtrace on `core` (a frame not named reads `?? ()`)."""
    out = subprocess.run(gdb_argv(mode, core), capture_output=True, text=True,
                         timeout=300).stdout
    frames = [line for line in out.splitlines() if line.startswith("#")]
    named = [line for line in frames if "?? ()" not in line]
    return f"{len(named)}/{len(frames)}"


def criu_coredump(source, dump, out):
    """criu-coredump's cores of `dump`, {pid: path}; or the last line of its error."""
    os.makedirs(out)
    run = subprocess.run(["/usr/bin/python3",
                          os.path.join(source, "coredump", "coredump-python3"),
                          "-i", dump, "-o", out], capture_output=True, text=True)
    if run.returncode:
        return run.stderr.strip().splitlines()[-1]
    return {name.split(".", 1)[1]: os.path.join(out, name) for name in os.listdir(out)}


def measure(args, work):
    rows = []
    store = os.path.join(work, "store")
    os.makedirs(store)
    for name in args.dumps:
        shutil.copytree(FIXTURES / name, os.path.join(store, name))
    mnt = Path(work) / "mnt"
    mnt.mkdir()
    with Mounted(ROOT, store, mnt, Path(work) / "crfs.log", index_dir="off"):
        for name in args.dumps:
            theirs = criu_coredump(args.criu_source, os.path.join(store, name),
                                   os.path.join(work, f"cores-{name}"))
            if isinstance(theirs, str):
                print(f"{name}: criu-coredump failed: {theirs}", flush=True)
                rows.append({"dump": name, "failed": theirs})
                continue
            for pid, their_core in sorted(theirs.items()):
                ours = str(mnt / name / "tasks" / pid / "core")
                for mode in MODES:
                    row = {"dump": name, "pid": pid, "mode": mode,
                           "criu": instructions(mode, their_core),
                           "crfs": instructions(mode, ours),
                           "named": (named_frames(mode, their_core), named_frames(mode, ours))}
                    print(row, flush=True)
                    rows.append(row)
    return rows


def report(rows):
    print("\n| dump | pid | gdb | criu-coredump's core: instructions, frames named | "
          "crfs's core: instructions, frames named | ratio |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if "failed" in r:
            print(f"| {r['dump']} | - | - | criu-coredump failed: {r['failed']} | - | - |")
            continue
        print(f"| {r['dump']} | {r['pid']} | {r['mode']} | {r['criu'] / 1e6:.1f} M, "
              f"{r['named'][0]} | {r['crfs'] / 1e6:.1f} M, {r['named'][1]} | "
              f"{r['crfs'] / r['criu']:.3f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--criu-source", required=True,
                        help="a CRIU source tree at criu 3.17.1 (its coredump/ is used)")
    parser.add_argument("--dumps", default="threads,fork",
                        help="committed fixtures of tests/data/criu whose executable is "
                             "bin/criu_prog (threads,fork)")
    args = parser.parse_args()
    args.dumps = args.dumps.split(",")
    for tool in ("valgrind", "gdb", "fusermount3"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is needed")
    with tempfile.TemporaryDirectory(prefix="crfs-gdbi-") as work:
        report(measure(args, work))


if __name__ == "__main__":
    main()
