"""POSIX timers (CRFS_HDR_POSIX_TIMER, 8024): the ptrace checkpointer's capture of
tests/c/timers_target.c, the records it writes, and the mounted tasks/<pid>/timers.
The restart side runs in the guest (tests/guest_timers.py)."""

import os
import signal

import pytest

from crfs.checkpoint import CheckpointError, checkpoint
from crfs.checkpoint.timers import parse
from crfs.errors import Unsupported
from crfs.formats import ckpt as fmt
from crfs.model.image import PosixTimer
from test_checkpoint import Program, task_dir

PROC_TIMERS = """ID: 7
signal: 14/0000000000000000
notify: signal/pid.100
ClockID: 11
ID: 6
signal: 36/0000000000abcdef
notify: signal/tid.101
ClockID: 7
ID: 5
signal: 0/0000000000000000
notify: none/pid.100
ClockID: 0
"""


def test_proc_timers_text_is_parsed_by_id():
    assert parse(PROC_TIMERS) == [
        PosixTimer(id=5, clockid=0, signo=0, notify=1),
        PosixTimer(id=6, clockid=7, signo=36, notify=4, notify_tid=101, sigev_value=0xabcdef),
        PosixTimer(id=7, clockid=11, signo=14, notify=0)]


def test_sigev_thread_in_the_kernel_sense_is_unsupported():
    with pytest.raises(Unsupported, match="timer 1 notifies by 'thread'"):
        parse("ID: 1\nsignal: 14/0\nnotify: thread/pid.5\nClockID: 0\n")


def _records(data):
    out, offset = [], 0
    while offset + 8 <= len(data):
        type_, length = int.from_bytes(data[offset:offset + 4], "little"), \
            int.from_bytes(data[offset + 4:offset + 8], "little")
        if type_ == fmt.CKPT_HDR.CRFS_HDR_POSIX_TIMER:
            raw = data[offset:offset + length]
            rec = fmt.crfs_hdr_posix_timer.parse(raw)
            assert fmt.crfs_hdr_posix_timer.build(rec) == raw
            out.append(rec)
        if length < 8:
            break
        offset += length
    return out


def test_ptrace_checkpoint_writes_each_timer(build_c, mount):
    """The ids with their gaps, clocks, sigevents, the time left (below what was set) and
    intervals; timer C fired and its signal is queued to the worker: pending, due at once.
    The mount shows them as tasks/<pid>/timers."""
    with Program(build_c("timers_target", 64, "-pthread")) as program:
        worker = program.ready["worker"]
        checkpoint(program.pid, mount.store / "timers.ckpt", after="detach", via="ptrace")
        os.kill(program.pid, signal.SIGKILL)
    recs = _records((mount.store / "timers.ckpt").read_bytes())
    assert [(r.it_id, r.clockid, r.signo, r.notify, r.notify_tid, r.sigev_value, r.flags)
            for r in recs] == [(3, 1, 10, 0, 0, 0x1234, 0), (5, 0, 0, 1, 0, 0, 0),
                               (6, 7, 36, 4, worker, 0xabcdef, fmt.CRFS_TIMER_PENDING),
                               (7, 11, 14, 0, 0, 0, 0)]
    a, b, c, d = recs
    assert 90e9 < a.value_ns < 100e9 and a.interval_ns == 7e9
    assert 40e9 < b.value_ns < 50e9 and b.interval_ns == 0
    assert (c.value_ns, c.interval_ns) == (1, 0)
    assert (d.value_ns, d.interval_ns) == (0, 0)
    mount.mount()
    text = (task_dir(mount, "timers.ckpt", program.pid) / "timers").read_text()
    assert text.startswith(f"ID: 3\nsignal: 10/0000000000001234\nnotify: signal/pid."
                           f"{program.pid}\nClockID: 1\nvalue_ns: {a.value_ns}\n"
                           f"interval_ns: 7000000000\n")
    assert f"ID: 6\nsignal: 36/0000000000abcdef\nnotify: signal/tid.{worker}\n" \
           f"ClockID: 7\nvalue_ns: 1\ninterval_ns: 0\noverrun: 0\npending: 1\n" in text


def test_a_cpu_time_timer_is_unsupported(build_c, tmp_path):
    """A CLOCK_PROCESS_CPUTIME_ID timer (id 8, clock -6 as glibc gives it to the kernel):
    the checkpoint is refused with the reason;
    the program goes on."""
    with Program(build_c("timers_target", 64, "-pthread"), "cpu") as program:
        with pytest.raises(CheckpointError, match=r"timer 8 on clock -6 \(only CLOCK_REALTIME"):
            checkpoint(program.pid, tmp_path / "cpu.ckpt", after="detach", via="ptrace")
        assert program.proc.poll() is None
