"""Mount campaign: a store of corrupted images under the real daemon, walked end to end.

    python fuzz/mount_walk.py [--images 1000] [--seed 1] [--keep DIR] [--corpus DIR]

Makes a store of mutated real images of every format and arch (bit flips, truncations,
length and count fields set to huge or negative values, records swapped, dropped or
repeated; record boundaries come from `crfs records`) plus a few sound images, mounts it
with `python -m crfs MNT -o store=DIR,log=FILE`, and walks every tree: lists every
directory (a bounded number of entries each), reads every file (its first MiB and its
last chunk), and reads `mem` at the edges of every VMA that `maps` lists.

Passes when: the daemon never dies (the mount answers to the end), every failed call is a
clean errno (EIO, EINVAL, ENOENT, ...; never ENOTCONN), the log has no traceback and no
ERROR, the store files are unchanged, and the sound images' trees read back
byte-identical at the end. Prints the figures; exit status 0 only on a pass.
"""

import argparse
import collections
import errno
import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from crfs.errors import FormatError  # noqa: E402
from crfs.formats.source import MemorySource  # noqa: E402
from crfs.model import registry  # noqa: E402

CHUNK = 64 * 1024
FILE_LIMIT = 1 << 20        # bytes read from the start of a file; then only its last chunk
ENTRIES_LIMIT = 200         # entries listed per directory (pages/ may list millions)
MEM_VMAS = 8                # VMAs of maps whose edges are read through mem
CLEAN = {errno.EIO, errno.EINVAL, errno.ENOENT, errno.EACCES, errno.EPERM, errno.EOPNOTSUPP,
         errno.ENODATA, errno.EFBIG, errno.EOVERFLOW, errno.ENOTDIR, errno.EISDIR,
         errno.ENAMETOOLONG}
HUGE = (0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFFFFFFFFFF, 0x7FFFFFFFFFFFFFFF,
        0x8000000000000000, 0x10000, 0x1000000, 0)


# ---------------------------------------------------------------- mutations

def record_spans(data):
    """(offset, length) of the records `crfs records` finds in `data` (may be partial)."""
    spans = []
    try:
        for rec in registry.records(MemorySource(data)):
            spans.append((rec.offset, rec.length))
            if len(spans) > 10_000:
                break
    except FormatError:
        pass
    return spans


