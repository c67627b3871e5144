"""Guest side of the signal, limit and fs_struct restore tests (the `signals` step of
tests/kmod_guest_checks.py; asserted by tests/test_kmod_guest.py).

tests/c/sig_target.c runs as nobody, is checkpointed by `crfs checkpoint --via ptrace
--kill` and restarted by crfs-restart: by root, and by nobody. /proc/PID/status,
/proc/PID/limits and /proc/PID/cwd of the original and of the restored process are
compared; the restored one is sent SIGUSR1 (it prints what its handler saw) and SIGTERM (it
exits 0 from its handler). The module's CHECKPOINT of it is compared with crfs's and
restarted the same way; so is the program with a second thread of other blocked and
pending signals (each thread's must come back). Then images with one record made wrong, and callers that may
not have what the image asks, are restarted: each must be refused with its errno and
reason, the caller intact.
"""

import errno
import os
import resource
import signal
import struct
import subprocess
import sys
import time

from crfs import kernel
from guest_util import records

NOBODY = 65534
KCK_DIR = "/tmp/crfs-kck"
SIG_DIR = os.path.join(KCK_DIR, "sigdir")          # the target's cwd
NOT_DIR = os.path.join(KCK_DIR, "sigfile")         # a regular file
STATUS = ("SigQ", "SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt")
FS, FILE_NAME, SIGHAND, SIGPENDING, SIGNAL_TASK = 451, 303, 601, 604, 603
SIGALTSTACK = 8001
KERNEL_ADDRESS = 0xFFFFFFFF81000000
CALLER_NOFILE = (64, 512)      # RLIMIT_NOFILE of the restarter in the "limit" cases


def first(data, type_, n=0):
    return [off for off, t, _ in records(data) if t == type_][n]


def replace_record(data, offset, payload):
    """The record at `offset` with `payload` after its header (its len to match)."""
    type_, length = struct.unpack_from("<II", data, offset)
    head = struct.pack("<II", type_, 8 + len(payload))
    return data[:offset] + head + payload + data[offset + length:]


def patch(image, label, change):
    with open(image, "rb") as f:
        data = bytearray(f.read())
    data = change(data)
    path = f"{image}.{label}"
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o644)
    return path


def handler_in_kernel(data):
    struct.pack_into("<Q", data, first(data, SIGHAND) + 8 + 32 * (signal.SIGTERM - 1),
                     KERNEL_ADDRESS)
    return data


def blocked_sigkill(data):
    offset = first(data, SIGNAL_TASK) + 8
    blocked, = struct.unpack_from("<Q", data, offset)
    struct.pack_into("<Q", data, offset, blocked | 1 << (signal.SIGKILL - 1))
    return data


def pending_count_lies(data):
    offset = first(data, SIGPENDING) + 8
    count, = struct.unpack_from("<I", data, offset)
    struct.pack_into("<I", data, offset, count + 1)
    return data


def altstack_in_kernel(data):
    struct.pack_into("<Q", data, first(data, SIGALTSTACK) + 8, KERNEL_ADDRESS)
    return data


def fs_name(n, path):
    """The FS object's FILE_NAME n (0: cwd, 1: root) set to `path`."""
    def change(data):
        fs = first(data, FS)
        offset = [off for off, t, _ in records(data) if t == FILE_NAME and off > fs][n]
        return replace_record(bytes(data), offset, path.encode() + b"\0")
    return change


def status_of(pid):
    with open(f"/proc/{pid}/status") as f:
        rows = [line.split(":", 1) for line in f]
    return {key: value.strip() for key, value in rows if key in STATUS}


def threads_of(pid):
    """SigBlk and SigPnd of every thread of `pid`, the leader first, then by tid."""
    tids = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
    tids.sort(key=lambda tid: tid != pid)
    return [{k: v for k, v in status_of(f"{pid}/task/{tid}").items()
             if k in ("SigBlk", "SigPnd")} for tid in tids]


def observed(pid):
    """What /proc shows of the process's signal state, open-files limit and cwd."""
    with open(f"/proc/{pid}/limits") as f:
        nofile = [line.split()[3:5] for line in f if line.startswith("Max open files")][0]
    return {"status": status_of(pid), "nofile": nofile, "cwd": os.readlink(f"/proc/{pid}/cwd"),
            "threads": threads_of(pid)}


