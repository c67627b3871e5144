"""The mounted tree, read with real tools: ls, find, cat, grep, xxd, dd, stat, cp."""

import concurrent.futures
import errno
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from crfs import render
from crfs.formats.x86 import PAGE_SIZE
from crfs.model.synth import LAYOUT
from mountfs import CRFS, WRITERS, Mount, errors_in_log, task_dir, write_image


@pytest.fixture
def demo(mount):
    """A store with one synthetic image per (format, arch), mounted."""
    images = {}
    for fmt, options, arch in WRITERS:
        name = f"{fmt}-{arch}.img"
        images[name] = write_image(mount.store / name, fmt, arch, options=options)
    mount.mount()
    return mount, images


def test_tree_lists_every_image_with_contract_files(demo):
    mount, images = demo
    listing = mount.sh("ls").stdout.split()
    assert listing == sorted(["README", "checkpoint", "restart", *images])
    for name in images:
        top = set(os.listdir(mount / name))
        assert {"format", "header", "verify", "records", "tasks"} <= top
        assert "error" not in top
    found = mount.sh("find . -name maps").stdout.split()
    assert len(found) == len(images)
    assert mount.sh("ls -R").returncode == 0


def test_format_verify_and_records_files(demo):
    mount, images = demo
    for name, image in images.items():
        fmt = (mount / name / "format").read_text()
        assert fmt.endswith(f" {image.arch}\n")
        assert (mount / name / "verify").read_text().endswith("result: sound\n")
        cli = subprocess.run(CRFS + ["records", str(mount.store / name)], capture_output=True,
                             text=True, check=True).stdout
        assert (mount / name / "records").read_text() == cli


def test_task_files_match_the_model(demo):
    mount, images = demo
    for name, image in images.items():
        task = image.tasks[0]
        tdir = task_dir(mount, name, task.pid)
        assert (tdir / "comm").read_text() == "synth\n"
        status = (tdir / "status").read_text()
        assert f"Pid:\t{task.pid}\n" in status and "Name:\tsynth\n" in status
        regs = dict(line.split() for line in (tdir / "regs").read_text().splitlines())
        ip = "rip" if image.arch == "x86_64" else "eip"
        assert int(regs[ip], 16) == task.regs[ip]
        assert int(regs["cs"], 16) == task.regs["cs"]
        maps = (tdir / "mm" / "maps").read_text()
        assert maps == render.maps(task.mm, image.arch), name
        assert "[heap]" in maps and "/usr/bin/synth" in maps


def test_vma_data_pages_and_mem_serve_the_page_bytes(demo):
    mount, images = demo
    for name, image in images.items():
        mm = image.tasks[0].mm
        tdir = task_dir(mount, name, image.tasks[0].pid)
        heap = mm.vmas[1]
        vdir = tdir / "mm" / "vmas" / render.vma_dirname(heap)
        data = (vdir / "data").read_bytes()
        assert data == mm.read(heap.start, heap.size)
        assert "pages dumped: 8" in (vdir / "info").read_text()
        page = (tdir / "pages" / f"{heap.start:08x}").read_bytes()
        assert page == data[:PAGE_SIZE]
        assert len(os.listdir(tdir / "pages")) == mm.page_count()
        # mem: offset = address; xxd and dd seek there.
        addr = heap.start + PAGE_SIZE + 8
        hexed = mount.sh(f"xxd -s {addr} -l 16 -p {tdir / 'mem'}").stdout.strip()
        assert bytes.fromhex(hexed) == mm.read(addr, 16)
        dd = subprocess.run(["dd", f"if={tdir / 'mem'}", "bs=4096", f"skip={heap.start // 4096}",
                             "count=2", "status=none"], capture_output=True, check=True)
        assert dd.stdout == data[:2 * PAGE_SIZE]


def test_mem_outside_every_vma_is_eio(demo):
    mount, images = demo
    image = images["ckpt-x86_64.img"]
    with open(task_dir(mount, "ckpt-x86_64.img", image.tasks[0].pid) / "mem", "rb") as mem:
        mem.seek(LAYOUT["x86_64"]["heap"] - PAGE_SIZE)
        with pytest.raises(OSError) as exc:
            mem.read(16)
        assert exc.value.errno == errno.EIO


