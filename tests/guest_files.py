"""Guest side of the file-table tests (tests/test_kmod_guest.py, step "files").

files_target (tests/c/files_target.c) holds a log file O_WRONLY|O_APPEND, a file at
position 1234 and a dup of it, a directory fd, /dev/null, /dev/zero, a pipe with bytes
buffered, a close-on-exec fd, and stdin from a pipe whose other end the test keeps. It is
checkpointed by `crfs checkpoint` and restarted by crfs-restart: what /proc says about its
fds before and after, its own checks, and how malformed or unreopenable file tables are
refused. Runs inside the guest; decides nothing.
"""

import errno
import os
import shutil
import struct
import subprocess
import sys
import time

from crfs import kernel

OBJREF, FILE_TABLE, FILE_DESC, FILE = 6, 301, 302, 304
OBJ_FILE = 3
WORK = "/tmp/crfs-files"     # short paths: they are named in 96-byte reasons


def file_objects(image):
    """(image bytes, [(objref, offset of its FILE record)]) of each FILE object of the
    image at path `image`."""
    with open(image, "rb") as f:
        data = f.read()
    out, last = [], None
    for offset, type_, _ in frames(data):
        if type_ == OBJREF:
            objtype, objref = struct.unpack_from("<Ii", data, offset + 8)
            last = objref if objtype == OBJ_FILE else None
        elif type_ == FILE and last is not None:
            out.append((last, offset))
            last = None
    return data, out


def fd_links(pid, fds):
    """{fd: its /proc/PID/fd link} of those of `fds` that `pid` has open."""
    out = {}
    for fd in fds:
        try:
            out[fd] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            pass
    return out


def frames(data):
    """[(offset, type, len)] of the records of a ckpt_hdr image."""
    from crfs.formats import ckpt as fmt
    out, offset = [], 0
    while offset + fmt.ckpt_hdr.sizeof() <= len(data):
        h = fmt.ckpt_hdr.parse(data[offset:offset + fmt.ckpt_hdr.sizeof()])
        if h.len < fmt.ckpt_hdr.sizeof():
            break
        out.append((offset, h.type, h.len))
        offset += h.len
    return out


def fds_of(pid):
    """{fd: [link, flags (octal text), pos]} of /proc/PID/fd and fdinfo."""
    out = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{name}")
            with open(f"/proc/{pid}/fdinfo/{name}") as f:
                info = dict(line.split(":", 1) for line in f.read().splitlines()
                            if ":" in line)
        except OSError:
            continue
        out[int(name)] = [link, info.get("flags", "").strip(), info.get("pos", "").strip()]
    return out


def patch(image, out, fn):
    with open(image, "rb") as f:
        data = bytearray(f.read())
    fn(data, frames(data))
    with open(out, "wb") as f:
        f.write(data)
    return out


def nth(recs, type_, n=0):
    return [r for r in recs if r[1] == type_][n][0]


def set_desc(field_offset, value, n=0, fmt_="<i"):
    """A patch: the n-th FILE_DESC's field at `field_offset` set to value."""
    def fn(data, recs):
        struct.pack_into(fmt_, data, nth(recs, FILE_DESC, n) + field_offset, value)
    return fn


def set_table_nfds(value):
    def fn(data, recs):
        struct.pack_into("<i", data, nth(recs, FILE_TABLE) + 8, value)
    return fn


def or_file_flags(bits, n=0):
    def fn(data, recs):
        off = nth(recs, FILE, n) + 16
        struct.pack_into("<I", data, off, struct.unpack_from("<I", data, off)[0] | bits)
    return fn


def errno_name(code):
    """errno name; EOPNOTSUPP rather than its alias ENOTSUP."""
    if code == errno.EOPNOTSUPP:
        return "EOPNOTSUPP"
    return errno.errorcode.get(code, code) if code else 0


def outcome(child):
    return {"errno": errno_name(child.errno),
            "msg": child.reason, "type": child.record_type, "stage": child.stage}


def restart(image, restarter, out_path, options=()):
    with open(out_path, "wb") as out:
        return kernel.restart_in_child(image, restarter=restarter, stdout=out, timeout=120,
                                       options=options)


