"""Structure-aware fuzzing of /dev/crfs: mutated real images through CHECK and RESTART,
and bad ioctl arguments. Guest step `fuzz` of tests/kmod_guest_checks.py, and the engine
of fuzz/kmod_fuzz.py (a longer campaign in the same guest).

Seeds are real images (a program checkpointed by the module and by crfs's writer, the
manifest's valid image), their page chunks cut to KEEP_PAGES pages each (PGARR and its
BUFFER rewritten together, so the seed stays valid and small). Each input is a seed with
one mutation, or two stacked, that knows the records: a 4 or 8 byte field of a record set
to an edge value (lengths, counts, objrefs, addresses, flags: every field is one of
those), a record's len or type changed, an objref swapped for another of the image,
records dropped, repeated, swapped, moved, the image truncated, a record inserted. Most
inputs go through CHECK (copy-in and validation: everything RESTART reads first); a
sample goes through RESTART by crfs-restart in a child process, which is killed if the
restore succeeds. Bad arguments: random and hostile struct fields, bad pointers, fds that
are not images, ioctl numbers next to the real ones, RESTART's in a child.

What counts as a bug: a kernel WARN, BUG, Oops or hang (the harness and dmesg see them),
a refusal without a reason, an errno outside the documented set. The step only counts;
tests/test_kmod_guest.py decides. Imports: the standard library and crfs.kernel only
(Python is ~10x slower under TCG).
"""

import collections
import contextlib
import ctypes
import errno
import json
import os
import random
import signal
import struct
import sys
import time

from crfs import kernel
from guest_util import dmesg_problems, in_child

KEEP_PAGES = 1
HDR = struct.Struct("<II")
PGARR, BUFFER, OBJREF = 403, 4, 6
KNOWN_TYPES = (1, 2, 3, 4, 5, 6, 7, 8, 101, 102, 103, 104, 105, 106, 107, 113, 114, 115,
               116, 117, 201, 202, 301, 302, 303, 304, 305, 308, 401, 402, 403, 404, 451,
               601, 602, 603, 604, 8001, 8002, 8009, 8010, 8020, 8021, 8022, 8023, 8024,
               8041, 9001, 9999)
SIZES = (8, 16, 24, 32, 40, 48, 56, 64, 72, 120, 200, 2056)
EDGE32 = (0, 1, 2, 3, 0x7F, 0x80, 0xFF, 0x100, 0xFFF, 0x1000, 0x7FFF, 0x8000, 0xFFFF,
          0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)
EDGE64 = EDGE32 + (1 << 32, (1 << 47) - 0x1000, 1 << 47, 0x7FFFFFFFF000, 0x7FFFFFFFE000,
                   0xFFFF800000000000, 0xFFFFFFFFFFFFF000, (1 << 63) - 1, 1 << 63,
                   (1 << 64) - 1, 0x400000, 0x10000000000)
# (record type, offset) of objref fields: OBJREF, TASK_OBJS, VMA, CRED, TASK_CREDS, USER
OBJREF_FIELDS = {6: (12,), 104: (8, 12, 16, 20, 24), 402: (12, 16), 114: (40, 44, 48),
                 117: (8, 12), 115: (12,), 113: (8,), 601: (), 102: ()}
# what a refusal may say (docs/kmod.md): anything else is reported
EXPECTED_ERRNOS = {"EINVAL", "EFBIG", "ENOMEM", "EOPNOTSUPP", "ENOENT", "EACCES", "EPERM",
                   "ENODEV", "ESTALE", "EBUSY", "EFAULT", "EBADF", "EIO", "ENOEXEC",
                   "EINTR", "ESRCH", "E2BIG", "ENOTTY", "ENXIO", "EOVERFLOW", "ENFILE",
                   "EMFILE", "ENOSPC", "ETXTBSY", "EISDIR", "ELOOP", "ENAMETOOLONG",
                   "ENOTDIR", "ECHILD", "EAGAIN", "EEXIST", "EROFS",
                   # crfs-restart's UNIX sockets: bind(2) to an abstract name a live socket
                   # holds (a mutated address), connect(2) to a listener that is gone
                   "EADDRINUSE", "ECONNREFUSED"}


