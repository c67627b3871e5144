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
one run. The rows are interleaved run by run (the machine's load moves). Target (issue #14): crfs cold <= 2 s.
"""

import argparse
import os
import re
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


def daemon_cpu(log):
    """CPU seconds (user + system) the daemon that last logged "serving" in `log` used."""
    pid = re.findall(r"crfs\[(\d+)\] INFO serving", log.read_text())[-1]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def crfs_run(code, store, tmp, times):
    """Append to `times` (cold, warm, daemon CPU of cold, of warm) of `ls -R` of the image
    on a fresh mount by `code`."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    mnt = tmp / "mnt"
    mnt.mkdir(exist_ok=True)
    # cwd too: `python -m` looks in the working directory first
    subprocess.run([sys.executable, "-m", "crfs", str(mnt), "-o",
                    f"store={store},log={tmp / 'crfs.log'},index_dir={tmp / 'index'}"],
                   check=True, env=env, cwd=code)
    try:
        cpu0 = daemon_cpu(tmp / "crfs.log")
        cold = timed_ls(mnt / "big.img")
        cpu1 = daemon_cpu(tmp / "crfs.log")
        warm = timed_ls(mnt / "big.img")
        times.append((cold, warm, cpu1 - cpu0, daemon_cpu(tmp / "crfs.log") - cpu1))
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], check=False)
        wait_unmounted(mnt)


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
        results = {label: [] for label, _ in codes}
        for label, code in codes:
            crfs_run(code, store, tmp, [])          # warm-up: the index saved
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        subprocess.run([sys.executable, "-m", "crfs", str(tmp / "mnt"), "-o",
                        f"store={store},log={tmp / 'crfs.log'},index_dir={tmp / 'index'}"],
                       check=True, env=env, cwd=ROOT)
        try:
            mirror(tmp / "mnt" / "big.img", Path(shm) / "big.img")
        finally:
            subprocess.run(["fusermount3", "-u", str(tmp / "mnt")], check=False)
            wait_unmounted(tmp / "mnt")
        tmpfs = []
        for _ in range(args.repeat):                # interleaved: the load moves
            tmpfs.append(timed_ls(Path(shm) / "big.img"))
            for label, code in codes:
                crfs_run(code, store, tmp, results[label])
        count = sum(len(files) + len(dirs) for _, dirs, files in os.walk(Path(shm) / "big.img"))
    base = statistics.median(tmpfs)
    print(f"ls -R of a {args.pages}-page image ({count} entries), median of {args.repeat}:")
    print(f"{'tree':<14} {'cold s':>7} {'cold/tmpfs':>11} {'warm s':>7} {'warm/tmpfs':>11} "
          f"{'daemon CPU s cold/warm':>23}")
    print(f"{'tmpfs':<14} {base:7.2f} {1:10.1f}x {base:7.2f} {1:10.1f}x")
    for label, _ in codes:
        cold, warm, cpu_cold, cpu_warm = (statistics.median(t) for t in zip(*results[label]))
        print(f"{'crfs ' + label:<14} {cold:7.2f} {cold / base:10.1f}x {warm:7.2f} "
              f"{warm / base:10.1f}x {cpu_cold:15.2f} / {cpu_warm:.2f}")


if __name__ == "__main__":
    main()
