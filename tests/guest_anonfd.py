"""Guest side of the anon-inode file tests (tests/test_kmod_guest.py, step "anonfd";
kmod/crfs_anonfd.c, kmod/crfs_ckpt_anon.c, crfs-restart's "anon-inode files").

anonfd_target (tests/c/anonfd_target.c: an eventfd and its dup, timerfds, a signalfd, an
epoll watching the eventfd, the signalfd and a pipe holding bytes) is checkpointed both
ways (`crfs checkpoint --via ptrace` and `--via kernel`), restarted by crfs-restart, and
runs its own checks. Then the refusals: malformed FILE records (CHECK), and files handed
in that lie about the image (RESTART_FILES, in a forked child). Runs inside the guest;
decides nothing.
"""

import os
import struct
import subprocess
import sys

import guest_files as gf
from crfs import kernel
from guest_util import in_child, stage

WORK = "/tmp/crfs-anonfd"
EPOLL_ITEMS = 308
FILE_PIPE, FILE_EPOLL, FILE_EVENTFD, FILE_TIMERFD, FILE_SIGNALFD = 2, 6, 7, 100, 101
ANON_FDS = range(4, 13)


def fdinfo_of(pid):
    """{fd: fdinfo text without pos/mnt_id/ino lines} of the anon fds and the pipe."""
    out = {}
    for fd in ANON_FDS:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        keep = [line for line in lines if not line.startswith(("mnt_id", "ino", "pos"))]
        out[fd] = [link, *keep]
    return out


def files_of(image):
    """{objref: (f_type, f_flags, pipe_objref, offset of its FILE)} of an image."""
    data, objects = gf.file_objects(image)
    files = {}
    for objref, offset in objects:
        f_type, _, f_flags = struct.unpack_from("<III", data, offset + 8)
        pipe = struct.unpack_from("<i", data, offset + 48)[0] if f_type == FILE_PIPE else 0
        files[objref] = (f_type, f_flags, pipe, offset)
    return files


def run_one(label, exe, work, restarter, via):
    """anonfd_target checkpointed `via` ptrace or kernel, restarted, checked."""
    return run_target(label, exe, work, restarter, via, fdinfo_of)


def run_target(label, exe, work, restarter, via, snapshot):
    """A target of tests/c/target_loop.h (EXE WORK 6000) started, checkpointed --kill `via`
    ptrace or kernel, restarted by crfs-restart and told to stop (WORK/stop): (result, image
    or None). `snapshot(pid)` is taken of the original and of the restored program."""
    out_path = os.path.join(work, f"{label}.out")
    image = os.path.join(work, f"{label}.img")
    with open(out_path, "w") as out:
        proc = subprocess.Popen(["setarch", "-R", exe, work, "6000"], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT)
    gf.wait_lines(out_path, 5)
    result = {"before": snapshot(proc.pid)}
    ck = subprocess.run([sys.executable, "-m", "crfs", "checkpoint", str(proc.pid), "-o", image,
                         "--kill", "--via", via], capture_output=True, text=True, timeout=120)
    result["checkpoint"] = {"rc": ck.returncode, "stderr": ck.stderr[-2000:]}
    if ck.returncode:
        proc.kill()
    proc.wait(timeout=60)
    with open(out_path) as f:
        result["lines_before"] = f.read().splitlines()
    if ck.returncode:
        return result, None
    os.chmod(image, 0o644)
    child = gf.restart(image, restarter, os.path.join(work, f"{label}.restart"))
    result["restart"] = gf.outcome(child)
    if child.errno == 0:
        gf.wait_lines(out_path, len(result["lines_before"]) + 3)
        result["after"] = snapshot(child.pid)
        with open(os.path.join(work, "stop"), "w"):
            pass
        result["exit"] = gf.end_of(child)
        os.unlink(os.path.join(work, "stop"))
    with open(out_path) as f:
        result["lines"] = f.read().splitlines()
    return result, image


def check_outcome(image, with_type=False):
    """CHECK of `image`: {"errno": 0} or its errno name and reason (and record type)."""
    try:
        with kernel.Device() as dev, open(image, "rb") as f:
            dev.check(f.fileno())
        return {"errno": 0}
    except kernel.KernelError as exc:
        out = {"errno": gf.errno_name(exc.errno), "msg": exc.reason}
        return {**out, "type": exc.record_type} if with_type else out


def fields_refused(image, patches):
    """{label: CHECK outcome} of copies of `image`, each with one field set:
    `patches` is {label: (offset, struct format, value)}."""
    out = {}
    for label, (offset, fmt_, value) in patches.items():
        bad = gf.patch(image, f"{image}.{label}",
                       lambda data, recs, o=offset, f=fmt_, v=value: struct.pack_into(f, data,
                                                                                     o, v))
        out[label] = check_outcome(bad)
    return out


