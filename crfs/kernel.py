"""The crfs kernel module's device, /dev/crfs: its ioctl ABI and a restarter child.

The numbers and the argument struct mirror kmod/crfs_ioctl.h (the one source of the ABI);
tests/test_kmod_layout.py compiles that header and checks that both agree. This module only
needs the standard library, so that it is cheap to import in the test guest.

    with Device() as dev:            # opens /dev/crfs
        dev.version()                # CRFS_ABI_VERSION of the loaded module
        dev.check(image_fd)          # validate only; KernelError when the image is rejected
        dev.restart(image_fd)        # validate and restore into THIS process
        dev.checkpoint(pid, out_fd)  # write an image of a process this thread ptrace-stopped
        dev.checkpoint(pid, out_fd, tree=True)   # ... of it and all its descendants

restart_in_child(path) runs the restart in a new process (kmod/crfs-restart, a small static
C program), because a successful restore replaces the address space of the process that
asks for it.
"""

import ctypes
import errno
import os
import signal
import stat
import struct
import time

from crfs.errors import KernelError   # also an OSError; callers catch kernel.KernelError
from crfs.slots import SlotRecord

DEVICE = "/dev/crfs"

# kmod/crfs_ioctl.h
CRFS_IOC_MAGIC = 0xC3
CRFS_ABI_VERSION = 1
CRFS_ERRMSG_LEN = 96
CHECKPOINT_TREE = 0x1       # CRFS_CHECKPOINT_TREE, crfs_checkpoint_args.flags
RESTART_INHERIT = 0x1       # CRFS_RESTART_INHERIT, crfs_image_args.flags: an image fd that
                            # cannot be reopened takes the caller's fd of that number
RESTART_REPLACE = 0x2       # CRFS_RESTART_REPLACE: every image fd the caller has open
                            # without close-on-exec takes the caller's file
RESTART_LAZY = 0x4          # CRFS_RESTART_LAZY: anonymous pages left to a page server
                            # (crfs-restart --lazy, docs/kmod.md "Lazy restart")

# <asm-generic/ioctl.h> (x86)
_IOC_NRSHIFT, _IOC_TYPESHIFT, _IOC_SIZESHIFT, _IOC_DIRSHIFT = 0, 8, 16, 30
_IOC_NONE, _IOC_WRITE, _IOC_READ = 0, 1, 2


def _ioc(direction, type_, nr, size):
    return ((direction << _IOC_DIRSHIFT) | (size << _IOC_SIZESHIFT)
            | (type_ << _IOC_TYPESHIFT) | (nr << _IOC_NRSHIFT))


class ImageArgs(ctypes.Structure):
    """struct crfs_image_args."""
    _fields_ = [
        ("fd", ctypes.c_int32),
        ("flags", ctypes.c_uint32),
        ("err_offset", ctypes.c_uint64),
        ("err_type", ctypes.c_uint32),
        ("task_index", ctypes.c_uint32),
        ("err_msg", ctypes.c_char * CRFS_ERRMSG_LEN),
    ]


class CheckpointArgs(ctypes.Structure):
    """struct crfs_checkpoint_args."""
    _fields_ = [
        ("pid", ctypes.c_int32),
        ("fd", ctypes.c_int32),
        ("flags", ctypes.c_uint32),
        ("_reserved", ctypes.c_uint32),
        ("written", ctypes.c_uint64),
        ("err_msg", ctypes.c_char * CRFS_ERRMSG_LEN),
    ]


class Clone(ctypes.Structure):
    """struct crfs_clone: a process and its copy-on-write clone."""
    _fields_ = [("pid", ctypes.c_int32), ("clone", ctypes.c_int32)]


class SnapshotArgs(ctypes.Structure):
    """struct crfs_snapshot_args (CRFS_IOC_SNAPSHOT): CHECKPOINT from clones."""
    _fields_ = [
        ("ck", CheckpointArgs),
        ("clones", ctypes.c_uint64),
        ("nr_clones", ctypes.c_uint32),
        ("resume_fd", ctypes.c_int32),
        ("spool_fd", ctypes.c_int32),
        ("_reserved", ctypes.c_uint32),
    ]


