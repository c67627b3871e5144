"""Which pages a process wrote since its last checkpoint (for incremental images).

Two kernel mechanisms, chosen once per host (method()):

- soft-dirty (CONFIG_MEM_SOFT_DIRTY, e.g. Debian's 6.1): writing "4" to
  /proc/<pid>/clear_refs clears every page's soft-dirty bit; a write sets it again, and bit
  55 of the page's /proc/<pid>/pagemap entry shows it (Documentation/admin-guide/mm/
  soft-dirty.rst). New mappings, and pages mremap moved, are soft-dirty.
- PAGEMAP_SCAN with userfaultfd WP_ASYNC (Linux 6.7, Documentation/admin-guide/mm/
  pagemap.rst): a userfaultfd created *in the target* (one injected syscall; the kernel
  ties it to the caller's address space), fetched with pidfd_getfd, its private VMAs
  registered for write-protection with UFFD_FEATURE_WP_ASYNC: the kernel then resolves a
  write fault by itself and the PTE loses its uffd-wp bit, which the PAGEMAP_SCAN ioctl on
  /proc/<pid>/pagemap reports as PAGE_IS_WRITTEN (and PM_SCAN_WP_MATCHING protects again).
  The userfaultfd must stay open for the tracking to last, so the target keeps it: one
  close-on-exec descriptor `anon_inode:[userfaultfd]`, moved to a high number. A VMA
  registered with no userfaultfd (new since, mremap'd, or the descriptor closed by the
  program) reports all its pages written: a child image then holds them, never less.

A checkpoint that starts or resets tracking records, in a small state file per process
(keyed by pid and start time), which image it wrote (path, identity, SHA-256): a child
checkpoint may only name that image as its parent, since the dirty bits say "since the last
reset" and nothing else.
"""

import ctypes
import errno
import json
import mmap
import os
import resource

from crfs.checkpoint import procfs, ptrace
from crfs.errors import CheckpointError
from crfs.formats.x86 import PAGE_SIZE

SOFT_DIRTY = "CRFS_TRACKING_SOFT_DIRTY"
PAGEMAP_SCAN_METHOD = "CRFS_TRACKING_PAGEMAP_SCAN"
NAMES = {SOFT_DIRTY: "soft-dirty", PAGEMAP_SCAN_METHOD: "PAGEMAP_SCAN + userfaultfd WP_ASYNC"}
SOFT_DIRTY_BYTE = bytes(0x01 if b & 0x80 else 0 for b in range(256))   # bit 55 in byte 6

PAGEMAP_SCAN = 0xC0606610          # _IOWR('f', 16, struct pm_scan_arg)
PM_SCAN_WP_MATCHING = 1
PAGE_IS_WRITTEN = 1 << 1
SCAN_END = (1 << 47) - 4096        # TASK_SIZE_MAX of x86_64 (4-level paging)
SCAN_REGIONS = 4096
UFFDIO_API = 0xC018AA3F
UFFDIO_REGISTER = 0xC020AA00
UFFD_API = 0xAA
UFFD_USER_MODE_ONLY = 1
UFFD_FEATURE_WP_UNPOPULATED = 1 << 13
UFFD_FEATURE_WP_ASYNC = 1 << 15
UFFDIO_REGISTER_MODE_WP = 1 << 1
SYS_USERFAULTFD = 323
SYS_FCNTL = 72
SYS_CLOSE = 3
SYS_PIDFD_OPEN = 434
SYS_PIDFD_GETFD = 438
F_DUPFD_CLOEXEC = 1030
HIGH_FD = 1024
UFFD_LINK = "anon_inode:[userfaultfd]"
SOFT_DIRTY_BIT = 1 << 55
UFFD_WP_MARKER = 1 << 62 | 1 << 57 | 1 << 5 | 31   # swapped, uffd-wp, offset 1, type 31
MARKER_TOP_BYTE = bytes(int(b == UFFD_WP_MARKER >> 56) for b in range(256))

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
_method = []


class NoTracking(CheckpointError):
    def __init__(self):
        super().__init__("this kernel cannot track written pages: it has neither soft-dirty "
                         "bits (CONFIG_MEM_SOFT_DIRTY) nor PAGEMAP_SCAN with userfaultfd "
                         "WP_ASYNC (Linux 6.7); take full checkpoints", errno.EOPNOTSUPP)


def method():
    """SOFT_DIRTY, PAGEMAP_SCAN_METHOD or None: what this kernel offers (probed once on
    crfs's own memory). CRFS_TRACKING=soft-dirty|pagemap-scan|none overrides (tests)."""
    forced = os.environ.get("CRFS_TRACKING")
    if forced:
        return {"soft-dirty": SOFT_DIRTY, "pagemap-scan": PAGEMAP_SCAN_METHOD}.get(forced)
    if not _method:
        _method.append(SOFT_DIRTY if _has_soft_dirty() else
                       PAGEMAP_SCAN_METHOD if _has_pagemap_scan() else None)
    return _method[0]