def wait_lines(path, count, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(path) as f:
            text = f.read()
        if text.count("\n") >= count:
            return text.splitlines()
        time.sleep(0.05)
    with open(path) as f:
        return f.read().splitlines()


def end_of(child, timeout=60):
    try:
        child.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(os.getpgid(child.process.pid), 9)
        child.process.wait()
    return kernel.describe_exit(child.process.returncode)


def files_step(manifest, limit=6000):
    """The step: checkpoint files_target, refusals, then the restart that must work."""
    work = WORK
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    exe = os.path.join(work, "files_target")
    shutil.copy(manifest["files_target"], exe)
    restarter = manifest["restarter"]
    out_path = os.path.join(work, "files.out")
    image = os.path.join(work, "files.img")
    stdin_r, stdin_w = os.pipe()
    with open(out_path, "w") as out:
        proc = subprocess.Popen(["setarch", "-R", exe, work, str(limit)], stdin=stdin_r,
                                stdout=out, stderr=subprocess.STDOUT)
    os.close(stdin_r)
    wait_lines(out_path, 5)
    result = {"before": fds_of(proc.pid)}
    ck = subprocess.run([sys.executable, "-m", "crfs", "checkpoint", str(proc.pid), "-o",
                         image, "--kill", "--via", "ptrace"],
                        capture_output=True, text=True, timeout=120)
    result["checkpoint"] = {"rc": ck.returncode, "stderr": ck.stderr}
    proc.wait(timeout=60)
    with open(out_path) as f:
        result["lines_before"] = f.read().splitlines()
    if ck.returncode:
        os.close(stdin_w)
        return result
    result["refused"] = refusals(image, work, restarter)
    # the restart that works: fd 0 (a pipe whose writer is not in the image) is handed in
    child = restart(image, restarter, os.path.join(work, "restart.out"))
    result["restart"] = outcome(child)
    if child.errno == 0:
        wait_lines(out_path, len(result["lines_before"]) + 3)
        result["after"] = fds_of(child.pid)
        with open(os.path.join(work, "stop"), "w"):
            pass
        result["exit"] = end_of(child)
    os.close(stdin_w)
    with open(out_path) as f:
        result["lines"] = f.read().splitlines()
    with open(os.path.join(work, "files.log")) as f:
        result["log"] = f.read().splitlines()
    return result


def refusals(image, work, restarter):
    """Restarts that must fail with the caller intact: errno and reason of each."""
    out = {}
    # -S: the stdin pipe's other end is not in the image, and nothing is handed in
    out["strict_half_pipe"] = outcome(restart(image, restarter,
                                              os.path.join(work, "strict.out"), ("-S",)))
    data = os.path.join(work, "files.data")
    os.rename(data, data + ".away")
    try:
        out["vanished"] = outcome(restart(image, restarter, os.path.join(work, "gone.out")))
    finally:
        os.rename(data + ".away", data)
    os.rename(data, data + ".away")
    os.mkfifo(data)
    try:
        out["not_regular"] = outcome(restart(image, restarter,
                                             os.path.join(work, "fifo.out")))
    finally:
        os.unlink(data)
        os.rename(data + ".away", data)
    for label, fn in (
            ("cloexec_2", set_desc(16, 2, fmt_="<I")),
            ("fd_negative", set_desc(12, -1)),
            ("fd_twice", set_desc(12, 1, n=0)),        # fd 0 -> 1: fds 1 twice
            ("objref_unknown", set_desc(8, 9999)),
            ("nfds_huge", set_table_nfds(1 << 30)),
            ("nfds_negative", set_table_nfds(-1)),
            ("o_creat", or_file_flags(0o100)),
            ("o_trunc", or_file_flags(0o1000, n=1))):
        bad = patch(image, f"{image}.{label}", fn)
        out[label] = outcome(restart(bad, restarter, f"{bad}.out"))
    return out


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def files_tree_step(manifest, limit=6000):
    """files_tree_target (a parent reading a pipe its child writes, both writing one
    shared log file) checkpointed with `crfs checkpoint --tree --kill`, restarted by
    crfs-restart: the pipe and the log's offset are shared again."""
    work = WORK + "-tree"
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    exe = os.path.join(work, "files_tree_target")
    shutil.copy(manifest["files_tree_target"], exe)
    out_path = os.path.join(work, "tree.out")
    image = os.path.join(work, "tree.img")
    with open(out_path, "w") as out:
        proc = subprocess.Popen(["setarch", "-R", exe, work, str(limit)],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    wait_lines(out_path, 5)
    kid = (children(proc.pid) or [None])[0]
    result = {"before": {"parent": fds_of(proc.pid), "child": fds_of(kid) if kid else {}}}
    ck = subprocess.run([sys.executable, "-m", "crfs", "checkpoint", str(proc.pid), "--tree",
                         "-o", image, "--kill", "--via", "ptrace"],
                        capture_output=True, text=True, timeout=120)
    result["checkpoint"] = {"rc": ck.returncode, "stderr": ck.stderr}
    proc.wait(timeout=60)
    with open(out_path) as f:
        result["lines_before"] = f.read().splitlines()
    if ck.returncode:
        return result
    child = restart(image, manifest["restarter"], os.path.join(work, "restart.out"))
    result["restart"] = outcome(child)
    if child.errno == 0:
        wait_lines(out_path, len(result["lines_before"]) + 3)
        kids = children(child.pid)
        result["after"] = {"parent": fds_of(child.pid),
                           "child": fds_of(kids[0]) if kids else {}}
        with open(os.path.join(work, "stop"), "w"):
            pass
        result["exit"] = end_of(child)
    with open(out_path) as f:
        result["lines"] = f.read().splitlines()
    with open(os.path.join(work, "tree.log")) as f:
        result["log"] = f.read().splitlines()
    return result