def test_grep_finds_page_contents(demo):
    mount, images = demo
    image = images["ckpt-x86_64.img"]
    needle = image.tasks[0].mm.read(image.tasks[0].mm.vmas[1].start + 3 * PAGE_SIZE, 8)
    pattern = "".join(f"\\x{b:02x}" for b in needle)
    result = subprocess.run(["grep", "-rlaP", "--", pattern,
                             str(mount / "ckpt-x86_64.img" / "tasks")],
                            capture_output=True, check=False, env={"LC_ALL": "C"})
    hits = result.stdout.decode().split()
    assert any(h.endswith("/data") for h in hits)
    assert any(h.endswith(f"/{image.tasks[0].mm.vmas[1].start + 3 * PAGE_SIZE:08x}")
               for h in hits)


def test_sizes_modes_and_times(demo):
    mount, images = demo
    image = images["cr-i386.img"]
    tdir = task_dir(mount, "cr-i386.img", image.tasks[0].pid)
    st = os.stat(tdir / "status")
    assert stat.S_IMODE(st.st_mode) == 0o444 and stat.S_ISREG(st.st_mode)
    assert st.st_size == len((tdir / "status").read_bytes())
    assert stat.S_IMODE(os.stat(tdir).st_mode) == 0o555
    assert int(st.st_mtime) == image.time
    heap = image.tasks[0].mm.vmas[1]
    assert os.stat(tdir / "mm" / "vmas" / render.vma_dirname(heap) / "data").st_size == heap.size
    with pytest.raises(OSError):
        open(tdir / "comm", "w")


def test_store_is_live(mount):
    write_image(mount.store / "a.img", "ckpt", "x86_64")
    mount.mount()
    assert os.listdir(mount.path) == ["README", "restart", "checkpoint", "a.img"]
    write_image(mount.store / "b.img", "cpt", "i386")
    assert "b.img" in os.listdir(mount.path)
    assert "openvz" in (mount / "b.img" / "format").read_text()
    # Replace b.img by an image of another format: never served from the old index.
    tmp = mount.store / ".b.tmp"
    write_image(tmp, "cr", "i386", options={"dialect": "cr_hdr v4"})
    os.replace(tmp, mount.store / "b.img")
    assert "cr_hdr" in (mount / "b.img" / "format").read_text()
    os.unlink(mount.store / "a.img")
    assert "a.img" not in os.listdir(mount.path)
    assert not os.path.exists(mount / "a.img" / "format")


