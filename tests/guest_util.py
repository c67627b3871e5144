"""Helpers the guest-side check modules share (tests/kmod_guest_checks.py and the
guest_*.py modules it runs): record framing and bounded reads."""

import json
import os
import select
import shutil
import struct
import subprocess
import time


def records(data):
    """(offset, type, len) of the records of a ckpt_hdr image, up to a len below 8."""
    offset = 0
    while offset + 8 <= len(data):
        type_, length = struct.unpack_from("<II", data, offset)
        yield offset, type_, length
        if length < 8:
            return
        offset += length


def read_until_eof(fd, timeout):
    """Everything `fd` gives until EOF; None when that takes more than `timeout` seconds."""
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        chunk = os.read(fd, 65536)
        if not chunk:
            return data
        data += chunk


def in_child(work, no_answer):
    """`work()` in a forked child (a call that restores replaces its caller, never this
    process; a setuid() is for the child alone): what it returned, as JSON; {"errno":
    "python", "msg": ...} when it raised, `no_answer` when the child said nothing."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        try:
            answer = work()
        except BaseException as exc:   # noqa: BLE001 - always report
            answer = {"errno": "python", "msg": repr(exc)}
        os.write(write_fd, json.dumps(answer).encode())
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    return json.loads(data) if data else no_answer


def stage(directory, programs, mode=0o755):
    """A fresh `directory` (its mode `mode`) with each of {name: source path} copied in as
    an executable: {name: its path there}."""
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    os.chmod(directory, mode)
    paths = {}
    for name, src in programs.items():
        paths[name] = os.path.join(directory, name)
        shutil.copy(src, paths[name])
        os.chmod(paths[name], 0o755)
    return paths


def dmesg_problems():
    """The kernel log's lines that report a kernel fault: a WARN, BUG, Oops, general
    protection fault, call trace or hung task."""
    text = subprocess.run(["dmesg"], capture_output=True, text=True).stdout
    return [line for line in text.splitlines()
            if any(k in line for k in ("WARNING:", "BUG:", "Oops", "Call Trace",
                                       "general protection", "hung_task"))]
