"""The store: a directory of image files, indexed lazily and re-read when a file changes.

Regular files are images, and so are directories holding a regular inventory.img (CRIU
dumps, crfs.formats.criu). Symbolic links (like other directories, fifos, ...) are never
shown and never followed, so a link in the store cannot show anything of what it points
at, and files are opened with O_NOFOLLOW in case one is swapped for a link meanwhile; a
CRIU directory's files are opened relative to it, with O_NOFOLLOW too."""

import contextlib
import logging
import os
import stat
import threading
import time

from crfs import render
from crfs.errors import FormatError
from crfs.formats.criu import CriuDir
from crfs.fs.access import X, Owner, permitted
from crfs.fs.archive_cache import ArchiveCache
from crfs.model import registry
from crfs.model.verify import verify

log = logging.getLogger("crfs")

# Test hook (tests/test_mount_index.py): with CRFS_TEST_INDEX_GATE=DIR in the daemon's
# environment, indexing image NAME first creates DIR/NAME.indexing, then waits while
# DIR/NAME.hold exists (at most a minute). It lets a test hold one image's indexing.
INDEX_GATE = os.environ.get("CRFS_TEST_INDEX_GATE")


class Unindexed(Exception):
    """An image's index is needed on the event loop before it is built: the request is
    suspended while a worker thread builds it (crfs.fs.operations), then run again."""

    def __init__(self, entry):
        super().__init__(entry.name)
        self.entry = entry


def _wait_gate(name):
    gate = os.path.join(INDEX_GATE, name)
    with open(gate + ".indexing", "w"):
        pass
    deadline = time.monotonic() + 60
    while os.path.exists(gate + ".hold") and time.monotonic() < deadline:
        time.sleep(0.01)


def signature(st):
    """What changes when a file is replaced or rewritten."""
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


CRIU_INVENTORY = "inventory.img"


def image_stat(path, st):
    """(st, mode) of a store entry, or None when it is no image: a regular file (its
    mode), or a directory with a regular inventory.img, a CRIU dump (mode None: its files'
    criu_mode, worked out when its entry is made)."""
    if stat.S_ISREG(st.st_mode):
        return st, st.st_mode
    if not stat.S_ISDIR(st.st_mode):
        return None
    try:
        inv = os.lstat(os.path.join(path, CRIU_INVENTORY))
    except OSError:
        return None
    if not stat.S_ISREG(inv.st_mode):
        return None
    return st, None     # criu_mode: computed by Store._update for a new entry only


def criu_mode(path, st):
    """The read bits a CRIU directory image shows: r for a class only where that class may
    search the directory and read every one of its regular files. A file owned by another
    uid (gid) than the directory's counts with its "other" bits for the owner (group)
    class, so nobody reads through crfs a file of the dump they could not read."""
    mode = st.st_mode & 0o444 & ((st.st_mode & 0o111) << 2)
    try:
        names = os.listdir(path)
    except OSError:
        return 0
    for name in names:
        try:
            m = os.lstat(os.path.join(path, name))
        except OSError:
            continue
        if not stat.S_ISREG(m.st_mode):
            continue
        bits = m.st_mode & 0o444
        other = bits & 0o004
        if m.st_uid != st.st_uid:
            bits = (bits & ~0o400) | (other << 6)
        if m.st_gid != st.st_gid:
            bits = (bits & ~0o040) | (other << 3)
        mode &= bits
    return stat.S_IFMT(st.st_mode) | mode


def open_image_source(path, archive_cache=None):
    """The Source of a store entry, never through a symlink (a compressed archive's
    extraction kept in `archive_cache`)."""
    return registry.open_source(path, follow_symlinks=False, archive_cache=archive_cache)


def image_mtime_ns(image, file_mtime_ns):
    """The mtime an image's tree shows: its checkpoint time, or the file's when the image
    has none or one no st_mtime (signed 64-bit nanoseconds) can hold, as a corrupt u64
    time field may claim."""
    if image is not None and image.time:
        ns = image.time * 1_000_000_000
        if -(1 << 63) <= ns < (1 << 63):
            return ns
    return file_mtime_ns


def shown_mode(file_mode, node):
    """The mode a node of an image tree shows: the store file's read bits for a file, and
    for a directory those plus x where r (whoever may read the file may walk its tree)."""
    perm = file_mode & 0o444
    if stat.S_ISDIR(node.mode):
        perm |= perm >> 2
    return stat.S_IFMT(node.mode) | (stat.S_IMODE(node.mode) & perm)


