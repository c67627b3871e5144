"""The records of an incremental ckpt image, as the ckpt writer emits them (kept out of
ckpt_dump.py): CRFS_HDR_PARENT STRING{name} after HEADER_ARCH, and per MM one
CRFS_HDR_PARENT_PAGES after its VMAs. See crfs/model/chain.py for what they mean."""

from crfs.formats import ckpt as fmt
from crfs.formats.common import encode_text


def write_parent(writer, parent):
    name = encode_text(parent.name)
    if not name or b"/" in name or len(name) > 255:
        raise ValueError(f"parent name {parent.name!r} is not a file name")
    writer.emit("CRFS_HDR_PARENT", fmt.crfs_hdr_parent, size=parent.size,
                sha256=parent.sha256, tracking=fmt.CRFS_TRACKING[parent.tracking])
    writer.emit_raw("CKPT_HDR_STRING", name)


def write_parent_pages(writer, runs):
    writer.emit_counted("CRFS_HDR_PARENT_PAGES", fmt.crfs_hdr_parent_pages, nr_runs=len(runs),
                        runs=[{"start": start, "npages": n} for start, n in runs])
