"""One model for every image format: Image -> Task -> Mm -> Vma -> pages.

Nothing above this package knows which format an image came from.

The names below are imported when first used (PEP 562), so that importing a submodule
that needs none of them (crfs.model.registry, for `crfs checkpoint`) does not import the
whole model and construct.
"""

from crfs.lazy_names import lazy_names

__all__ = ["Creds", "Exit", "Futex", "Image", "Mm", "PageMap", "Registers", "ShmSegment", "Task", "Vma"]

__getattr__, __dir__ = lazy_names(globals(), {
    "Creds": "image", "Exit": "image", "Futex": "image", "Image": "image", "Mm": "image",
    "ShmSegment": "image", "Task": "image", "Vma": "image",
    "PageMap": "pages", "Registers": "registers",
})
