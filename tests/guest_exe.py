"""Guest side of the step "exe_memfd" (tests/test_kmod_guest.py; kmod/crfs_exe.c and the
shared inodes of kmod/crfs_deleted.c): /proc/PID/exe and a memfd opened twice.

exe_memfd_target (tests/c/exe_memfd_target.c) is a parent holding a memfd and a child that
opened it again through /proc/PPID/fd/N. It is checkpointed by `crfs checkpoint --tree`
(ptrace) and by the module (--via kernel), each image restarted by crfs-restart: the
restored processes must name the same executable and write/read one inode. The ptrace
image is then changed (an exe record inserted before the MM record, exe_objref set, the
memfds' identities edited): each restart must be refused with its errno and reason, or,
for exe_objref 0, restored as before (the restarter's exe). Then uid 1000's program is
restarted by uid 1000: its own executable is set, a set-user-ID one or one whose identity
was not recorded is refused, and root may name either. Runs inside the guest; decides
nothing.
"""

import errno
import mmap
import os
import shutil
import struct
import subprocess
import sys
import time

import guest_files as gf
import guest_signals as gs
from guest_util import stage
from crfs.formats import ckpt as fmt

WORK = "/tmp/crfs-exe"
USER = 1000
HDR = fmt.CKPT_HDR
OBJ_FILE, OBJ_MM = fmt.CKPT_OBJ["CKPT_OBJ_FILE"], fmt.CKPT_OBJ["CKPT_OBJ_MM"]
DELETED = fmt.CKPT_FILE["CRFS_FILE_DELETED"]
GENERIC = fmt.CKPT_FILE["CKPT_FILE_GENERIC"]
O_LARGEFILE = 0o100000
NEW_OBJREF = 9000
# security.capability, VFS_CAP_REVISION_2: CAP_NET_BIND_SERVICE permitted
FILE_CAPS = struct.pack("<IIIII", 0x02000000, 1 << 10, 0, 0, 0)


def start(exe, tag, *args, uid=None):
    out_path = os.path.join(WORK, f"{tag}.out")
    with open(out_path, "w") as out:
        os.chmod(out_path, 0o666)
        proc = subprocess.Popen([exe, WORK, *args], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, cwd=WORK,
                                preexec_fn=gs.as_user(uid))
    gf.wait_lines(out_path, 1)
    return proc, out_path


def checkpoint(pid, image, via):
    ck = subprocess.run([sys.executable, "-m", "crfs", "checkpoint", str(pid), "-o", image,
                         "--tree", "--kill", "--via", via], capture_output=True, text=True,
                        timeout=120)
    os.chmod(image, 0o644)
    return {"rc": ck.returncode, "stderr": ck.stderr[-2000:]}


def exe_of(pid):
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError as exc:
        return f"error {exc.errno}"


def stop(tag):
    with open(os.path.join(WORK, tag), "w"):
        pass


def finish(child):
    """The restored tree's exes, then its end once WORK/stop is there."""
    kids = gf.children(child.pid)
    out = {"exe": exe_of(child.pid), "child_exe": [exe_of(k) for k in kids]}
    stop("stop")
    out["exit"] = gf.end_of(child)
    for name in ("stop", "written"):
        if os.path.exists(os.path.join(WORK, name)):
            os.unlink(os.path.join(WORK, name))
    return out


def one_way(exe, restarter, via):
    """Checkpoint the tree by `via`, restart it: exes, the memfd's lines."""
    proc, out_path = start(exe, via)
    image = os.path.join(WORK, f"{via}.img")
    result = {"exe_before": exe_of(proc.pid), "checkpoint": checkpoint(proc.pid, image, via)}
    proc.wait(timeout=60)
    if result["checkpoint"]["rc"]:
        return result, None
    child = gf.restart(image, restarter, os.path.join(WORK, f"{via}.restart"))
    result["restart"] = gf.outcome(child)
    if child.errno == 0:
        result.update(finish(child))
    with open(out_path) as f:
        result["lines"] = f.read().splitlines()
    return result, image


# --------------------------------------------------------------------------- image edits

def record(type_name, body):
    return struct.pack("<II", HDR[type_name], 8 + len(body)) + body


