"""Big pages/ directories through a real mount: listed without per-entry requests, with
inode numbers and readdir offsets that stay what they were (issue #14, item 4)."""

import ctypes
import ctypes.util
import os
import re
import subprocess
import time

import pytest

from crfs.formats.x86 import PAGE_SIZE
from mountfs import CRFS, Mount, write_image

PAGES = 3000


def _wait(predicate, what, timeout=30):
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, what
        time.sleep(0.05)


@pytest.fixture
def traced(tmp_path):
    """A store with one image of PAGES heap pages, mounted in the foreground with libfuse's
    request trace (-d) on stderr: (mount, pages dir, trace file, image)."""
    mount = Mount(tmp_path)
    image = write_image(mount.store / "big.img", "ckpt", "x86_64", heap_pages=PAGES, pid=7)
    trace = tmp_path / "trace"
    with open(trace, "wb") as err:
        daemon = subprocess.Popen(CRFS + [str(mount.path), "-d", "-o",
                                          f"store={mount.store},index_dir=off"],
                                  stdout=subprocess.DEVNULL, stderr=err)
    try:
        _wait(lambda: os.path.ismount(mount.path), "mounted")
        yield mount, mount / "big.img" / "tasks" / "7" / "pages", trace, image
    finally:
        subprocess.run(["fusermount3", "-u", str(mount.path)], check=False, timeout=30)
        daemon.wait(timeout=30)


def _opcodes(text):
    return re.findall(r"opcode: (\w+)", text)


def test_ls_lR_of_pages_costs_no_request_per_entry(traced):
    mount, pages, trace, image = traced
    heap = [v for v in image.tasks[0].mm.vmas if len(v.pages)]
    dumped = sum(len(v.pages) for v in heap)
    assert dumped >= PAGES
    os.stat(pages)
    before = len(_opcodes(trace.read_text(errors="replace")))
    # Run inside pages/: a path from the top of the mount would look the image's name up
    # again at every stat (the store is live: docs/security.md), which is not per entry.
    out = subprocess.run(["ls", "-lR", "."], cwd=pages, capture_output=True, text=True,
                         check=True, timeout=120).stdout
    assert out.count(f" {PAGE_SIZE} ") >= dumped     # every page listed with its size
    _wait(lambda: _opcodes(trace.read_text(errors="replace"))[before:].count("READDIRPLUS")
          > 0, "the listing traced")
    ops = _opcodes(trace.read_text(errors="replace"))[before:]
    # The attributes come with the listing (readdirplus) and stay cached: stat(2) of each
    # of the 3000 entries by ls -l asks the daemon nothing more.
    per_entry = ops.count("LOOKUP") + ops.count("GETATTR")
    assert per_entry < 20, f"{per_entry} lookups/getattrs for {dumped} entries"
    assert ops.count("READDIRPLUS") < dumped // 10


def test_page_inodes_follow_listing_order_and_match_lookups(traced):
    _, pages, _, image = traced
    entries = list(os.scandir(pages))
    names = [e.name for e in entries]
    assert names == sorted(names)       # addresses, in address order
    inos = [e.inode() for e in entries]
    assert inos == list(range(inos[0], inos[0] + len(inos)))
    for i in (0, 1, len(entries) // 2, len(entries) - 1):
        assert os.stat(pages / names[i]).st_ino == inos[i]
    mm = image.tasks[0].mm
    addr = int(names[-1], 16)
    assert (pages / names[-1]).read_bytes() == mm.read(addr, PAGE_SIZE)
    assert not os.path.exists(pages / f"{addr + 1:08x}")      # not page aligned
    assert not os.path.exists(pages / f"{addr:x}0")           # no such page


class Dirent(ctypes.Structure):
    _fields_ = [("d_ino", ctypes.c_uint64), ("d_off", ctypes.c_int64),
                ("d_reclen", ctypes.c_ushort), ("d_type", ctypes.c_ubyte),
                ("d_name", ctypes.c_char * 256)]


def _libc():
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.opendir.restype = ctypes.c_void_p
    libc.opendir.argtypes = [ctypes.c_char_p]
    libc.readdir.restype = ctypes.POINTER(Dirent)
    libc.readdir.argtypes = [ctypes.c_void_p]
    libc.telldir.restype = ctypes.c_long
    libc.telldir.argtypes = [ctypes.c_void_p]
    libc.seekdir.argtypes = [ctypes.c_void_p, ctypes.c_long]
    libc.closedir.argtypes = [ctypes.c_void_p]
    return libc


def _read_all(libc, dirp):
    out = []
    while True:
        entry = libc.readdir(dirp)
        if not entry:
            return out
        out.append((libc.telldir(dirp), entry.contents.d_name.decode()))


def test_readdir_offsets_resume_after_their_name(traced):
    _, pages, _, _ = traced
    libc = _libc()
    dirp = libc.opendir(os.fsencode(pages))
    assert dirp
    try:
        listing = [(pos, name) for pos, name in _read_all(libc, dirp)
                   if name not in (".", "..")]
        for k in (0, 1, 1234, len(listing) - 2):
            libc.seekdir(dirp, listing[k][0])     # a fresh READDIRPLUS from this offset
            entry = libc.readdir(dirp)
            assert entry and entry.contents.d_name.decode() == listing[k + 1][1]
        libc.seekdir(dirp, listing[-1][0])
        assert not libc.readdir(dirp)
    finally:
        libc.closedir(dirp)


def test_pages_after_the_kernel_forgets_them(traced):
    """When the kernel drops pages/ and its entries (FORGET), the directory's inode block
    goes with it; listed and looked up again, they get a new consistent one."""
    _, pages, trace, image = traced
    if not os.access("/proc/sys/vm/drop_caches", os.W_OK):
        pytest.skip("needs root to drop the kernel's dentry cache")
    before = {e.name: e.inode() for e in os.scandir(pages)}
    forgets = len(re.findall(r"opcode: (?:BATCH_)?FORGET", trace.read_text(errors="replace")))
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("2\n")
    _wait(lambda: len(re.findall(r"opcode: (?:BATCH_)?FORGET",
                                 trace.read_text(errors="replace"))) > forgets, "forgotten")
    name = sorted(before)[-1]
    addr = int(name, 16)
    assert (pages / name).read_bytes() == image.tasks[0].mm.read(addr, PAGE_SIZE)
    after = {e.name: e.inode() for e in os.scandir(pages)}
    assert sorted(after) == sorted(before)
    assert os.stat(pages / name).st_ino == after[name]
    inos = sorted(after.values())
    assert inos == list(range(inos[0], inos[0] + len(inos)))
