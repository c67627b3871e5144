"""Guest step `task_state` of tests/kmod_guest_checks.py: oom_score_adj, the rseq
registration, zombies and a stopped child (kmod/crfs_task_state.c, crfs-restart's
zombies), asserted by tests/test_kmod_guest.py.

tests/c/state_target.c runs as nobody: oom_score_adj 400, glibc's rseq area, two zombie
children and a stopped one. It is checkpointed with --tree --kill by `crfs checkpoint
--via ptrace` and by the module (--via kernel), and restarted by root with crfs-restart:
on SIGUSR1 it prints what it sees (its oom_score_adj and rseq registration, waitid() of
each child), on SIGTERM it reaps them and exits. Then the ptrace image with one record
made wrong is restarted (each must be refused with its errno and reason), and with an
oom_score_adj below the caller's minimum: refused for nobody, restored for root.
"""

import os
import signal
import struct
import subprocess
import time

import kmod_guest_checks as g
from crfs import kernel
from guest_util import records, stage

DIR = "/tmp/crfs-tstate"
ORIGINAL = {}       # out file -> what the original program wrote (each restart starts there)
TASK, OOM_SCORE_ADJ, RSEQ, SIGINFO_RAW = 102, 8020, 8021, 8022


def setup(manifest):
    return stage(DIR, {"state_target": manifest["state_target"],
                       "crfs-restart": manifest["restarter"]}, mode=0o777)


def summary(image):
    """What the image holds of the new state: records of each type, zombie TASKs."""
    with open(image, "rb") as f:
        data = f.read()
    types = [t for _, t, _ in records(data)]
    zombies = [struct.unpack_from("<4I", data, off + 8)[1:4]
               for off, t, _ in records(data) if t == TASK
               and struct.unpack_from("<I", data, off + 12)[0]]
    return {"oom": types.count(OOM_SCORE_ADJ), "rseq": types.count(RSEQ),
            "raw": types.count(SIGINFO_RAW),
            "zombies": [list(z) for z in zombies]}


def checkpoint(paths, way):
    result, image, out = start_and_checkpoint(paths["state_target"], DIR, way, way, ORIGINAL,
                                              tree=True)
    result["original"] = ORIGINAL[out].split()[1:4]      # z1=, z2=, st= (hex pids)
    if os.path.exists(image):
        result["image"] = summary(image)
    return result, image, out


def both_ways(paths, checkpoint, restart, again=None):
    """The target checkpointed by ptrace and by the module (`checkpoint(paths, way)`: (result,
    image, out)), each image that came restarted by crfs-restart (`restart(image, restarter,
    out, *options)`), once plainly and once more for each {key: options} of `again`:
    {way: {"checkpoint", "restart", key...}}."""
    result = {}
    for way in ("ptrace", "kernel"):
        ck, image, out = checkpoint(paths, way)
        result[way] = {"checkpoint": ck}
        if ck["rc"] == 0:
            result[way]["restart"] = restart(image, paths["crfs-restart"], out)
            for key, options in (again or {}).items():
                result[way][key] = restart(image, paths["crfs-restart"], out, *options)
        time.sleep(0.1)
    return result


def start_and_checkpoint(exe, work, name, way, original, *args, uid=g.NOBODY, tree=False,
                         probe=None):
    """EXE [ARGS] run in WORK (as `uid`; None: root) until it says "ready", then `crfs
    checkpoint --kill --via WAY [--tree]` into WORK/NAME.img: ({"rc", "stderr"} and
    `probe(pid)`'s keys, image, WORK/NAME.out). What the program wrote before is kept in
    `original`; its output and image are opened to all (the restored program reopens the
    one as itself, a second uid reads the other)."""
    out = os.path.join(work, f"{name}.out")
    with open(out, "w") as f:
        proc = subprocess.Popen((g.setpriv(uid) if uid else []) + ["setarch", "-R", exe, *args],
                                stdout=f, stderr=subprocess.STDOUT, cwd=work)
    os.chmod(out, 0o666)
    g.wait_for_output(out, g.lines_starting("ready", 1))
    result = probe(proc.pid) if probe else {}
    image = os.path.join(work, f"{name}.img")
    ck = g.crfs_checkpoint(proc.pid, *(["--tree"] if tree else []), "-o", image, "--kill",
                           "--via", way)
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=60)
    result.update(rc=ck.returncode, stderr=ck.stderr[-300:])
    with open(out) as f:
        original[out] = f.read()
    if os.path.exists(image):
        os.chmod(image, 0o644)
    return result, image, out


