"""Mounting crfs for tests: a real FUSE mount over a temp store, unmounted at teardown."""

import os
import subprocess
import sys
import time
from pathlib import Path

from crfs.demo import DEMO_IMAGES
from crfs.model import registry
from crfs.model.synth import synthetic_image

CRFS = [sys.executable, "-m", "crfs"]

# (format, writer options, arch) of the synthetic images every format can hold: those of
# the demo images, which crfs.model.registry lists per format.
WRITERS = [(fmt, options, arch) for _, fmt, options, arch, _ in DEMO_IMAGES]


def write_image(path, fmt, arch, heap_pages=8, options=None, **synth):
    image = synthetic_image(arch, heap_pages=heap_pages, **synth)
    with open(path, "wb") as out:
        registry.dump(image, out, fmt, **(options or {}))
    return image


class Mount:
    def __init__(self, root, point="mnt"):
        self.store = root / "store"
        self.path = root / point
        self.log = root / "crfs.log"
        self.store.mkdir()
        self.path.mkdir()

    def mount(self, *extra):
        subprocess.run(CRFS + [str(self.path), *self.options(), *extra], check=True,
                       timeout=60)
        assert os.path.ismount(self.path)

    def options(self):
        # Each test's own index cache (not the user's): mounts of one test share it.
        index = self.store.parent / "index"
        return ["-o", f"store={self.store},log={self.log},index_dir={index}"]

    def unmount(self):
        if os.path.ismount(self.path):
            subprocess.run(["fusermount3", "-u", str(self.path)], check=True, timeout=30)
        deadline = time.time() + 10
        while time.time() < deadline and "unmounted" not in self.log_text():
            time.sleep(0.05)

    def log_text(self):
        return self.log.read_text() if self.log.exists() else ""

    def __truediv__(self, name):
        return self.path / name

    def sh(self, command, check=True):
        """Run a shell command in the mount; returns CompletedProcess (text)."""
        return subprocess.run(command, shell=True, cwd=self.path, capture_output=True,
                              text=True, check=check, timeout=120)


def errors_in_log(text):
    return [line for line in text.splitlines() if " ERROR " in line or "Traceback" in line]


def task_dir(mount, image_name, pid):
    return Path(mount.path) / image_name / "tasks" / str(pid)