def test_corrupt_image_shows_error_and_disturbs_nothing(mount):
    write_image(mount.store / "good.img", "ckpt", "x86_64")
    data = bytearray((mount.store / "good.img").read_bytes())
    (mount.store / "cut.img").write_bytes(data[:len(data) // 2])
    (mount.store / "junk.img").write_bytes(b"not an image at all\n")
    mount.mount()
    assert sorted(os.listdir(mount / "cut.img")) == ["error", "verify"]
    assert "offset 0x" in (mount / "cut.img" / "error").read_text()
    assert (mount / "cut.img" / "verify").read_text().endswith("result: unsound\n")
    assert "unknown magic" in (mount / "junk.img" / "error").read_text()
    assert (mount / "good.img" / "verify").read_text().endswith("result: sound\n")


def test_parallel_readers_get_consistent_bytes(mount):
    names = []
    for i in range(4):
        name = f"img{i}.img"
        write_image(mount.store / name, "ckpt", "x86_64", heap_pages=256, pid=100 + i,
                    seed=i)
        names.append((name, 100 + i))
    mount.mount()
    heap = LAYOUT["x86_64"]["heap"]

    def digest(job):
        name, pid = job
        path = task_dir(mount, name, pid) / "mm" / "vmas" / f"{heap:08x}-{heap + 256 * 4096:08x}"
        out = subprocess.run(["cat", str(path / "data")], capture_output=True, check=True)
        return name, hashlib.sha256(out.stdout).hexdigest()

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(digest, names * 4))
    by_name = {}
    for name, h in results:
        by_name.setdefault(name, set()).add(h)
    assert all(len(hashes) == 1 for hashes in by_name.values())
    assert len({next(iter(h)) for h in by_name.values()}) == len(names)


def test_restart_without_module_fails_on_close_with_status(mount, tmp_path):
    img = tmp_path / "p.img"
    write_image(img, "ckpt", "x86_64")
    mount.mount()
    cp = subprocess.run(["cp", str(img), str(mount / "restart" / "p.img")],
                        capture_output=True, text=True)
    if os.path.exists("/dev/crfs"):
        pytest.skip("the crfs module is loaded here")
    assert cp.returncode != 0
    assert "No such device" in cp.stderr
    status = (mount / "restart" / "p.img.status").read_text()
    assert "state: failed" in status and "kernel module is not loaded" in status
    assert not [n for n in os.listdir(mount.store) if n.startswith(".crfs-")]


def test_lazy_option_mounts_and_restart_box_still_refuses_without_module(mount, tmp_path):
    """-o lazy is a crfs option (mount.fuse passes it through): the mount comes up, and
    restart/ without the kernel module fails as without lazy (the guest step "lazy"
    restarts through such a mount for real)."""
    img = tmp_path / "p.img"
    write_image(img, "ckpt", "x86_64")
    mount.mount("-o", "lazy")
    cp = subprocess.run(["cp", str(img), str(mount / "restart" / "p.img")],
                        capture_output=True, text=True)
    if os.path.exists("/dev/crfs"):
        pytest.skip("the crfs module is loaded here")
    assert cp.returncode != 0 and "No such device" in cp.stderr
    assert "state: failed" in (mount / "restart" / "p.img.status").read_text()


def test_restart_rejects_unsound_and_unsupported_images(mount, tmp_path):
    write_image(tmp_path / "old.img", "cpt", "i386")
    data = (tmp_path / "old.img").read_bytes()
    (tmp_path / "half.img").write_bytes(data[:len(data) // 2])
    write_image(tmp_path / "full.img", "ckpt", "x86_64")
    (tmp_path / "cut.img").write_bytes((tmp_path / "full.img").read_bytes()[:-16])
    mount.mount()
    for name, why in (("cut.img", "rejected"), ("old.img", "only linux-cr ckpt_hdr")):
        cp = subprocess.run(["cp", str(tmp_path / name), str(mount / "restart")],
                            capture_output=True, text=True)
        assert cp.returncode != 0, name
        assert why in (mount / "restart" / f"{name}.status").read_text()


def test_mount_through_mount_t_fuse(tmp_path):
    if not shutil.which("crfs", path="/usr/local/bin:/usr/bin:/bin"):
        pytest.skip("crfs is not installed where mount.fuse finds it (run .ci/setup)")
    m = Mount(tmp_path)
    write_image(m.store / "x.img", "ckpt", "x86_64")
    subprocess.run(["mount", "-t", "fuse", "crfs", str(m.path), "-o",
                    f"store={m.store},log={m.log}"], check=True, timeout=60)
    try:
        assert (m / "x.img" / "format").read_text().startswith("linux-cr ckpt_hdr")
    finally:
        subprocess.run(["umount", str(m.path)], check=True)
    assert not os.path.ismount(m.path)


def test_mount_errors_are_one_line(tmp_path):
    missing = subprocess.run(CRFS + [str(tmp_path / "nope"), "-o", f"store={tmp_path}"],
                             capture_output=True, text=True)
    assert missing.returncode == 1
    assert missing.stderr.strip().count("\n") == 0 and "does not exist" in missing.stderr
    bad = subprocess.run(CRFS + [str(tmp_path), "-o", "frobnicate"], capture_output=True,
                         text=True)
    assert bad.returncode == 1 and "unknown mount option" in bad.stderr


def test_already_mounted_is_refused(mount):
    mount.mount()
    again = subprocess.run(CRFS + [str(mount.path), "-o", f"store={mount.store}"],
                           capture_output=True, text=True)
    assert again.returncode == 1 and "already mounted" in again.stderr


def test_store_is_created_and_readme_explains(tmp_path):
    m = Mount(tmp_path)
    store = tmp_path / "new-store"
    subprocess.run(CRFS + [str(m.path), "-o", f"store={store},log={m.log}"], check=True)
    try:
        assert store.is_dir()
        assert "restart/" in (m / "README").read_text()
    finally:
        m.unmount()


def test_killed_writer_never_restarts(mount, tmp_path):
    write_image(tmp_path / "p.img", "ckpt", "x86_64", heap_pages=64)
    data = (tmp_path / "p.img").read_bytes()
    mount.mount()
    target = mount / "restart" / "p.img"
    # Write half the image, then die by SIGKILL with the file still open.
    script = ("import os, signal, sys\n"
              f"fd = os.open({str(target)!r}, os.O_WRONLY | os.O_CREAT, 0o600)\n"
              "os.write(fd, sys.stdin.buffer.read())\n"
              "os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", script], input=data[:len(data) // 2])
    assert proc.returncode == -9
    status = (mount / "restart" / "p.img.status").read_text()
    assert "state: rejected" in status
    assert "offset 0x" in status or "FAIL" in status or "records" in status
    assert not [n for n in os.listdir(mount.store) if n.startswith(".crfs-")]


def test_only_root_or_owner_may_write_restart():
    if os.getuid() != 0:
        pytest.skip("needs root to act as another user")
    # pytest's tmp dirs are private to root: use one that user nobody can walk through.
    with tempfile.TemporaryDirectory(prefix="crfs-perm-") as tmp:
        tmp = Path(tmp)
        os.chmod(tmp, 0o755)
        m = Mount(tmp)
        write_image(tmp / "p.img", "ckpt", "x86_64")
        os.chmod(tmp / "p.img", 0o644)
        write_image(m.store / "s.img", "cpt", "i386")
        m.mount("-o", "allow_other")
        try:
            cp = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                 "cp", str(tmp / "p.img"), str(m / "restart" / "x.img")],
                                capture_output=True, text=True)
            assert cp.returncode != 0
            assert "Permission denied" in cp.stderr
            assert not (m / "restart" / "x.img.status").exists()
            # Reading the tree is fine for everyone.
            ls = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                 "ls", str(m.path)], capture_output=True, text=True)
            assert "s.img" in ls.stdout
        finally:
            m.unmount()
        assert not errors_in_log(m.log_text())


