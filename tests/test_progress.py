"""Progress of a checkpoint the crfs module writes, whose size is not known before: the
terminal line (TerminalProgress with total 0) and the watch on the growing image
(via_kernel._Watch). The whole path runs in the guest (tests/guest_front.py "terminal")."""

import os
import pty
import re
import select
import threading
import time

from crfs.checkpoint import via_kernel
from crfs.checkpoint.progress import TerminalProgress


def test_without_a_total_the_line_says_mib_written_and_the_rate():
    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as stream:
            progress = TerminalProgress("checkpoint 7", stream)
            progress.started -= 2.0          # two seconds into the checkpoint
            progress(6 << 20, 0)
            progress.finish()
        text = _read_line(master)
    finally:
        os.close(master)
        os.close(slave)
    assert re.fullmatch(r"\rcheckpoint 7: 6 MiB written, 3 MiB/s\r?\n", text), text


def _read_line(master, timeout=10.0):
    """What the terminal got up to its first newline: a pty may hand the line and its
    newline over in two reads."""
    text = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in text:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([master], [], [], left)[0]:
            break
        text += os.read(master, 4096)
    return text.decode()


def test_the_watch_reports_the_image_as_it_grows(tmp_path):
    seen = []
    fd = os.open(tmp_path / "image", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with via_kernel._Watch(fd, seen.append):
            for _ in range(6):
                os.write(fd, b"x" * 4096)
                time.sleep(0.25)
    finally:
        os.close(fd)
    assert seen and seen == sorted(seen) and 0 < seen[-1] <= 6 * 4096, seen


def test_no_watch_without_a_callback(tmp_path):
    before = threading.active_count()
    fd = os.open(tmp_path / "image", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with via_kernel._Watch(fd, None) as watch:
            assert threading.active_count() == before and watch.thread is None
    finally:
        os.close(fd)
