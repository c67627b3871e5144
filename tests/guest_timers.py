"""Guest step `timers` of tests/kmod_guest_checks.py: POSIX timers (CRFS_HDR_POSIX_TIMER,
kmod/crfs_timers.c, kmod/crfs-restart-timers.h), asserted by tests/test_kmod_guest.py.

tests/c/timers_target.c (four timers, gaps in their ids, one SIGEV_NONE, one
SIGEV_THREAD_ID whose signal is queued to its worker thread, one disarmed) is checkpointed
with --kill by `crfs checkpoint --via ptrace` and by the module (--via kernel), and
restarted by crfs-restart: /proc/PID/timers before and after, then on SIGUSR2 what the
program sees (timer_gettime of each, the id a new timer gets, the queued signal the worker
finds), on SIGTERM it exits. Then the refusals: malformed POSIX_TIMER records through
CHECK, the image restarted with crfs-restart -T (no timers made), and a queued SI_TIMER
signal whose timer is not marked pending.
"""

import ctypes
import os
import signal
import struct

import guest_anonfd as ga
import kmod_guest_checks as g
from crfs import kernel
from guest_task_state import ask_then_end, both_ways, start_and_checkpoint, start_restarter
from guest_util import in_child, records, stage

DIR = "/tmp/crfs-timers"
ORIGINAL = {}
POSIX_TIMER = 8024
# field: (offset in the record, struct format)
FIELDS = {"it_id": (8, "<i"), "clockid": (12, "<i"), "signo": (16, "<i"), "notify": (20, "<i"),
          "notify_tid": (24, "<i"), "flags": (28, "<I"), "sigev_value": (32, "<Q"),
          "value_ns": (40, "<Q"), "interval_ns": (48, "<Q"), "overrun": (56, "<q")}


def setup(manifest):
    return stage(DIR, {"timers_target": manifest["timers_target"],
                       "crfs-restart": manifest["restarter"]}, mode=0o777)


def timer_records(image):
    with open(image, "rb") as f:
        data = f.read()
    return [{name: struct.unpack_from(fmt, data, off + o)[0]
             for name, (o, fmt) in FIELDS.items()}
            for off, t, _ in records(data) if t == POSIX_TIMER]


def proc_timers(pid):
    """/proc/PID/timers as sorted (ID, signal, notify, ClockID) tuples."""
    with open(f"/proc/{pid}/timers") as f:
        lines = f.read().splitlines()
    return sorted(tuple(lines[i:i + 4]) for i in range(0, len(lines), 4))


def checkpoint(paths, way, *args, uid=None):
    """timers_target [ARGS] run (as `uid`; None: root), checkpointed --kill --via WAY."""
    name = f"{way}{'nobody' if uid else ''}{''.join(args)}"
    result, image, out = start_and_checkpoint(
        paths["timers_target"], DIR, name, way, ORIGINAL, *args, uid=uid,
        probe=lambda pid: {"proc_timers": proc_timers(pid)})
    if os.path.exists(image):
        result["timers"] = timer_records(image)
    return result, image, out


def restart(image, restarter, out, *options, uid=None):
    """crfs-restart [OPTIONS] IMAGE (as `uid`, /dev/crfs opened to everyone meanwhile;
    None: root); for a restored program, /proc/PID/timers, the lines it prints on SIGUSR2,
    and how it ends on SIGTERM."""
    result, proc, pid = start_restarter(image, restarter, out, ORIGINAL.get(out, ""), DIR,
                                        *options, uid=uid)
    if result == {"errno": "short report"} and proc.poll() is None:
        # restored in crfs-restart itself, under a new pid: -N, or a caller who may not
        # choose pids (the pipe closed by the kernel, no report)
        result, pid = {"errno": "restored"}, proc.pid
    if pid:
        result["proc_timers"] = proc_timers(pid)
        result["uid"] = g.status_fields(pid, ("Uid",))["Uid"]
    return ask_then_end(result, proc, pid, out, signal.SIGUSR2, "queued",
                        ("timer", "next", "queued", "term"))


def set_field(index, name, value):
    """A patch: field `name` of the image's POSIX_TIMER number `index` set to `value`."""
    offset, fmt = FIELDS[name]

    def patch(data):
        offs = [off for off, t, _ in records(data) if t == POSIX_TIMER]
        struct.pack_into(fmt, data, offs[index] + offset, value)
    return patch


MALFORMED = {       # timers: 0 A (id 3), 1 B (id 5, SIGEV_NONE), 2 C (id 6), 3 D (id 7)
    "clock": set_field(0, "clockid", 99),
    "cpu_clock": set_field(0, "clockid", -6),
    "notify": set_field(0, "notify", 2),
    "signo": set_field(0, "signo", 65),
    "signo_zero": set_field(0, "signo", 0),
    "thread_without_tid": set_field(2, "notify_tid", 0),
    "tid_without_thread": set_field(0, "notify_tid", 5),
    "id_order": set_field(1, "it_id", 3),
    "negative_id": set_field(0, "it_id", -1),
    "flags": set_field(0, "flags", 2),
    "pending_none": set_field(1, "flags", 1),
    "value": set_field(0, "value_ns", 1 << 63),
    "interval": set_field(0, "interval_ns", 1 << 63),
    "overrun": set_field(0, "overrun", -1),
}


