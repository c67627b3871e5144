"""Demo images: one synthetic process per format and arch, written into a store."""

import os

from crfs.model import registry
from crfs.model.synth import synthetic_image

FIRST_PID = 1000    # the demo images' pids count up from here, in DEMO_IMAGES order


def _demo_images():
    """(file name, format, writer options, arch, comm) of every format's demo images, the
    default format's first (the order fixes each image's pid, so its bytes)."""
    formats = sorted(registry.FORMATS.values(),
                     key=lambda f: f.name != registry.DEFAULT_FORMAT)   # stable sort
    return tuple((name, f.name, options, arch, comm)
                 for f in formats for name, arch, comm, options in f.demo)


DEMO_IMAGES = _demo_images()


def write_demo_store(store, heap_pages=32):
    """Write the demo images into `store` (atomically: temp name, then rename)."""
    os.makedirs(store, exist_ok=True)
    written = []
    for pid, (name, fmt, options, arch, comm) in enumerate(DEMO_IMAGES, start=FIRST_PID):
        image = synthetic_image(arch, heap_pages=heap_pages, comm=comm, pid=pid)
        path = os.path.join(store, name)
        tmp = os.path.join(store, f".crfs-demo-{name}")
        with open(tmp, "wb") as out:
            registry.dump(image, out, fmt, **options)
        os.replace(tmp, path)
        written.append(path)
    return written
