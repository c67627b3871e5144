"""Which format an image is in, and the reader/writer for each.

A format is a pair of modules with the same name:
  crfs.formats.<name>: sniff(head: bytes) -> bool, records(source) -> iter of RecordInfo
  crfs.model.<name>:   load(source) -> Image,  dump(image, out, **options) -> None
"""

import importlib

from crfs.errors import FormatError
from crfs.formats.source import Source

FORMATS = ("cr", "ckpt", "cpt")
SNIFF_BYTES = 16


def _formats_module(name):
    return importlib.import_module(f"crfs.formats.{name}")


def _model_module(name):
    return importlib.import_module(f"crfs.model.{name}")


def detect(source):
    """Name of the format of `source` (see FORMATS), or FormatError."""
    head = source.pread(0, SNIFF_BYTES)
    for name in FORMATS:
        if _formats_module(name).sniff(head):
            return name
    raise FormatError("not a checkpoint image (unknown magic)", offset=0)


def load(source):
    """Index an opened Source into an Image (metadata only; pages stay in the file)."""
    return _model_module(detect(source)).load(source)


def open_image(path):
    """Open and index the image at `path`. FormatError carries the path."""
    source = Source.open(path)
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


def dump(image, out, fmt, **options):
    """Write `image` to the binary file `out` in format `fmt` (a FORMATS name)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    _model_module(fmt).dump(image, out, **options)