def more_timers(data):
    """1021 more POSIX_TIMERs (ids 8...) after the last: 1025 in all."""
    last = [(off, ln) for off, t, ln in records(data) if t == POSIX_TIMER][-1]
    rec = bytearray(data[last[0]:last[0] + last[1]])
    extra = bytearray()
    for i in range(1021):
        struct.pack_into("<i", rec, 8, 8 + i)
        extra += rec
    data[last[0] + last[1]:last[0] + last[1]] = extra


def timer_in_a_thread(data):
    """A copy of the last POSIX_TIMER (id 8) after the worker thread's SIGNAL_TASK."""
    last = [(off, ln) for off, t, ln in records(data) if t == POSIX_TIMER][-1]
    rec = bytearray(data[last[0]:last[0] + last[1]])
    struct.pack_into("<i", rec, 8, 8)
    where = [off + ln for off, t, ln in records(data) if t == 603][-1]     # SIGNAL_TASK
    data[where:where] = rec


INSERTED = {"too_many": more_timers, "in_a_thread": timer_in_a_thread}


def check_outcome(image):
    return ga.check_outcome(image, with_type=True)


SYS_TIMER_CREATE, SYS_TIMER_DELETE = 222, 226


def _timers_of_ours(signos):
    """In this process: 3 fillers (ids 0-2, deleted), then a CLOCK_MONOTONIC SIGEV_SIGNAL
    timer of each signal of `signos` (ids 3, 4, ...), sigev_value 0x1234."""
    libc = ctypes.CDLL(None, use_errno=True)
    timer = ctypes.c_int()
    for signo in [None] * 3 + list(signos):
        ev = ctypes.create_string_buffer(64)            # struct sigevent
        struct.pack_into("<Qii", ev, 0, 0x1234, signo or 0, 1 if signo is None else 0)
        if libc.syscall(SYS_TIMER_CREATE, 1, ev, ctypes.byref(timer)):
            raise OSError(ctypes.get_errno(), "timer_create")
        if signo is None:
            libc.syscall(SYS_TIMER_DELETE, timer.value)


def restart_with_timers(image, signos):
    """RESTART of `image` in a forked child that made its own timers first: its errno and
    reason (it must fail)."""
    def call():
        try:
            _timers_of_ours(signos)
            with kernel.Device() as dev, open(image, "rb") as f:
                dev.restart(f.fileno())
        except kernel.KernelError as exc:
            return {"errno": g.name(exc.errno), "msg": exc.reason}
        return {"errno": 0}
    return in_child(call, {"errno": "no answer"})


def callers_timers(paths):
    """A single-threaded image (timers 3, 5, 7): RESTART by a caller whose timers 3, 4, 5
    differ (timer 3's signal), and by one with a timer too many."""
    ck, image, _ = checkpoint(paths, "ptrace", "single")
    if ck["rc"]:
        return {"checkpoint": ck}
    return {"wrong_signal": restart_with_timers(image, [12, 12, 12]),
            "one_more": restart_with_timers(image, [10, 10, 10, 10])}


def second_uid(paths):
    """nobody's timers_target, checkpointed by root through ptrace, restarted by nobody:
    the timers come back as for root (a timer is the process's own: no privilege needed)."""
    ck, image, out = checkpoint(paths, "ptrace", uid=g.NOBODY)
    result = {"checkpoint": ck}
    if ck["rc"] == 0:
        os.chmod(out, 0o666)
        result["restart"] = restart(image, paths["crfs-restart"], out, uid=g.NOBODY)
    return result


def refusals(image, restarter):
    out = {}
    for label, patch in {**MALFORMED, **INSERTED}.items():
        path = g.patched(image, f"{image}.{label}", patch)
        out[label] = check_outcome(path)
    log = os.path.join(DIR, "ptrace.out")
    out["no_timers_made"] = restart(image, restarter, log, "-T")
    path = g.patched(image, f"{image}.not_pending", set_field(2, "flags", 0))
    out["not_pending"] = restart(path, restarter, log)
    return out


def step(manifest):
    paths = setup(manifest)
    # new pids: SIGEV_THREAD_ID goes to the thread restoring the worker's task
    result = both_ways(paths, checkpoint, restart, again={"new_pids": ("-N",)})
    image = os.path.join(DIR, "ptrace.img")
    if os.path.exists(image):
        result["refusals"] = refusals(image, paths["crfs-restart"])
    result["callers"] = callers_timers(paths)
    result["nobody"] = second_uid(paths)
    for way in ("ptrace", "kernel"):        # a CPU-time timer: refused
        result[f"cpu_{way}"] = checkpoint(paths, way, "cpu")[0]
    result["left"] = g.leftover(("timers_target", "crfs-restart"))
    return result