def exe_records(name, ident=None):
    """OBJREF{FILE, NEW_OBJREF} FILE{GENERIC} FILE_NAME{name} [FILE_ID{ident}]."""
    out = record("CKPT_HDR_OBJREF", struct.pack("<Ii", OBJ_FILE, NEW_OBJREF))
    out += record("CKPT_HDR_FILE", struct.pack("<IIIiQQi4x", GENERIC, 1, O_LARGEFILE, 0, 0,
                                               0, 0))
    out += record("CKPT_HDR_FILE_NAME", name.encode() + b"\0")
    if ident is not None:
        out += record("CRFS_HDR_FILE_ID", struct.pack("<QQQq", *ident))
    return out


def identity(path, mtime_delta=0):
    """(dev, ino, size, mtime_ns) as RESTART takes them: dev and inode of the inode a
    mapping of the file maps (/proc/self/maps: the real one behind an overlayfs file,
    which stat(2) does not give), size and mtime from stat(2)."""
    st = os.stat(path)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ):
        with open("/proc/self/maps") as maps:
            line = next(line.split() for line in maps if line.rstrip().endswith(" " + path))
    major, minor = (int(part, 16) for part in line[3].split(":"))
    return os.makedev(major, minor), int(line[4]), st.st_size, st.st_mtime_ns + mtime_delta


def mm_objrefs(data, recs):
    """Offsets of the OBJREF{MM} records."""
    return [off for off, type_, _ in recs if type_ == HDR["CKPT_HDR_OBJREF"]
            and struct.unpack_from("<I", data, off + 8)[0] == OBJ_MM]


def set_exe_objref(value, n=0):
    def fn(data, recs):
        off = [o for o, t, _ in recs if t == HDR["CKPT_HDR_MM"]][n]
        struct.pack_into("<i", data, off + 12, value)
    return fn


def insert_exe(name, ident=None):
    """The exe of the first process: a FILE object inserted before its MM."""
    def fn(data, recs):
        off = mm_objrefs(data, recs)[0]
        data[off:off] = exe_records(name, ident)
        set_exe_objref(NEW_OBJREF)(data, gf.frames(data))
    return fn


def exe_is_deleted_file(data, recs):
    """exe_objref names the memfd's FILE object (not a file by name)."""
    off = [o for o, t, _ in recs if t == HDR["CKPT_HDR_FILE"]
           and struct.unpack_from("<I", data, o + 8)[0] == DELETED][0]
    objref = max((o for o, t, _ in recs if t == HDR["CKPT_HDR_OBJREF"] and o < off))
    set_exe_objref(struct.unpack_from("<i", data, objref + 12)[0])(data, recs)


def deleted_ids(data, recs):
    """Offsets of the FILE_IDs that follow deleted FILEs."""
    out, deleted = [], False
    for off, type_, _ in recs:
        if type_ == HDR["CKPT_HDR_FILE"]:
            deleted = struct.unpack_from("<I", data, off + 8)[0] == DELETED
        elif type_ == HDR["CRFS_HDR_FILE_ID"] and deleted:
            out.append(off)
    return out


def many_devices(data, recs):
    """Every memfd's identity: one inode number on as many devices."""
    for i, off in enumerate(deleted_ids(data, recs)):
        struct.pack_into("<QQ", data, off + 8, 1000 + i, 4242)


def modes_differ(data, recs):
    """The child's memfd (the last deleted FILE) with another mode than the parent's."""
    off = [o for o, t, _ in recs if t == HDR["CKPT_HDR_FILE"]
           and struct.unpack_from("<I", data, o + 8)[0] == DELETED][-1]
    struct.pack_into("<I", data, off + 56, 0o100600)