class HandedFile(ctypes.Structure):
    """struct crfs_handed_file: the caller's `fd` is the image's FILE `objref`."""
    _fields_ = [("objref", ctypes.c_int32), ("fd", ctypes.c_int32)]


class RestartArgs(ctypes.Structure):
    """struct crfs_restart_args (RESTART_FILES): RESTART with files handed in."""
    _fields_ = [
        ("image", ImageArgs),
        ("handed", ctypes.c_uint64),
        ("nr_handed", ctypes.c_uint32),
        ("_reserved", ctypes.c_uint32),
    ]


CRFS_MAX_HANDED = 4096      # entries of crfs_restart_args.handed

CRFS_IOC_VERSION = _ioc(_IOC_NONE, CRFS_IOC_MAGIC, 0, 0)
CRFS_IOC_CHECK = _ioc(_IOC_READ | _IOC_WRITE, CRFS_IOC_MAGIC, 1, ctypes.sizeof(ImageArgs))
CRFS_IOC_RESTART = _ioc(_IOC_READ | _IOC_WRITE, CRFS_IOC_MAGIC, 2, ctypes.sizeof(ImageArgs))
CRFS_IOC_CHECKPOINT = _ioc(_IOC_READ | _IOC_WRITE, CRFS_IOC_MAGIC, 3,
                           ctypes.sizeof(CheckpointArgs))
CRFS_IOC_RESTART_FILES = _ioc(_IOC_READ | _IOC_WRITE, CRFS_IOC_MAGIC, 4,
                              ctypes.sizeof(RestartArgs))
CRFS_IOC_SNAPSHOT = _ioc(_IOC_READ | _IOC_WRITE, CRFS_IOC_MAGIC, 6, ctypes.sizeof(SnapshotArgs))


class LazyRange(ctypes.Structure):
    """struct crfs_lazy_range: pos -1 a VMA to register, else pages at file offset pos."""
    _fields_ = [("addr", ctypes.c_uint64), ("len", ctypes.c_uint64), ("pos", ctypes.c_int64)]


class LazyArgs(ctypes.Structure):
    """struct crfs_lazy_args (CRFS_IOC_LAZY): the page server's side of a lazy restart."""
    _fields_ = [
        ("pid", ctypes.c_int32),
        ("op", ctypes.c_uint32),
        ("ranges", ctypes.c_uint64),
        ("nr_ranges", ctypes.c_uint32),
        ("uffd", ctypes.c_int32),
        ("_reserved", ctypes.c_uint64),
    ]


LAZY_RANGES, LAZY_GO, LAZY_DONE, LAZY_FORK = 1, 2, 3, 4     # crfs_lazy_args.op
CRFS_IOC_LAZY = _ioc(_IOC_READ | _IOC_WRITE, CRFS_IOC_MAGIC, 5, ctypes.sizeof(LazyArgs))

NO_OFFSET = (1 << 64) - 1   # err_offset when the failure is not at a record


_libc = None


def _load_libc():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.ioctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)
        _libc.ioctl.restype = ctypes.c_int
    return _libc


def _ioctl(fd, request, arg):
    """ioctl(2) through libc, so that the out fields are kept when the call fails."""
    ret = _load_libc().ioctl(fd, request, arg)
    if ret < 0:
        return -ctypes.get_errno()
    return ret


