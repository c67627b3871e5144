"""The extractions of compressed checkpoint archives (crfs.formats.criu_archive), kept
across mounts in `archives/` of the private index directory (crfs.fs.index_cache).

An extraction is keyed by the archive file's identity (dev, inode, size, mtime_ns,
ctime_ns and a hash of its first and last 64 KiB, as the persistent index): a replaced or
rewritten archive is extracted anew. It is written to a temporary name and renamed once
complete, so a file under its final name is a whole decompressed stream; the tar inside is
still read as untrusted (crfs.formats.criu_tar). The directory is bounded: after each new
extraction the least recently used others are removed until the total is at most
`max_bytes` (one archive alone may reach it: more is refused while decompressing). An
extraction in use stays readable when removed (its descriptor is open). The directory is
made when the first compressed archive is met; if it cannot be used, archives are
extracted to temporary files (logged).
"""

import hashlib
import logging
import os
import stat
import threading

from crfs.formats import criu_archive
from crfs.formats.source import Source
from crfs.fs.index_cache import CacheUnusable, identity

log = logging.getLogger("crfs")

SUFFIX = ".tar"
MAX_BYTES = criu_archive.MAX_EXTRACTED


class ArchiveCache:
    def __init__(self, path, max_bytes=MAX_BYTES):
        """The cache in directory `path`, created (mode 0700) when first needed: a store
        without compressed archives leaves no trace."""
        self.path = path
        self.max_bytes = max_bytes
        self.dir_fd = None
        self.hits = self.misses = 0
        self._lock = threading.Lock()
        self._evict_lock = threading.Lock()

    def _open_dir(self):
        """The directory's fd, opened (and created) once; CacheUnusable unless it is ours
        and private."""
        with self._lock:
            if self.dir_fd is not None:
                return self.dir_fd
            try:
                os.makedirs(self.path, mode=0o700, exist_ok=True)
                fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                             | os.O_CLOEXEC)
            except OSError as exc:
                raise CacheUnusable(f"archive cache {self.path}: {exc.strerror}") from None
            st = os.fstat(fd)
            if st.st_uid != os.geteuid() or st.st_mode & 0o077:
                os.close(fd)
                raise CacheUnusable(f"archive cache {self.path} must be owned by uid "
                                    f"{os.geteuid()} with mode 0700")
            self.dir_fd = fd
            return fd

    @classmethod
    def beside(cls, index_cache):
        """The archive cache in index_cache's directory (archives/), or None."""
        if index_cache is None:
            return None
        return cls(os.path.join(index_cache.path, "archives"))

    @staticmethod
    def name_of(source):
        return hashlib.sha256(repr(identity(source)).encode()).hexdigest()[:32] + SUFFIX

    def extracted(self, source, kind):
        """A Source over the decompressed stream of the archive open as `source`: the
        cached extraction, made first if there is none."""
        try:
            self._open_dir()
        except CacheUnusable as exc:
            log.warning("%s: extracting %s to a temporary file", exc, source.path)
            return criu_archive.temporary_extraction(source, kind, self.max_bytes)
        name = self.name_of(source)
        found = self._open(name)
        if found is not None:
            self.hits += 1
            return Source(found, os.fstat(found).st_size, f"{source.path} (decompressed)")
        self.misses += 1
        temp = f".{name}.{os.getpid()}.{threading.get_ident()}.tmp"
        fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=self.dir_fd)
        try:
            size = criu_archive.extract_to(source, kind, fd, self.max_bytes)
            os.replace(temp, name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        except BaseException:
            os.close(fd)
            try:
                os.unlink(temp, dir_fd=self.dir_fd)
            except OSError:
                pass
            raise
        self._evict(keep=name)
        return Source(fd, size, f"{source.path} (decompressed)")

    def _open(self, name):
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                         dir_fd=self.dir_fd)
        except OSError:
            return None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            os.close(fd)
            log.warning("archive cache %s: not a private regular file: ignored", name)
            return None
        os.utime(fd)                    # recently used: evicted last
        return fd

    def _evict(self, keep):
        """Remove the least recently used extractions until the total fits max_bytes."""
        with self._evict_lock:
            found = []
            for name in os.listdir(self.dir_fd):
                if not name.endswith(SUFFIX) or name == keep or name.startswith("."):
                    continue
                try:
                    st = os.stat(name, dir_fd=self.dir_fd, follow_symlinks=False)
                except OSError:
                    continue
                found.append((st.st_mtime_ns, name, st.st_size))
            total = sum(size for _, _, size in found)
            total += os.stat(keep, dir_fd=self.dir_fd, follow_symlinks=False).st_size
            for _, name, size in sorted(found):
                if total <= self.max_bytes:
                    break
                try:
                    os.unlink(name, dir_fd=self.dir_fd)
                    log.info("archive cache: removed %s (%d bytes) to stay within %d",
                             name, size, self.max_bytes)
                    total -= size
                except OSError as exc:
                    log.warning("archive cache %s: %s", name, exc.strerror)

    def close(self):
        if self.dir_fd is not None:
            os.close(self.dir_fd)
            self.dir_fd = None