def ename(code):
    if code == errno.EOPNOTSUPP:
        return "EOPNOTSUPP"
    return errno.errorcode.get(code, str(code))


# --------------------------------------------------------------------------- images

def records(data):
    """[(offset, type, len)] of the well-framed records of `data`, in order."""
    out, pos = [], 0
    while pos + 8 <= len(data):
        type_, length = HDR.unpack_from(data, pos)
        if length < 8 or pos + length > len(data):
            break
        out.append((pos, type_, length))
        pos += length
    return out


def shrink(data, keep=KEEP_PAGES, vaddr=8):
    """`data` with each PGARR{n} BUFFER{vaddr[n] pages[n]} cut to its first `keep` pages."""
    out, recs, i = [], records(data), 0
    while i < len(recs):
        pos, type_, length = recs[i]
        n = struct.unpack_from("<Q", data, pos + 8)[0] if type_ == PGARR and length == 16 else 0
        if n and i + 1 < len(recs) and recs[i + 1][1] == BUFFER:
            k = min(n, keep)
            bpos = recs[i + 1][0] + 8
            vaddrs = data[bpos:bpos + k * vaddr]
            pages = data[bpos + n * vaddr:bpos + n * vaddr + k * 4096]
            out += [HDR.pack(PGARR, 16), struct.pack("<Q", k),
                    HDR.pack(BUFFER, 8 + len(vaddrs) + len(pages)), vaddrs, pages]
            i += 2
            continue
        out.append(data[pos:pos + length])
        i += 1
    return b"".join(out)


