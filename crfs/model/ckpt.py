"""linux-cr ckpt_hdr images (v19-rc3..v21, x86_32 / x86_64): crfs's native format.

load() indexes an image (crfs.model.ckpt_load), dump() writes one (crfs.model.ckpt_dump).
The record declarations and the grammar are in crfs.formats.ckpt.
"""

from crfs.model.ckpt_dump import dump
from crfs.model.ckpt_load import load

__all__ = ["dump", "load"]