def wait_for(path, prefix, timeout=30):
    """The first line of `path` starting with `prefix`, or None after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(path) as f:
            for line in f.read().splitlines():
                if line.startswith(prefix):
                    return line
        time.sleep(0.05)
    return None


def as_user(uid, nofile=None):
    """preexec_fn: RLIMIT_NOFILE `nofile`, then the ids of `uid` (None: stay root)."""
    def run():
        if nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, nofile)
        if uid is not None:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
    return run


def restart(image, restarter, out_path, uid=None, nofile=None):
    """crfs-restart -R of `image` as `uid` with RLIMIT_NOFILE `nofile` (its stdio is the
    restarter's, not the image's root-owned log, which nobody could not reopen):
    (result, Popen, pid);
    pid is None when it was refused (result has errno and msg)."""
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    os.chmod(kernel.DEVICE, 0o666)
    try:
        with open(out_path, "wb") as out:
            proc = subprocess.Popen([restarter, "-R", "-r", str(write_fd), image],
                                    stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, pass_fds=(write_fd,),
                                    preexec_fn=as_user(uid, nofile), start_new_session=True)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as f:
            report = f.read(kernel._RESULT.size)
    finally:
        os.chmod(kernel.DEVICE, 0o600)
    if not report:
        return {"errno": "restored"}, proc, proc.pid
    code, _, rtype, stage, reason = kernel._RESULT.unpack(report)
    reason = reason.rstrip(b"\0").decode("utf-8", "replace")
    if not code and reason.startswith("pid "):
        return {"errno": "restored"}, proc, int(reason[4:])
    proc.wait(timeout=60)
    return ({"errno": errno.errorcode.get(code, str(code)), "code": code, "type": rtype,
             "stage": stage.rstrip(b"\0").decode(), "msg": reason}, proc, None)


def exercise(proc, pid, out_path):
    """The restored process's /proc view, what it prints on SIGUSR1, how SIGTERM ends it."""
    result = {"observed": observed(pid)}
    os.kill(pid, signal.SIGUSR1)
    result["usr1"] = wait_for(out_path, "usr1")
    os.kill(pid, signal.SIGTERM)
    result["term"] = wait_for(out_path, "term")
    try:
        result["exit"] = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.kill(pid, signal.SIGKILL)
        proc.kill()
        result["exit"] = proc.wait()
    return result


def restart_and_exercise(image, restarter, label, uid=None, nofile=None):
    out_path = os.path.join(KCK_DIR, f"sig.{label}.out")
    result, proc, pid = restart(image, restarter, out_path, uid, nofile)
    if pid is None:
        return result
    result.update(exercise(proc, pid, out_path))
    return result


def refused(image, restarter, label, uid=None, nofile=None):
    out_path = os.path.join(KCK_DIR, f"sig.{label}.out")
    result, proc, pid = restart(image, restarter, out_path, uid, nofile)
    if pid is not None:        # restored when it should not have been
        os.kill(pid, signal.SIGKILL)
        proc.kill()
        proc.wait()
    return result


def start_target(exe, out_path, *extra):
    for path, make in ((SIG_DIR, lambda p: os.mkdir(p, 0o755)),
                       (NOT_DIR, lambda p: open(p, "w").close())):
        if not os.path.exists(path):
            make(path)
    os.chmod(SIG_DIR, 0o755)
    with open(out_path, "w") as out:
        proc = subprocess.Popen([exe, SIG_DIR, *extra], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, preexec_fn=as_user(NOBODY),
                                start_new_session=True)
    wait_for(out_path, "tick 2")
    return proc


def state_records(image):
    """The types of signal and fs records in `image`, in order, each once."""
    with open(image, "rb") as f:
        return sorted({t for _, t, _ in records(f.read())
                       if t in (FS, SIGHAND, 602, SIGNAL_TASK, SIGPENDING, SIGALTSTACK, 8002)})


def checkpoint(pid, image, via="ptrace", after="--kill"):
    return subprocess.run([sys.executable, "-m", "crfs", "checkpoint", str(pid), "-o", image,
                           after, "--via", via], capture_output=True, text=True,
                          timeout=120)


