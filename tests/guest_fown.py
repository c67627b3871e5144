"""Guest step `fown` of tests/kmod_guest_checks.py: files with an owner for SIGIO, their
F_SETSIG signal and O_ASYNC (CRFS_HDR_FILE_OWNER, kmod/crfs_fown.c,
crfs/checkpoint/fown.py), asserted by tests/test_kmod_guest.py.

tests/c/fown_target.c runs as nobody with two O_ASYNC pipes: one owned by itself with
F_SETSIG SIGUSR2, one owned by its child. It is checkpointed with --tree --kill by `crfs
checkpoint --via ptrace` and by the module (--via kernel), and restarted by root with
crfs-restart: on SIGUSR1 it prints what fcntl says and which signals the writes brought.
Then the ptrace image with its FILE_OWNER records made wrong is restarted (each refused
with its errno and reason), and restarted with new pids (-N): the child's file then names
a pid that is no process of the restored tree, refused.
"""

import os
import signal
import struct
import subprocess

import kmod_guest_checks as g
from guest_task_state import ask_then_end, both_ways, report_of
from guest_util import records, stage

DIR = "/tmp/crfs-fown"
FILE_OWNER = 8009
ORIGINAL = {}


def setup(manifest):
    return stage(DIR, {"fown_target": manifest["fown_target"],
                       "crfs-restart": manifest["restarter"]}, mode=0o777)


def owners(image):
    """(pid, pid_type, signum) of each FILE_OWNER record of the image."""
    with open(image, "rb") as f:
        data = f.read()
    return [list(struct.unpack_from("<iII", data, off + 8))
            for off, t, _ in records(data) if t == FILE_OWNER]


def checkpoint(paths, way):
    out = os.path.join(DIR, f"{way}.out")
    with open(out, "w") as f:
        proc = subprocess.Popen(g.setpriv(g.NOBODY) + [paths["fown_target"]],
                                  stdout=f, stderr=subprocess.STDOUT, cwd=DIR)
    os.chmod(out, 0o666)
    g.wait_for_output(out, g.lines_starting("ready", 1))
    image = os.path.join(DIR, f"{way}.img")
    ck = g.crfs_checkpoint(proc.pid, "--tree", "-o", image, "--kill", "--via", way)
    proc.wait(timeout=60)
    with open(out) as f:
        ORIGINAL[out] = f.read()
    result = {"rc": ck.returncode, "stderr": ck.stderr[-300:], "pid": proc.pid}
    if os.path.exists(image):
        os.chmod(image, 0o644)
        result["owners"] = owners(image)
    return result, image, out


def restart(image, restarter, out, *options):
    """crfs-restart OPTIONS of `image` as root; for a restored program, its state line."""
    with open(out, "w") as f:
        f.write(ORIGINAL.get(out, ""))
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    with open(os.path.join(DIR, "restarter.out"), "ab") as log:
        proc = subprocess.Popen([restarter, *options, "-r", str(write_fd), image],
                                  stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                  pass_fds=(write_fd,))
    os.close(write_fd)
    result, pid = report_of(read_fd)
    return ask_then_end(result, proc, pid, out, signal.SIGUSR1, "state", ("state", "term"))


def set_owner(index, fmt, value, offset):
    def patch(data):
        found = [off for off, t, _ in records(data) if t == FILE_OWNER]
        struct.pack_into(fmt, data, found[index] + offset, value)
    return patch


MALFORMED = {
    "pid_type": set_owner(0, "<I", 7, 12),
    "signum": set_owner(0, "<I", 65, 16),
    "not_in_image": set_owner(0, "<i", 1, 8),       # init: no task of the image
    "negative": set_owner(0, "<i", -5, 8),
}


def pgrp_owner(pgid):
    """The first owner made the image's process group (which pgids are not restored)."""
    def patch(data):
        set_owner(0, "<I", 2, 12)(data)
        set_owner(0, "<i", pgid, 8)(data)
    return patch


def malformed(image, restarter, pgid):
    out = {}
    for label, patch in (*MALFORMED.items(), ("pgrp", pgrp_owner(pgid))):
        path = g.patched(image, f"{image}.{label}", patch)
        os.chmod(path, 0o644)
        out[label] = restart(path, restarter, os.path.join(DIR, "ptrace.out"))
    out["new_pids"] = restart(image, restarter, os.path.join(DIR, "ptrace.out"), "-N")
    return out


def step(manifest):
    paths = setup(manifest["restore"])
    result = both_ways(paths, checkpoint, restart)
    image = os.path.join(DIR, "ptrace.img")
    if os.path.exists(image):
        pgid = os.getpgid(0)    # the target's: it ran in this process's group
        result["malformed"] = malformed(image, paths["crfs-restart"], pgid)
    result["left"] = g.leftover(("fown_target", "crfs-restart"))
    return result
