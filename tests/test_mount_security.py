"""Who may read and write what through a mount with allow_other (docs/security.md).

Root mounts and owns the store; user nobody (65534) is the other user. Every check is made
on a real mount, with the other user's commands run through setpriv.
"""

import hashlib
import os
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from mountfs import Mount, errors_in_log, write_image

NOBODY = 65534

pytestmark = pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another user")


def as_user(*command, uid=NOBODY, gid=NOBODY, groups=None, stdin=None):
    """Run `command` as another user; CompletedProcess (text)."""
    ids = ["--groups=" + ",".join(map(str, groups))] if groups else ["--clear-groups"]
    return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", *ids, "--",
                           *map(str, command)], capture_output=True, text=True, input=stdin,
                          timeout=60)


def python_as_user(script, **kwargs):
    return as_user(sys.executable, "-c", script, **kwargs)


def read_as(path, **kwargs):
    """Open `path` as another user and read a byte (mem: at no address, just open it)."""
    return python_as_user(f"f = open({str(path)!r}, 'rb')\n"
                          f"{str(Path(path).name)!r} == 'mem' or f.read(1)\n", **kwargs)


def denied(result):
    return result.returncode != 0 and "Permission denied" in (result.stderr + result.stdout)


@pytest.fixture
def world():
    """A directory every user may walk through (pytest's tmp dirs are root's only)."""
    with tempfile.TemporaryDirectory(prefix="crfs-sec-") as tmp:
        tmp = Path(tmp)
        os.chmod(tmp, 0o755)
        yield tmp


@pytest.fixture
def shared(world):
    """A store (0755) mounted with allow_other; unmounted and its log checked at the end."""
    m = Mount(world)
    os.chmod(m.store, 0o755)
    yield m
    m.unmount()
    assert not errors_in_log(m.log_text()), m.log_text()


# --- 1. restart/ uploads belong to their writer ---------------------------------------

def test_another_user_cannot_take_over_an_upload(shared, world):
    write_image(world / "p.img", "ckpt", "x86_64")
    shared.mount("-o", "allow_other")
    target = shared / "restart" / "x.img"
    fd = os.open(target, os.O_RDWR | os.O_CREAT, 0o600)   # root's copy, still open
    try:
        os.write(fd, (world / "p.img").read_bytes()[:100])
        st = os.stat(target)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o600)
        takeover = python_as_user(
            "import os\n"
            f"fd = os.open({str(target)!r}, os.O_RDWR)\n"
            "os.pwrite(fd, b'NOT ROOTS IMAGE', 0)\n"
            "os.close(fd)\n")
        assert denied(takeover), takeover
        for flags in ("os.O_RDONLY", "os.O_WRONLY | os.O_APPEND"):
            other = python_as_user(f"import os; os.open({str(target)!r}, {flags})")
            assert denied(other), (flags, other)
        assert denied(as_user("truncate", "-s", "0", target))
        # (Root's own upload is flushed, and rejected, whenever a child closes its copy
        # of the descriptor on exec: that is root's business. Its bytes are root's.)
        assert os.pread(fd, 100, 0) == (world / "p.img").read_bytes()[:100]
    finally:
        try:
            os.close(fd)
        except OSError:
            pass


# --- 2. the mount never shows anyone more than the store does -------------------------

def image_paths(mount, name, image):
    """Files of image `name` that hold its contents, as root sees them."""
    task = mount / name / "tasks" / str(image.tasks[0].pid)
    page = sorted(os.listdir(task / "pages"))[0]
    return [mount / name / "format", mount / name / "verify", mount / name / "records",
            task / "mem", task / "pages" / page, task / "status", task / "core"]


def test_a_root_only_image_is_root_only_through_the_mount(shared):
    secret = write_image(shared.store / "secret.img", "ckpt", "x86_64")
    public = write_image(shared.store / "public.img", "ckpt", "x86_64")
    os.chmod(shared.store / "secret.img", 0o600)
    os.chmod(shared.store / "public.img", 0o644)
    shared.mount("-o", "allow_other")
    secret_files = image_paths(shared, "secret.img", secret)    # root may: cached now
    for path in secret_files:
        with open(path, "rb") as f:
            assert path.name == "mem" or f.read(1), path
    task = secret_files[3].parent
    for path in secret_files:
        assert denied(read_as(path)), path
    for directory in (shared / "secret.img", task, task / "pages", task / "mm" / "vmas"):
        assert denied(as_user("ls", directory)), directory
    st = os.stat(shared / "secret.img")
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o500)
    assert stat.S_IMODE(os.stat(secret_files[3]).st_mode) == 0o400
    # The readable image stays readable by everyone.
    for path in image_paths(shared, "public.img", public):
        assert read_as(path).returncode == 0, path
    assert stat.S_IMODE(os.stat(shared / "public.img").st_mode) == 0o555


