"""POSIX timers (timer_create(2)) of a stopped process.

/proc/PID/timers lists each timer: its id, its signal and sigev_value, how it notifies
(signal/pid, signal/tid: SIGEV_THREAD_ID, none) and its clock. What is left of it and its
interval are asked of a stopped thread with an injected timer_gettime(id, &its), its
overrun with timer_getoverrun(id) (crfs.checkpoint.inject). A timer whose SI_TIMER signal
is queued (a siginfo of the thread group or of one of its threads, si_tid its id) is
marked pending: the restart makes it fire at once, which queues that signal again.
"""

import struct

from crfs.checkpoint import procfs, ptrace
from crfs.errors import Unsupported
from crfs.formats.ckpt import MAX_POSIX_TIMERS
from crfs.model.image import PosixTimer
from crfs.model.siginfo import mark_pending

SYS_TIMER_GETTIME, SYS_TIMER_GETOVERRUN = 224, 225
ITIMERSPEC_SIZE = 32
SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD_ID = 0, 1, 4
NOTIFY = {"signal": SIGEV_SIGNAL, "none": SIGEV_NONE}
CLOCKS = {0: "CLOCK_REALTIME", 1: "CLOCK_MONOTONIC", 7: "CLOCK_BOOTTIME", 11: "CLOCK_TAI"}
NS = 1_000_000_000


def parse(text):
    """PosixTimer (id, signo, sigev_value, notify, notify_tid, clockid) of each entry of a
    /proc/PID/timers text, by increasing id."""
    timers, timer = [], None
    for line in text.splitlines():
        key, _, value = line.partition(": ")
        if key == "ID":
            timer = PosixTimer(id=int(value))
            timers.append(timer)
        elif timer is None:
            continue
        elif key == "signal":
            signo, _, ptr = value.partition("/")
            timer.signo, timer.sigev_value = int(signo), int(ptr, 16)
        elif key == "notify":
            how, _, target = value.partition("/")
            kind, _, number = target.partition(".")
            if how not in NOTIFY:
                raise Unsupported(f"timer {timer.id} notifies by {how!r}")
            timer.notify = NOTIFY[how] | (SIGEV_THREAD_ID if kind == "tid" else 0)
            timer.notify_tid = int(number) if kind == "tid" else 0
        elif key == "ClockID":
            timer.clockid = int(value)
    return sorted(timers, key=lambda t: t.id)


def capture(pid, tasks, injector, queues):
    """The process's PosixTimer list; `tasks` its stopped threads (with registers),
    `queues` every siginfo queued to it or its threads. Unsupported when a timer cannot be
    restored (its clock) or asked."""
    try:
        text = procfs.read_text(f"/proc/{pid}/timers", 1 << 20)
    except FileNotFoundError:
        return []
    timers = parse(text)
    if not timers:
        return []
    if len(timers) > MAX_POSIX_TIMERS:
        raise Unsupported(f"more than {MAX_POSIX_TIMERS} POSIX timers")
    for timer in timers:
        if timer.clockid not in CLOCKS:
            raise Unsupported(f"timer {timer.id} on clock {timer.clockid} "
                              f"(only {', '.join(CLOCKS.values())} are restored)")
    for task in tasks:
        if _ask(task.pid, timers, injector):
            break
    else:
        raise Unsupported("no thread could run timer_gettime for its timers")
    mark_pending(timers, queues)
    return timers




def _ask(tid, timers, injector):
    regs = ptrace.get_regs(tid)
    requests = [(SYS_TIMER_GETTIME, lambda scratch, i=t.id: (i, scratch)) for t in timers]
    answers = injector.calls(tid, regs, requests, ITIMERSPEC_SIZE)
    if None in answers:
        return False
    for timer, out in zip(timers, answers):
        i_sec, i_nsec, v_sec, v_nsec = struct.unpack("<qqqq", out)
        timer.interval_ns = i_sec * NS + i_nsec
        timer.value_ns = v_sec * NS + v_nsec
        overrun = injector.syscall(tid, regs, SYS_TIMER_GETOVERRUN, (timer.id,))
        timer.overrun = overrun if overrun is not None and overrun > 0 else 0
    return True
