"""Checkpointing live processes from userspace (ptrace, /proc, process_vm_readv).

    from crfs.checkpoint import checkpoint
    checkpoint(pid, "out.ckpt", fmt="ckpt", tree=False, after="detach")

checkpoint, checkpoint_into_store and store_name (and checkpoint_file and
checkpoint_into_store_file, which return a str, not a pathlib.Path) are imported from crfs.checkpoint.api when
first used (PEP 562): importing one submodule (via_kernel, procfs ...) imports no more.
"""

from crfs.errors import CheckpointError
from crfs.lazy_names import lazy_names

__all__ = ["CheckpointError", "checkpoint", "checkpoint_into_store", "store_name",
           "checkpoint_file", "checkpoint_into_store_file"]

__getattr__, __dir__ = lazy_names(globals(), {name: "api" for name in __all__[1:]})