def test_fd_links_and_fdinfo_of_open_files(mount, run_golden):
    """tests/c/ckpt_files_golden.c's image: fd/<n> are symlinks as /proc shows them,
    fdinfo/<n> their position and flags; ls -l, readlink and cat read them."""
    path, expected = run_golden("ckpt_files_golden", 64)
    shutil.copy(path, mount.store / "files.ckpt")
    mount.mount()
    fd_dir = mount / "files.ckpt" / "tasks" / "700" / "fd"
    want = {fd["fd"]: fd for fd in expected["tasks"][0]["fds"]}
    assert sorted(int(n) for n in os.listdir(fd_dir)) == sorted(want)
    listing = mount.sh("ls -l files.ckpt/tasks/700/fd").stdout
    assert "1 -> /var/log/golden app.log" in listing and "3 -> pipe:[5]" in listing
    assert mount.sh("readlink files.ckpt/tasks/800/fd/6").stdout == "/tmp/scratch (deleted)\n"
    for fd, info in want.items():
        file = info["file"]
        link = f"pipe:[{file['pipe']}]" if file["kind"] == "pipe" else file["path"]
        assert os.readlink(fd_dir / str(fd)) == link
        assert stat.S_ISLNK(os.lstat(fd_dir / str(fd)).st_mode)
        flags = file["flags"] | (0o2000000 if info["cloexec"] else 0)
        text = mount.sh(f"cat files.ckpt/tasks/700/fdinfo/{fd}").stdout
        assert text.startswith(f"pos:\t{file['pos']}\nflags:\t0{flags:o}\n")
    assert "eventfd-count:        100000005\n" in (fd_dir / ".." / "fdinfo" / "7").read_text()
    assert (fd_dir / ".." / "fdinfo" / "1").read_text() == (     # O_ASYNC, F_SETOWN, F_SETSIG
        "pos:\t1234\nflags:\t022001\ncrfs-owner:\tpid 4242\ncrfs-signum:\t29\n")
    child = mount / "files.ckpt" / "tasks" / "800"
    assert (child / "fdinfo" / "9").read_text().endswith(
        "clockid: 1\nticks: 3\nsettime flags: 01\nit_value: (4, 999936421)\n"
        "it_interval: (1, 0)\n")
    assert (child / "fdinfo" / "10").read_text() == (
        f"pos:\t0\nflags:\t0{0o4000 | 0o2000000:o}\nsigmask:\t8000000000000200\n")
    assert os.readlink(child / "fd" / "10") == "anon_inode:[signalfd]"
    assert os.readlink(child / "fd" / "11") == "anon_inode:[eventpoll]"
    assert (child / "fdinfo" / "11").read_text().splitlines()[2:] == [
        "tfd:        1 events:       19 data: 1122334455667788  pos:0",
        "tfd:       10 events: 80000001 data:                a  pos:0"]
    assert os.listdir(mount / "files.ckpt" / "tasks" / "701" / "fd") == os.listdir(fd_dir)
