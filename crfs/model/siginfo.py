"""Pending signals and POSIX timers as the model keeps them, from what a checkpointer
reads: a raw x86_64 siginfo_t (ptrace's PTRACE_PEEKSIGINFO, a CRIU dump's siginfo bytes)
into a SigInfo, and which timers have their signal queued. The ptrace checkpointer
(crfs.checkpoint) and the CRIU loader (crfs.model.criu_load) share them."""

import struct

from crfs.model.image import SigInfo

FAULT_SIGNALS = {4, 5, 7, 8, 11}             # SIGILL SIGTRAP SIGBUS SIGFPE SIGSEGV
SIGCHLD, SIGPOLL, SI_KERNEL, SI_TIMER = 17, 29, 0x80, -2
KERNEL_SIGINFO_SIZE = 48                     # x86_64 kernel_siginfo: all a queue keeps
U32 = 0xFFFFFFFF
U64 = (1 << 64) - 1
SIGEV_NONE = 1


def siginfo(raw):
    """A siginfo_t (x86_64) as the checkpoint keeps it: by the signal's class, as linux-cr
    v21's fill_siginfo (docs/format-ckpt.md)."""
    signo, err, code = struct.unpack_from("<iii", raw)
    info = SigInfo(signo=signo, errno=err & U32, code=code & U32)
    pid, uid = struct.unpack_from("<iI", raw, 16)
    if code > 0 and code != SI_KERNEL and signo == SIGCHLD:
        status, utime, stime = struct.unpack_from("<i4xqq", raw, 24)
        info.pid, info.uid, info.sigval_int = pid & U32, uid, status & U32
        info.utime, info.stime = utime & U64, stime & U64
    elif code > 0 and code != SI_KERNEL and signo in FAULT_SIGNALS:
        info.sigval_ptr = struct.unpack_from("<Q", raw, 16)[0]
    elif code > 0 and code != SI_KERNEL and signo == SIGPOLL:
        band, fd = struct.unpack_from("<qi", raw, 16)
        info.pid, info.sigval_int = band & U32, fd & U32
    elif code == SI_TIMER:
        value, private = struct.unpack_from("<Qi", raw, 24)
        info.pid, info.uid, info.sigval_int, info.utime = pid & U32, uid, value & U32, \
            private & U32
    else:                                   # SI_USER, SI_QUEUE, SI_TKILL, SI_KERNEL ...
        info.pid, info.uid = pid & U32, uid
        info.sigval_ptr = struct.unpack_from("<Q", raw, 24)[0]
    info.uid = info.uid - (1 << 32) if info.uid >= 1 << 31 else info.uid   # s32 in the image
    info.raw = bytes(raw[:KERNEL_SIGINFO_SIZE])     # what the kernel kept of it, whole
    return info


def mark_pending(timers, queues):
    """Mark each timer whose SI_TIMER signal is among `queues` (siginfo: si_tid in .pid)
    pending: the restart makes it fire at once, which queues that signal again."""
    queued = {info.pid for info in queues if info.code == SI_TIMER & U32}
    for timer in timers:
        timer.pending = timer.id in queued and timer.notify != SIGEV_NONE
        if timer.pending:
            timer.value_ns = 1          # its signal is queued: it fires again at once
