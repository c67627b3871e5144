"""Checkpointing live processes from userspace (ptrace, /proc, process_vm_readv).

    from crfs.checkpoint import checkpoint
    checkpoint(pid, "out.ckpt", fmt="ckpt", tree=False, after="detach")
"""

from crfs.checkpoint.api import checkpoint, checkpoint_into_store, store_name
from crfs.errors import CheckpointError

__all__ = ["CheckpointError", "checkpoint", "checkpoint_into_store", "store_name"]
