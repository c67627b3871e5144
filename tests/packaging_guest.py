"""Run in the test guest by tests/test_packaging.py (kmod/harness/run-in-guest): load the
module DKMS built and installed (into a private tree), then use only the installed
pieces through the command line: `crfs doctor`, `crfs checkpoint` of a real program and
`crfs restart` of its image; the restored program must go on counting.

usage: packaging_guest.py KO PROGRAM OUTDIR   (writes OUTDIR/result.json)
"""

import json
import os
import re
import select
import subprocess
import sys
import time

CRFS = [sys.executable, "-m", "crfs"]


def run(*args):
    result = subprocess.run(CRFS + list(args), capture_output=True, text=True, timeout=120)
    return {"rc": result.returncode, "stdout": result.stdout, "stderr": result.stderr}


def start(program):
    proc = subprocess.Popen([program], stdout=subprocess.PIPE, text=True)
    fd, text = proc.stdout.fileno(), ""
    while "\n" not in text:
        if not select.select([fd], [], [], 20)[0]:
            raise RuntimeError(f"{program} not ready: {text!r}")
        text += os.read(fd, 4096).decode()
    return proc, int(re.search(r"counter=([0-9a-f]+)", text).group(1), 16)


def counter(pid, addr):
    with open(f"/proc/{pid}/mem", "rb") as mem:
        mem.seek(addr)
        return int.from_bytes(mem.read(8), "little")


def counts_on(pid, addr):
    """Whether the counter of `pid` goes up (the program runs)."""
    first = counter(pid, addr)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if counter(pid, addr) > first:
            return True
        time.sleep(0.05)
    return False


def through_mount(image, addr):
    """`mount -t fuse crfs` (mount.fuse runs the crfs on PATH) and `cp image restart/`, with
    the source tree's restarter gone (this guest's overlay only): the daemon must use the
    installed one."""
    built = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         "kmod", "crfs-restart")
    if os.path.exists(built):
        os.unlink(built)
    root = "/tmp/packaging-mount"
    store, mnt = os.path.join(root, "store"), os.path.join(root, "mnt")
    os.makedirs(store)
    os.makedirs(mnt)
    if not os.path.exists("/dev/fuse"):
        subprocess.run(["modprobe", "fuse"], capture_output=True)
    out = {}
    mount = subprocess.run(["mount", "-t", "fuse", "crfs", mnt, "-o",
                            f"store={store},log={root}/crfs.log"],
                           capture_output=True, text=True, timeout=120)
    out["mount"] = {"rc": mount.returncode, "stderr": mount.stderr}
    if mount.returncode:
        return out
    try:
        cp = subprocess.run(["cp", image, os.path.join(mnt, "restart", "c.img")],
                            capture_output=True, text=True, timeout=120)
        with open(os.path.join(mnt, "restart", "c.img.status")) as f:
            out["status"] = f.read()
        out["cp"] = {"rc": cp.returncode, "stderr": cp.stderr}
        found = re.search(r"pid: (\d+)", out["status"])
        if found:
            pid = int(found.group(1))
            try:
                out["counts"] = counts_on(pid, addr)
                os.kill(pid, 9)
            except (FileNotFoundError, ProcessLookupError) as e:    # it is gone: say so
                out["counts"] = False
                with open(os.path.join(mnt, "restart", "c.img.status")) as f:
                    out["gone"] = {"error": str(e), "status": f.read()}
    finally:
        subprocess.run(["umount", mnt], capture_output=True, timeout=60)
    with open(os.path.join(root, "crfs.log")) as f:
        out["log"] = f.read()[-2000:]
    return out


def main(ko, program, out):
    result = {}
    load = subprocess.run(["insmod", ko], capture_output=True, text=True)
    result["insmod"] = {"rc": load.returncode, "stderr": load.stderr}
    st = os.stat("/dev/crfs")
    result["device_mode"] = oct(st.st_mode & 0o7777)
    result["doctor"] = run("doctor", "--json")
    proc, addr = start(program)
    image = os.path.join(out, "counter.ckpt")
    result["checkpoint"] = run("checkpoint", str(proc.pid), "-o", image, "--kill")
    proc.wait()
    result["restart"] = run("restart", "-N", image, "--log", os.path.join(out, "log"))
    found = re.search(r"restored pid (\d+)", result["restart"]["stderr"])
    if found:
        pid = int(found.group(1))
        result["restored_counts"] = counts_on(pid, addr)
        os.kill(pid, 9)
    result["mount_restart"] = through_mount(image, addr)
    half = os.path.join(out, "half.ckpt")
    with open(image, "rb") as src, open(half, "wb") as dst:
        dst.write(src.read(4000))
    result["restart_half"] = run("restart", half)
    with open(os.path.join(out, "result.json"), "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