def refusals(image, restarter, exe):
    """Each edit of the ptrace image restarted by root: refused (or, exe_objref 0, the
    restarter's exe)."""
    noexec = os.path.join(WORK, "noexec")
    os.makedirs(noexec, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "noexec", "crfs-noexec", noexec],
                             capture_output=True, text=True)
    shutil.copy(exe, os.path.join(noexec, "exe"))
    plain = os.path.join(WORK, "plain")
    shutil.copy(exe, plain)
    os.chmod(plain, 0o644)
    edits = {
        "exe_changed": insert_exe(exe, identity(exe, 1)),
        "exe_not_regular": insert_exe("/dev/null"),
        "exe_missing": insert_exe(os.path.join(WORK, "missing")),
        "exe_noexec": insert_exe(os.path.join(noexec, "exe")),
        "exe_not_executable": insert_exe(plain),
        "exe_objref_unknown": set_exe_objref(12345),
        "exe_not_by_name": exe_is_deleted_file,
        "inode_on_many_devices": many_devices,
        "inode_modes_differ": modes_differ,
    }
    out = {"noexec_mount": mounted.returncode and mounted.stderr}
    for label, fn in edits.items():
        bad = gf.patch(image, f"{image}.{label}", fn)
        out[label] = gf.outcome(gf.restart(bad, restarter, f"{bad}.out"))
    with open_for_writing(exe):     # exec's write denial fails
        out["exe_busy"] = gf.outcome(gf.restart(image, restarter, f"{image}.busy.out"))
    subprocess.run(["umount", noexec], capture_output=True)
    bad = gf.patch(image, f"{image}.no_exe", set_exe_objref(0))
    child = gf.restart(bad, restarter, f"{bad}.out")
    out["no_exe"] = gf.outcome(child)
    if child.errno == 0:
        out["no_exe"].update(finish(child))
    return out


def open_for_writing(path, timeout=30):
    """`path` open for writing once no process runs it: the program the ptrace way
    restarted may still be exiting (ETXTBSY until its memory is gone)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return open(path, "r+b")
        except OSError as exc:
            if exc.errno != errno.ETXTBSY or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# --------------------------------------------------------------------------- uid 1000

def user_restart(image, restarter, label, uid):
    """Restart by `uid` (crfs-restart -R): its outcome, with the exe when restored."""
    result, proc, pid = gs.restart(image, restarter, os.path.join(WORK, f"{label}.out"), uid)
    if pid is not None:
        result["exe"] = exe_of(pid)
        stop("stop")
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.kill(pid, 9)
            proc.kill()
            proc.wait()
        os.unlink(os.path.join(WORK, "stop"))
    return result


def user_checks(exe, restarter):
    """uid 1000's program (solo) restarted by uid 1000 and by root, the exe as it was, a
    set-user-ID copy, one with file capabilities, one without its identity."""
    proc, _ = start(exe, "user", "solo", uid=USER)
    image = os.path.join(WORK, "user.img")
    out = {"exe_before": exe_of(proc.pid), "checkpoint": checkpoint(proc.pid, image, "ptrace")}
    proc.wait(timeout=60)
    if out["checkpoint"]["rc"]:
        return out
    out["own_exe"] = user_restart(image, restarter, "own", USER)
    suid = os.path.join(WORK, "suid")
    shutil.copy(exe, suid)
    os.chown(suid, USER, USER)
    os.chmod(suid, 0o4755)
    capped = os.path.join(WORK, "capped")
    shutil.copy(exe, capped)
    os.chmod(capped, 0o755)
    try:
        os.setxattr(capped, "security.capability", FILE_CAPS)
        out["setcap"] = 0
    except OSError as exc:
        out["setcap"] = exc.strerror
    cases = {"suid": insert_exe(suid, identity(suid)),
             "capped": insert_exe(capped, identity(capped)),
             "no_identity": insert_exe(exe)}
    for label, fn in cases.items():
        bad = gf.patch(image, f"{image}.{label}", fn)
        out[f"{label}_by_user"] = user_restart(bad, restarter, f"{label}_u", USER)
        out[f"{label}_by_root"] = user_restart(bad, restarter, f"{label}_r", None)
    return out


def step(manifest):
    if os.path.ismount(os.path.join(WORK, "noexec")):
        subprocess.run(["umount", os.path.join(WORK, "noexec")], capture_output=True)
    # uid 1000 runs the programs from here (0755: crfs-restart must be safe there)
    paths = stage(WORK, {"exe_memfd_target": manifest["exe_memfd_target"],
                         "crfs-restart": manifest["restarter"]})
    exe, restarter = paths["exe_memfd_target"], paths["crfs-restart"]
    result = {"exe": exe}
    for via in ("ptrace", "kernel"):
        result[via], image = one_way(exe, restarter, via)
        if via == "ptrace" and image:
            result["refused"] = refusals(image, restarter, exe)
    result["user"] = user_checks(exe, restarter)
    return result
