"""Indexing off the event loop: while one image is being indexed (held by the daemon's
test gate, CRFS_TEST_INDEX_GATE), requests for other images are answered; the held one
completes correctly once released, and is indexed once however many ask for it."""

import os
import subprocess
import time

import pytest

from mountfs import WRITERS, Mount, errors_in_log, task_dir, write_image


def wait_for(path, timeout=30):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


@pytest.fixture
def gated(tmp_path, monkeypatch):
    gate = tmp_path / "gate"
    gate.mkdir()
    monkeypatch.setenv("CRFS_TEST_INDEX_GATE", str(gate))
    m = Mount(tmp_path)
    yield m, gate
    for hold in gate.glob("*.hold"):    # a failed test: let its readers finish first
        hold.unlink()
        time.sleep(0.5)
    m.unmount()
    assert not errors_in_log(m.log_text()), m.log_text()


def test_other_images_are_served_while_one_is_indexed(gated):
    mount, gate = gated
    fmt, options, arch = WRITERS[0]
    held = write_image(mount.store / "held.img", fmt, arch, options=options, heap_pages=64)
    other = write_image(mount.store / "other.img", fmt, arch, options=options)
    (gate / "held.img.hold").touch()
    mount.mount()
    pid = held.tasks[0].pid
    # Two readers of the held image, one after the other has started its indexing.
    first = subprocess.Popen(["cat", str(task_dir(mount, "held.img", pid) / "comm")],
                             stdout=subprocess.PIPE, text=True)
    wait_for(gate / "held.img.indexing")
    second = subprocess.Popen(["cat", str(mount / "held.img" / "format")],
                              stdout=subprocess.PIPE, text=True)
    # Meanwhile another image, and the top of the mount, answer.
    other_pid = other.tasks[0].pid
    comm = (task_dir(mount, "other.img", other_pid) / "comm").read_text()
    assert comm == other.tasks[0].comm + "\n"
    assert (mount / "other.img" / "format").read_text().endswith(f"{arch}\n")
    assert "crfs" in (mount / "README").read_text()
    time.sleep(0.2)     # not a timing assertion: only gives a wrong answer time to show
    assert first.poll() is None and second.poll() is None, "the held image answered"
    (gate / "held.img.hold").unlink()
    assert first.communicate(timeout=30)[0] == held.tasks[0].comm + "\n"
    assert second.communicate(timeout=30)[0].endswith(f"{arch}\n")
    assert first.returncode == second.returncode == 0
    data = (task_dir(mount, "held.img", pid) / "mem")
    assert data.exists()
    log = mount.log_text()
    assert log.count("indexed held.img in") == 1, log
    assert log.count("indexed other.img in") == 1, log


def test_the_store_is_listed_without_indexing_and_a_held_image_lists_once_ready(gated):
    mount, gate = gated
    fmt, options, arch = WRITERS[0]
    for name in ("a.img", "b.img", "c.img"):
        write_image(mount.store / name, fmt, arch, options=options)
    (gate / "b.img.hold").touch()
    mount.mount()
    lister = subprocess.Popen(["ls", str(mount / "b.img")], stdout=subprocess.PIPE, text=True)
    wait_for(gate / "b.img.indexing")
    # The top of the mount, with every image's attributes, needs no index.
    top = mount.sh("ls -l").stdout.splitlines()[1:]
    assert sorted(line.split()[-1] for line in top) == [
        "README", "a.img", "b.img", "c.img", "checkpoint", "restart"]
    assert (mount / "c.img" / "format").read_text().endswith(f"{arch}\n")
    assert lister.poll() is None
    (gate / "b.img.hold").unlink()
    out = lister.communicate(timeout=30)[0]
    assert lister.returncode == 0
    assert out.split() == ["format", "header", "records", "tasks", "verify"]
    log = mount.log_text()
    assert log.count("indexed b.img in") == 1
    assert "indexed a.img" not in log     # listed, never entered: never indexed
