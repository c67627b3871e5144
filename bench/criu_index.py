#!/usr/bin/env python3
"""Benchmark: indexing a CRIU dump with crfs's own wire decoder vs pycriu (protobuf).

    python3 bench/criu_index.py DUMP_DIR [--entries N]

DUMP_DIR: a big dump, e.g. the 256 MiB-heap process `tests/data/criu/make-fixtures --big
DIR` leaves in DIR/big (not committed). Each measurement runs in a fresh process (time
from spawn, peak RSS from getrusage of the child), best of 3:

  crfs      registry.open_image(DUMP_DIR): every metadata file decoded, the page index built
  pycriu    pycriu.images.load of the same files (inventory, pstree, core-*, mm-*,
            pagemap-*) with the system python3 and its protobuf (the decoder crit uses)
  floor     python3 -c pass (interpreter start-up), and `cat pages-*.img > /dev/null`

then, as issue #15's target puts it, the first `ls tasks/` through a crfs mount of the
dump's directory (a store of one image) with the dump's files cold (each one evicted with
POSIX_FADV_DONTNEED, which needs no root for clean pages), against a cold `cat` of its
pages files, and the daemon's peak RSS (VmHWM) against 64 MiB + 32 bytes a page;

and, to see the decoders themselves, a synthetic pagemap of N entries (a sparse process:
one page every other page) decoded by both, in-process (imports excluded).
Reported as ratios to pycriu measured in the same run. Without pycriu (apt: criu) the
comparison columns say so.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = "/usr/bin/python3"
META = ("inventory", "pstree", "core-", "mm-", "pagemap-")

CRFS_LOAD = """
import sys, time
from crfs.model import registry
import crfs.formats.criu, crfs.model.criu_load  # noqa: F401 - imports are not indexing
t = time.perf_counter()
image = registry.open_image(sys.argv[1])
pages = sum(mm.page_count() for mm in image.mms())
print(time.perf_counter() - t, pages)
"""
PYCRIU_LOAD = """
import os, sys, time
import pycriu.images as images
t = time.perf_counter()
n = 0
for name in sorted(os.listdir(sys.argv[1])):
    if name.startswith(%r) and name.endswith(".img"):
        with open(os.path.join(sys.argv[1], name), "rb") as f:
            n += len(images.load(f)["entries"])