def _has_soft_dirty():
    """A page written after clear_refs 4 is soft-dirty only where the kernel tracks it."""
    area = mmap.mmap(-1, PAGE_SIZE)
    try:
        area[0] = 1
        address = ctypes.addressof(ctypes.c_char.from_buffer(area))
        with open("/proc/self/pagemap", "rb") as pagemap:
            entry = os.pread(pagemap.fileno(), 8, address // PAGE_SIZE * 8)
        return bool(int.from_bytes(entry, "little") >> 55 & 1)
    except OSError:
        return False
    finally:
        try:
            area.close()
        except BufferError:
            pass


def _has_pagemap_scan():
    fd = _libc.syscall(SYS_USERFAULTFD, UFFD_USER_MODE_ONLY | os.O_CLOEXEC)
    if fd < 0:
        return False
    try:
        if _api(fd) is None:
            return False
        with open("/proc/self/pagemap", "rb") as pagemap:
            return _scan(pagemap.fileno(), 0, PAGE_SIZE, 0) is not None
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- scans

def written(pid, tracking, runs):
    """The (first, stop) runs of `runs` (ascending page runs) written since the last reset."""
    if tracking == SOFT_DIRTY:
        return _soft_dirty_runs(pid, runs)
    fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    try:
        regions = _scan(fd, 0, SCAN_END, 0)
    finally:
        os.close(fd)
    if regions is None:
        raise CheckpointError(f"pid {pid}: PAGEMAP_SCAN failed", errno.EIO)
    return intersect(runs, regions)


def _pagemap_chunks(pid, runs):
    """(address, pagemap entries as bytes) of `runs`, PAGEMAP_CHUNK pages at a time."""
    fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    try:
        for first, stop in runs:
            for lo in range(first, stop, procfs.PAGEMAP_CHUNK * PAGE_SIZE):
                hi = min(stop, lo + procfs.PAGEMAP_CHUNK * PAGE_SIZE)
                yield lo, os.pread(fd, (hi - lo) // PAGE_SIZE * 8, lo // PAGE_SIZE * 8)
    finally:
        os.close(fd)


def _soft_dirty_runs(pid, runs):
    out = []
    for lo, raw in _pagemap_chunks(pid, runs):
        for a, b in procfs._ones(raw[6::8].translate(SOFT_DIRTY_BYTE)):
            _append(out, lo + a * PAGE_SIZE, lo + b * PAGE_SIZE)
    return out


def intersect(runs, regions):
    """Ascending (first, stop) runs in both ascending lists."""
    out, i, j = [], 0, 0
    while i < len(runs) and j < len(regions):
        lo, hi = max(runs[i][0], regions[j][0]), min(runs[i][1], regions[j][1])
        if lo < hi:
            _append(out, lo, hi)
        if runs[i][1] < regions[j][1]:
            i += 1
        else:
            j += 1
    return out


def subtract(runs, remove):
    """Ascending (first, stop) runs of `runs` not in `remove`."""
    out, j = [], 0
    for lo, hi in runs:
        while j < len(remove) and remove[j][1] <= lo:
            j += 1
        k = j
        while lo < hi:
            if k < len(remove) and remove[k][0] < hi:
                if remove[k][0] > lo:
                    _append(out, lo, remove[k][0])
                lo = max(lo, remove[k][1])
                k += 1
            else:
                _append(out, lo, hi)
                break
    return out


def _append(out, lo, hi):
    if out and out[-1][1] == lo:
        out[-1] = (out[-1][0], hi)
    else:
        out.append((lo, hi))


def _scan(fd, start, end, flags):
    """[(start, end)] of the PAGE_IS_WRITTEN pages in [start, end) (PM_SCAN_WP_MATCHING in
    `flags`: and write-protect them again); None if the ioctl is refused."""
    vec = (ctypes.c_uint64 * (3 * SCAN_REGIONS))()
    out = []
    while start < end:
        arg = (ctypes.c_uint64 * 12)(96, flags, start, end, 0, ctypes.addressof(vec),
                                     SCAN_REGIONS, 0, 0, PAGE_IS_WRITTEN, 0, PAGE_IS_WRITTEN)
        count = _libc.ioctl(fd, PAGEMAP_SCAN, ctypes.addressof(arg))
        if count < 0:
            return None
        for i in range(count):
            _append(out, vec[3 * i], vec[3 * i + 1])
        if arg[4] <= start:         # walk_end
            break
        start = arg[4]
    return out


def markers(pid, runs):
    """The (first, stop) runs of `runs` that are uffd-wp PTE markers, not pages: the
    kernel puts one on each unpopulated PTE it write-protects (WP_UNPOPULATED), and
    pagemap shows it as a swapped page of swap type 31, offset 1. Only a reader with
    CAP_SYS_ADMIN sees type and offset: others get none back (the markers then go into
    the image as zero pages, which is what the program would read there)."""
    out = []
    for lo, raw in _pagemap_chunks(pid, runs):
        entries = memoryview(raw).cast("Q")
        for a, b in procfs._ones(raw[7::8].translate(MARKER_TOP_BYTE)):
            for i in range(a, b):
                if entries[i] & ~SOFT_DIRTY_BIT == UFFD_WP_MARKER:
                    _append(out, lo + i * PAGE_SIZE, lo + (i + 1) * PAGE_SIZE)
    return out


# ----------------------------------------------------------------------------- reset

def reset(pid, tracking, mm, injector, tid, state):
    """Start or restart tracking of process `pid` (stopped, our tracee): from now on
    written() reports the pages written after this call. `state` is its previous
    state (or None); returns what to keep in the new one."""
    if tracking == SOFT_DIRTY:
        with open(f"/proc/{pid}/clear_refs", "w") as clear:
            clear.write("4")
        return {}
    target_fd = (state or {}).get("uffd")
    fresh = target_fd is None or not _is_uffd(pid, target_fd)
    if fresh:
        target_fd = _inject_uffd(pid, injector, tid)
    local = _getfd(pid, target_fd)
    try:
        if fresh and _api(local) is None:
            raise CheckpointError(f"pid {pid}: userfaultfd WP_ASYNC refused", errno.EOPNOTSUPP)
        for vma in mm.vmas:
            if vma.kind == "anon":      # file VMAs would get markers over file pages
                reg = (ctypes.c_uint64 * 4)(vma.start, vma.end - vma.start,
                                            UFFDIO_REGISTER_MODE_WP, 0)
                _libc.ioctl(local, UFFDIO_REGISTER, ctypes.addressof(reg))  # else: "written"
    finally:
        os.close(local)
    fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _scan(fd, 0, SCAN_END, PM_SCAN_WP_MATCHING) is None:
            raise CheckpointError(f"pid {pid}: PAGEMAP_SCAN failed", errno.EIO)
    finally:
        os.close(fd)
    return {"uffd": target_fd}


def _api(fd):
    """UFFDIO_API with WP_ASYNC (and WP_UNPOPULATED when known); None if refused."""
    for features in (UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED,
                     UFFD_FEATURE_WP_ASYNC):
        api = (ctypes.c_uint64 * 3)(UFFD_API, features, 0)
        if _libc.ioctl(fd, UFFDIO_API, ctypes.addressof(api)) == 0:
            return features
    return None


def _is_uffd(pid, fd):
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}") == UFFD_LINK
    except OSError:
        return False


def _inject_uffd(pid, injector, tid):
    """A userfaultfd made by the target itself, at a high close-on-exec descriptor."""
    regs = ptrace.get_regs(tid)
    fd = injector.syscall(tid, regs, SYS_USERFAULTFD,
                          (UFFD_USER_MODE_ONLY | os.O_CLOEXEC | os.O_NONBLOCK,))
    if fd is None or fd < 0:
        why = os.strerror(-fd) if fd else "the syscall could not be injected"
        raise CheckpointError(f"pid {pid}: cannot create its userfaultfd: {why}",
                              errno.EOPNOTSUPP)
    soft = resource.prlimit(pid, resource.RLIMIT_NOFILE)[0]
    base = max(3, min(soft if soft != resource.RLIM_INFINITY else HIGH_FD, HIGH_FD) - 32)
    high = injector.syscall(tid, regs, SYS_FCNTL, (fd, F_DUPFD_CLOEXEC, base))
    if high is not None and high >= 0:
        injector.syscall(tid, regs, SYS_CLOSE, (fd,))
        fd = high
    return fd


def _getfd(pid, target_fd):
    pidfd = _libc.syscall(SYS_PIDFD_OPEN, pid, 0)
    if pidfd < 0:
        raise CheckpointError(f"pid {pid}: pidfd_open: {os.strerror(ctypes.get_errno())}",
                              ctypes.get_errno())
    try:
        fd = _libc.syscall(SYS_PIDFD_GETFD, pidfd, target_fd, 0)
        if fd < 0:
            raise CheckpointError(f"pid {pid}: pidfd_getfd: "
                                  f"{os.strerror(ctypes.get_errno())}", ctypes.get_errno())
        return fd
    finally:
        os.close(pidfd)


# ----------------------------------------------------------------------------- state

def state_dir():
    base = (os.environ.get("CRFS_STATE_DIR") or os.environ.get("XDG_RUNTIME_DIR")
            or os.path.expanduser("~/.cache"))
    return os.path.join(base, "crfs", "tracking")


def _state_path(pid):
    start = procfs.stat_fields(pid)[22]
    return os.path.join(state_dir(), f"{pid}-{start}.json")


def load_state(pid):
    try:
        with open(_state_path(pid), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def drop_state(pid):
    try:
        os.unlink(_state_path(pid))
    except FileNotFoundError:
        pass


def save_state(pid, state):
    path = _state_path(pid)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600),
              "w", encoding="utf-8") as f:
        json.dump(state, f)
    os.replace(tmp, path)


def image_identity(path):
    st = os.stat(path)
    return {"image": os.path.abspath(path), "dev": st.st_dev, "ino": st.st_ino,
            "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def started_at(state, path):
    """Whether tracking `state` was (re)started by the image now at `path`, unchanged."""
    try:
        return state is not None and all(state.get(k) == v
                                         for k, v in image_identity(path).items())
    except OSError:
        return False
