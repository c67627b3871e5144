#!/usr/bin/env python3
"""Extract the uncompressed ELF vmlinux from a Debian bzImage (XZ-compressed payload).

qemu boots that ELF directly through its PVH entry point, skipping the BIOS, the real-mode
setup and the in-guest XZ decompression (about 3 s per boot under TCG).

usage: extract-vmlinux.py /boot/vmlinuz-VERSION OUT
"""

import lzma
import os
import sys

XZ_MAGIC = b"\xfd7zXZ\x00"


def extract(data):
    """The first XZ stream in `data` that decompresses to an ELF file, or None."""
    offset = data.find(XZ_MAGIC)
    while offset >= 0:
        try:
            # The payload is followed by other bytes: the decompressor stops at the end
            # of the first stream and leaves them in unused_data.
            out = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[offset:])
        except lzma.LZMAError:
            out = b""
        if out[:4] == b"\x7fELF":
            return out
        offset = data.find(XZ_MAGIC, offset + 1)
    return None


def main(argv):
    if len(argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1])
    src, dst = argv[1], argv[2]
    with open(src, "rb") as f:
        data = f.read()
    elf = extract(data)
    if elf is None:
        sys.exit(f"extract-vmlinux: no XZ-compressed ELF payload in {src}")
    tmp = f"{dst}.tmp.{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(elf)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    print(f"extract-vmlinux: {dst} ({len(elf)} bytes)")


if __name__ == "__main__":
    main(sys.argv)
