"""The crfs kernel module's device, /dev/crfs: its ioctl ABI and a restarter child.

The numbers and the argument struct mirror kmod/crfs_ioctl.h (the one source of the ABI);
tests/test_kmod_layout.py compiles that header and checks that both agree. This module only
needs the standard library, so that it is cheap to import in the test guest.

    with Device() as dev:            # opens /dev/crfs
        dev.version()                # CRFS_ABI_VERSION of the loaded module
        dev.check(image_fd)          # validate only; KernelError when the image is rejected
        dev.restart(image_fd)        # validate and restore (EOPNOTSUPP for now)

restart_in_child(path) runs the restart in a forked child, because a successful restore
replaces the address space of the process that asks for it.
"""

import ctypes
import errno
import os
import select
import signal
import struct
import time
from dataclasses import dataclass

DEVICE = "/dev/crfs"

# kmod/crfs_ioctl.h
CRFS_IOC_MAGIC = 0xC3
CRFS_ABI_VERSION = 1
CRFS_ERRMSG_LEN = 96

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
        ("_reserved", ctypes.c_uint32),
        ("err_msg", ctypes.c_char * CRFS_ERRMSG_LEN),
    ]


CRFS_IOC_VERSION = _ioc(_IOC_NONE, CRFS_IOC_MAGIC, 0, 0)
CRFS_IOC_CHECK = _ioc(_IOC_READ | _IOC_WRITE, CRFS_IOC_MAGIC, 1, ctypes.sizeof(ImageArgs))
CRFS_IOC_RESTART = _ioc(_IOC_READ | _IOC_WRITE, CRFS_IOC_MAGIC, 2, ctypes.sizeof(ImageArgs))

NO_OFFSET = (1 << 64) - 1   # err_offset when the failure is not at a record


class KernelError(OSError):
    """An ioctl of /dev/crfs failed: errno, plus where and why for an image error."""

    def __init__(self, code, reason="", offset=None, record_type=0):
        super().__init__(code, reason or os.strerror(code))
        self.reason = reason
        self.offset = offset
        self.record_type = record_type


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

    def _image_call(self, request, image_fd):
        args = ImageArgs(fd=image_fd)
        ret = _ioctl(self.fd, request, ctypes.addressof(args))
        if ret < 0:
            offset = None if args.err_offset == NO_OFFSET else args.err_offset
            raise KernelError(-ret, args.err_msg.decode("utf-8", "replace"), offset,
                              args.err_type)
        return ret

    def check(self, image_fd):
        """CRFS_IOC_CHECK: copy in and validate the image open at `image_fd`."""
        return self._image_call(CRFS_IOC_CHECK, image_fd)

    def restart(self, image_fd):
        """CRFS_IOC_RESTART: validate, then restore into this process."""
        return self._image_call(CRFS_IOC_RESTART, image_fd)


def available(path=DEVICE):
    return os.path.exists(path)


@dataclass(frozen=True)
class Outcome:
    """What the restarter child reported: errno 0 for success, else why it failed."""
    errno: int
    reason: str = ""
    offset: object = None     # file offset of the offending record, or None
    record_type: int = 0
    stage: str = "restart"    # "open-device", "version", "open-image" or "restart"


_RESULT = struct.Struct("<iQI16s96s")   # errno, offset, record type, stage, reason


def _child(path, device, write_fd):
    """The restarter child: report through `write_fd`, never return."""
    code, offset, record_type, stage, reason = 0, NO_OFFSET, 0, "open-device", ""
    try:
        with Device(device) as dev:
            stage = "version"
            version = dev.version()
            if version != CRFS_ABI_VERSION:
                raise KernelError(errno.EPROTO, f"module ABI version {version}, crfs "
                                                f"speaks {CRFS_ABI_VERSION}")
            stage = "open-image"
            image_fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            stage = "restart"
            dev.restart(image_fd)
    except KernelError as exc:
        code, reason, record_type = exc.errno, exc.reason, exc.record_type
        offset = NO_OFFSET if exc.offset is None else exc.offset
    except OSError as exc:
        code, reason = exc.errno or errno.EIO, exc.strerror or ""
    except BaseException:   # noqa: BLE001 - the child must always report and exit
        code, reason = errno.EIO, "restarter child failed"
    try:
        os.write(write_fd, _RESULT.pack(code, offset, record_type, stage.encode(),
                                        reason.encode()[:95]))
    finally:
        os._exit(0)


def restart_in_child(path, device=DEVICE, timeout=600):
    """Restart the image at `path` in a forked child; the child's Outcome.

    The child opens the device and the image itself (nothing of the caller's but the
    result pipe is needed). It is killed after `timeout` seconds.
    """
    _load_libc()   # no dlopen() in the child of a possibly threaded process
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:   # pragma: no cover - runs in the child
        os.close(read_fd)
        _child(path, device, write_fd)
    os.close(write_fd)
    data = b""
    try:
        deadline = time.monotonic() + timeout
        while len(data) < _RESULT.size:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([read_fd], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                return Outcome(errno.ETIMEDOUT, f"no answer within {timeout}s")
            chunk = os.read(read_fd, _RESULT.size - len(data))
            if not chunk:
                break
            data += chunk
    finally:
        os.close(read_fd)
        os.waitpid(pid, 0)
    if len(data) < _RESULT.size:
        return Outcome(errno.EIO, "the restarter child died without an answer")
    code, offset, record_type, stage, reason = _RESULT.unpack(data)
    return Outcome(code, reason.rstrip(b"\0").decode("utf-8", "replace"),
                   None if offset == NO_OFFSET else offset, record_type,
                   stage.rstrip(b"\0").decode())
