"""Guest step `taskattr` of tests/kmod_guest_checks.py: personality, THP disable, child
subreaper, nice and policy, and a child's exit signal (CRFS_HDR_TASK_MISC,
kmod/crfs_task_misc.c, kmod/crfs-restart.c's clone3() exit_signal), asserted by
tests/test_kmod_guest.py.

tests/c/taskattr_target.c runs as nobody: personality READ_IMPLIES_EXEC|ADDR_COMPAT_LAYOUT,
THP disabled, a child subreaper, nice 7 SCHED_BATCH, a child cloned with exit signal
SIGUSR1 which forked a grandchild, ITIMER_VIRTUAL and ITIMER_PROF armed. It is checkpointed with --tree --kill by both checkpointers and restarted by
root: on SIGUSR2 it prints what it sees of itself and its child, on SIGTERM it kills and
reaps the child and says how many SIGUSR1 its end sent and whether it adopted the
grandchild. /proc of both restored processes
is read too. crfs-restart -T (no timers armed) is refused the itimers. Then the ptrace image with its first TASK_MISC (or its child's TASK) made
wrong or asking for more than nobody may is restarted: each refused with its errno and
reason; the kernel's log is read last.
"""

import os
import signal
import struct

import kmod_guest_checks as g
from guest_task_state import ask_then_end, both_ways, start_and_checkpoint, start_restarter
from guest_util import dmesg_problems, records, stage

DIR = "/tmp/crfs-taskattr"
TASK, SIGNAL, TASK_MISC = 102, 602, 8050
SIGNAL_ITIMERS = 8 + 16 * 16 + 16       # it_virt_value, it_virt_incr, it_prof_value, _incr
ORIGINAL = {}


def setup(manifest):
    return stage(DIR, {"taskattr_target": manifest["taskattr_target"],
                       "crfs-restart": manifest["restarter"]}, mode=0o777)


def summary(image):
    """Its TASK_MISC records (personality, flags, policy, rt_priority, nice) and each
    TASK's exit_signal."""
    with open(image, "rb") as f:
        data = f.read()
    return {"misc": [list(struct.unpack_from("<IIIIi", data, off + 8))
                     for off, t, _ in records(data) if t == TASK_MISC],
            "exit_signals": [struct.unpack_from("<I", data, off + 20)[0]
                             for off, t, _ in records(data) if t == TASK],
            "itimers": [list(struct.unpack_from("<4Q", data, off + SIGNAL_ITIMERS))
                        for off, t, _ in records(data) if t == SIGNAL]}


def checkpoint(paths, way):
    result, image, out = start_and_checkpoint(paths["taskattr_target"], DIR, way, way,
                                              ORIGINAL, tree=True)
    if os.path.exists(image):
        result["image"] = summary(image)
    return result, image, out


def proc_view(pid):
    """What /proc says of restored process `pid` and of its child."""
    view = {}
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        children = f.read().split()
    for name, p in (("parent", pid), ("child", int(children[0]) if children else None)):
        if p is None:
            continue
        stat = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        thp = [line.split()[1] for line in open(f"/proc/{p}/status")
               if line.startswith("THP_enabled:")]
        view[name] = {"personality": open(f"/proc/{p}/personality").read().strip(),
                      "thp_enabled": thp[0] if thp else None,
                      "nice": stat[19 - 3], "exit_signal": stat[38 - 3],
                      "rt_priority": stat[40 - 3], "policy": stat[41 - 3]}
    return view


def restart(image, restarter, out, uid=None, args=()):
    """crfs-restart of `image` (as `uid`, None: root): its report, /proc of the restored
    processes, the line the program prints on SIGUSR2 and how it ends."""
    result, proc, pid = start_restarter(image, restarter, out, ORIGINAL.get(out, ""), DIR,
                                        *args, uid=uid)
    if pid:
        result["proc"] = proc_view(pid)
    return ask_then_end(result, proc, pid, out, signal.SIGUSR2, "attr",
                        ("itimers", "attr", "term"))


def misc_field(offset, fmt, value):
    """The first TASK_MISC (the root process's) with its field at `offset` set."""
    def patch(data):
        off = next(o for o, t, _ in records(data) if t == TASK_MISC)
        struct.pack_into(fmt, data, off + offset, value)
    return patch


def child_exit_signal(value):
    def patch(data):
        off = [o for o, t, _ in records(data) if t == TASK][1]
        struct.pack_into("<I", data, off + 20, value)
    return patch


def fifo(data):
    misc_field(16, "<I", 1)(data)
    misc_field(20, "<I", 10)(data)


def unchanged(data):
    pass


# label -> (patch, uid of the restarter: None is root[, crfs-restart's options])
CASES = {
    "low_nice": (misc_field(24, "<i", -5), g.NOBODY),
    "fifo": (fifo, g.NOBODY),
    "fifo_by_root": (fifo, None),
    "policy_4": (misc_field(16, "<I", 4), None),
    "deadline": (misc_field(16, "<I", 6), None),
    "nice_20": (misc_field(24, "<i", 20), None),
    "batch_rt_priority": (misc_field(20, "<I", 5), None),
    "flags": (misc_field(12, "<I", 0x4), None),
    "exit_signal_99": (child_exit_signal(99), None),
    "no_itimers": (unchanged, None, ("-T",)),
}


def cases(image, restarter):
    out = {}
    for label, (patch, uid, *args) in CASES.items():
        path = g.patched(image, f"{image}.{label}", patch)
        os.chmod(path, 0o644)
        out[label] = restart(path, restarter, os.path.join(DIR, "ptrace.out"), uid=uid,
                             args=args[0] if args else ())
    return out


def step(manifest):
    paths = setup(manifest["restore"])
    result = both_ways(paths, checkpoint, restart)
    image = os.path.join(DIR, "ptrace.img")
    if os.path.exists(image):
        result["cases"] = cases(image, paths["crfs-restart"])
    result["left"] = g.leftover(("taskattr_target", "crfs-restart"))
    result["dmesg_problems"] = dmesg_problems()
    return result
