"""The few syscalls a userspace checkpoint needs, through ctypes: ptrace, waitpid, and
process_vm_readv. x86_64 only (request numbers and struct layouts are that ABI's).

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

PTRACE_GETREGS = 12
PTRACE_DETACH = 17
PTRACE_GET_THREAD_AREA = 25
PTRACE_GETREGSET = 0x4204
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
NT_X86_XSTATE = 0x202
WALL = 0x40000000          # __WALL: threads and processes alike
WNOHANG = 1

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


def seize(tid):
    _ptrace(PTRACE_SEIZE, tid)


def interrupt(tid):
    _ptrace(PTRACE_INTERRUPT, tid)


def detach(tid, signal=0):
    _ptrace(PTRACE_DETACH, tid, 0, signal)


def wait_stop(tid, timeout=STOP_TIMEOUT):
    """Wait for the next stop of a seized `tid`; returns the signal of a signal-delivery stop
    (to be passed on at detach), else 0. OSError(ESRCH) if the task exited instead."""
    status = ctypes.c_int()
    deadline = time.monotonic() + timeout
    while True:
        pid = _check(_libc.waitpid(tid, ctypes.byref(status), WALL | WNOHANG))
        if pid == tid:
            break
        if time.monotonic() > deadline:
            raise OSError(errno.ETIMEDOUT, f"task {tid} did not stop within {timeout:.0f} s")
        time.sleep(0.001)
    value = status.value
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
