"""Checkpointing live processes from userspace (ptrace, /proc, process_vm_readv).

    from crfs.checkpoint import checkpoint
    checkpoint(pid, "out.ckpt", fmt="ckpt", tree=False, after="detach")

checkpoint, checkpoint_into_store and store_name (and checkpoint_file and
checkpoint_into_store_file, which return a str, not a pathlib.Path) are imported from crfs.checkpoint.api when
first used (PEP 562): importing one submodule (via_kernel, procfs ...) imports no more.
"""

from crfs.errors import CheckpointError

_API = ("checkpoint", "checkpoint_into_store", "store_name", "checkpoint_file",
        "checkpoint_into_store_file")

__all__ = ["CheckpointError", "checkpoint", "checkpoint_into_store", "store_name",
           "checkpoint_file", "checkpoint_into_store_file"]


def __getattr__(name):
    if name not in _API:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from crfs.checkpoint import api
    value = getattr(api, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
