"""Indexing off the event loop: while one image is being indexed (held by the daemon's
test gate, CRFS_TEST_INDEX_GATE), requests for other images are answered; the held one
completes correctly once released, and is indexed once however many ask for it."""

import os
import stat
import subprocess
import sys
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


# --- the persistent index ---------------------------------------------------------------

def tree_bytes(mount, name):
    """{path: bytes} of every file of an image's tree but mem (the address space's size)."""
    out = {}
    top = mount / name
    for dirpath, _, files in os.walk(top):
        for f in files:
            if f != "mem":
                path = os.path.join(dirpath, f)
                with open(path, "rb") as fh:
                    out[os.path.relpath(path, top)] = fh.read()
    return out


def indexed_how(log, name):
    """How each mount indexed `name`: "parsed" or "saved index", in log order."""
    return [line.rsplit("(", 1)[1].rstrip(")") for line in log.splitlines()
            if f"indexed {name} in " in line]


def remount(mount):
    mount.unmount()
    mount.mount()


@pytest.mark.parametrize("fmt,options,arch", WRITERS, ids=[f"{f}-{a}" for f, _, a in WRITERS])
def test_index_survives_remount_and_serves_the_same_bytes(mount, fmt, options, arch):
    write_image(mount.store / "a.img", fmt, arch, options=options, heap_pages=20)
    mount.mount()
    first = tree_bytes(mount, "a.img")
    remount(mount)
    second = tree_bytes(mount, "a.img")
    assert indexed_how(mount.log_text(), "a.img") == ["parsed", "saved index"]
    assert second == first
    index_dir = mount.store.parent / "index"
    assert stat.S_IMODE(index_dir.stat().st_mode) == 0o700
    files = list(index_dir.iterdir())
    assert len(files) == 1 and stat.S_IMODE(files[0].stat().st_mode) == 0o600


def test_a_changed_image_is_indexed_again(mount):
    fmt, options, arch = WRITERS[0]
    write_image(mount.store / "a.img", fmt, arch, options=options)
    mount.mount()
    tree_bytes(mount, "a.img")
    mount.unmount()
    other = write_image(mount.store / "a.img", fmt, arch, options=options, comm="changed")
    mount.mount()
    comm = (task_dir(mount, "a.img", other.tasks[0].pid) / "comm").read_text()
    assert comm == "changed\n"
    assert indexed_how(mount.log_text(), "a.img") == ["parsed", "parsed"]


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "empty"])
def test_a_damaged_index_is_rebuilt_never_trusted(mount, damage):
    fmt, options, arch = WRITERS[0]
    write_image(mount.store / "a.img", fmt, arch, options=options, heap_pages=20)
    mount.mount()
    first = tree_bytes(mount, "a.img")
    mount.unmount()
    (index,) = (mount.store.parent / "index").iterdir()
    data = bytearray(index.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x40
    elif damage == "truncate":
        data = data[:len(data) // 2]
    elif damage == "garbage":
        data = bytearray(os.urandom(len(data)))
    else:
        data = bytearray()
    index.write_bytes(bytes(data))
    mount.mount()
    assert tree_bytes(mount, "a.img") == first
    remount(mount)      # the rebuilt index is saved again and used
    assert tree_bytes(mount, "a.img") == first
    log = mount.log_text()
    assert indexed_how(log, "a.img") == ["parsed", "parsed", "saved index"]
    assert "index not used" in log


def test_an_index_dir_others_may_read_is_refused(tmp_path):
    m = Mount(tmp_path)
    open_dir = tmp_path / "shared"
    open_dir.mkdir(mode=0o755)
    os.chmod(open_dir, 0o755)
    proc = subprocess.run([*m.options()[:0], sys.executable, "-m", "crfs", str(m.path), "-o",
                           f"store={m.store},log={m.log},index_dir={open_dir}"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "index_dir" in proc.stderr and "0700" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not os.path.ismount(m.path)


def test_pages_listing_streams_every_page_in_order(mount):
    fmt, options, arch = WRITERS[0]
    image = write_image(mount.store / "a.img", fmt, arch, options=options, heap_pages=3000)
    mount.mount()
    pages = task_dir(mount, "a.img", image.tasks[0].pid) / "pages"
    listed = subprocess.run(["ls", "-f", str(pages)], capture_output=True, text=True,
                            check=True).stdout.split()
    expected = [f"{addr:08x}" for vma in image.tasks[0].mm.vmas for addr, _ in vma.pages]
    assert [n for n in listed if n not in (".", "..")] == expected
    last = expected[-1]
    assert (pages / last).read_bytes() == image.tasks[0].mm.read(int(last, 16), 4096)
