"""The identity of a mapped file as the kernel sees it, for the image's CRFS_FILE_ID.

A restart maps files again by name; the module's RESTART refuses one that is not the file
the process had mapped (docs/security.md). The identity is that of the inode the VMA maps:
dev and inode from /proc/<pid>/maps (the kernel prints the mapped inode's, after overlayfs
handed it the real file), size and mtime from stat(2) of /proc/<pid>/map_files/<range>
(the mapped file itself; root or CAP_CHECKPOINT_RESTORE only) or else of the path, if that
still names the same inode.
"""

import os

from crfs.model.image import FileId


def file_identity(pid, line):
    """FileId of the file mapped by maps `line` of `pid`, or None when it cannot be told
    (the path now names another file, or nothing)."""
    major, minor = (int(part, 16) for part in line.dev.split(":"))
    dev, ino = os.makedev(major, minor), line.inode
    for path in (f"/proc/{pid}/map_files/{line.start:x}-{line.end:x}", line.name):
        try:
            st = os.stat(path)
        except OSError:
            continue
        if st.st_ino == ino:
            return FileId(dev=dev, ino=ino, size=st.st_size, mtime_ns=st.st_mtime_ns)
    return None


def exe_identity(pid, vmas):
    """(path, FileId) of /proc/`pid`/exe, (None, None) without one (a kernel thread, an
    exe unlinked since). The identity is that of a file VMA of the same inode when the
    program maps it (as the kernel's CHECKPOINT takes it: the real inode behind an
    overlayfs file), else stat(2) of the link."""
    try:
        path = os.readlink(f"/proc/{pid}/exe")
        st = os.stat(f"/proc/{pid}/exe")
    except OSError:
        return None, None
    if path.endswith(" (deleted)"):
        return None, None
    for vma in vmas:
        if vma.file == path and vma.file_id is not None:
            return path, vma.file_id
    return path, FileId(dev=st.st_dev, ino=st.st_ino, size=st.st_size, mtime_ns=st.st_mtime_ns)