print(time.perf_counter() - t, n)
""" % (META,)


def child(argv, env=None):
    """(wall seconds from spawn, peak RSS MiB, stdout) of one child process (its own
    rusage, from wait4)."""
    t = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{argv[:3]}: exit {proc.returncode}")
    return wall, usage.ru_maxrss / 1024, out


def best(argv, env=None, runs=3):
    results = [child(argv, env) for _ in range(runs)]
    return min(results, key=lambda r: r[0])


def evict(directory):
    """Drop the page cache of every file of `directory` (clean pages: no root needed)."""
    for name in os.listdir(directory):
        fd = os.open(os.path.join(directory, name), os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def cold_cat(dump):
    evict(dump)
    t = time.perf_counter()
    subprocess.run(["sh", "-c", f"cat {dump}/pages-*.img > /dev/null"], check=True)
    return time.perf_counter() - t


def first_ls_mounted(dump, env, settle=0.0):
    """(seconds of the first `ls MNT/NAME/tasks/` with the dump cold, `settle` seconds after
    the mount appeared, the daemon's VmHWM in MiB after it) of a foreground crfs daemon
    whose store is the dump's parent directory. At once, the ls also shares the daemon
    with the rest of its start-up."""
    with tempfile.TemporaryDirectory() as mnt:
        daemon = subprocess.Popen([sys.executable, "-m", "crfs", "-f", mnt, "-o",
                                   f"store={os.path.dirname(dump)},index_dir=off"],
                                  env=env, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while not os.path.ismount(mnt):
                if daemon.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("crfs did not mount")
                time.sleep(0.05)
            time.sleep(settle)
            evict(dump)
            t = time.perf_counter()
            subprocess.run(["ls", os.path.join(mnt, os.path.basename(dump), "tasks")],
                           check=True, stdout=subprocess.DEVNULL)
            secs = time.perf_counter() - t
            with open(f"/proc/{daemon.pid}/status") as f:
                hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
        finally:
            subprocess.run(["fusermount", "-u", mnt], capture_output=True)
            daemon.wait(timeout=60)
    return secs, hwm / 1024


def entry(body):
    return len(body).to_bytes(4, "little") + body


def synthetic_pagemap(n):
    """A pagemap-1.img of n one-page PE_PRESENT entries, as criu frames it."""
    from crfs.formats import criu
    parts = [criu.IMG_COMMON_MAGIC.to_bytes(4, "little"),
             criu.MAGICS["PAGEMAP"].to_bytes(4, "little"), entry(b"\x08\x01")]
    base = 0x7F0000000000
    for i in range(n):
        parts.append(entry(b"\x08" + criu.varint(base + 2 * i * 4096) + b"\x10\x01\x20\x04"))
    return b"".join(parts)


def decode_ours(path):
    from crfs.formats import criu
    with criu.CriuDir.open(os.path.dirname(path)) as d:
        t = time.perf_counter()
        n = len(criu.read_entries(d, os.path.basename(path)))
        return time.perf_counter() - t, n


sys.path.insert(0, str(ROOT))


def protobuf_classes():
    """Message classes of the `protobuf` package built from crfs's own declarations
    (crfs.formats.criu), as option 2 of docs/format-criu.md would have them."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    from crfs.formats import criu
    F = descriptor_pb2.FieldDescriptorProto
    types = {criu.U32: F.TYPE_UINT32, criu.U64: F.TYPE_UINT64, criu.I32: F.TYPE_INT32,
             criu.S32: F.TYPE_SINT32, criu.S64: F.TYPE_SINT64, criu.BOOL: F.TYPE_BOOL,
             criu.STR: F.TYPE_STRING, criu.BYTES: F.TYPE_BYTES}
    labels = {criu.REQ: F.LABEL_REQUIRED, criu.OPT: F.LABEL_OPTIONAL, criu.REP: F.LABEL_REPEATED}
    fdp = descriptor_pb2.FileDescriptorProto(name="crfs_criu.proto", package="crfs",
                                             syntax="proto2")
    done = set()

    def add(msg):
        if msg.name in done:
            return
        done.add(msg.name)
        for _, ftype, _ in msg.fields.values():
            if isinstance(ftype, criu.Message):
                add(ftype)
        d = fdp.message_type.add(name=msg.name)
        for number, (fname, ftype, label) in msg.fields.items():
            f = d.field.add(name=fname, number=number, label=labels[label])
            if isinstance(ftype, criu.Message):
                f.type, f.type_name = F.TYPE_MESSAGE, f".crfs.{ftype.name}"
            else:
                f.type = types[ftype]
    for _, first, other in criu.FILE_KINDS.values():
        add(first)
        add(other)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return lambda name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"crfs.{name}"))


