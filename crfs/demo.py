"""Demo images: one synthetic process per format and arch, written into a store."""

import os

from crfs.model import registry
from crfs.model.synth import synthetic_image

# (file name, format, writer options, arch, comm)
DEMO_IMAGES = (
    ("counter-x86_64.ckpt", "ckpt", {}, "x86_64", "counter"),
    ("counter-i386.ckpt", "ckpt", {}, "i386", "counter32"),
    ("editor-v4-i386.cr", "cr", {"dialect": "cr_hdr v4"}, "i386", "editor"),
    ("editor-v4-x86_64.cr", "cr", {"dialect": "cr_hdr v4"}, "x86_64", "editor64"),
    ("server-i386.cpt", "cpt", {}, "i386", "server"),
    ("server-x86_64.cpt", "cpt", {}, "x86_64", "server64"),
)


def write_demo_store(store, heap_pages=32):
    """Write the demo images into `store` (atomically: temp name, then rename)."""
    os.makedirs(store, exist_ok=True)
    written = []
    for pid, (name, fmt, options, arch, comm) in enumerate(DEMO_IMAGES, start=1000):
        image = synthetic_image(arch, heap_pages=heap_pages, comm=comm, pid=pid)
        path = os.path.join(store, name)
        tmp = os.path.join(store, f".crfs-demo-{name}")
        with open(tmp, "wb") as out:
            registry.dump(image, out, fmt, **options)
        os.replace(tmp, path)
        written.append(path)
    return written
