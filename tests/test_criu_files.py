"""tasks/<pid>/fd/, fdinfo/, cwd and root of CRIU dumps (issue #15): the real criu 3.17
dumps of tests/data/criu mounted, read with readlink, ls and cat, and checked against
`crit show` of the same files.img, fdinfo-*.img and fs-*.img, and against the program's
own output file (the position of its stdout)."""

import os
import shutil

import pytest

from mountfs import Mount, errors_in_log
from test_criu import DATA, SCENARIOS, all_tids, crit

O_CLOEXEC = 0o2000000
CRIT_FLAGS = {"O_WRONLY": 0o1, "O_RDWR": 0o2, "O_APPEND": 0o2000, "O_NONBLOCK": 0o4000,
              "O_LARGEFILE": 0o100000, "O_DIRECTORY": 0o200000, "O_CLOEXEC": O_CLOEXEC}


@pytest.fixture(scope="module")
def files_mount(tmp_path_factory):
    mount = Mount(tmp_path_factory.mktemp("criu-files"))
    for name in SCENARIOS:
        shutil.copytree(DATA / name, mount.store / name)
    mount.mount()
    yield mount
    mount.unmount()
    assert not errors_in_log(mount.log_text()), mount.log_text()


def crit_fds(name, pid):
    """{fd: (path, f_flags, pos, cloexec)} of process `pid` from crit's JSON."""
    ids = crit(name, f"ids-{pid}") if (DATA / f"{name}.truth/crit/ids-{pid}.json").exists() \
        else None
    files_id = ids[0]["files_id"] if ids else crit(name, f"core-{pid}")[0]["ids"]["files_id"]
    files = {f["id"]: f for f in crit(name, "files")}
    out = {}
    for e in crit(name, f"fdinfo-{files_id}"):
        reg = files[e["id"]]["reg"]
        flags = sum(CRIT_FLAGS[w] for w in reg["flags"].split(" | ") if w)
        out[e["fd"]] = (reg["name"], flags, reg["pos"], bool(e["flags"] & 1))
    return out


@pytest.mark.parametrize("name", SCENARIOS)
def test_fd_links_and_fdinfo_match_crit(files_mount, name):
    for tid in all_tids(name):
        tdir = files_mount / name / "tasks" / str(tid)
        pid = int((tdir / "status").read_text().split("Tgid:\t")[1].split()[0])
        expected = crit_fds(name, pid)
        assert sorted(int(n) for n in os.listdir(tdir / "fd")) == sorted(expected)
        for fd, (path, flags, pos, cloexec) in expected.items():
            assert os.readlink(tdir / "fd" / str(fd)) == path
            info = files_mount.sh(f"cat {name}/tasks/{tid}/fdinfo/{fd}").stdout
            assert info == f"pos:\t{pos}\nflags:\t0{flags | (O_CLOEXEC if cloexec else 0):o}\n"
        listing = files_mount.sh(f"ls -l {name}/tasks/{tid}/fd/").stdout
        assert f"1 -> /tmp/crfs-criu/{name}/out.txt" in listing


@pytest.mark.parametrize("name", SCENARIOS)
def test_stdout_position_is_the_output_files_length(files_mount, name):
    """Every process of the scenario wrote its markers to out.txt (its fd 1) before the
    dump: the shared file position is the file's length then."""
    size = (DATA / f"{name}.truth" / "out.txt").stat().st_size
    for tid in all_tids(name):
        info = (files_mount / name / "tasks" / str(tid) / "fdinfo" / "1").read_text()
        assert info.startswith(f"pos:\t{size}\n")


@pytest.mark.parametrize("name", SCENARIOS)
def test_cwd_and_root_from_fs_image(files_mount, name):
    for tid in all_tids(name):
        tdir = files_mount / name / "tasks" / str(tid)
        assert (tdir / "cwd").read_text() == f"/tmp/crfs-criu/{name}\n"
        assert (tdir / "root").read_text() == "/\n"


# --------------------------------------------------------------------------- every kind

FILES_PID = int((DATA / "files.truth" / "out.txt").read_text().split()[1])


def proc_fdinfo(fd):
    return (DATA / "files.truth" / f"fdinfo-{FILES_PID}" / str(fd)).read_text().splitlines()


@pytest.fixture(scope="module")
def kinds_mount(tmp_path_factory):
    mount = Mount(tmp_path_factory.mktemp("criu-kinds"))
    shutil.copytree(DATA / "files", mount.store / "files")
    mount.mount()
    yield mount
    mount.unmount()
    assert not errors_in_log(mount.log_text()), mount.log_text()


def test_every_fd_links_as_proc_did(kinds_mount):
    """files_prog's file, pipe ends, socketpair, TCP listener, eventfd, timerfd,
    signalfd, epoll and memfd: fd/<n> reads as /proc/PID/fd/<n> did before the dump."""
    fd_dir = kinds_mount / "files" / "tasks" / str(FILES_PID) / "fd"
    expected = (DATA / "files.truth" / f"fd-{FILES_PID}.txt").read_text()
    shown = kinds_mount.sh(f"for f in $(ls {fd_dir} | sort -n); do "
                           f"echo $f $(readlink {fd_dir}/$f); done").stdout
    assert shown == expected


def test_every_fdinfo_as_proc_showed(kinds_mount):
    """pos and flags of every fd as /proc/PID/fdinfo; eventfd's count, signalfd's mask,
    epoll's watches (without ino and sdev, which the image lacks) and timerfd's clock,
    ticks, flags and interval as /proc showed them; the timer's time left is what criu
    saw at the dump, a little later: not more than at the record, and still running."""
    info_dir = kinds_mount / "files" / "tasks" / str(FILES_PID) / "fdinfo"
    for name in sorted(os.listdir(info_dir), key=int):
        # crfs's own lines of a UNIX socket (tests/test_criu_convert.py): /proc has none
        ours = [line for line in (info_dir / name).read_text().splitlines()
                if not line.startswith("unix-")]
        proc = [line for line in proc_fdinfo(name)
                if not line.startswith(("mnt_id:", "ino:", "scm_fds:", "eventfd-id:"))]
        if any(line.startswith("tfd:") for line in proc):
            proc = [line.split(" ino:")[0] for line in proc]
        if any(line.startswith("it_value:") for line in proc):
            left = [line for line in ours if line.startswith("it_value:")][0]
            then = [line for line in proc if line.startswith("it_value:")][0]
            seconds = [int(s) + int(ns) / 1e9 for s, ns in
                       (v.split(": ")[1].strip("()").split(", ") for v in (left, then))]
            assert 0 < seconds[0] <= seconds[1], (left, then)
            ours.remove(left)
            proc.remove(then)
        assert ours == proc, name
