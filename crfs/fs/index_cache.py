"""The persistent index: each image's index saved in a private cache directory, so a
remount does not parse the store's images again.

An entry is keyed by the image file's identity — (dev, inode, size, mtime_ns, ctime_ns)
of the opened file and a hash of its first and last 64 KiB — and by a digest of the code
that indexes (crfs/formats, crfs/model): a changed file or a changed reader never gets an
old index. The directory must be the daemon's own (owner = its uid, no group/other bits,
not a symlink), every file in it too (mode 0600); files are written to a temporary name
and renamed. What is read back is still not trusted: bounded in size, checksummed, parsed
by crfs.model.index_codec (no pickle) and validated against the image file; anything
amiss is logged and the image indexed again (and the entry rewritten).
"""

import errno
import hashlib
import logging
import os
import stat
import threading
from pathlib import Path

from crfs.model import index_codec

log = logging.getLogger("crfs")

HEAD_TAIL = 64 * 1024
SUFFIX = ".idx"


class CacheUnusable(Exception):
    """The index directory cannot be used safely (or at all)."""


def default_dir():
    """/var/cache/crfs/index for root; $XDG_CACHE_HOME/crfs/index (~/.cache/crfs/index)
    for anyone else."""
    if os.geteuid() == 0:
        return "/var/cache/crfs/index"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "crfs", "index")


_CODE_DIGEST = None


def code_digest():
    """A digest of the source of the readers (crfs/formats, crfs/model): an index made
    by other code is not used."""
    global _CODE_DIGEST
    if _CODE_DIGEST is None:
        h = hashlib.sha256(f"codec {index_codec.VERSION}\n".encode())
        package = Path(__file__).resolve().parents[1]
        for sub in ("formats", "model"):
            for path in sorted((package / sub).glob("*.py")):
                h.update(path.name.encode() + b"\0" + path.read_bytes())
        _CODE_DIGEST = h.hexdigest()
    return _CODE_DIGEST


def identity(source):
    """What changes when the image file is replaced or rewritten, read from its open fd."""
    st = os.fstat(source.fd)
    h = hashlib.blake2b(digest_size=16)
    h.update(os.pread(source.fd, HEAD_TAIL, 0))
    h.update(os.pread(source.fd, HEAD_TAIL, max(0, st.st_size - HEAD_TAIL)))
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, h.hexdigest()]


class IndexCache:
    def __init__(self, path):
        """Open (creating it, mode 0700) the directory `path`; CacheUnusable unless it is
        a directory of ours that nobody else may read or write."""
        self.path = path
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
            self.dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                                  | os.O_CLOEXEC)
        except OSError as exc:
            raise CacheUnusable(f"index_dir {path}: {exc.strerror}") from None
        st = os.fstat(self.dir_fd)
        if st.st_uid != os.geteuid() or st.st_mode & 0o077:
            os.close(self.dir_fd)
            raise CacheUnusable(f"index_dir {path} must be owned by uid {os.geteuid()} "
                                f"with mode 0700 (it is uid {st.st_uid}, mode "
                                f"{stat.S_IMODE(st.st_mode):04o})")
        self.hits = self.misses = 0

    @staticmethod
    def _name(ident):
        dev, ino = ident[:2]
        return hashlib.sha256(f"{dev}:{ino}".encode()).hexdigest()[:32] + SUFFIX

    def _head(self, ident):
        return {"v": index_codec.VERSION, "code": code_digest(), "id": ident}

    def load(self, source):
        """The Image saved for the file open as `source`, or None (no entry, a stale or a
        bad one: then why is logged)."""
        ident = identity(source)
        name = self._name(ident)
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                         dir_fd=self.dir_fd)
        except FileNotFoundError:
            self.misses += 1
            return None
        except OSError as exc:
            log.warning("index %s: %s", name, exc.strerror)
            self.misses += 1
            return None
        try:
            data = self._read(fd, name, source.size)
            head, image = index_codec.decode(data, source)
            if head != self._head(ident):
                raise index_codec.IndexCorrupt("stale (the image or crfs changed)")
        except index_codec.IndexCorrupt as exc:
            log.info("%s: index not used: %s", source.path, exc)
            self.misses += 1
            return None
        finally:
            os.close(fd)
        self.hits += 1
        return image

    def _read(self, fd, name, image_size):
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            raise index_codec.IndexCorrupt("not a private regular file")
        limit = 16 * 2**20 + image_size // 8
        if st.st_size > limit:
            raise index_codec.IndexCorrupt(f"{st.st_size} bytes: too big")
        chunks, left = [], st.st_size
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def save(self, source, image):
        """Save `image`'s index for the file open as `source` (failures only logged)."""
        try:
            ident = identity(source)
            data = index_codec.encode(image, self._head(ident))
        except index_codec.Unencodable as exc:
            log.info("%s: index not saved: holds a %s", source.path, exc)
            return
        name = self._name(ident)
        temp = f".{name}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600, dir_fd=self.dir_fd)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            os.replace(temp, name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        except OSError as exc:
            log.warning("index %s: cannot save: %s", name, exc.strerror)
            try:
                os.unlink(temp, dir_fd=self.dir_fd)
            except OSError as exc2:
                if exc2.errno != errno.ENOENT:
                    log.warning("index %s: %s", temp, exc2.strerror)

    def close(self):
        os.close(self.dir_fd)