class Entry(Owner):
    """One file of the store: its index (Image) or the reason it cannot be read.

    It is also the owner (crfs.fs.access) of every node of its image's tree: they show its
    uid and gid and its read bits, and only who may read the store file may use them,
    checked against the file as it is now (a chmod counts at once)."""

    def __init__(self, store, name, st, generation, mode=None, sig=None):
        self.store = store
        self.name = name
        self.path = os.path.join(store.path, name)
        self.st = st
        self.mode = st.st_mode if mode is None else mode    # the bits shown (criu_mode)
        self.signature = signature(st) if sig is None else sig
        self.generation = generation
        self.file_mtime_ns = st.st_mtime_ns
        self._loaded = False
        self._index_lock = threading.Lock()
        self.async_lock = None      # the event loop's (crfs.fs.operations)
        self._image = None
        self._error = None
        self._verify = None
        self._records = None
        self._shown = {}

    @property
    def loaded(self):
        return self._loaded

    def _load(self):
        if self._loaded:
            return
        if self.store.on_loop():
            raise Unindexed(self)
        self.index()

    def index(self):
        """Build the index (once, whichever thread asks first; the others wait for it).
        Indexing a big image takes a while: the mount calls this in a worker thread."""
        with self._index_lock:
            if self._loaded:
                return
            if INDEX_GATE:
                _wait_gate(self.name)
            start = time.perf_counter()
            how = "parsed"
            try:
                self._image, how = self._open()
            except FormatError as exc:
                self._error = exc
                log.warning("%s", exc)
            except OSError as exc:
                self._error = f"{self.name}: {exc.strerror}"
                log.warning("%s", self._error)
            log.info("indexed %s in %.3f s (%s)", self.name, time.perf_counter() - start, how)
            self._loaded = True

    def _open(self):
        """(Image, how): from the store's index cache when it has this file's, else parsed
        (and then saved there)."""
        try:
            source = open_image_source(self.path, self.store.archive_cache)
        except FormatError as exc:
            exc.path = self.path
            raise
        # The saved index holds one file's page offsets: not for a directory of files.
        cache = None if isinstance(source, CriuDir) else self.store.index_cache
        try:
            image = cache.load(source) if cache is not None else None
            if image is not None:
                return image, "saved index"
            image = registry.load(source)
        except FormatError as exc:
            source.close()
            exc.path = self.path
            raise
        except BaseException:
            source.close()
            raise
        if cache is not None and image.parent is None:   # a chain's index is not saved
            cache.save(source, image)
        return image, "parsed"

    @property
    def image(self):
        self._load()
        return self._image

    @property
    def error(self):
        self._load()
        return self._error

    @property
    def mtime_ns(self):
        return image_mtime_ns(self.image, self.file_mtime_ns)

    def _source(self):
        """The store file opened anew for verify and records; but for a compressed
        archive without an archive cache (index_dir=off), the indexed image's own source,
        so its stream is not decompressed again (on the event loop)."""
        source = getattr(self._image, "source", None)
        if self.store.archive_cache is None and getattr(source, "extracted", False):
            return contextlib.nullcontext(source)
        return open_image_source(self.path, self.store.archive_cache)

    def verify_text(self):
        if self._verify is None:
            try:
                with self._source() as source:
                    self._verify = verify(source, self.image).text(self.name)
            except OSError as exc:
                self._verify = f"image: {self.name}\nFAIL  open: {exc.strerror}\nresult: unsound\n"
            except FormatError as exc:      # an archive whose tar or stream is bad
                exc.path = None
                self._verify = f"image: {self.name}\nFAIL  open: {exc}\nresult: unsound\n"
        return self._verify

    def records_text(self):
        if self._records is None:
            lines = []
            try:
                with self._source() as source:
                    for rec in registry.records(source):
                        lines.append(render.record_line(rec))
            except FormatError as exc:
                lines.append(f"error: {exc}\n")
            self._records = "".join(lines)
        return self._records

    def close(self):
        if self._image is not None:
            self._image.close()

    def attributes(self, node):
        # Fixed for this generation of the file: one answer per node mode, kept.
        shown = self._shown.get(node.mode)
        if shown is None:
            shown = self._shown[node.mode] = (self.st.st_uid, self.st.st_gid,
                                              shown_mode(self.mode, node))
        return shown

    def permits(self, caller, node, mask):
        if caller.uid == 0:
            return True
        if not self.store.searchable(caller):
            return False
        try:
            st = os.lstat(self.path)
        except OSError:
            return False
        if (st.st_dev, st.st_ino) != (self.st.st_dev, self.st.st_ino):
            return False    # replaced or gone: this tree is no longer the store's file
        mode = criu_mode(self.path, st) if stat.S_ISDIR(st.st_mode) else st.st_mode
        return permitted(caller, st.st_uid, st.st_gid, shown_mode(mode, node), mask)