def patched_records(image, files):
    """Malformed anon FILE records, each refused by CHECK (errno, reason)."""
    first = {}
    for objref, (f_type, _, _, offset) in sorted(files.items()):
        first.setdefault(f_type, offset)
    patches = {
        "eventfd_flags": (first[FILE_EVENTFD] + 56, "<I", 0x100),
        "eventfd_count_max": (first[FILE_EVENTFD] + 48, "<Q", (1 << 64) - 1),
        "eventfd_rdonly": (first[FILE_EVENTFD] + 16, "<I", 0o4000),
        "timerfd_clock": (first[FILE_TIMERFD] + 48, "<i", 99),
        "timerfd_flags": (first[FILE_TIMERFD] + 52, "<I", 8),
        "timerfd_value": (first[FILE_TIMERFD] + 56, "<Q", 1 << 63),
        "signalfd_flags": (first[FILE_SIGNALFD] + 56, "<I", 1),
        "epoll_long": (first[FILE_EPOLL] + 4, "<I", 64),    # the record's len
    }
    return fields_refused(image, patches)


def handed_call(image, handed, **kw):
    """RESTART_FILES in a forked child: its errno and reason (it must fail)."""
    def call():
        try:
            with kernel.Device() as dev, open(image, "rb") as f:
                dev.restart_files(f.fileno(), handed, **kw)
        except kernel.KernelError as exc:
            return {"errno": gf.errno_name(exc.errno), "msg": exc.reason}
        return {"errno": 0}
    return in_child(call, {"errno": "no answer"})


def lying_tables(image, files, restarter, work):
    """Tables of handed files that do not fit the image: refused before anything changes."""
    by_type = {}
    for objref, (f_type, f_flags, pipe, _) in sorted(files.items()):
        by_type.setdefault(f_type, []).append((objref, f_flags, pipe))
    efd_ref = by_type[FILE_EVENTFD][0][0]
    tfd_ref = by_type[FILE_TIMERFD][0][0]
    log_ref = min(o for o, v in files.items() if v[0] == 1)
    pipe_ends = {f_flags & 3: objref for objref, f_flags, _ in by_type[FILE_PIPE]}
    good_efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    blocking_efd = os.eventfd(0, os.EFD_CLOEXEC)
    pr, pw = os.pipe2(os.O_CLOEXEC)
    qr, qw = os.pipe2(os.O_CLOEXEC)
    out = {}
    try:
        out["pipe_as_eventfd"] = handed_call(image, [(efd_ref, pr)])
        out["eventfd_as_timerfd"] = handed_call(image, [(tfd_ref, good_efd)])
        out["unknown_objref"] = handed_call(image, [(99999, good_efd)])
        out["regular_file_objref"] = handed_call(image, [(log_ref, good_efd)])
        out["objref_twice"] = handed_call(image, [(efd_ref, good_efd), (efd_ref, good_efd)])
        out["objref_zero"] = handed_call(image, [(0, good_efd)])
        out["fd_not_open"] = handed_call(image, [(efd_ref, 999)])
        out["too_many"] = handed_call(image, [(efd_ref, good_efd)],
                                      nr_handed=kernel.CRFS_MAX_HANDED + 1)
        out["reserved"] = handed_call(image, [(efd_ref, good_efd)], reserved=1)
        out["nonblock_differs"] = handed_call(image, [(efd_ref, blocking_efd)])
        out["pipe_wrong_mode"] = handed_call(image, [(pipe_ends[0], pw), (pipe_ends[1], pw)])
        out["pipe_two_pipes"] = handed_call(image, [(pipe_ends[0], pr), (pipe_ends[1], qw)])
        out["pipe_one_end"] = handed_call(image, [(pipe_ends[0], pr)])
    finally:
        for fd in (good_efd, blocking_efd, pr, pw, qr, qw):
            os.close(fd)
    # crfs-restart -A hands nothing in: the kernel refuses the first anon fd
    out["not_handed_in"] = gf.outcome(gf.restart(image, restarter,
                                                 os.path.join(work, "none.out"), ("-A",)))
    out.update(restarter_refusals(image, log_ref, restarter))
    return out


def restarter_refusals(image, log_ref, restarter):
    """EPOLL_ITEMS that crfs-restart refuses before it calls the kernel (stage anon-files):
    a watch of a regular file, a count its BUFFER does not hold."""
    def items_at(recs):
        return [offset for offset, type_, _ in recs if type_ == EPOLL_ITEMS][0]

    def watch_log(data, recs):      # item 0's file_objref: the log file
        struct.pack_into("<i", data, items_at(recs) + 16 + 8 + 12, log_ref)

    def count_lies(data, recs):
        struct.pack_into("<I", data, items_at(recs) + 12, 9)

    out = {}
    for label, fn in (("watch_regular_file", watch_log), ("items_count_lies", count_lies)):
        bad = gf.patch(image, f"{image}.{label}", fn)
        out[label] = gf.outcome(gf.restart(bad, restarter, f"{bad}.out"))
    return out


def anonfd_step(manifest):
    work = WORK
    exe = stage(work, {"anonfd_target": manifest["anonfd_target"]})["anonfd_target"]
    restarter = manifest["restarter"]
    result = {}
    try:
        result["ptrace"], image = run_one("ptrace", exe, work, restarter, "ptrace")
        result["kernel"], _ = run_one("kernel", exe, work, restarter, "kernel")
        if image:
            files = files_of(image)
            result["files"] = {str(k): list(v[:3]) for k, v in files.items()}
            result["records"] = patched_records(image, files)
            result["lying"] = lying_tables(image, files, restarter, work)
    except Exception as exc:      # noqa: BLE001 - reported, the other steps go on
        result["error"] = repr(exc)
    return result

