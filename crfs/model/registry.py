"""Which format an image is in, and everything crfs knows about each format.

A format is one `Format` record below plus a pair of modules with its name:
  crfs.formats.<name>: sniff(head: bytes) -> bool, records(source) -> iter of RecordInfo
  crfs.model.<name>:   load(source) -> Image,  dump(image, out, **options) -> None
Every list of formats (CLI choices, checkpoint writers, demo images, restartability) reads
these records; nothing else names a format's facts.
"""

import errno
import importlib
import os
import stat

from crfs.errors import FormatError, Unsupported

SNIFF_BYTES = 16


class Format:
    """One format's facts (a plain class rather than a dataclass: `crfs checkpoint` imports
    this module, and dataclasses, with inspect, is a large part of a small checkpoint's
    start-up under TCG). Records are not changed once made."""

    __slots__ = ("name", "extension", "display", "summary", "checkpoint_options", "demo",
                 "restartable")

    def __init__(self, name, extension, display, summary, checkpoint_options=None, demo=(),
                 restartable=()):
        self.name = name                  # the --format value and the module name
        self.extension = extension        # of the files crfs writes
        self.display = display            # how messages name it
        self.summary = summary            # one line for --help
        # writer options of a checkpoint
        self.checkpoint_options = dict(checkpoint_options or {})
        self.demo = demo                  # (file name, arch, comm, writer options) of the demos
        self.restartable = restartable    # Image.description values the kernel module restarts

    def __repr__(self):
        return f"Format({self.name!r})"

    def restarts(self, image):
        """Whether the crfs kernel module restarts `image`."""
        return image.description in self.restartable


FORMATS = {f.name: f for f in (
    Format("cr", ".cr", "linux-cr cr_hdr v4",
           "linux-cr cr_hdr v4, one task",
           checkpoint_options={"dialect": "cr_hdr v4", "arch": "x86_64"},
           demo=(("editor-v4-i386.cr", "i386", "editor", {"dialect": "cr_hdr v4"}),
                 ("editor-v4-x86_64.cr", "x86_64", "editor64", {"dialect": "cr_hdr v4"}))),
    Format("ckpt", ".ckpt", "linux-cr ckpt_hdr",
           "linux-cr ckpt_hdr x86_64 (default, holds everything)",
           demo=(("counter-x86_64.ckpt", "x86_64", "counter", {}),
                 ("counter-i386.ckpt", "i386", "counter32", {})),
           restartable=("linux-cr ckpt_hdr v21 x86_64",)),
    Format("cpt", ".cpt", "OpenVZ cpt",
           "OpenVZ x86_64, no threads",
           checkpoint_options={"arch": "x86_64"},
           demo=(("server-i386.cpt", "i386", "server", {}),
                 ("server-x86_64.cpt", "x86_64", "server64", {}))),
)}
DEFAULT_FORMAT = "ckpt"

# Formats crfs reads but never writes (no writer, no demo, not restartable): detected and
# loaded like the others, never offered as a --format.
READ_ONLY = {f.name: f for f in (
    Format("criu", "", "CRIU", "CRIU image directory (criu dump -D DIR), read-only"),
)}
READERS = {**FORMATS, **READ_ONLY}


def get(name):
    """The Format record called `name`; Unsupported (EINVAL) for an unknown one."""
    try:
        return FORMATS[name]
    except KeyError:
        raise Unsupported(f"unknown format {name!r}; choose from {', '.join(FORMATS)}",
                          errno=errno.EINVAL) from None


def restartable(image):
    """Whether the crfs kernel module restarts `image`, whatever its format."""
    return any(f.restarts(image) for f in FORMATS.values())


def restartable_descriptions():
    return [d for f in FORMATS.values() for d in f.restartable]


def _formats_module(name):
    return importlib.import_module(f"crfs.formats.{name}")


def _model_module(name):
    return importlib.import_module(f"crfs.model.{name}")


def detect(source):
    """Name of the format of `source` (a FORMATS key), or FormatError."""
    if getattr(source, "format_name", None):     # a directory: its format is its kind
        return source.format_name
    head = source.pread(0, SNIFF_BYTES)
    for name in READERS:
        if _formats_module(name).sniff(head):
            return name
    raise FormatError("not a checkpoint image (unknown magic)", offset=0)


def load(source):
    """Index an opened Source into an Image (metadata only; pages stay in the file). An
    incremental image comes with its chain's pages (crfs.model.chain)."""
    image = load_one(source)
    if image.parent is not None:
        from crfs.model import chain
        image = chain.resolve(image, source.path, load_one)
    return image


def load_one(source):
    """load() without following an incremental image's parents."""
    return _model_module(detect(source)).load(source)


def open_source(path, follow_symlinks=True, archive_cache=None):
    """A Source over the image at `path`: the file; for a directory (a CRIU dump) a
    crfs.formats.criu.CriuDir over its files; for a tar archive holding a CRIU dump
    (podman's checkpoint export, uncompressed) a crfs.formats.criu_tar.CriuTar, and for a
    gzip or zstd one the CriuTar of its extraction (crfs.formats.criu_archive: into
    `archive_cache`, a crfs.fs.archive_cache.ArchiveCache, or a temporary file)."""
    st = os.stat(path, follow_symlinks=follow_symlinks)
    if stat.S_ISDIR(st.st_mode):
        from crfs.formats.criu import CriuDir
        return CriuDir.open(path, follow_symlinks)
    from crfs.formats.source import Source     # construct: not for `crfs checkpoint`
    source = Source.open(path, follow_symlinks)
    from crfs.formats import criu_tar
    if criu_tar.is_tar(source.pread(0, criu_tar.BLOCK)):     # a CRIU dump in a tar archive?
        try:
            found = criu_tar.CriuTar.from_source(source, path)
        except BaseException:
            source.close()
            raise
        if found is not None:
            return found                # it owns `source` now
        return source
    from crfs.formats import criu_archive
    kind = criu_archive.compression(source.pread(0, 4))
    if kind is not None:
        try:
            found = criu_archive.open_archive(source, path, kind, archive_cache)
        except FormatError as exc:
            exc.path = path
            raise
        if found is None:
            raise FormatError(f"a {kind}-compressed tar archive without a CRIU "
                              f"inventory.img", offset=0, record="tar archive", path=path)
        return found
    return source


def open_image(path, follow_symlinks=True):
    """Open and index the image at `path`. FormatError carries the path."""
    source = open_source(path, follow_symlinks)
    try:
        return load(source)
    except FormatError as exc:
        source.close()
        exc.path = path
        raise
    except BaseException:
        source.close()
        raise


def records(source):
    """Iterate the RecordInfo of every record of `source`, in file order."""
    return _formats_module(detect(source)).records(source)


def writer(fmt):
    """The module (crfs.model.<fmt>) whose dump() writes format `fmt` (a FORMATS name)."""
    return _model_module(get(fmt).name)


def dump(image, out, fmt, **options):
    """Write `image` to the binary file `out` in format `fmt` (a FORMATS name)."""
    writer(fmt).dump(image, out, **options)