class Mutator:
    """Mutations of one seed that know its records."""

    def __init__(self, data, rng):
        self.data = data
        self.rng = rng
        self.recs = records(data)
        self.objrefs = sorted({struct.unpack_from("<i", data, p + 12)[0]
                               for p, t, n in self.recs if t == OBJREF and n == 16})
        self.kinds = [(k, w) for k, w in (
            ("field32", 28), ("field64", 18), ("len", 8), ("type", 6), ("objref", 10),
            ("drop", 7), ("dup", 6), ("swap", 5), ("move", 4), ("truncate", 3),
            ("insert", 5))]

    def pick(self):
        """A record: half the time any, half the time one of a type drawn first, so that
        the rare records (one SECCOMP, four POSIX timers among hundreds of VMAs and page
        chunks) get their share."""
        if self.rng.random() < 0.5:
            rec = self.rng.choice(self.cur)
        else:
            rec = self.rng.choice(self.by_type[self.rng.choice(sorted(self.by_type))])
        self.touched.append(rec[1])
        return rec

    def mutate(self, data=None):
        """(kind, mutated bytearray) of the seed, or of `data` (a mutation to stack)."""
        self.cur = self.recs if data is None else records(bytes(data))
        self.by_type = collections.defaultdict(list)
        for rec in self.cur:
            self.by_type[rec[1]].append(rec)
        if data is None:
            self.touched = []     # the record types the mutation(s) changed
        data = bytearray(self.data if data is None else data)
        if len(self.cur) < 2:
            return "none", data
        kind = self.rng.choices([k for k, _ in self.kinds], [w for _, w in self.kinds])[0]
        getattr(self, "m_" + kind)(data)
        return kind, data

    def value(self, old, width):
        rng = self.rng
        edges = EDGE32 if width == 4 else EDGE64
        mask = (1 << (8 * width)) - 1
        choice = rng.random()
        if choice < 0.55:
            return rng.choice(edges) & mask
        if choice < 0.75:
            return (old + rng.choice((-4096, -8, -1, 1, 8, 4096))) & mask
        if choice < 0.9:
            return old ^ (1 << rng.randrange(8 * width))
        return rng.getrandbits(8 * width)

    def field(self, data, width):
        pos, _, length = self.pick()
        span = min(length, 8 + 512) - width
        if span < 0:
            return
        offset = pos + self.rng.randrange(0, span + 1, width)
        fmt = "<I" if width == 4 else "<Q"
        old = struct.unpack_from(fmt, data, offset)[0]
        struct.pack_into(fmt, data, offset, self.value(old, width))

    def m_field32(self, data):
        self.field(data, 4)

    def m_field64(self, data):
        self.field(data, 8)

    def m_len(self, data):
        pos, _, length = self.pick()
        new = self.rng.choice((0, 4, 7, 8, length - 1, length + 1, length - 8, length + 8,
                               0x7FFFFFFF, 0xFFFFFFFF, len(data) - pos, len(data) - pos + 1,
                               *SIZES))
        struct.pack_into("<I", data, pos + 4, new & 0xFFFFFFFF)

    def m_type(self, data):
        pos, _, _ = self.pick()
        new = self.rng.choice(KNOWN_TYPES + (0, 7777, 0xFFFFFFFF))
        struct.pack_into("<I", data, pos, new)

    def m_objref(self, data):
        fields = [(p, o) for p, t, n in self.cur for o in OBJREF_FIELDS.get(t, ())
                  if o + 4 <= n]
        if not fields:
            return self.m_field32(data)
        pos, offset = self.rng.choice(fields)
        self.touched.append(HDR.unpack_from(data, pos)[0])
        values = list(self.objrefs) + [0, -1, -2, 1 << 30, 0x7FFFFFFF, -0x80000000,
                                       (max(self.objrefs) + 1) if self.objrefs else 1]
        struct.pack_into("<i", data, pos + offset, self.rng.choice(values))
        if self.rng.random() < 0.2:   # and an OBJREF's objtype
            objs = [p for p, t, n in self.cur if t == OBJREF]
            if objs:
                struct.pack_into("<I", data, self.rng.choice(objs) + 8,
                                 self.rng.randrange(0, 24))

    def cut(self, data, start, end, insert=b""):
        data[start:end] = insert

    def m_drop(self, data):
        pos, _, length = self.pick()
        self.cut(data, pos, pos + length)

    def m_dup(self, data):
        pos, _, length = self.pick()
        rec = bytes(data[pos:pos + length])
        at = pos + length if self.rng.random() < 0.7 else self.pick()[0]
        data[at:at] = rec

    def m_swap(self, data):
        i = self.rng.randrange(len(self.cur) - 1)
        (p1, t1, n1), (p2, t2, n2) = self.cur[i], self.cur[i + 1]
        self.touched += [t1, t2]
        a, b = bytes(data[p1:p1 + n1]), bytes(data[p2:p2 + n2])
        data[p1:p2 + n2] = b + a

    def m_move(self, data):
        pos, _, length = self.pick()
        rec = bytes(data[pos:pos + length])
        del data[pos:pos + length]
        at = self.rng.choice(records(bytes(data)) or [(0, 0, 0)])[0]
        data[at:at] = rec

    def m_truncate(self, data):
        pos, _, length = self.pick()
        del data[pos + self.rng.choice((0, 4, 8, length // 2, max(length - 1, 0))):]

    def m_insert(self, data):
        rng = self.rng
        type_ = rng.choice((7777, 8010, 8002, 8001, 8003, 303, 4, 5, 6, 9999, 9001, 305,
                            308, 8009, 8020, 8021, 8022, 8023, 8024, 8041))
        self.touched.append(type_)
        size = rng.choice((8, 16, 24, 32, 40, 48, 16 + 8 * rng.randrange(8)))
        rec = HDR.pack(type_, size) + bytes(rng.getrandbits(8) for _ in range(size - 8))
        at = self.pick()[0]
        data[at:at] = rec


# --------------------------------------------------------------------------- calls

class Stats:
    def __init__(self):
        self.inputs = 0
        self.kinds = collections.Counter()
        self.types = collections.Counter()     # record types the mutations touched
        self.errnos = collections.Counter()
        self.accepted = 0
        self.no_reason = []       # (kind, errno) of refusals without a reason: bugs
        self.unexpected = []      # errnos outside EXPECTED_ERRNOS, other exceptions
        self.slowest = 0.0

    def as_dict(self):
        return {"inputs": self.inputs, "kinds": dict(self.kinds),
                "types": {str(k): v for k, v in sorted(self.types.items())},
                "errnos": dict(self.errnos), "accepted": self.accepted,
                "no_reason": self.no_reason[:20], "no_reason_count": len(self.no_reason),
                "unexpected": self.unexpected[:20], "slowest": round(self.slowest, 3)}


def check_once(dev, fd, stats, kind, task_index=0):
    t0 = time.monotonic()
    try:
        dev.check(fd, task_index)
        stats.accepted += 1
    except kernel.KernelError as exc:
        name = ename(exc.errno)
        stats.errnos[name] += 1
        if not (exc.reason or "").strip():
            stats.no_reason.append([kind, name])
        if name not in EXPECTED_ERRNOS:
            stats.unexpected.append([kind, name, exc.reason])
    except Exception as exc:   # noqa: BLE001 - counted, never hidden
        stats.unexpected.append([kind, "exception", repr(exc)])
    stats.slowest = max(stats.slowest, time.monotonic() - t0)
    stats.inputs += 1
    stats.kinds[kind] += 1


def write_input(fd, data):
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def check_campaign(dev, mutators, scratch, count, seconds, rng):
    """`count` mutated inputs through CHECK (fewer if `seconds` run out)."""
    stats = Stats()
    fd = os.open(scratch, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + seconds
    try:
        while stats.inputs < count and time.monotonic() < deadline:
            mutator = rng.choice(mutators)
            kind, data = mutator.mutate()
            if rng.random() < 0.2:
                kind2, data = mutator.mutate(data)
                kind = f"{kind}+{kind2}"
            stats.types.update(set(mutator.touched))
            write_input(fd, data)
            task_index = 0 if rng.random() < 0.9 else rng.choice((1, 2, 3, 1 << 31))
            check_once(dev, fd, stats, kind, task_index)
    finally:
        os.close(fd)
    return stats


def restart_campaign(mutators, scratch, restarter, count, seconds, rng, workers=1):
    """`count` mutated inputs restarted by crfs-restart in a child; a restored one is
    killed with its process group. `workers` > 1: that many at a time, each worker with
    its own scratch file and random generator (drawn from `rng`)."""
    stats = Stats()
    deadline = time.monotonic() + seconds
    if workers <= 1:
        while stats.inputs < count and time.monotonic() < deadline:
            restart_one(rng.choice(mutators), scratch, restarter, stats)
        return stats
    import threading
    lock = threading.Lock()
    started = [0]

    def worker(n, wrng):
        own = [Mutator(m.data, wrng) for m in mutators]
        while time.monotonic() < deadline:
            with lock:
                if started[0] >= count:
                    return
                started[0] += 1
            restart_one(wrng.choice(own), f"{scratch}.{n}", restarter, stats, lock)

    threads = [threading.Thread(target=worker, args=(n, random.Random(rng.getrandbits(64))))
               for n in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return stats


def restart_one(mutator, scratch, restarter, stats, lock=None):
    """One mutated input of `mutator` through RESTART, counted in `stats`."""
    kind, data = mutator.mutate()
    touched = set(mutator.touched)
    with open(scratch, "wb") as f:
        f.write(data)
    t0 = time.monotonic()
    child = kernel.restart_in_child(scratch, restarter=restarter, timeout=60)
    took = time.monotonic() - t0
    if child.errno == 0:
        kill_restored(child)
    with lock or contextlib.nullcontext():
        stats.types.update(touched)
        stats.slowest = max(stats.slowest, took)
        stats.inputs += 1
        stats.kinds[kind] += 1
        if child.errno == 0:
            stats.accepted += 1
            return
        name = ename(child.errno)
        stats.errnos[f"{name}@{child.stage}"] += 1
        if not (child.reason or "").strip():
            stats.no_reason.append([kind, name, child.stage])
        if name not in EXPECTED_ERRNOS:
            stats.unexpected.append([kind, name, child.reason])
            keep_input(scratch, len(stats.unexpected))


def keep_input(scratch, n):
    """A copy of an input with an unexpected outcome in $CRFS_FUZZ_KEEP, if set."""
    keep = os.environ.get("CRFS_FUZZ_KEEP")
    if keep and n <= 20:
        with open(scratch, "rb") as src, open(os.path.join(keep, f"unexpected{n}.img"),
                                              "wb") as dst:
            dst.write(src.read())


def kill_restored(child):
    for pid in {child.pid, child.process.pid}:
        try:
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    child.process.wait()


# --------------------------------------------------------------------------- arguments

BAD_POINTERS = (0, 1, 8, 0x1000, 0xFFF8, 0x7FFFFFFFF000, 0x7FFFFFFFFFF8,
                0xFFFF888000000000, 0xFFFFFFFFFFFFFFF0)


def bad_argument(dev, rng, fds):
    """One ioctl with hostile arguments; (request name, errno name)."""
    base = rng.choice((("CHECK", kernel.CRFS_IOC_CHECK, kernel.ImageArgs),
                       ("CHECKPOINT", kernel.CRFS_IOC_CHECKPOINT, kernel.CheckpointArgs),
                       ("VERSION", kernel.CRFS_IOC_VERSION, None)))
    name, request, args_type = base
    if rng.random() < 0.15:    # a number next to the real ones: other nr, size, direction
        request ^= rng.choice((1, 2, 3, 1 << 16, 8 << 16, 1 << 30, 1 << 31))
        name += "~"
        if request == kernel.CRFS_IOC_RESTART:    # only ever from a child (below)
            request = kernel.CRFS_IOC_CHECK
    if args_type is None or rng.random() < 0.25:
        arg = rng.choice(BAD_POINTERS)
        ret = kernel._ioctl(dev.fd, request, arg)
        return name + "/pointer", ret
    buf = ctypes.create_string_buffer(bytes(rng.getrandbits(8)
                                            for _ in range(ctypes.sizeof(args_type))))
    args = args_type.from_buffer(buf)
    args.fd = rng.choice(fds + [-1, 1 << 30, 0x7FFFFFFF, rng.getrandbits(31)])
    if rng.random() < 0.5:
        args.flags = rng.choice((0, 1, 2, 0x80000000, 0xFFFFFFFF))
    if name.startswith("CHECKPOINT"):
        args.pid = rng.choice((0, -1, 1, os.getpid(), 0x7FFFFFFF, -0x80000000))
        if rng.random() < 0.5:
            args._reserved = 0
    else:
        args.task_index = rng.choice((0, 1, 0xFFFFFFFF, rng.getrandbits(32)))
    ret = kernel._ioctl(dev.fd, request, ctypes.addressof(args))
    return name, ret


def argument_campaign(dev, count, seconds, rng, scratch_dir):
    """`count` calls with bad arguments; no call may succeed but VERSION."""
    fds = bad_fds(scratch_dir)
    seen = collections.Counter()
    succeeded = []
    deadline = time.monotonic() + seconds
    n = 0
    try:
        while n < count and time.monotonic() < deadline:
            name, ret = bad_argument(dev, rng, list(fds.values()))
            n += 1
            seen[f"{name}:{ename(-ret) if ret < 0 else 'ok'}"] += 1
            if ret >= 0 and not name.startswith("VERSION"):
                succeeded.append(name)
    finally:
        for fd in fds.values():
            os.close(fd)
    return {"calls": n, "outcomes": dict(seen), "succeeded": succeeded[:20]}


def bad_fds(scratch_dir):
    """Descriptors that are not images: a directory, a pipe, /dev/null, a write-only
    file, an empty file, /dev/crfs itself."""
    r, w = os.pipe()
    os.close(w)
    empty = os.path.join(scratch_dir, "empty")
    open(empty, "wb").close()
    return {"dir": os.open(scratch_dir, os.O_RDONLY | os.O_DIRECTORY),
            "pipe": r, "null": os.open("/dev/null", os.O_RDWR),
            "wronly": os.open(empty, os.O_WRONLY), "empty": os.open(empty, os.O_RDONLY),
            "crfs": os.open(kernel.DEVICE, os.O_RDWR)}


def restart_arguments_in_child(count, rng_seed):
    """RESTART with hostile arguments, from a forked child (a call that restored would
    replace it, never this process): {errno: count}, or why the child did not report."""
    def call():
        rng = random.Random(rng_seed)
        seen = collections.Counter()
        try:
            with kernel.Device() as dev:
                for _ in range(count):
                    args = kernel.ImageArgs(fd=rng.choice((-1, 0, 1, 2, dev.fd, 1 << 20)),
                                            flags=rng.choice((0, 1, 0xFFFFFFFF)),
                                            task_index=rng.choice((0, 1, 0xFFFFFFFF)))
                    arg = ctypes.addressof(args) if rng.random() < 0.7 else \
                        rng.choice(BAD_POINTERS)
                    ret = kernel._ioctl(dev.fd, kernel.CRFS_IOC_RESTART, arg)
                    seen[ename(-ret) if ret < 0 else "ok"] += 1
        except BaseException as exc:   # noqa: BLE001 - always report
            seen["child " + repr(exc)] += 1
        return seen
    return in_child(call, {"no report": 1})


# --------------------------------------------------------------------------- campaigns

def load_seeds(paths):
    """{path: shrunk bytes} of the seed images that exist."""
    seeds = {}
    for path in paths:
        if path and os.path.exists(path):
            with open(path, "rb") as f:
                seeds[path] = shrink(f.read())
    return seeds


def campaign(seeds, restarter, scratch_dir, rng_seed=1, checks=10000, check_seconds=180,
             restarts=150, restart_seconds=60, arguments=2000, argument_seconds=20,
             restart_workers=1):
    """The whole campaign over `seeds` ({name: bytes}); its figures as a dict."""
    rng = random.Random(rng_seed)
    os.makedirs(scratch_dir, exist_ok=True)
    out = {"seeds": {name: len(data) for name, data in seeds.items()},
           "seed_records": {name: dict(collections.Counter(str(t) for _, t, _ in
                                                           records(data)))
                            for name, data in seeds.items()}}
    mutators = [Mutator(data, rng) for data in seeds.values()]
    scratch = os.path.join(scratch_dir, "input.img")
    t0 = time.monotonic()
    with kernel.Device() as dev:
        baseline = Stats()
        for name, data in seeds.items():
            fd = os.open(scratch, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            write_input(fd, data)
            check_once(dev, fd, baseline, "seed")
            os.close(fd)
        out["seed_check"] = baseline.as_dict()
        out["check"] = check_campaign(dev, mutators, scratch, checks, check_seconds,
                                      rng).as_dict()
        out["t_check"] = round(time.monotonic() - t0, 1)
        out["arguments"] = argument_campaign(dev, arguments, argument_seconds, rng,
                                             scratch_dir)
    out["restart_arguments"] = restart_arguments_in_child(200, rng_seed)
    out["t_arguments"] = round(time.monotonic() - t0, 1)
    if restarter:
        out["restart"] = restart_campaign(mutators, scratch, restarter, restarts,
                                          restart_seconds, rng,
                                          restart_workers).as_dict()
    out["t_restart"] = round(time.monotonic() - t0, 1)
    return out


def seed_images(manifest, steps):
    """The real images the other steps made, else new ones (restore_target checkpointed by
    the module and by crfs's writer, as in step file_id); step anonfd's if it ran."""
    import guest_file_id as fid
    kimg, pimg = (os.path.join(fid.DIR, name) for name in ("kernel.img", "ptrace.img"))
    if not (os.path.exists(kimg) and os.path.exists(pimg)):
        proc, _ = fid.start(manifest["restore"])
        fid.checkpoints(proc, kimg, pimg)
    threads = (steps.get("threads") or {}).get("image")
    # step anonfd's images when it ran before (the whole suite): eventfd, timerfds,
    # signalfd, epoll items, a pipe's bytes, at no cost here
    import guest_anonfd
    anon = [os.path.join(guest_anonfd.WORK, f"{via}.img") for via in ("ptrace", "kernel")]
    return [kimg, pimg, manifest["valid"], threads, *anon]


def fuzz_step(manifest, steps):
    """Guest step `fuzz`: a campaign bounded to ~4 minutes under TCG."""
    seeds = load_seeds(seed_images(manifest, steps))
    out = campaign(seeds, manifest["restore"]["restarter"], "/tmp/crfs-fuzz",
                   rng_seed=int(os.environ.get("CRFS_FUZZ_SEED", "1")),
                   checks=int(os.environ.get("CRFS_FUZZ_CHECKS", "10000")),
                   check_seconds=120, restarts=120, restart_seconds=40, argument_seconds=15)
    out["dmesg_problems"] = dmesg_problems()
    return out


def main(argv):
    """fuzz/kmod_fuzz.py's guest side: guest_fuzz.py MODULE.ko RESTARTER TARGET OUT.json
    [SEED...]: TARGET (restore_target) checkpointed by the module and by crfs's writer
    are seeds too. CRFS_FUZZ_{SEED,CHECKS,CHECK_SECONDS,RESTARTS,RESTART_SECONDS,
    ARGUMENTS} from the environment; CRFS_FUZZ_TARGETS: a directory of the targets
    tests/guest_fuzz_seeds.py checkpoints into more seeds."""
    import subprocess
    import guest_file_id as fid
    module, restarter, target, out_path, *paths = argv
    subprocess.run(["insmod", module], check=True)
    env = os.environ.get
    try:
        kimg, pimg = (os.path.join(fid.DIR, name) for name in ("kernel.img", "ptrace.img"))
        proc, _ = fid.start({"targets": {"dynamic": target}, "limit": 1000000})
        fid.checkpoints(proc, kimg, pimg)
        more, reports = [], {}
        if env("CRFS_FUZZ_TARGETS"):
            import guest_fuzz_seeds
            more, reports = guest_fuzz_seeds.make(env("CRFS_FUZZ_TARGETS"))
        out = campaign(load_seeds([kimg, pimg, *paths, *more]), restarter, "/tmp/crfs-fuzz",
                       rng_seed=int(env("CRFS_FUZZ_SEED", "1")),
                       checks=int(env("CRFS_FUZZ_CHECKS", "100000")),
                       check_seconds=float(env("CRFS_FUZZ_CHECK_SECONDS", "1800")),
                       restarts=int(env("CRFS_FUZZ_RESTARTS", "1000")),
                       restart_seconds=float(env("CRFS_FUZZ_RESTART_SECONDS", "600")),
                       arguments=int(env("CRFS_FUZZ_ARGUMENTS", "20000")),
                       argument_seconds=120,
                       restart_workers=int(env("CRFS_FUZZ_RESTART_WORKERS", "1")))
        out["seed_checkpoints"] = reports
    finally:
        time.sleep(0.5)
        rmmod = subprocess.run(["rmmod", "crfs"], capture_output=True, text=True)
    out["rmmod"] = rmmod.returncode
    out["dmesg_problems"] = dmesg_problems()
    with open(out_path, "w") as f:
        json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