class Device:
    """An open /dev/crfs."""

    def __init__(self, path=DEVICE):
        self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def version(self):
        ret = _ioctl(self.fd, CRFS_IOC_VERSION, None)
        if ret < 0:
            raise KernelError(-ret)
        return ret

    def _image_call(self, request, image_fd, task_index=0, flags=0):
        args = ImageArgs(fd=image_fd, task_index=task_index, flags=flags)
        ret = _ioctl(self.fd, request, ctypes.addressof(args))
        if ret < 0:
            offset = None if args.err_offset == NO_OFFSET else args.err_offset
            raise KernelError(-ret, args.err_msg.decode("utf-8", "replace"), offset,
                              args.err_type)
        return ret

    def check(self, image_fd, task_index=0, flags=0):
        """CRFS_IOC_CHECK: copy in and validate the image open at `image_fd` (EINVAL when
        `task_index` is not below its number of tasks)."""
        return self._image_call(CRFS_IOC_CHECK, image_fd, task_index, flags)

    def restart(self, image_fd, task_index=0, flags=0):
        """CRFS_IOC_RESTART: validate, then restore task `task_index` (an index into the
        image's TREE) into the calling thread (one thread of the process per task of the
        image's process, the leader's task in the main thread; its vdso where the image
        has it): only a failure returns. `flags`: 0, RESTART_INHERIT or RESTART_REPLACE."""
        return self._image_call(CRFS_IOC_RESTART, image_fd, task_index, flags)

    def restart_files(self, image_fd, handed, task_index=0, flags=0, nr_handed=None,
                      reserved=0):
        """CRFS_IOC_RESTART_FILES: restart() with files the caller made handed in,
        `handed` a list of (objref, fd): the image's eventfds, timerfds, signalfds, epolls
        and the pipes epolls watch (crfs-restart makes them). Only a failure returns.
        `nr_handed` and `reserved` override the fields (for tests of refusals)."""
        table = (HandedFile * max(len(handed), 1))(*[HandedFile(o, f) for o, f in handed])
        args = RestartArgs(image=ImageArgs(fd=image_fd, task_index=task_index, flags=flags),
                           handed=ctypes.addressof(table),
                           nr_handed=len(handed) if nr_handed is None else nr_handed,
                           _reserved=reserved)
        ret = _ioctl(self.fd, CRFS_IOC_RESTART_FILES, ctypes.addressof(args))
        if ret < 0:
            image = args.image
            offset = None if image.err_offset == NO_OFFSET else image.err_offset
            raise KernelError(-ret, image.err_msg.decode("utf-8", "replace"), offset,
                              image.err_type)
        return ret

    def checkpoint(self, pid, out_fd, tree=False):
        """CRFS_IOC_CHECKPOINT: write an image of process `pid` (every thread of it) and,
        with `tree`, of all its descendants at the position of `out_fd` (a regular file
        open for writing). The calling thread must be the ptracer of every one of those
        threads and each in a ptrace stop. Returns the bytes written; KernelError on
        failure (ENOTTY: a module without CHECKPOINT)."""
        args = CheckpointArgs(pid=pid, fd=out_fd, flags=CHECKPOINT_TREE if tree else 0)
        ret = _ioctl(self.fd, CRFS_IOC_CHECKPOINT, ctypes.addressof(args))
        if ret < 0:
            raise KernelError(-ret, args.err_msg.decode("utf-8", "replace"))
        return args.written


    def snapshot(self, pid, out_fd, clones, resume_fd, spool_fd, tree=False):
        """CRFS_IOC_SNAPSHOT: checkpoint() of the stopped processes, the private memory of
        each process in `clones` ({pid: its clone}, a stopped copy-on-write child) read
        from its clone after 1 was added to the eventfd `resume_fd`; `spool_fd` a regular
        file open for reading and writing (a memfd). Returns the bytes written;
        KernelError on failure (ENOTTY: a module without SNAPSHOT)."""
        table = (Clone * max(len(clones), 1))(*[Clone(p, c) for p, c in clones.items()])
        args = SnapshotArgs(ck=CheckpointArgs(pid=pid, fd=out_fd,
                                              flags=CHECKPOINT_TREE if tree else 0),
                            clones=ctypes.addressof(table), nr_clones=len(clones),
                            resume_fd=resume_fd, spool_fd=spool_fd)
        ret = _ioctl(self.fd, CRFS_IOC_SNAPSHOT, ctypes.addressof(args))
        if ret < 0:
            raise KernelError(-ret, args.ck.err_msg.decode("utf-8", "replace"))
        return args.ck.written


def available(path=DEVICE):
    return os.path.exists(path)