def kernel_checkpoint(exe, restarter, same_as_python):
    """sig_target checkpointed by the module (left stopped), then by crfs (killed): the
    two images compared by same_as_python(), the module's restarted by root."""
    out_path = os.path.join(KCK_DIR, "sig.kernel.out")
    image = os.path.join(KCK_DIR, "sig.kernel.img")
    py_image = os.path.join(KCK_DIR, "sig.ptrace.img")
    proc = start_target(exe, out_path)
    out = {"original": observed(proc.pid)}
    ck = checkpoint(proc.pid, image, "kernel", "--leave-stopped")
    out["checkpoint"] = {"rc": ck.returncode, "stderr": ck.stderr[-2000:]}
    if ck.returncode == 0:
        ck = checkpoint(proc.pid, py_image)
        out["python"] = {"rc": ck.returncode, "stderr": ck.stderr[-2000:]}
    proc.kill()
    proc.wait(timeout=60)
    if ck.returncode:
        return out
    out["same_as_python"] = same_as_python(image, py_image)
    out["records"] = state_records(image)
    os.chmod(image, 0o644)
    out["restart"] = restart_and_exercise(image, restarter, "kernel")
    return out


MALFORMED = {
    "handler_in_kernel": handler_in_kernel,
    "blocked_sigkill": blocked_sigkill,
    "pending_count_lies": pending_count_lies,
    "altstack_in_kernel": altstack_in_kernel,
    "cwd_not_a_directory": fs_name(0, NOT_DIR),
    "cwd_relative": fs_name(0, "tmp"),
}


def threaded(exe, restarter):
    """sig_target with its second thread, checkpointed by crfs, restarted by root."""
    out_path = os.path.join(KCK_DIR, "sig.threaded.out")
    image = os.path.join(KCK_DIR, "sig.threaded.img")
    proc = start_target(exe, out_path, "thread")
    out = {"original": observed(proc.pid)}
    ck = checkpoint(proc.pid, image)
    out["checkpoint"] = {"rc": ck.returncode, "stderr": ck.stderr[-2000:]}
    proc.wait(timeout=60)
    if ck.returncode == 0:
        os.chmod(image, 0o644)
        out["restart"] = restart_and_exercise(image, restarter, "threaded")
    return out


def signals(manifest, same_as_python):
    """The `signals` step: see the module's docstring; `same_as_python` compares two
    images of one process (tests/kmod_guest_checks.py)."""
    os.makedirs(KCK_DIR, exist_ok=True)
    os.chmod(KCK_DIR, 0o755)
    exe = os.path.join(KCK_DIR, "sig_target")
    subprocess.run(["cp", manifest["sig_target"], exe], check=True)
    os.chmod(exe, 0o755)
    restarter = os.path.join(KCK_DIR, "crfs-restart")     # nobody may run it there
    subprocess.run(["cp", manifest["restarter"], restarter], check=True)
    os.chmod(restarter, 0o755)
    image = os.path.join(KCK_DIR, "sig.img")
    out_path = os.path.join(KCK_DIR, "sig.out")
    proc = start_target(exe, out_path)
    out = {"original": observed(proc.pid)}
    ck = checkpoint(proc.pid, image)
    out["checkpoint"] = {"rc": ck.returncode, "stderr": ck.stderr[-2000:]}
    proc.wait(timeout=60)
    if ck.returncode:
        return out
    os.chmod(image, 0o644)
    out["records"] = state_records(image)
    out["by_root"] = restart_and_exercise(image, restarter, "by_root")
    out["by_nobody"] = restart_and_exercise(image, restarter, "by_nobody", NOBODY)
    out["limit_by_nobody"] = refused(image, restarter, "limit", NOBODY, CALLER_NOFILE)
    out["limit_by_root"] = restart_and_exercise(image, restarter, "limit_by_root",
                                                nofile=CALLER_NOFILE)
    out["root_by_nobody"] = refused(patch(image, "root", fs_name(1, "/tmp")), restarter,
                                    "root", NOBODY)
    out["malformed"] = {label: refused(patch(image, label, change), restarter, label)
                        for label, change in MALFORMED.items()}
    out["kernel"] = kernel_checkpoint(exe, restarter, same_as_python)
    out["threaded"] = threaded(exe, restarter)
    return out