def test_an_unreadable_broken_image_keeps_its_error_to_itself(shared):
    (shared.store / "junk.img").write_bytes(b"not an image at all\n")
    os.chmod(shared.store / "junk.img", 0o600)
    shared.mount("-o", "allow_other")
    assert "unknown magic" in (shared / "junk.img" / "error").read_text()
    for name in ("error", "verify"):
        assert denied(as_user("cat", shared / "junk.img" / name)), name


def test_group_read_is_for_the_group(shared):
    image = write_image(shared.store / "team.img", "ckpt", "x86_64")
    os.chown(shared.store / "team.img", 0, 4242)
    os.chmod(shared.store / "team.img", 0o640)
    shared.mount("-o", "allow_other")
    mem = image_paths(shared, "team.img", image)[3]
    assert denied(read_as(mem))
    assert read_as(mem, groups=[4242]).returncode == 0     # supplementary
    assert read_as(mem, gid=4242).returncode == 0
    assert os.stat(shared / "team.img").st_gid == 4242


def test_a_chmod_in_the_store_counts_at_once(shared):
    image = write_image(shared.store / "a.img", "ckpt", "x86_64")
    os.chmod(shared.store / "a.img", 0o644)
    shared.mount("-o", "allow_other")
    mem = image_paths(shared, "a.img", image)[3]
    assert read_as(mem).returncode == 0
    os.chmod(shared.store / "a.img", 0o600)
    assert denied(read_as(mem))
    # Every file of the tree, though the kernel has cached them since before the chmod.
    assert denied(as_user("sh", "-c", f"cat {mem.parent}/status"))
    os.chmod(shared.store / "a.img", 0o644)
    assert read_as(mem).returncode == 0


def test_a_private_store_is_private_through_the_mount(shared):
    image = write_image(shared.store / "a.img", "ckpt", "x86_64")
    os.chmod(shared.store / "a.img", 0o644)
    os.chmod(shared.store, 0o700)
    shared.mount("-o", "allow_other")
    files = image_paths(shared, "a.img", image)
    assert denied(as_user("ls", shared.path))
    for path in files:
        assert denied(read_as(path)), path
    assert subprocess.run(["ls", shared.path], capture_output=True).returncode == 0
    # A store reached through a directory others cannot search is as private.
    os.chmod(shared.store, 0o755)
    os.chmod(shared.store.parent, 0o700)
    try:
        assert denied(read_as(files[3]))
    finally:
        os.chmod(shared.store.parent, 0o755)
    assert read_as(files[3]).returncode == 0


# --- 3. nothing in the store is followed; restart logs are private --------------------

def test_links_in_the_store_are_never_followed(shared, world):
    write_image(shared.store / "real.img", "ckpt", "x86_64")
    secret = world / "shadow"
    secret.write_text("root:secret-hash:19000:0:99999:7:::\n")
    os.chmod(secret, 0o600)
    os.symlink(secret, shared.store / "shadow.img")
    os.symlink(shared.store / "real.img", shared.store / "link.img")
    shared.mount("-o", "allow_other")
    assert os.listdir(shared.path) == ["README", "restart", "checkpoint", "real.img"]
    for name in ("shadow.img", "link.img"):
        assert not os.path.exists(shared / name), name
        assert not os.path.exists(shared / name / "error"), name
    grep = subprocess.run(["grep", "-rl", "secret-hash", shared.path], capture_output=True)
    assert grep.stdout == b""       # nothing found anywhere (as root)
    # Swapped for a link after it was listed: still not followed.
    os.replace(shared.store / "shadow.img", shared.store / "real.img")
    assert not os.path.exists(shared / "real.img")


# The daemon, taking /dev/null for the module: its side of a restart, with a fake restarter.
FAKE_MODULE_DAEMON = [sys.executable, "-c", "import sys, crfs.kernel as k; "
                      "k.DEVICE = '/dev/null'; from crfs.cli import main; sys.exit(main())"]