class StoreOwner(Owner):
    """Owner of the mount's top directory, which lists the store: it shows the store
    directory's uid, gid and r/x bits, and only who may reach and read the store may list
    it; only who may reach and search it may look anything up in it."""

    def __init__(self, store):
        self.store = store

    def attributes(self, node):
        try:
            st = os.stat(self.store.path)
        except OSError:
            return os.getuid(), os.getgid(), node.mode
        return st.st_uid, st.st_gid, stat.S_IFMT(node.mode) | (st.st_mode & 0o555)

    def permits(self, caller, node, mask):
        if caller.uid == 0:
            return True
        return (self.store.searchable(caller, parents_only=True)
                and super().permits(caller, node, mask))


class Store:
    def __init__(self, path, reserved=(), index_cache=None):
        self.path = path
        self.index_cache = index_cache      # crfs.fs.index_cache.IndexCache, or None
        # Extractions of compressed archives, beside the index (crfs.fs.archive_cache).
        self.archive_cache = ArchiveCache.beside(index_cache)
        real = os.path.realpath(path)
        # The directories one passes through to reach the store (its own parents).
        self._parents = []
        while real != os.path.dirname(real):
            real = os.path.dirname(real)
            self._parents.insert(0, real)
        self.reserved = set(reserved)
        self.entries = {}
        self._generation = 0
        self._loop_thread = None

    def defer_indexing(self):
        """From now on, the calling thread (the event loop's) never indexes an image: where
        it would, Unindexed is raised instead (see Entry.index)."""
        self._loop_thread = threading.get_ident()

    def on_loop(self):
        return self._loop_thread == threading.get_ident()

    def searchable(self, caller, parents_only=False):
        """May `caller` reach the store's files: search every directory on the way?"""
        for path in self._parents + ([] if parents_only else [self.path]):
            try:
                st = os.stat(path)
            except OSError:
                return False
            if not permitted(caller, st.st_uid, st.st_gid, st.st_mode, X):
                return False
        return True

    def _visible(self, name):
        # Hidden files include those crfs is writing (store_paths.TEMP_PREFIX): checkpoints
        # in progress, restart/ uploads and their programs' logs.
        return not name.startswith(".") and name not in self.reserved

    def refresh(self):
        """Rescan the directory: new files appear, removed vanish, changed are re-read."""
        seen = set()
        with os.scandir(self.path) as it:
            for dirent in it:
                if not self._visible(dirent.name):
                    continue
                try:
                    st = dirent.stat(follow_symlinks=False)
                except OSError:
                    continue
                found = image_stat(dirent.path, st)
                if found is not None:
                    seen.add(dirent.name)
                    self._update(dirent.name, *found)
        for name in set(self.entries) - seen:
            self._drop(name)

    def entry(self, name):
        """The current entry for `name` (one stat to notice a replaced file), or None."""
        if not self._visible(name):
            return None
        path = os.path.join(self.path, name)
        try:
            st = os.lstat(path)
        except OSError:
            st = None
        found = None if st is None else image_stat(path, st)
        if found is None:
            self._drop(name)
            return None
        return self._update(name, *found)

    def _update(self, name, st, mode=None):
        sig = signature(st)
        if stat.S_ISDIR(st.st_mode):    # a CRIU dump: its inventory.img counts too
            try:
                sig += signature(os.lstat(os.path.join(self.path, name, CRIU_INVENTORY)))
            except OSError:
                pass
        entry = self.entries.get(name)
        if entry is None or entry.signature != sig:
            if entry is not None:
                log.info("%s changed: re-indexing", name)
            self._generation += 1
            if stat.S_ISDIR(st.st_mode):
                mode = criu_mode(os.path.join(self.path, name), st)
            entry = Entry(self, name, st, self._generation, mode, sig)
            self.entries[name] = entry
        return entry

    def _drop(self, name):
        self.entries.pop(name, None)

    def names(self):
        return sorted(self.entries)
