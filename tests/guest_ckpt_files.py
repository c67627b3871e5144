"""Guest side of the module's file-table CHECKPOINT (tests/test_kmod_guest.py, step
"kernel_files"; kmod/crfs_ckpt_files.c).

files_target (tests/c/files_target.c: a log file, a file and its dup, a directory,
/dev/null, /dev/zero, a pipe with bytes buffered, a close-on-exec fd, stdin from a pipe
the test keeps) is checkpointed by the module (`crfs checkpoint --via kernel
--leave-stopped`), then by the userspace writer: the two images compared (file tables
included), the process killed, the module's image restarted by crfs-restart. Also a pipe
holding more bytes than RESTART takes, which CHECKPOINT refuses by its fd. Runs inside
the guest; decides nothing.
"""

import os
import shutil
import subprocess
import sys

import guest_files as gf

WORK = "/tmp/crfs-kfiles"
BIG_PIPE = """
import fcntl, os, sys, time
r, w = os.pipe()
fcntl.fcntl(w, 1031, 2 << 20)            # F_SETPIPE_SZ (root: above pipe-max-size)
os.dup2(r, 5); os.dup2(w, 6); os.close(r); os.close(w)
os.write(6, b"x" * ((1 << 20) + 4096))
print("ready", flush=True)
time.sleep(600)
"""


def crfs_checkpoint(pid, image, *options):
    return subprocess.run([sys.executable, "-m", "crfs", "checkpoint", str(pid), "-o", image,
                           *options], capture_output=True, text=True, timeout=120)


def restart_kernel_image(result, image, restarter, out_path, work):
    child = gf.restart(image, restarter, os.path.join(work, "restart.out"))
    result["restart"] = gf.outcome(child)
    if child.errno == 0:
        gf.wait_lines(out_path, len(result["lines_before"]) + 3)
        result["after"] = gf.fds_of(child.pid)
        with open(os.path.join(work, "stop"), "w"):
            pass
        result["exit"] = gf.end_of(child)


def big_pipe(work):
    """A pipe enlarged to 2 MiB holding 1 MiB + 4096 bytes at fds 5/6: CHECKPOINT refuses
    it (RESTART takes at most 1 MiB)."""
    out_path = os.path.join(work, "big.out")
    with open(out_path, "w") as out:
        proc = subprocess.Popen([sys.executable, "-c", BIG_PIPE], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT)
    gf.wait_lines(out_path, 1)
    ck = crfs_checkpoint(proc.pid, os.path.join(work, "big.img"), "--via", "kernel",
                         "--kill")
    proc.kill()
    proc.wait(timeout=60)
    return {"rc": ck.returncode, "stderr": ck.stderr[-2000:]}


def kernel_files_step(manifest, same_as_python, limit=6000):
    work = WORK
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    os.chmod(work, 0o755)
    exe = os.path.join(work, "files_target")
    shutil.copy(manifest["files_target"], exe)
    out_path = os.path.join(work, "files.out")
    image = os.path.join(work, "kernel.img")
    py_image = os.path.join(work, "ptrace.img")
    stdin_r, stdin_w = os.pipe()
    with open(out_path, "w") as out:
        proc = subprocess.Popen(["setarch", "-R", exe, work, str(limit)], stdin=stdin_r,
                                stdout=out, stderr=subprocess.STDOUT)
    os.close(stdin_r)
    gf.wait_lines(out_path, 5)
    result = {"before": gf.fds_of(proc.pid)}
    ck = crfs_checkpoint(proc.pid, image, "--via", "kernel", "--leave-stopped")
    result["checkpoint"] = {"rc": ck.returncode, "stderr": ck.stderr[-2000:]}
    if ck.returncode == 0:
        py = crfs_checkpoint(proc.pid, py_image, "--via", "ptrace", "--kill")
        result["python"] = {"rc": py.returncode, "stderr": py.stderr[-2000:]}
    proc.kill()
    proc.wait(timeout=60)
    with open(out_path) as f:
        result["lines_before"] = f.read().splitlines()
    try:
        if ck.returncode == 0 and result["python"]["rc"] == 0:
            result["same_as_python"] = same_as_python(image, py_image)
        if ck.returncode == 0:
            os.chmod(image, 0o644)
            restart_kernel_image(result, image, manifest["restarter"], out_path, work)
    except Exception as exc:      # noqa: BLE001 - reported, the other steps go on
        result["error"] = repr(exc)
    os.close(stdin_w)
    with open(out_path) as f:
        result["lines"] = f.read().splitlines()
    with open(os.path.join(work, "files.log")) as f:
        result["log"] = f.read().splitlines()
    result["big_pipe"] = big_pipe(work)
    return result
