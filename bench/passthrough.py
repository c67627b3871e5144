#!/usr/bin/env python3
"""The baseline for bench/fs_read.py: the smallest pyfuse3 filesystem that serves one file.

`passthrough.py FILE MOUNTPOINT` shows FILE as MOUNTPOINT/data, read with os.pread.
Runs in the foreground until unmounted.
"""

import errno
import os
import stat
import sys

import pyfuse3
import trio

DATA_INODE = pyfuse3.ROOT_INODE + 1


class Passthrough(pyfuse3.Operations):
    def __init__(self, path):
        super().__init__()
        self.fd = os.open(path, os.O_RDONLY)
        self.size = os.fstat(self.fd).st_size

    async def getattr(self, inode, ctx=None):
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = inode
        if inode == pyfuse3.ROOT_INODE:
            attr.st_mode = stat.S_IFDIR | 0o555
        else:
            attr.st_mode = stat.S_IFREG | 0o444
            attr.st_size = self.size
        attr.entry_timeout = attr.attr_timeout = 60
        return attr

    async def lookup(self, parent_inode, name, ctx=None):
        if parent_inode != pyfuse3.ROOT_INODE or name != b"data":
            raise pyfuse3.FUSEError(errno.ENOENT)
        return await self.getattr(DATA_INODE)

    async def open(self, inode, flags, ctx):
        return pyfuse3.FileInfo(fh=inode, keep_cache=True)

    async def read(self, fh, offset, size):
        return os.pread(self.fd, size, offset)


def main():
    path, mountpoint = sys.argv[1:3]
    pyfuse3.init(Passthrough(path), mountpoint, {"fsname=passthrough", "ro"})
    try:
        trio.run(pyfuse3.main)
    finally:
        pyfuse3.close(unmount=False)


if __name__ == "__main__":
    main()