def mutate(data, rng):
    """One corrupted variant of `data` and a word saying how."""
    spans = record_spans(data) or [(0, len(data))]
    out = bytearray(data)
    kind = rng.choice(("flip", "flip", "truncate", "field", "field", "field", "swap", "drop",
                       "repeat", "header-flip"))
    if kind == "flip":
        for _ in range(rng.randint(1, 16)):
            pos = rng.randrange(len(out))
            out[pos] ^= 1 << rng.randrange(8)
    elif kind == "header-flip":
        for _ in range(rng.randint(1, 4)):
            off, length = rng.choice(spans)
            pos = off + rng.randrange(max(1, min(length, 64)))
            if pos < len(out):
                out[pos] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        off, length = rng.choice(spans)
        cut = off + rng.choice((0, 1, length // 2, max(length - 1, 0), rng.randrange(length + 1)))
        del out[max(cut, 1):]
    elif kind == "field":
        for _ in range(rng.randint(1, 3)):
            off, length = rng.choice(spans)
            width = rng.choice((2, 4, 4, 8, 8))
            pos = off + rng.randrange(max(1, min(length, 96) - width + 1)) // width * width
            if pos + width > len(out):
                continue
            value = rng.choice(HUGE + (len(data), len(data) * 4096,
                                       rng.getrandbits(8 * width)))
            value &= (1 << (8 * width)) - 1
            out[pos:pos + width] = value.to_bytes(width, "little")
    elif kind in ("swap", "drop", "repeat") and len(spans) > 2:
        i = rng.randrange(1, len(spans))
        j = rng.randrange(1, len(spans))
        pieces = [bytes(out[o:o + n]) for o, n in spans]
        tail = bytes(out[spans[-1][0] + spans[-1][1]:])
        if kind == "swap":
            pieces[i], pieces[j] = pieces[j], pieces[i]
        elif kind == "drop":
            del pieces[i]
        else:
            pieces.insert(i, pieces[j])
        out = bytearray(bytes(out[:spans[0][0]]) + b"".join(pieces) + tail)
    else:
        kind = "flip"
        out[rng.randrange(len(out))] ^= 0xFF
    return bytes(out), kind


def make_store(store, base_images, count, rng):
    """`count` corrupted images from `base_images` ({name: bytes}), plus the sound ones."""
    kinds = collections.Counter()
    names = sorted(base_images)
    for i in range(count):
        base = names[i % len(names)]
        data = base_images[base]
        mutated, kind = mutate(data, rng)
        if rng.random() < 0.3:      # a second mutation now and then
            mutated, kind2 = mutate(mutated, rng)
            kind = f"{kind}+{kind2}"
        kinds[kind.split("+")[0]] += 1
        with open(os.path.join(store, f"bad-{i:05d}-{base}"), "wb") as f:
            f.write(mutated)
    sound = []
    for name in names:
        with open(os.path.join(store, f"sound-{name}"), "wb") as f:
            f.write(base_images[name])
        sound.append(f"sound-{name}")
    return sound, kinds


# ---------------------------------------------------------------- the walk

class Walk:
    def __init__(self, mount):
        self.mount = mount
        self.errors = collections.Counter()   # errno name -> count
        self.unclean = []                     # (path, errno) of failures not in CLEAN
        self.files = self.dirs = self.bytes = self.mem_reads = 0

    def failed(self, path, exc):
        code = exc.errno
        self.errors[errno.errorcode.get(code, str(code))] += 1
        if code not in CLEAN:
            self.unclean.append((path, errno.errorcode.get(code, str(code))))

    def tree(self, top, digests=None):
        """Walk `top`; with `digests` (a dict), record each file's sha256 in it."""
        stack = [top]
        while stack:
            path = stack.pop()
            try:
                with os.scandir(path) as it:
                    entries = []
                    for entry in it:
                        entries.append(entry)
                        if len(entries) >= ENTRIES_LIMIT:
                            break
            except OSError as exc:
                self.failed(path, exc)
                continue
            self.dirs += 1
            for entry in entries:
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError as exc:
                    self.failed(entry.path, exc)
                    continue
                if is_dir:
                    stack.append(entry.path)
                elif entry.name == "mem":
                    self.mem(entry.path, os.path.join(path, "mm", "maps"))
                else:
                    self.read(entry.path, digests)

    def read(self, path, digests=None):
        digest = hashlib.sha256()
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            self.failed(path, exc)
            return
        try:
            size = os.fstat(fd).st_size
            offset = 0
            while offset < FILE_LIMIT:
                data = os.pread(fd, CHUNK, offset)
                if not data:
                    break
                digest.update(data)
                offset += len(data)
            if size > FILE_LIMIT:
                data = os.pread(fd, CHUNK, max(size - CHUNK, FILE_LIMIT))
                digest.update(data)
                offset += len(data)
            self.bytes += offset
            self.files += 1
            if digests is not None:
                digests[os.path.relpath(path, self.mount)] = digest.hexdigest()
        except OSError as exc:
            self.failed(path, exc)
        finally:
            os.close(fd)

    def mem(self, path, maps):
        """mem at the first and last bytes of the first VMAs that maps lists."""
        addrs = []
        try:
            with open(maps, "rb") as f:
                for line in f.read(FILE_LIMIT).splitlines()[:MEM_VMAS]:
                    start, _, end = line.split(b" ", 1)[0].partition(b"-")
                    addrs += [int(start, 16), max(int(end, 16) - 16, int(start, 16))]
        except (OSError, ValueError) as exc:
            if isinstance(exc, OSError):
                self.failed(maps, exc)
        addrs.append(0)       # in no VMA: EIO
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            self.failed(path, exc)
            return
        try:
            for addr in addrs:
                try:
                    self.bytes += len(os.pread(fd, 4096, addr))
                    self.mem_reads += 1
                except OverflowError:
                    pass       # an address past the largest file offset
                except OSError as exc:
                    self.failed(f"{path}@{addr:#x}", exc)
        finally:
            os.close(fd)


# ---------------------------------------------------------------- the campaign

def daemon_pid(mountpoint):
    """The pid of the crfs daemon serving `mountpoint` (the one we started)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"crfs" in argv and os.fsencode(mountpoint) in argv:
            return int(pid)
    return None


def base_images(corpus_dir):
    """{name: bytes} of the sound images to mutate: fresh seeds of every format and arch."""
    images = {}
    with tempfile.TemporaryDirectory() as tmp:
        if corpus_dir is None:
            corpus_dir = os.path.join(tmp, "seeds")
            subprocess.run([sys.executable, os.path.join(ROOT, "fuzz", "make_seeds.py"),
                            corpus_dir], check=True, capture_output=True)
        for fmt in sorted(os.listdir(corpus_dir)):
            for name in sorted(os.listdir(os.path.join(corpus_dir, fmt))):
                with open(os.path.join(corpus_dir, fmt, name), "rb") as f:
                    data = f.read()
                try:
                    registry.load(MemorySource(data))
                except FormatError:
                    continue        # a corpus entry that is not a sound image
                images[f"{fmt}-{name}"] = data
    return images


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000, help="corrupted images")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", help="make the store and mount under DIR and keep them")
    parser.add_argument("--corpus", help="sound images as DIR/<format>/* (default: made "
                                         "by fuzz/make_seeds.py)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = args.keep or tempfile.mkdtemp(prefix="crfs-mount-walk-")
    store, mnt, log = (os.path.join(work, n) for n in ("store", "mnt", "crfs.log"))
    os.makedirs(store)
    os.makedirs(mnt)
    started = time.time()
    bases = base_images(args.corpus)
    sound, kinds = make_store(store, bases, args.images, rng)
    before = {}
    for name in sorted(os.listdir(store)):
        with open(os.path.join(store, name), "rb") as f:
            before[name] = hashlib.sha256(f.read()).hexdigest()
    print(f"store: {args.images} corrupted images from {len(bases)} sound ones "
          f"({dict(sorted(kinds.items()))}), {len(sound)} sound")

    subprocess.run([sys.executable, "-m", "crfs", mnt, "-o", f"store={store},log={log}"],
                   check=True, timeout=60, cwd=ROOT,
                   env={**os.environ, "PYTHONPATH": ROOT})
    pid = daemon_pid(mnt)
    problems = []
    walk = Walk(mnt)
    try:
        first = {}
        for name in sound:
            walk.tree(os.path.join(mnt, name), first)
        names = sorted(os.listdir(mnt))
        bad = [n for n in names if n.startswith("bad-")]
        for i, name in enumerate(bad):
            walk.tree(os.path.join(mnt, name))
            if not os.path.ismount(mnt) or (pid and not os.path.exists(f"/proc/{pid}")):
                problems.append(f"daemon gone after {name}")
                break
            if i % 100 == 99:
                print(f"  {i + 1} images walked, {walk.files} files, "
                      f"{time.time() - started:.0f} s", flush=True)
        last = {}
        for name in sound:
            walk.tree(os.path.join(mnt, name), last)
        if first != last or not first:
            changed = sorted(k for k in set(first) | set(last) if first.get(k) != last.get(k))
            problems.append(f"sound images read back differently: {changed[:5]}")
        if not os.path.ismount(mnt) or (pid and not os.path.exists(f"/proc/{pid}")):
            problems.append("daemon died")
    finally:
        subprocess.run(["fusermount3", "-u", mnt], timeout=60)
    for name, digest in before.items():
        with open(os.path.join(store, name), "rb") as f:
            if hashlib.sha256(f.read()).hexdigest() != digest:
                problems.append(f"store file {name} changed")
    with open(log, errors="replace") as f:
        log_text = f.read()
    bad_lines = [line for line in log_text.splitlines()
                 if "Traceback" in line or " ERROR " in line]
    if bad_lines:
        problems.append(f"{len(bad_lines)} traceback/ERROR lines in the log, first: "
                        f"{bad_lines[0]}")
    if walk.unclean:
        problems.append(f"{len(walk.unclean)} unclean errnos, first: {walk.unclean[:5]}")
    rejected = sum(1 for line in log_text.splitlines() if " WARNING " in line)

    print(f"images: {len(before)} ({args.images} corrupted, {len(sound)} sound)")
    print(f"directories listed: {walk.dirs}, files read: {walk.files}, mem reads: "
          f"{walk.mem_reads}, bytes read: {walk.bytes}")
    print(f"failed calls by errno: {dict(sorted(walk.errors.items()))}")
    print(f"log: {rejected} warnings (images refused), {len(bad_lines)} tracebacks/errors")
    print(f"time: {time.time() - started:.0f} s")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"kept: {work}")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    print("result:", "FAIL" if problems else "pass")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
