"""Stopping every thread of a set of processes with ptrace, and letting them go again.

PTRACE_SEIZE + PTRACE_INTERRUPT stop a task without sending it a signal, so nothing the
process could see changes. The tasks stay in that stop while their memory is read; at the
end they are detached (they go on), left stopped (SIGSTOP queued before detaching, so
they enter a group stop and not one instruction runs), or killed.
"""

import errno
import os
import signal
import time

from crfs.checkpoint import procfs, ptrace
from crfs.errors import CheckpointError, ProcessGone

AFTER = ("detach", "stop", "kill")
MAX_THREAD_SCANS = 100     # rescans of /proc/<pid>/task while threads are being created
REAP_WAIT = 10.0           # seconds --kill waits for the killed pids to be free again


class Freezer:
    """The processes stopped so far (in the order they were stopped) and their threads."""

    def __init__(self):
        self.processes = {}    # pid -> [tid, ...], leader first
        self.states = {}       # tid -> state letter from /proc before it was stopped
        self.signals = {}      # tid -> signal taken by a signal-delivery stop, to pass on
        self.options = {}      # tid -> its PTRACE_SEIZE options
        self.zombies = []      # pids of the tree's zombie processes (not stopped: they wait)

    def freeze(self, root, tree):
        """Stop `root` and, with `tree`, its descendants depth first (a parent before its
        children are listed, so none is forked behind our back). CheckpointError when a
        task cannot be stopped (ProcessGone when it is gone)."""
        stack = [root]
        while stack:
            pid = stack.pop()
            if pid == os.getpid():
                raise CheckpointError(f"the tree of pid {root} holds crfs itself "
                                      f"(pid {pid})", errno.EINVAL)
            try:
                self.freeze_process(pid)
            except ProcessGone:
                if pid == root:
                    raise
                self.processes.pop(pid, None)     # a child that exited: no longer ours
                if _is_zombie(pid):
                    self.zombies.append(pid)      # its parent has not waited for it yet
                continue
            if tree:
                stack.extend(reversed([c for c in procfs.children(pid)
                                       if c not in self.processes]))

    def freeze_process(self, pid):
        """Stop every thread; rescan until no new thread appeared while we stopped them."""
        tids = self.processes.setdefault(pid, [])
        for _ in range(MAX_THREAD_SCANS):
            new = [tid for tid in _thread_ids(pid) if tid not in self.states]
            if not new:
                return
            for tid in new:
                if self._stop(pid, tid):
                    tids.append(tid)
        raise CheckpointError(f"pid {pid} keeps creating threads", errno.EAGAIN)

    def _stop(self, pid, tid):
        """Seize and interrupt one thread; False if it is a thread that just exited."""
        state = _state(pid, tid)
        self.states[tid] = state
        if state in "ZX":
            if tid != pid:
                return False
            raise ProcessGone(f"pid {pid} is a zombie (it has exited)")
        seccomp = _seccomp(pid, tid) == SECCOMP_MODE_STRICT
        self.options[tid] = ptrace.PTRACE_O_SUSPEND_SECCOMP if seccomp else 0
        try:
            ptrace.seize(tid, self.options[tid])
        except OSError as exc:
            if exc.errno == errno.ESRCH and tid != pid:
                return False
            if seccomp and exc.errno == errno.EPERM and not _tracer(pid):
                raise CheckpointError(
                    f"pid {pid} thread {tid} is in seccomp mode 1: its checkpoint runs "
                    "syscalls in it, which needs PTRACE_O_SUSPEND_SECCOMP (CAP_SYS_ADMIN, "
                    "and no seccomp mode of our own)", errno.EPERM) from exc
            raise _refusal(pid, exc) from exc
        try:
            ptrace.interrupt(tid)
            self.signals[tid] = ptrace.wait_stop(tid)
        except OSError as exc:
            self.signals[tid] = 0
            if exc.errno == errno.ESRCH and tid != pid:
                return False
            raise _refusal(pid, exc) from exc
        return True

    def thaw(self, after="detach"):
        """Let every stopped task go, in the way `after` says; never raises. "kill"
        returns once their parents have reaped them (at most REAP_WAIT seconds), so a
        restart that follows finds their pids free."""
        stats = {pid: _stat(pid) for pid in self.processes} if after == "kill" else {}
        for pid, tids in self.processes.items():
            if after == "kill":
                ours = _parent_of(stats[pid]) == os.getpid()    # our wait would reap it
                _signal(pid, signal.SIGKILL)
                # the leader last: its exit is reported only once its threads are reaped
                for tid in sorted(tids, key=lambda t: t == pid):
                    if not (ours and tid == pid):
                        _wait_exit(tid)
                continue
            if after == "stop":
                _signal(pid, signal.SIGSTOP)
            for tid in tids:
                try:
                    ptrace.detach(tid, self.signals.get(tid, 0))
                except OSError:
                    pass      # it died meanwhile (or was killed above)
        self.processes.clear()
        wait_reaped({pid: stat[22] for pid, stat in stats.items() if stat})