def mount_with_restarter(shared, world, body, *options):
    """Mount `shared` with a daemon that takes /dev/null for the module and runs, as its
    restarter, a Python script of `body` (argv as crfs-restart's: sys.argv[4] is the report
    fd, the last argument the image): the daemon's side of a restart, on a real mount."""
    script = world / "fake-restart"
    script.write_text(f"#!{sys.executable}\nimport glob, hashlib, os, sys\n{body}")
    script.chmod(0o755)
    subprocess.run(FAKE_MODULE_DAEMON + [str(shared.path), *shared.options(), *options],
                   check=True, timeout=60, env={**os.environ, "CRFS_RESTARTER": str(script)})
    assert os.path.ismount(shared.path)


def restart_log(shared, name, marker):
    """restart/<name>.log once the restarter has written `marker` there (or 10 s passed)."""
    log = shared / "restart" / f"{name}.log"
    deadline = time.time() + 10
    while marker not in log.read_bytes() and time.time() < deadline:
        time.sleep(0.05)
    return log


def test_restart_log_is_new_private_and_never_through_a_link(shared, world):
    write_image(world / "p.img", "ckpt", "x86_64")
    victim = world / "victim"
    victim.write_text("precious\n")
    # Where the log went before: .crfs-restart-<serial>-<name>.log, a name anyone could
    # guess (and plant a link at, in a store they may write to).
    for serial in range(1, 4):
        os.symlink(victim, shared.store / f".crfs-restart-{serial}-p.img.log")
    # "Restores": closes its report fd and prints.
    mount_with_restarter(shared, world, "os.close(int(sys.argv[4]))\nprint('restored output')\n",
                         "-o", "allow_other")
    subprocess.run(["cp", str(world / "p.img"), str(shared / "restart" / "p.img")], check=True)
    log = restart_log(shared, "p.img", b"restored output")
    assert log.read_bytes() == b"restored output\n"
    assert victim.read_text() == "precious\n"
    logs = [n for n in os.listdir(shared.store) if n.endswith(".log") and
            not os.path.islink(shared.store / n)]
    assert len(logs) == 1
    st = os.lstat(shared.store / logs[0])
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o600, 0)
    st = os.stat(log)
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o400, 0)
    assert denied(read_as(log))
    assert read_as(shared / "restart" / "p.img.status").returncode == 0


def test_restarter_gets_the_checked_upload_even_if_the_store_swaps_it(shared, world):
    """The file the daemon verified is the file the restarter reads: in a store others may
    write to, the upload's name swapped for another file between the check and the
    restarter's open changes nothing (the restarter is handed the daemon's fd)."""
    write_image(world / "p.img", "ckpt", "x86_64")
    write_image(world / "evil.img", "ckpt", "i386")
    # Plays the other writer of the store, then reads what it was given, as crfs-restart.
    mount_with_restarter(shared, world, (
        f"for path in glob.glob({str(shared.store)!r} + '/.crfs-restart-*-p.img'):\n"
        f"    os.replace({str(world / 'evil.img')!r}, path)\n"
        "data = open(sys.argv[-1], 'rb').read()\n"
        "os.close(int(sys.argv[4]))\n"
        "print('read', hashlib.sha256(data).hexdigest(), flush=True)\n"))
    expected = hashlib.sha256((world / "p.img").read_bytes()).hexdigest()
    subprocess.run(["cp", str(world / "p.img"), str(shared / "restart" / "p.img")], check=True)
    log = restart_log(shared, "p.img", b"read")
    assert log.read_text() == f"read {expected}\n"
    assert not (world / "evil.img").exists()    # the swap did happen


def test_open_private_refuses_what_is_there(tmp_path):
    from crfs.fs.restart import open_private
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    os.symlink(victim, tmp_path / "log")
    with pytest.raises(FileExistsError):
        open_private(tmp_path / "log", NOBODY, NOBODY)
    assert victim.read_text() == "precious\n"
    old = os.umask(0)
    try:
        with open_private(tmp_path / "new", NOBODY, NOBODY) as out:
            out.write(b"x")
    finally:
        os.umask(old)
    st = os.stat(tmp_path / "new")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o600, NOBODY, NOBODY)
