"""The store: a directory of image files, indexed lazily and re-read when a file changes."""

import logging
import os
import stat

from crfs import render
from crfs.errors import FormatError
from crfs.formats.source import Source
from crfs.model import registry
from crfs.model.verify import verify

log = logging.getLogger("crfs")


def signature(st):
    """What changes when a file is replaced or rewritten."""
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class Entry:
    """One file of the store: its index (Image) or the reason it cannot be read."""

    def __init__(self, store, name, st, generation):
        self.name = name
        self.path = os.path.join(store.path, name)
        self.signature = signature(st)
        self.generation = generation
        self.file_mtime_ns = st.st_mtime_ns
        self._loaded = False
        self._image = None
        self._error = None
        self._verify = None
        self._records = None

    def _load(self):
        if self._loaded:
            return
        self._loaded = True
        try:
            self._image = registry.open_image(self.path)
        except FormatError as exc:
            self._error = exc
            log.warning("%s", exc)
        except OSError as exc:
            self._error = f"{self.name}: {exc.strerror}"
            log.warning("%s", self._error)

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
        image = self.image
        if image is not None and image.time:
            return image.time * 1_000_000_000
        return self.file_mtime_ns

    def verify_text(self):
        if self._verify is None:
            try:
                with Source.open(self.path) as source:
                    self._verify = verify(source, self.image).text(self.name)
            except OSError as exc:
                self._verify = f"image: {self.name}\nFAIL  open: {exc.strerror}\nresult: unsound\n"
        return self._verify

    def records_text(self):
        if self._records is None:
            lines = []
            with Source.open(self.path) as source:
                try:
                    for rec in registry.records(source):
                        lines.append(render.record_line(rec))
                except FormatError as exc:
                    lines.append(f"error: {exc}\n")
            self._records = "".join(lines)
        return self._records

    def close(self):
        if self._image is not None:
            self._image.close()


class Store:
    def __init__(self, path, reserved=()):
        self.path = path
        self.reserved = set(reserved)
        self.entries = {}
        self._generation = 0

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
                    st = dirent.stat()
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    seen.add(dirent.name)
                    self._update(dirent.name, st)
        for name in set(self.entries) - seen:
            self._drop(name)

    def entry(self, name):
        """The current entry for `name` (one stat to notice a replaced file), or None."""
        if not self._visible(name):
            return None
        try:
            st = os.stat(os.path.join(self.path, name))
        except OSError:
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            self._drop(name)
            return None
        return self._update(name, st)

    def _update(self, name, st):
        entry = self.entries.get(name)
        if entry is None or entry.signature != signature(st):
            if entry is not None:
                log.info("%s changed: re-indexing", name)
            self._generation += 1
            entry = Entry(self, name, st, self._generation)
            self.entries[name] = entry
        return entry

    def _drop(self, name):
        self.entries.pop(name, None)

    def names(self):
        return sorted(self.entries)
