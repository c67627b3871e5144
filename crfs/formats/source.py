"""Bounded, positioned reads from an image: never more than asked, never past the end."""

import os
from dataclasses import dataclass

import construct

from crfs.errors import FormatError


class Source:
    """An image file read with os.pread at offsets; the whole file is never loaded."""

    def __init__(self, fd, size, path=None, owns_fd=True):
        self.fd = fd
        self.size = size
        self.path = path
        self._owns_fd = owns_fd

    @classmethod
    def open(cls, path, follow_symlinks=True):
        flags = os.O_RDONLY | os.O_CLOEXEC | (0 if follow_symlinks else os.O_NOFOLLOW)
        fd = os.open(path, flags)
        try:
            size = os.fstat(fd).st_size
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, size, path)

    def pread(self, offset, length):
        """Raw read for already-validated ranges (page bytes)."""
        return os.pread(self.fd, length, offset)

    def readinto(self, buffer, offset):
        """Raw read filling the writable `buffer` (reused, unlike pread's bytes); the count."""
        return os.preadv(self.fd, [buffer], offset)

    def read(self, offset, length, record):
        """Read exactly `length` bytes at `offset`, or raise FormatError naming `record`."""
        if length < 0 or offset < 0 or offset + length > self.size:
            raise FormatError(f"{length} bytes at this offset exceed the file "
                              f"({self.size} bytes)", offset=offset, record=record)
        data = self.pread(offset, length)
        if len(data) != length:
            raise FormatError("file shrank while reading", offset=offset, record=record)
        return data

    def parse(self, struct, offset, record):
        """Parse a fixed-size construct `struct` at `offset`."""
        data = self.read(offset, struct.sizeof(), record)
        return parse_bytes(struct, data, offset, record)

    def close(self):
        if getattr(self, "_owns_fd", False) and self.fd is not None:
            os.close(self.fd)
        self.fd = None

    def __del__(self):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class MemorySource(Source):
    """A Source over bytes in memory (tests, images built before they are written)."""

    def __init__(self, data=b"", path=None):
        super().__init__(None, len(data), path, owns_fd=False)
        self.data = bytearray(data)

    def pread(self, offset, length):
        return bytes(self.data[offset:offset + length])

    def readinto(self, buffer, offset):
        data = self.data[offset:offset + len(buffer)]
        buffer[:len(data)] = data
        return len(data)

    def append(self, data):
        """Store `data` and return its offset (for models built in memory)."""
        offset = len(self.data)
        self.data += data
        self.size = len(self.data)
        return offset


def parse_bytes(struct, data, offset, record):
    """struct.parse that reports failures as FormatError at `offset`."""
    try:
        return struct.parse(data)
    except construct.ConstructError as exc:
        raise FormatError(f"cannot parse: {exc}", offset=offset, record=record) from None


@dataclass(frozen=True)
class RecordInfo:
    """One record of an image as `crfs records` lists it."""
    offset: int
    name: str      # the C enum spelling, e.g. CR_HDR_VMA, CPT_OBJ_VMA, CKPT_HDR_VMA
    length: int    # bytes the record occupies in the file, header and trailing raw data included
    note: str = ""  # short detail, e.g. "nr_pages 12" or "raw vaddrs"