class Outcome(SlotRecord):
    """What the restarter reported: errno 0 for success, else why it failed.

    On success `pid` is the restored process and `process` the restarter's
    subprocess.Popen, which the caller must wait() for: the restored root task itself
    (stage "restart"), or, when it was given its image pid (stage "restored"), its parent,
    which ends as it ends. Immutable; equal when all but `process` and `reports` are
    (a SlotRecord: `crfs checkpoint --via kernel` imports this module)."""

    __slots__ = ("errno", "reason", "offset", "record_type", "stage", "pid", "process",
                 "reports")
    _COMPARED = __slots__[:-2]

    def __init__(self, errno, reason="", offset=None, record_type=0, stage="restart", pid=0,
                 process=None, reports=None):
        # offset: file offset of the offending record, or None; stage: "restarter",
        # "open-device", "version", "open-image", "vdso", "restart" or "restored";
        # reports (keep_reports): the report pipe, still open (crfs-restart --lazy reports
        # "resident" there later: next_report()); the caller closes it
        for name, value in zip(self.__slots__, (errno, reason, offset, record_type, stage,
                                                pid, process, reports)):
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError(f"cannot assign to field {name!r}")

    def __hash__(self):
        return hash(self._key())


_RESULT = struct.Struct("<iQI16s96s")   # errno, offset, record type, stage, reason
RESTARTER = "crfs-restart"
# Where .ci/setup installs it, root-owned 0755: the first place looked at.
INSTALLED_RESTARTER = "/usr/local/libexec/crfs/crfs-restart"


def find_restarter():
    """The crfs-restart binary: $CRFS_RESTARTER (set by whoever starts the daemon), the
    installed one (INSTALLED_RESTARTER), kmod/crfs-restart of this source tree (built by
    `make -C kmod`), or crfs-restart on PATH; None if there is none. Whichever it is,
    restart_in_child() runs it only when unsafe_restarter() finds nothing wrong."""
    env = os.environ.get("CRFS_RESTARTER")
    if env:
        return env
    if os.access(INSTALLED_RESTARTER, os.X_OK):
        return INSTALLED_RESTARTER
    built = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         "kmod", RESTARTER)
    if os.access(built, os.X_OK):
        return built
    import shutil      # not for `crfs checkpoint`, which imports this module
    return shutil.which(RESTARTER)


def _unsafe_file(path, trusted, directory):
    """Why `path` could be changed by someone the daemon does not trust, or None: owned by
    a uid not in `trusted`, or writable by group or others (a directory may be when it is
    sticky: then others cannot replace what is in it)."""
    st = os.stat(path)
    kind = "directory" if directory else "restarter"
    if st.st_uid not in trusted:
        return f"{kind} {path} is owned by uid {st.st_uid}"
    sticky = directory and st.st_mode & stat.S_ISVTX
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not sticky:
        return f"{kind} {path} is writable by group or others"
    return None


def unsafe_restarter(restarter):
    """Why the daemon must not run `restarter`, or None. It runs with the daemon's
    privileges (root, usually): the file and every directory above it must be owned by
    root or by the daemon's own uid and writable by nobody else, for the path as given and
    for the file it resolves to. A missing file is left to the exec to report."""
    trusted = {0, os.geteuid()}
    given = os.path.abspath(restarter)
    real = os.path.realpath(given)
    try:
        if not stat.S_ISREG(os.stat(real).st_mode):
            return f"restarter {real} is not a regular file"
        reason = _unsafe_file(real, trusted, False)
        for chain in {os.path.dirname(given), os.path.dirname(real)}:
            while reason is None:
                reason = _unsafe_file(chain, trusted, True)
                if chain == os.path.dirname(chain):
                    break
                chain = os.path.dirname(chain)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"restarter {given}: {exc.strerror}"
    return reason


