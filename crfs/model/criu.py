"""CRIU image directories in the model: read by crfs.model.criu_load; never written."""

from crfs.errors import Unsupported
from crfs.model.criu_load import load  # noqa: F401 - the registry's entry point


def dump(image, out, **options):
    raise Unsupported("crfs does not write CRIU images")
