"""The exceptions of crfs: one hierarchy, each with a one-line message and an errno.

Every failure a user can meet is a CrfsError. Its str() is the line the CLI prints, and its
`errno` is what the filesystem answers (the one place that makes FUSEError reads it) or
what a restart reports. Causes are kept with `raise ... from exc`.
"""

import errno as _errno
import os


class CrfsError(Exception):
    """A failure with a message for people and an errno for programs."""

    default_errno = _errno.EIO

    def __init__(self, message="", errno=None):
        code = self.default_errno if errno is None else errno
        self.message = message or _errno.errorcode.get(code, str(code))
        super().__init__(self.message)
        self.errno = code

    def __str__(self):
        return self.message


class FormatError(CrfsError):
    """An image is malformed: says where (byte offset), in which record, and why.

    str() gives the line the CLI prints, e.g.
    ``img: offset 0x1234: CR_HDR_VMA: nr_pages 99999999 exceeds the file``.
    """

    default_errno = _errno.EINVAL

    def __init__(self, message, *, offset=None, record=None, path=None):
        super().__init__(message)
        self.offset = offset
        self.record = record
        self.path = path

    def __str__(self):
        parts = []
        if self.path is not None:
            parts.append(str(self.path))
        if self.offset is not None:
            parts.append(f"offset {self.offset:#x}")
        if self.record:
            parts.append(self.record)
        parts.append(self.message)
        return ": ".join(parts)


class Unsupported(CrfsError, ValueError):
    """Sound input that crfs (or the chosen format) cannot handle: a format that cannot
    hold what a process has, a mapping that cannot be saved, a writer option out of range."""

    default_errno = _errno.EOPNOTSUPP


class FsError(CrfsError):
    """An outcome of a filesystem request, answered to the caller as its errno."""


class MountError(CrfsError):
    """A reason the mount cannot be made, printed as one line."""

    default_errno = _errno.EINVAL


class CheckpointError(CrfsError):
    """Why a checkpoint failed (or cannot be taken this way), with the errno to report."""


class ProcessGone(CheckpointError):
    """The process went away while it was being checkpointed."""

    default_errno = _errno.ESRCH


class KernelError(CrfsError, OSError):
    """An ioctl of /dev/crfs failed: errno, plus where and why for an image error.

    Also an OSError, as the failed system call it reports."""

    def __init__(self, code, reason="", offset=None, record_type=0):
        super().__init__(reason or os.strerror(code), code)
        self.strerror = self.message    # as OSError(code, reason) had it: callers read it
        self.reason = reason
        self.offset = offset
        self.record_type = record_type