def restart_in_child(path, device=DEVICE, timeout=600, restarter=None, stdout=None,
                     options=(), new_pids=False, pass_fds=(), keep_reports=False):
    """Restart the image at `path` in a new process running kmod/crfs-restart; its Outcome.

    The restarter becomes the restored program (a successful restore replaces the address
    space of the process that asks for it), in a session of its own, with stdin from
    /dev/null and stdout + stderr to the file object `stdout` (default /dev/null). It
    reports a failure on a pipe; the kernel closes that pipe when the restore succeeded.
    `options`: more crfs-restart options (-S, -R, -i IMAGEFD=FD with FD passed in).
    Returns once the restore succeeded or failed; it is killed after `timeout` seconds.
    `new_pids`: never the image's pids (crfs-restart -N). `pass_fds`: our fds the
    restarter keeps open (those `options` hand in with -i). `keep_reports`: a restore
    reported "restored" keeps the report pipe open in Outcome.reports (--lazy's later
    report: next_report()).
    """
    restarter = restarter or find_restarter()
    if not restarter:
        return Outcome(errno.ENOENT, f"{RESTARTER} not found: build it with make -C kmod",
                       stage="restarter")
    unsafe = unsafe_restarter(restarter)
    if unsafe:
        return Outcome(errno.EPERM, f"refusing to run it: {unsafe}", stage="restarter")
    import select      # not for `crfs checkpoint`, which imports this module
    import subprocess
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    out = stdout if stdout is not None else subprocess.DEVNULL
    try:
        options = [*(["-N"] if new_pids else []), *options]
        proc = subprocess.Popen([restarter, "-d", device, "-r", str(write_fd), *options, path],
                                stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT if stdout is not None else out,
                                pass_fds=(write_fd, *pass_fds), start_new_session=True)
    except OSError as exc:
        os.close(read_fd)
        return Outcome(exc.errno or errno.EIO, f"{restarter}: {exc.strerror}",
                       stage="restarter")
    finally:
        os.close(write_fd)
    data = b""
    kept = None
    try:
        deadline = time.monotonic() + timeout
        while len(data) < _RESULT.size:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([read_fd], [], [], left)[0]:
                proc.kill()
                proc.wait()
                return Outcome(errno.ETIMEDOUT, f"no answer within {timeout}s")
            chunk = os.read(read_fd, _RESULT.size - len(data))
            if not chunk:
                break
            data += chunk
        if keep_reports and len(data) == _RESULT.size and data[:4] == bytes(4) \
                and _RESULT.unpack(data)[3].rstrip(b"\0") == b"restored":
            kept, read_fd = read_fd, -1
    finally:
        if read_fd >= 0:
            os.close(read_fd)
    if not data:
        # EOF without a report: the kernel closed the pipe, the restore went through
        # (a failure after the point of no return kills the process: see its status)
        return Outcome(0, pid=proc.pid, process=proc)
    if len(data) < _RESULT.size:
        proc.wait()
        return Outcome(errno.EIO, "the restarter died without an answer")
    code, offset, record_type, stage, reason = _RESULT.unpack(data)
    reason = reason.rstrip(b"\0").decode("utf-8", "replace")
    stage = stage.rstrip(b"\0").decode()
    if code == 0 and stage == "restored" and reason.startswith("pid "):
        # restored with the image's pid, in a child of the restarter, which relays it
        return Outcome(0, pid=int(reason[4:]), process=proc, stage=stage, reports=kept)
    if kept is not None:
        os.close(kept)
    proc.wait()
    return Outcome(code, reason, None if offset == NO_OFFSET else offset, record_type, stage)


def next_report(fd):
    """The next report on a kept report pipe (Outcome.reports): (errno, stage, reason), or
    None at EOF. Blocks until it comes."""
    data = b""
    while len(data) < _RESULT.size:
        chunk = os.read(fd, _RESULT.size - len(data))
        if not chunk:
            return None
        data += chunk
    code, _, _, stage, reason = _RESULT.unpack(data)
    return code, stage.rstrip(b"\0").decode(), reason.rstrip(b"\0").decode("utf-8", "replace")


def describe_exit(returncode):
    """"exited N" or "killed by SIGNAME" for a Popen returncode."""
    if returncode is None:
        return "running"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited {returncode}"