def decode_protobuf(path, classes):
    """Frame the pagemap as read_entries does, each entry parsed by the protobuf class and
    its fields read into a dict (as crfs uses them)."""
    head, entry_cls = classes("pagemap_head"), classes("pagemap_entry")
    data = open(path, "rb").read()
    t = time.perf_counter()
    pos, out = 8, []
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 4], "little")
        cls = head if not out else entry_cls
        m = cls.FromString(data[pos + 4:pos + 4 + n])
        out.append({f.name: v for f, v in m.ListFields()})
        pos += 4 + n
    return time.perf_counter() - t, len(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dump")
    parser.add_argument("--entries", type=int, default=100_000)
    args = parser.parse_args()
    # .pyc files written and used, as an installed crfs has them
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
           "PYTHONPATH": str(ROOT)}
    dump = os.path.abspath(args.dump)
    size = sum(os.path.getsize(os.path.join(dump, n)) for n in os.listdir(dump))
    print(f"dump: {dump}, {size / 2**20:.0f} MiB")
    # The system python with its own packages only: pycriu breaks on another protobuf.
    system_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    has_pycriu = subprocess.run([SYSTEM_PYTHON, "-c", "import pycriu"], env=system_env,
                                capture_output=True).returncode == 0

    floor = best([sys.executable, "-c", "pass"])
    cat = best(["sh", "-c", f"cat {dump}/pages-*.img > /dev/null"])
    ours = best([sys.executable, "-c", CRFS_LOAD, dump], env)
    print("| what | wall s (spawn..exit) | in-process s | peak RSS MiB |")
    print("|---|---|---|---|")
    print(f"| python3 -c pass | {floor[0]:.3f} | | {floor[1]:.0f} |")
    print(f"| cat pages-*.img > /dev/null | {cat[0]:.3f} | | {cat[1]:.0f} |")
    t_in, pages = ours[2].split()
    print(f"| crfs open_image ({pages} pages indexed) | {ours[0]:.3f} | {float(t_in):.4f} | "
          f"{ours[1]:.0f} |")
    if has_pycriu:
        theirs = best([SYSTEM_PYTHON, "-c", PYCRIU_LOAD, dump], system_env)
        t_in2, n = theirs[2].split()
        print(f"| pycriu images.load of the metadata ({n} entries) | {theirs[0]:.3f} | "
              f"{float(t_in2):.4f} | {theirs[1]:.0f} |")
        print(f"\nratio crfs/pycriu: wall {ours[0] / theirs[0]:.2f}, "
              f"RSS {ours[1] / theirs[1]:.2f}")
    else:
        print("| pycriu | not installed (apt-get install criu) | | |")

    cats = [cold_cat(dump) for _ in range(3)]
    cat_s = sorted(cats)[1]
    budget = 64 + 32 * int(pages) / 2**20
    print(f"\ncold, median of 3: cat pages-*.img {cat_s:.3f} s "
          f"({', '.join(f'{c:.3f}' for c in cats)})")
    for settle, when in ((0.0, "as soon as the mount is up"), (0.5, "0.5 s after")):
        lss = [first_ls_mounted(dump, env, settle) for _ in range(3)]
        ls_s, hwm = sorted(lss)[1]
        print(f"first ls tasks/ through a mount, {when}: {ls_s:.3f} s "
              f"({', '.join(f'{s:.3f}' for s, _ in lss)}): {100 * ls_s / cat_s:.1f}% of the "
              f"cat (target <= 5%); daemon peak RSS {hwm:.0f} MiB (target <= 64 MiB + "
              f"32 B x {pages} pages = {budget:.0f} MiB)")

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "pagemap-1.img")
        with open(path, "wb") as f:
            f.write(synthetic_pagemap(args.entries))
        secs, n = min(decode_ours(path) for _ in range(3))
        print(f"\nsynthetic pagemap, {n} entries, {os.path.getsize(path) / 2**20:.1f} MiB: "
              f"crfs decoder {secs:.3f} s ({secs / n * 1e6:.2f} us/entry)", end="")
        if has_pycriu:
            code = ("import time, pycriu.images as images\n"
                    f"f = open({path!r}, 'rb')\nt = time.perf_counter()\n"
                    "n = len(images.load(f)['entries'])\nprint(time.perf_counter() - t)")
            theirs = min(float(child([SYSTEM_PYTHON, "-c", code], system_env)[2])
                         for _ in range(3))
            print(f"; pycriu {theirs:.3f} s ({theirs / n * 1e6:.2f} us/entry); "
                  f"ratio crfs/pycriu {secs / theirs:.2f}")
        else:
            print()
        try:
            classes = protobuf_classes()
        except ImportError:
            print("protobuf package: not importable (pip install --target DIR protobuf, "
                  "then PYTHONPATH=DIR)")
            return
        import google.protobuf
        from google.protobuf.internal import api_implementation
        pb = min(decode_protobuf(path, classes) for _ in range(3))[0]
        print(f"protobuf {google.protobuf.__version__} ({api_implementation.Type()}) with "
              f"crfs's declarations: {pb:.3f} s ({pb / n * 1e6:.2f} us/entry); "
              f"ratio crfs/protobuf {secs / pb:.2f}")
        code = ("import sys, time; t = time.perf_counter(); sys.path[:0] = [%r, %r]\n"
                "import criu_index; criu_index.protobuf_classes()\n"
                "print(time.perf_counter() - t)" % (str(ROOT), str(ROOT / "bench")))
        cost = min(float(child([sys.executable, "-c", code])[2]) for _ in range(3))
        print(f"protobuf import + class building: {cost:.3f} s per process")


if __name__ == "__main__":
    main()