def _wait_exit(tid):
    """Wait, as its tracer, for killed `tid` to exit: until we do, its real parent cannot
    reap it."""
    for _ in range(8):         # stops reported before the kill come first
        try:
            status = ptrace.wait_status(tid)
        except OSError:
            return             # not ours any more, or it did not end in time
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            return


def wait_reaped(start_times, timeout=REAP_WAIT):
    """Wait until no pid of {pid: start time} is that process any more (reaped, or the pid
    taken by another), or `timeout` seconds pass: a killed process keeps its pid as a
    zombie until its parent (often init) waits for it. Not for a zombie whose parent is
    crfs or crfs's caller: they wait for crfs before they can reap it."""
    deadline = time.monotonic() + timeout
    pending = dict(start_times)
    while pending and time.monotonic() < deadline:
        pending = {pid: t for pid, t in pending.items() if _still_waited(pid, t)}
        if pending:
            time.sleep(0.01)


def _still_waited(pid, start_time):
    """Whether `pid` is still the process that started at `start_time` (field 22) and
    not a zombie that crfs or its caller must reap (one /proc read)."""
    stat = _stat(pid)
    if stat is None or stat.get(22) != start_time:
        return False
    return not (stat[3] == "Z" and _parent_of(stat) in (os.getpid(), os.getppid()))


def _stat(pid):
    """/proc/<pid>/stat's fields (None once the pid is free)."""
    try:
        return procfs.stat_fields(pid)
    except OSError:
        return None


def _parent_of(stat):
    try:
        return int(stat[4])
    except (TypeError, KeyError, ValueError):
        return None


def _thread_ids(pid):
    try:
        return procfs.thread_ids(pid)
    except FileNotFoundError as exc:
        raise ProcessGone(f"no process with pid {pid}") from exc


def _state(pid, tid):
    try:
        return procfs.stat_fields(f"{pid}/task/{tid}")[3]
    except (FileNotFoundError, ProcessLookupError):
        return "X"


def _is_zombie(pid):
    """Whether process `pid` has exited and waits for its parent (not a zombie leader
    whose other threads go on)."""
    try:
        return _state(pid, pid) == "Z" and procfs.thread_ids(pid) == [pid]
    except OSError:
        return False


def _signal(pid, number):
    try:
        os.kill(pid, number)
    except OSError:
        pass


def _refusal(pid, exc):
    """The CheckpointError for a ptrace call on `pid` that failed with OSError `exc`."""
    if exc.errno == errno.EPERM:
        tracer = _tracer(pid)
        if tracer:
            return CheckpointError(f"pid {pid} is already traced by pid {tracer}", errno.EBUSY)
        return CheckpointError(f"not allowed to trace pid {pid} (run as root, or as its owner "
                               "with ptrace permitted)", errno.EPERM)
    if exc.errno == errno.ESRCH:
        return ProcessGone(f"pid {pid} exited during the checkpoint")
    return CheckpointError(f"cannot stop pid {pid}: {exc.strerror}", exc.errno or errno.EIO)


def _seccomp(pid, tid):
    """The thread's seccomp mode (/proc "Seccomp:"; 0 when not shown). A task in strict
    mode would be killed by the first syscall crfs makes it run (inject.py): it is seized
    with PTRACE_O_SUSPEND_SECCOMP, as CRIU does, which suspends seccomp while crfs traces
    it (CAP_SYS_ADMIN, a tracer in no seccomp mode). One with a filter is seized as any
    other (that needs no privilege; its filter may allow what crfs injects, and a restart
    refuses its image anyway)."""
    try:
        status = procfs.status_fields(f"/proc/{pid}/task/{tid}/status")
        return int(status.get("Seccomp", "0"))
    except (OSError, ValueError):
        return 0


SECCOMP_MODE_STRICT = 1


def _tracer(pid):
    try:
        return int(procfs.status_fields(f"/proc/{pid}/status").get("TracerPid", "0"))
    except (OSError, ValueError):
        return 0
