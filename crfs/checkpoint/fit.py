"""What each image format can hold of a live process, and the model adjusted to it.

The capture is format-neutral (kinds anon, file, shm-anon, shm-file, vdso; the full XSAVE
area). linux-cr ckpt_hdr holds all of it. The v4 cr_hdr and OpenVZ cpt writers know only
private anonymous and file VMAs, 512-byte FXSAVE states and (cr v4) a single task, as the
kernels they come from did: there the vDSO is saved as an anonymous VMA with its pages (what
those kernels did with it), and a process they cannot hold is refused with the reason.
"""

from crfs.errors import Unsupported
from crfs.formats.x86 import FXSAVE_SIZE
from crfs.model import registry


def fit(image, fmt):
    """Adjust `image` for writing as `fmt`; returns the writer options for registry.dump.
    Unsupported when the format cannot hold something the process has."""
    if fmt != "ckpt":
        _fit_legacy(image, fmt)
    return dict(registry.get(fmt).checkpoint_options)   # a copy: the record is shared


def _fit_legacy(image, fmt):
    name = registry.get(fmt).display
    threads = [t for t in image.tasks if t.pid != t.tgid]
    if fmt == "cr" and len(image.tasks) != 1:
        what = (f"pid {threads[0].tgid} has {1 + len(threads)} threads" if threads
                else f"the tree has {len(image.tasks)} processes")
        raise Unsupported(f"{name} holds exactly one task, but {what}; use --format ckpt")
    if threads:
        raise Unsupported(f"{name} has no thread groups, but pid {threads[0].tgid} is "
                          f"multi-threaded; use --format ckpt")
    for mm in image.mms():
        for vma in mm.vmas:
            if vma.kind in ("shm-anon", "shm-file"):
                raise Unsupported(f"{name} cannot hold the shared mapping {vma.start:#x}-"
                                  f"{vma.end:#x} {vma.file}; use --format ckpt")
            if vma.kind == "vdso":
                vma.kind = "anon"
    for task in image.tasks:
        if task.fpu is not None:
            task.fpu = task.fpu[:FXSAVE_SIZE]      # the legacy FXSAVE region of XSAVE
            if fmt == "cr":
                from crfs.model.cr import CrTaskFields   # the cr writer's, only for cr
                task.native = CrTaskFields(has_fxsr=1)