def report_of(read_fd):
    with os.fdopen(read_fd, "rb") as f:
        report = f.read(kernel._RESULT.size)
    if len(report) != kernel._RESULT.size:
        return {"errno": "short report"}, None
    code, _, rtype, stage, reason = kernel._RESULT.unpack(report)
    reason = reason.rstrip(b"\0").decode("utf-8", "replace")
    if code or not reason.startswith("pid "):
        return {"errno": g.name(code), "type": rtype, "stage": stage.rstrip(b"\0").decode(),
                "msg": reason}, None
    return {"errno": "restored"}, int(reason[4:])


def ask_then_end(result, proc, pid, out, ask, answer, keep):
    """The restored program `pid` (None: not restored) sent `ask`, then SIGTERM, each
    answered by a line in `out` (`answer`, then "term"); its restarter `proc` waited for
    (killed after 30 s). Into `result`: its status and the lines of `out` starting with one
    of `keep`."""
    if pid:
        os.kill(pid, ask)
        g.wait_for_output(out, g.lines_starting(answer, 1), timeout=30)
        os.kill(pid, signal.SIGTERM)
        g.wait_for_output(out, g.lines_starting("term", 1), timeout=30)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    result["rc"] = proc.returncode
    with open(out) as f:
        result["lines"] = [line for line in f.read().splitlines() if line.startswith(keep)]
    return result


def restart(image, restarter, out, uid=None):
    """crfs-restart of `image` (as `uid`, None: root); for a restored program, the line it
    prints on SIGUSR1 and how it ends on SIGTERM."""
    result, proc, pid = start_restarter(image, restarter, out, ORIGINAL.get(out, ""), DIR,
                                        uid=uid)
    if pid:
        result["oom_score_adj"] = open(f"/proc/{pid}/oom_score_adj").read().strip()
    return ask_then_end(result, proc, pid, out, signal.SIGUSR1, "state", ("state", "term"))


def start_restarter(image, restarter, out, original, log_dir, *options, uid=None):
    """crfs-restart [OPTIONS] IMAGE run as `uid` (None: root; /dev/crfs opened to everyone
    meanwhile), its output to LOG_DIR/restarter.out, `out` first rewritten to `original`
    (what the program wrote before its checkpoint): (report, restarter, restored pid)."""
    with open(out, "w") as f:
        f.write(original)
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    os.chmod(kernel.DEVICE, 0o666 if uid else 0o600)
    try:
        with open(os.path.join(log_dir, "restarter.out"), "ab") as log:
            proc = subprocess.Popen((g.setpriv(uid) if uid else []) +
                                    [restarter, *options, "-r", str(write_fd), image],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    pass_fds=(write_fd,))
        os.close(write_fd)
        result, pid = report_of(read_fd)
    finally:
        os.chmod(kernel.DEVICE, 0o600)
    return result, proc, pid


def set_first(type_, fmt, value, offset=8):
    def patch(data):
        for off, t, _ in records(data):
            if t == type_:
                struct.pack_into(fmt, data, off + offset, value)
                return
    return patch


def zombie_status(value):
    def patch(data):
        for off, t, _ in records(data):
            if t == TASK and struct.unpack_from("<I", data, off + 12)[0]:
                struct.pack_into("<I", data, off + 16, value)
                return
    return patch


MALFORMED = {
    "oom_out_of_range": set_first(OOM_SCORE_ADJ, "<i", 5000),
    "rseq_misaligned": lambda data: set_first(RSEQ, "<Q", struct.unpack_from(
        "<Q", data, [o for o, t, _ in records(data) if t == RSEQ][0] + 8)[0] + 4)(data),
    "rseq_length": set_first(RSEQ, "<I", 64, 16),
    "zombie_status": zombie_status(0x7f),
    "raw_siginfo_signal": set_first(SIGINFO_RAW, "<i", 9, 16),   # the first siginfo's signo
}


def malformed(image, restarter):
    out = {}
    for label, patch in MALFORMED.items():
        path = g.patched(image, f"{image}.{label}", patch)
        os.chmod(path, 0o644)
        out[label] = restart(path, restarter, os.path.join(DIR, "ptrace.out"))
    return out


def low_oom(image, restarter):
    """oom_score_adj -500 in the image: nobody (minimum 0) is refused, root restores it."""
    path = g.patched(image, f"{image}.low_oom", set_first(OOM_SCORE_ADJ, "<i", -500))
    os.chmod(path, 0o644)
    out = os.path.join(DIR, "ptrace.out")
    return {"by_nobody": restart(path, restarter, out, uid=g.NOBODY),
            "by_root": restart(path, restarter, out)}


def task_state(manifest):
    paths = setup(manifest["restore"])
    result = both_ways(paths, checkpoint, restart)
    image = os.path.join(DIR, "ptrace.img")
    if os.path.exists(image):
        result["malformed"] = malformed(image, paths["crfs-restart"])
        result["low_oom"] = low_oom(image, paths["crfs-restart"])
    result["left"] = g.leftover(("state_target", "crfs-restart"))
    return result
