"""One model for every image format: Image -> Task -> Mm -> Vma -> pages.

Nothing above this package knows which format an image came from.

The names below are imported when first used (PEP 562), so that importing a submodule
that needs none of them (crfs.model.registry, for `crfs checkpoint`) does not import the
whole model and construct.
"""

import importlib

_NAMES = {
    "Creds": "image", "Exit": "image", "Futex": "image", "Image": "image", "Mm": "image",
    "ShmSegment": "image", "Task": "image", "Vma": "image",
    "PageMap": "pages", "Registers": "registers",
}

__all__ = ["Creds", "Exit", "Futex", "Image", "Mm", "PageMap", "Registers", "ShmSegment", "Task", "Vma"]


def __getattr__(name):
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
