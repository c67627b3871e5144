"""Signal state, credentials and fs_struct of stopped processes.

No /proc file shows signal handlers, the alternate stack or interval timers: the stopped
threads are asked with injected syscalls (crfs.checkpoint.inject): rt_sigaction(n, NULL,
&old, 8) for every signal, sigaltstack(NULL, &old), getitimer(which, &old). Blocked and
pending sets come from /proc/<pid>/task/<tid>/status (SigBlk, SigPnd, ShdPnd), the queued
siginfo from PTRACE_PEEKSIGINFO, resource limits from prlimit(2), credentials from the
status file (Uid, Gid, Groups, Cap*, NoNewPrivs), cwd and root from /proc/<pid>/cwd and
/root, the umask from the status file's Umask line.

What cannot be asked is left None (not stored): the handlers of a process none of whose
threads can run an injected syscall (32-bit processes, threads holding a signal), likewise
altstacks and itimers.
"""

import errno
import os
import resource
import struct

from crfs.checkpoint import procfs, ptrace, timers
from crfs.model.image import (NSIG, RLIM_INFINITY, RLIM_NLIMITS, AltStack, Creds, FsStruct,
                              Itimers, Pending, SigAction, SigHand, Signals, ThreadGroup)
from crfs.model.siginfo import siginfo

SYS_RT_SIGACTION, SYS_SIGALTSTACK, SYS_GETITIMER = 13, 131, 36
SIGSET_SIZE = 8
ITIMER_WHICH = ("real", "virt", "prof")      # ITIMER_REAL 0, ITIMER_VIRTUAL 1, ITIMER_PROF 2
MAX_QUEUED = 65536                           # siginfo read per queue, at most
CREDS = (("Uid", ("uid", "euid", "suid", "fsuid")), ("Gid", ("gid", "egid", "sgid", "fsgid")))
CAPS = {"CapInh": "cap_inh", "CapPrm": "cap_prm", "CapEff": "cap_eff", "CapBnd": "cap_bnd",
        "CapAmb": "cap_amb"}
# si_code > 0 (kernel-generated): which union member siginfo holds, by signal.


def creds(status):
    """Creds from a /proc status file's fields."""
    values = {}
    for key, names in CREDS:
        values.update(zip(names, (int(v) for v in status[key].split()[:4])))
    if "Groups" in status:
        values["groups"] = sorted(int(g) for g in status["Groups"].split())
    for key, name in CAPS.items():
        if key in status:
            values[name] = int(status[key], 16)
    if "NoNewPrivs" in status:
        values["no_new_privs"] = int(status["NoNewPrivs"])
    return Creds(**values)


def fs_struct(pid, status):
    def link(name):
        try:
            return os.readlink(f"/proc/{pid}/{name}")
        except OSError as exc:
            if exc.errno == errno.ESRCH:
                raise
            return None
    umask = status.get("Umask")
    return FsStruct(cwd=link("cwd"), root=link("root"),
                    umask=int(umask, 8) if umask is not None else None)


def capture(pid, tasks, injector, freezer, handlers=True):
    """Fill `tasks` (the threads of process `pid`, each with its registers) with Signals
    sharing one SigHand (None without `handlers`: see set_handlers) and ThreadGroup.
    Pending sets are read after every injection (an injection may dequeue a signal, which
    the freezer then passes on at detach: such signals, and those the freezer took, are
    counted as pending)."""
    if handlers:
        handlers = next((h for h in (sighand(t.pid, injector) for t in tasks) if h), None)
    else:
        handlers = None
    itimers = next((i for i in (read_itimers(t, injector) for t in tasks) if i), None)
    group = ThreadGroup(rlimits=rlimits(pid), itimers=itimers,
                        oom_score_adj=oom_score_adj(pid))
    altstacks = [altstack(t, injector) for t in tasks]
    shared = ptrace.peek_siginfo(pid, True, MAX_QUEUED)
    group.shared_pending = Pending(mask=_sigset(procfs.status_fields(
        f"/proc/{pid}/status")["ShdPnd"]), queue=[siginfo(raw) for raw in shared])
    for task, alt in zip(tasks, altstacks):
        status = procfs.status_fields(f"/proc/{pid}/task/{task.pid}/status")
        held = freezer.signals.get(task.pid, 0)
        pending = Pending(mask=_sigset(status["SigPnd"]) | (1 << (held - 1) if held else 0),
                          queue=[siginfo(raw) for raw in
                                 ptrace.peek_siginfo(task.pid, False, MAX_QUEUED)])
        task.signals = Signals(handlers=handlers, group=group,
                               blocked=_sigset(status["SigBlk"]), pending=pending,
                               altstack=alt)
    queues = [*group.shared_pending.queue,
              *(info for task in tasks for info in task.signals.pending.queue)]
    group.posix_timers = timers.capture(pid, tasks, injector, queues)


def _sigset(text):
    return int(text, 16)


def set_handlers(tasks, handlers):
    """Give the threads captured without handlers (capture(handlers=False)) `handlers`."""
    for task in tasks:
        task.signals.handlers = handlers


def sighand(tid, injector):
    """The SigHand of the thread's process, asked of thread `tid` (stopped, traced by us);
    None if it cannot be."""
    requests = [(SYS_RT_SIGACTION, lambda scratch, n=number: (n, 0, scratch, SIGSET_SIZE))
                for number in range(1, NSIG + 1)]
    answers = injector.calls(tid, ptrace.get_regs(tid), requests, 32)
    if None in answers:
        return None
    return SigHand([SigAction(*struct.unpack("<QQQQ", out)) for out in answers])


def altstack(task, injector):
    out = injector.call(task.pid, ptrace.get_regs(task.pid), SYS_SIGALTSTACK,
                        lambda scratch: (0, scratch), 24)
    if out is None:
        return None
    sp, flags, size = struct.unpack("<Qi4xQ", out)       # stack_t
    return AltStack(sp=sp, size=size, flags=flags)


def read_itimers(task, injector):
    values = {}
    requests = [(SYS_GETITIMER, lambda scratch, w=which: (w, scratch))
                for which in range(len(ITIMER_WHICH))]
    answers = injector.calls(task.pid, ptrace.get_regs(task.pid), requests, 32)
    if None in answers:
        return None
    for name, out in zip(ITIMER_WHICH, answers):
        interval_s, interval_us, value_s, value_us = struct.unpack("<qqqq", out)
        values[f"{name}_value"] = value_s * 1_000_000_000 + value_us * 1000
        values[f"{name}_incr"] = interval_s * 1_000_000_000 + interval_us * 1000
    return Itimers(**values)


def oom_score_adj(pid):
    """/proc/PID/oom_score_adj; None when it cannot be read."""
    try:
        return int(procfs.read_text(f"/proc/{pid}/oom_score_adj"))
    except (OSError, ValueError):
        return None


def rlimits(pid):
    out = []
    for number in range(RLIM_NLIMITS):
        limits = resource.prlimit(pid, number)
        out.append(tuple(RLIM_INFINITY if v == resource.RLIM_INFINITY or v < 0 else v
                         for v in limits))
    return out


