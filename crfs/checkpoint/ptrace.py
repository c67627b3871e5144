"""The few syscalls a userspace checkpoint needs, through ctypes: ptrace, waitpid,
process_vm_readv and get_robust_list. x86_64 only (request numbers and struct layouts are
that ABI's).

Every function raises OSError with the errno the kernel gave; callers turn those into
messages. ptrace requests must all come from the thread that seized the task.
"""

import ctypes
import errno
import os
import time

_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.restype = ctypes.c_long
_libc.ptrace.argtypes = (ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
_libc.process_vm_readv.restype = ctypes.c_ssize_t
_libc.process_vm_readv.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_ulong,
                                   ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong)
_libc.waitpid.restype = ctypes.c_int
_libc.waitpid.argtypes = (ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.c_int)
_libc.syscall.restype = ctypes.c_long
_libc.syscall.argtypes = (ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p)

PTRACE_POKEDATA = 5
PTRACE_SINGLESTEP = 9
PTRACE_GETREGS = 12
PTRACE_SETREGS = 13
PTRACE_DETACH = 17
PTRACE_GET_THREAD_AREA = 25
PTRACE_GETREGSET = 0x4204
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_PEEKSIGINFO = 0x4209
PTRACE_PEEKSIGINFO_SHARED = 1
SIGINFO_SIZE = 128
PTRACE_GET_RSEQ_CONFIGURATION = 0x420F    # Linux 5.13
NT_X86_XSTATE = 0x202
WALL = 0x40000000          # __WALL: threads and processes alike
WNOHANG = 1
SYS_GET_ROBUST_LIST = 274
SPIN_WAITS = 2000          # waitpid(WNOHANG) polls with sched_yield before sleeping ones

IOV_MAX = 1024
XSTATE_MAX = 64 * 1024     # buffer for NT_X86_XSTATE; the kernel shortens it to the real size
GDT_ENTRY_TLS_MIN = 12     # x86_64 kernels, for 64-bit and 32-bit tasks alike
GDT_ENTRY_TLS_ENTRIES = 3
STOP_TIMEOUT = 10.0        # seconds a task may take to reach the interrupt stop

# struct user_regs_struct (x86_64), in kernel order, with gdb's names.
USER_REGS = ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8",
             "rax", "rcx", "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags",
             "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs")


class Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class RseqConfiguration(ctypes.Structure):
    """struct ptrace_rseq_configuration (linux/ptrace.h)."""
    _fields_ = [("rseq_abi_pointer", ctypes.c_uint64), ("rseq_abi_size", ctypes.c_uint32),
                ("signature", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("pad", ctypes.c_uint32)]


class UserDesc(ctypes.Structure):
    """struct user_desc (asm/ldt.h)."""
    _fields_ = [("entry_number", ctypes.c_uint), ("base_addr", ctypes.c_uint),
                ("limit", ctypes.c_uint), ("seg_32bit", ctypes.c_uint, 1),
                ("contents", ctypes.c_uint, 2), ("read_exec_only", ctypes.c_uint, 1),
                ("limit_in_pages", ctypes.c_uint, 1), ("seg_not_present", ctypes.c_uint, 1),
                ("useable", ctypes.c_uint, 1), ("lm", ctypes.c_uint, 1)]


def _check(result):
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def _ptrace(request, tid, addr=0, data=0):
    return _check(_libc.ptrace(request, tid, addr, data))


PTRACE_O_SUSPEND_SECCOMP = 1 << 21


def seize(tid, options=0):
    _ptrace(PTRACE_SEIZE, tid, 0, options)


def interrupt(tid):
    _ptrace(PTRACE_INTERRUPT, tid)


def detach(tid, signal=0):
    _ptrace(PTRACE_DETACH, tid, 0, signal)


def wait_status(tid, timeout=STOP_TIMEOUT):
    """The raw waitpid status of the next stop (or exit) of traced `tid`. Polls, so that a
    task that never stops is an error (ETIMEDOUT) and not a hang: first with sched_yield
    (a stop that comes in microseconds, as after a single step, is seen at once), then
    every millisecond."""
    status = ctypes.c_int()
    deadline = time.monotonic() + timeout
    polls = 0
    while True:
        pid = _check(_libc.waitpid(tid, ctypes.byref(status), WALL | WNOHANG))
        if pid == tid:
            return status.value
        polls += 1
        if polls < SPIN_WAITS:
            os.sched_yield()
            continue
        if time.monotonic() > deadline:
            raise OSError(errno.ETIMEDOUT, f"task {tid} did not stop within {timeout:.0f} s")
        time.sleep(0.001)


def wait_stop(tid, timeout=STOP_TIMEOUT):
    """Wait for the next stop of a seized `tid`; returns the signal of a signal-delivery stop
    (to be passed on at detach), else 0. OSError(ESRCH) if the task exited instead."""
    value = wait_status(tid, timeout)
    if not os.WIFSTOPPED(value):
        raise OSError(errno.ESRCH, f"task {tid} exited")
    is_event_stop = value >> 16 != 0
    signal = os.WSTOPSIG(value)
    # A group stop or the interrupt itself carries no signal to pass on; SIGTRAP of an
    # event stop neither. Only a plain signal-delivery stop holds a signal we took.
    return 0 if is_event_stop else signal


def get_regs(tid):
    """General registers as {gdb name: value} (user_regs_struct)."""
    regs = (ctypes.c_ulonglong * len(USER_REGS))()
    _ptrace(PTRACE_GETREGS, tid, 0, ctypes.addressof(regs))
    return dict(zip(USER_REGS, regs))


def set_regs(tid, regs):
    """PTRACE_SETREGS from a {gdb name: value} dict holding every USER_REGS name."""
    values = (ctypes.c_ulonglong * len(USER_REGS))(
        *[regs[name] & 0xFFFFFFFFFFFFFFFF for name in USER_REGS])
    _ptrace(PTRACE_SETREGS, tid, 0, ctypes.addressof(values))


def singlestep(tid, signal=0):
    _ptrace(PTRACE_SINGLESTEP, tid, 0, signal)


def poke(tid, address, word):
    """PTRACE_POKEDATA: the 8 bytes at `address` (little-endian `word`)."""
    _ptrace(PTRACE_POKEDATA, tid, address, word)


def get_robust_list(tid):
    """(head, len) of the thread's robust futex list, as set_robust_list(2) registered it
    (the native one: a 32-bit task's compat list is not what this returns). A ptracer of
    `tid` may ask."""
    head = ctypes.c_void_p()
    length = ctypes.c_size_t()
    _check(_libc.syscall(SYS_GET_ROBUST_LIST, tid, ctypes.addressof(head),
                         ctypes.addressof(length)))
    return head.value or 0, length.value


def get_rseq(tid):
    """Address of the thread's registered struct rseq; 0 when it has none, or when the
    kernel is older than 5.13 (EIO: no such request)."""
    return get_rseq_config(tid)[0]


def get_rseq_config(tid):
    """(address, size, signature) of the thread's rseq registration; address 0 when it
    has none, or when the kernel is older than 5.13."""
    config = RseqConfiguration()
    try:
        _ptrace(PTRACE_GET_RSEQ_CONFIGURATION, tid, ctypes.sizeof(config),
                ctypes.addressof(config))
    except OSError as exc:
        if exc.errno != errno.EIO:
            raise
        return 0, 0, 0
    return config.rseq_abi_pointer, config.rseq_abi_size, config.signature


class PeekSiginfoArgs(ctypes.Structure):
    """struct ptrace_peeksiginfo_args (linux/ptrace.h)."""
    _fields_ = [("off", ctypes.c_uint64), ("flags", ctypes.c_uint32), ("nr", ctypes.c_int32)]


def peek_siginfo(tid, shared, limit):
    """The queued siginfo_t (128 bytes each, in queue order) of the thread's own pending
    queue, or with `shared` of its process's; at most `limit` of them."""
    out = []
    batch = 32
    buffer = ctypes.create_string_buffer(batch * SIGINFO_SIZE)
    while len(out) < limit:
        args = PeekSiginfoArgs(len(out), PTRACE_PEEKSIGINFO_SHARED if shared else 0,
                               min(batch, limit - len(out)))
        count = _ptrace(PTRACE_PEEKSIGINFO, tid, ctypes.addressof(args),
                        ctypes.addressof(buffer))
        if count <= 0:
            break
        out += [buffer.raw[i * SIGINFO_SIZE:(i + 1) * SIGINFO_SIZE] for i in range(count)]
    return out


def get_xstate(tid):
    """The full XSAVE area (NT_X86_XSTATE, standard format), as many bytes as the CPU uses."""
    buffer = ctypes.create_string_buffer(XSTATE_MAX)
    iov = Iovec(ctypes.addressof(buffer), XSTATE_MAX)
    _ptrace(PTRACE_GETREGSET, tid, NT_X86_XSTATE, ctypes.addressof(iov))
    return buffer.raw[:iov.len]


def get_tls(tid):
    """The 3 GDT TLS entries as descriptors (u64, b << 32 | a); zeros where empty."""
    out = []
    for index in range(GDT_ENTRY_TLS_ENTRIES):
        desc = UserDesc()
        _ptrace(PTRACE_GET_THREAD_AREA, tid, GDT_ENTRY_TLS_MIN + index, ctypes.addressof(desc))
        out.append(descriptor(desc))
    return out


def descriptor(info):
    """struct user_desc -> the 8-byte GDT descriptor the kernel builds (fill_ldt)."""
    empty = (info.base_addr == 0 and info.limit == 0 and info.contents == 0
             and info.read_exec_only == 1 and info.seg_32bit == 0 and info.limit_in_pages == 0
             and info.seg_not_present == 1 and info.useable == 0)
    if empty:
        return 0
    base, limit = info.base_addr, info.limit
    low = ((base & 0xFFFF) << 16) | (limit & 0xFFFF)
    segment_type = 1 | ((info.read_exec_only ^ 1) << 1) | (info.contents << 2)  # accessed bit
    high = ((base >> 16) & 0xFF) | (segment_type << 8) | (1 << 12) | (3 << 13) \
        | ((info.seg_not_present ^ 1) << 15) | (limit & 0xF0000) | (info.useable << 20) \
        | (info.seg_32bit << 22) | (info.limit_in_pages << 23) | (base & 0xFF000000)
    return high << 32 | low


def read_memory(pid, buffer, ranges):
    """process_vm_readv: the (address, length) `ranges` of `pid`, back to back into the
    writable `buffer` (at most IOV_MAX ranges). Returns the bytes read (short on a fault)."""
    local = Iovec(ctypes.addressof(buffer), ctypes.sizeof(buffer))
    remote = (Iovec * len(ranges))(*[Iovec(addr, length) for addr, length in ranges])
    return _check(_libc.process_vm_readv(pid, ctypes.addressof(local), 1,
                                         ctypes.addressof(remote), len(ranges), 0))
