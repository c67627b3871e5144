"""A page source over a stopped process: "offsets" are virtual addresses.

The image writers read pages with `source.pread(offset, length)`, page by page (cr, cpt) or
a run at a time (ckpt). A run is read straight from the process with one process_vm_readv;
a single page is served from a read-ahead window that one process_vm_readv filled with the
dumped pages that follow it (up to WINDOW bytes over up to IOV_MAX ranges). Either way the
address space is read in large batches, and never held whole.
"""

import ctypes
import errno
import os
from bisect import bisect_right

from crfs.checkpoint import ptrace
from crfs.errors import CheckpointError, ProcessGone
from crfs.formats.x86 import PAGE_SIZE

WINDOW = 1024 * 1024     # read-ahead for page-at-a-time writers


class ProcessExited(ProcessGone):
    """The process went away while its pages were being read."""

    def __init__(self, pid):
        super().__init__(f"pid {pid} exited during the checkpoint")
        self.pid = pid


class UnreadableMemory(CheckpointError):
    """A page chosen for the image cannot be read (the process is still there)."""


class ProcessMemory:
    """Source of the dumped pages of one stopped process (see crfs.formats.source.Source)."""

    def __init__(self, pid, runs, on_read=None):
        self.pid = pid
        self.path = None
        self.runs = runs                        # ascending (first, stop) of dumped pages
        self._starts = [first for first, _ in runs]
        self._window = ([], b"")                # ([(first, stop, index in bytes)], bytes)
        self._mem_fd = None
        self.on_read = on_read                  # called with the byte count of each read

    def pread(self, offset, length):
        data = self._from_window(offset, length)
        if data is None and length <= PAGE_SIZE and self._fill_window(offset):
            data = self._from_window(offset, length)
        return data if data is not None else self.read(offset, length)

    def _from_window(self, offset, length):
        segments, data = self._window
        i = bisect_right(segments, (offset, float("inf"))) - 1
        if i >= 0:
            first, stop, at = segments[i]
            if offset + length <= stop:
                return data[at + offset - first:at + offset - first + length]
        return None

    def _fill_window(self, offset):
        """Read ahead from `offset` through the dumped runs that follow. False if `offset`
        is in no run (then the caller reads it directly)."""
        i = bisect_right(self._starts, offset) - 1
        if i < 0 or offset >= self.runs[i][1]:
            return False
        segments, size = [], 0
        for j in range(i, min(len(self.runs), i + ptrace.IOV_MAX)):
            first = offset if j == i else self.runs[j][0]
            stop = min(self.runs[j][1], first + WINDOW - size)
            segments.append((first, stop, size))
            size += stop - first
            if size >= WINDOW:
                break
        ranges = [(first, stop - first) for first, stop, _ in segments]
        self._window = (segments, self._read_ranges(ranges, size))
        return True

    def _read_ranges(self, ranges, size):
        data, done = self._readv(ranges, size)
        if done < size:     # a fault somewhere: range by range, with the fallback
            return b"".join(self.read(address, length) for address, length in ranges)
        self._count(size)
        return data

    def read(self, address, length):
        """Exactly `length` bytes at `address` (a bytearray of its own); falls back to
        /proc/<pid>/mem for what process_vm_readv cannot reach (PROT_NONE mappings)."""
        data, done = self._readv([(address, length)], length)
        if done < length:
            data[done:] = self._read_mem(address + done, length - done)
        self._count(length)
        return data

    def _readv(self, ranges, size):
        """(bytearray of `size`, bytes read into it): read in place, no copy afterwards."""
        data = bytearray(size)
        buffer = (ctypes.c_char * size).from_buffer(data)
        try:
            done = ptrace.read_memory(self.pid, buffer, ranges)
        except OSError as exc:
            if exc.errno == errno.ESRCH:
                raise ProcessExited(self.pid) from exc
            done = 0
        finally:
            del buffer      # releases the export, so that `data` may be resized
        return data, done

    def _count(self, size):
        if self.on_read:
            self.on_read(size)

    def _read_mem(self, address, length):
        if self._mem_fd is None:
            try:
                self._mem_fd = os.open(f"/proc/{self.pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError as exc:
                raise ProcessExited(self.pid) from exc
        try:
            data = os.pread(self._mem_fd, length, address)
        except OSError as exc:
            data = b""
            reason = exc.strerror
        else:
            reason = "short read"
        if len(data) != length:
            if not os.path.exists(f"/proc/{self.pid}/mem"):
                raise ProcessExited(self.pid)
            raise UnreadableMemory(f"pid {self.pid}: cannot read {length} bytes at "
                                   f"{address:#x}: {reason}")
        return data

    def close(self):
        if self._mem_fd is not None:
            os.close(self._mem_fd)
            self._mem_fd = None
        self._window = ([], b"")
