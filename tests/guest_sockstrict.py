"""Guest side of step "sockstrict" (tests/test_kmod_guest.py; kmod/crfs_socket.c,
kmod/crfs-restart-unix.h, kmod/crfs_task_state.c, crfs/checkpoint/sockets.py).

sockstrict_target (tests/c/sockstrict_target.c: a listener at a path whose file is chmod
and chowned, a connection it has not accepted, a connect+accept pair with bytes queued,
a SEQPACKET pair with two messages, a child in seccomp strict mode blocked in read()) is
checkpointed both ways with --tree, restarted by crfs-restart, and runs its own checks;
then again run, checkpointed and restarted as nobody (a second uid). Then the refusals:
malformed records (CHECK), sockets handed in that do not fit (RESTART_FILES),
crfs-restart's own (a path taken, a relative path, a chown a non-root restarter may not
do, an unaccepted connection without its listener), bytes sent into an unaccepted
connection (both checkpointers), and a restarter that is itself under a seccomp filter.
Runs inside the guest; decides nothing.
"""

import os
import socket
import struct
import subprocess
import sys

import guest_anonfd as ga
import guest_files as gf
from guest_unix import sockets_of
import kmod_guest_checks as g
from guest_util import in_child, stage
from crfs import kernel

WORK = "/tmp/crfs-sockstrict"
SECCOMP = 8041
LISTEN = 10
FDS = range(4, 11)


def seccomp_records(image):
    with open(image, "rb") as f:
        data = f.read()
    return [offset for offset, type_, _ in gf.frames(data) if type_ == SECCOMP]


def start(exe, work, label, *args, uid=None, groups=()):
    out_path = os.path.join(work, f"{label}.out")
    with open(out_path, "w") as out:
        proc = subprocess.Popen((g.setpriv(uid, groups) if uid else []) +
                                ["setarch", "-R", exe, work, "6000", *args],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    gf.wait_lines(out_path, 3)
    return proc, out_path


def checkpoint(pid, image, via):
    ck = subprocess.run([sys.executable, "-m", "crfs", "checkpoint", str(pid), "--tree", "-o",
                         image, "--kill", "--via", via], capture_output=True, text=True,
                        timeout=120)
    return {"rc": ck.returncode, "stderr": ck.stderr[-2000:]}


def restart_as(image, restarter, out_path, uid, groups=()):
    """crfs-restart as `uid` with `groups` (/dev/crfs opened to everyone meanwhile)."""
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    os.chmod(kernel.DEVICE, 0o666)
    try:
        with open(out_path, "ab") as out:
            proc = subprocess.Popen(g.setpriv(uid, groups) +
                                    [restarter, "-r", str(write_fd), image],
                                    stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, pass_fds=(write_fd,),
                                    start_new_session=True)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as f:
            report = f.read(kernel._RESULT.size)
    finally:
        os.chmod(kernel.DEVICE, 0o600)
    return report_of(report, proc)


def report_of(report, proc):
    if len(report) < kernel._RESULT.size:
        return kernel.Outcome(0, pid=proc.pid, process=proc) if not report else \
            kernel.Outcome(5, "short report")
    code, offset, rtype, stage, reason = kernel._RESULT.unpack(report)
    reason = reason.rstrip(b"\0").decode("utf-8", "replace")
    stage = stage.rstrip(b"\0").decode()
    if code == 0 and reason.startswith("pid "):
        return kernel.Outcome(0, pid=int(reason[4:]), process=proc, stage=stage)
    proc.wait()
    return kernel.Outcome(code, reason, None, rtype, stage)


def run_one(label, exe, work, restarter, via, uid=None, groups=()):
    """Start, checkpoint --tree --kill, restart (as `uid`, None: root), check."""
    proc, out_path = start(exe, work, label, uid=uid, groups=groups)
    image = os.path.join(work, f"{label}.img")
    result = {"before": gf.fd_links(proc.pid, FDS), "checkpoint": checkpoint(proc.pid, image, via)}
    if result["checkpoint"]["rc"]:
        proc.kill()
    proc.wait(timeout=60)
    with open(out_path) as f:
        result["lines_before"] = f.read().splitlines()
    if result["checkpoint"]["rc"]:
        return result, None
    os.chmod(image, 0o644)
    os.chmod(out_path, 0o666)       # reopened by the restored program, as itself
    result["seccomp_records"] = len(seccomp_records(image))
    result["socks"] = {str(k): [v["state"], v["flags"], v["sock"], v["peer"], *v["mode"]]
                       for k, v in sockets_of(image).items()}
    restart_out = os.path.join(work, f"{label}.restart")
    child = (restart_as(image, restarter, restart_out, uid, groups) if uid else
             gf.restart(image, restarter, restart_out))
    result.update(finish(child, work, out_path, len(result["lines_before"])))
    return result, image


def finish(child, work, out_path, before):
    """The restarted program's fds and socket file, then its own checks (DIR/stop)."""
    result = {"restart": gf.outcome(child)}
    if child.errno == 0:
        gf.wait_lines(out_path, before + 3)
        result["after"] = gf.fd_links(child.pid, FDS)
        st = os.stat(os.path.join(work, "l.sock"))
        result["file"] = [st.st_mode, st.st_uid, st.st_gid]
        with open(os.path.join(work, "stop"), "w"):
            pass
        result["exit"] = gf.end_of(child)
        os.unlink(os.path.join(work, "stop"))
    with open(out_path) as f:
        result["lines"] = f.read().splitlines()
    return result


def root_restarts_nobody(image, work, restarter):
    """Root restarts nobody's image, whose socket file sits in a directory only group 100
    may write: the file is made with nobody's fs ids and groups, and the program runs."""
    out_path = os.path.join(work, "nobody.out")
    with open(out_path) as f:
        before = len(f.read().splitlines())
    child = gf.restart(image, restarter, os.path.join(work, "by-root.restart"))
    return finish(child, work, out_path, before)


def dirty(exe, work, via):
    """Bytes sent into the unaccepted connection: the checkpoint refuses."""
    proc, _ = start(exe, work, f"dirty-{via}", "dirty")
    result = checkpoint(proc.pid, os.path.join(work, f"dirty-{via}.img"), via)
    if result["rc"]:
        proc.kill()
    proc.wait(timeout=60)
    return result


def roles(socks):
    """objrefs of the listener, the unaccepted connection, and an end of the pair."""
    listener = [k for k, v in socks.items() if v["state"] == LISTEN][0]
    icon = [k for k, v in socks.items() if v["flags"] & 1][0]
    other = [k for k, v in socks.items() if v["state"] != LISTEN and not v["flags"] & 1][0]
    return listener, icon, other


def patched_records(image, socks):
    """Malformed records, each refused by CHECK (errno, reason)."""
    listener, icon, other = roles(socks)
    lo, io = socks[listener]["offset"], socks[icon]["offset"]
    patches = {
        "flags_unknown": (io + 92, "<I", 3),
        "mode_not_socket": (lo + 204, "<I", 0o100640),
        "listener_peer": (lo + 52, "<i", socks[other]["sock"]),
        "icon_listening": (lo + 92, "<I", 1),
        "icon_queue": (io + 80, "<I", 1),
        "seccomp_filter": (seccomp_records(image)[0] + 8, "<I", 2),
        "seccomp_mode_9": (seccomp_records(image)[0] + 8, "<I", 9),
    }
    return ga.fields_refused(image, patches)


def lying_tables(image, socks):
    """Sockets handed in that do not fit their records: refused before anything changes."""
    listener, icon, _ = roles(socks)
    out = {}
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    lone = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    elsewhere = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        elsewhere.bind(b"\0crfs-sockstrict-elsewhere")
        elsewhere.listen(3)
        out["listener_not_listening"] = ga.handed_call(image, [(listener, lone.fileno())])
        out["listener_elsewhere"] = ga.handed_call(image, [(listener, elsewhere.fileno())])
        out["icon_a_pair"] = ga.handed_call(image, [(icon, a.fileno())])
    finally:
        for s in (a, b, lone, elsewhere):
            s.close()
    return out


def restarter_refusals(image, socks, restarter, work):
    """What crfs-restart refuses before it asks the kernel (stage unix-sockets)."""
    listener, icon, other = roles(socks)
    lo, io = socks[listener]["offset"], socks[icon]["offset"]
    path = os.path.join(work, "l.sock")
    out = {}

    def relative(data, recs):
        data[lo + 96:lo + 96 + 9] = b"rel.sock\0"

    def no_listener(data, recs):
        struct.pack_into("<i", data, io + 52, socks[other]["sock"])

    for label, fn in (("relative_path", relative), ("icon_without_listener", no_listener)):
        bad = gf.patch(image, f"{image}.{label}", fn)
        out[label] = gf.outcome(gf.restart(bad, restarter, f"{bad}.out"))
    if os.path.lexists(path):
        os.unlink(path)
    with open(path, "w") as f:
        f.write("not a socket\n")
    out["path_taken"] = gf.outcome(gf.restart(image, restarter, f"{image}.taken.out"))
    out["path_taken_kept"] = open(path).read()
    os.unlink(path)
    return out


def chown_refused(image, socks, restarter, work):
    """As nobody, an image whose socket file belongs to uid 18943: EPERM, nothing left."""
    listener, _, _ = roles(socks)
    lo = socks[listener]["offset"]
    bad = gf.patch(image, f"{image}.chown",
                   lambda data, recs: struct.pack_into("<II", data, lo + 208, 18943, 58467))
    os.chmod(bad, 0o644)
    child = restart_as(bad, restarter, f"{bad}.out", g.NOBODY)
    if child.errno == 0:
        os.killpg(child.process.pid, 9)
    return gf.outcome(child)


def chown_as_task(image, restarter):
    """Root restarts nobody's image whose socket file says uid 18943: the file is made and
    chowned with nobody's fs ids, so the chown is refused (EPERM), nothing restarted."""
    socks = sockets_of(image)
    lo = socks[roles(socks)[0]]["offset"]
    bad = gf.patch(image, f"{image}.chown",
                   lambda data, recs: struct.pack_into("<II", data, lo + 208, 18943, 58467))
    child = gf.restart(bad, restarter, f"{bad}.out")
    if child.errno == 0:
        os.killpg(child.process.pid, 9)
    return gf.outcome(child)


def unprivileged_checkpoint(exe, work):
    """crfs checkpoint --via ptrace run as nobody (in a forked child) of nobody's target:
    its strict child cannot be seized with PTRACE_O_SUSPEND_SECCOMP, refused with why."""
    from crfs.checkpoint import checkpoint as crfs_checkpoint
    mine = os.path.join(work, "unprivileged")
    os.makedirs(mine)
    os.chmod(mine, 0o777)
    proc, _ = start(exe, mine, "unprivileged", uid=g.NOBODY)
    def as_nobody():
        try:
            os.setgroups([])
            os.setgid(g.NOBODY)
            os.setuid(g.NOBODY)
            crfs_checkpoint(proc.pid, os.path.join(mine, "u.img"), tree=True, via="ptrace")
        except Exception as exc:      # noqa: BLE001 - reported
            return f"{type(exc).__name__}: {exc}"[:4000]
        return "no refusal"
    msg = in_child(as_nobody, "")
    proc.kill()
    proc.wait(timeout=60)
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope") as f:
            scope = f.read().strip()
    except OSError:
        scope = None
    return {"msg": msg, "yama": scope}


def filtered_restarter(exe, image, restarter, work):
    """crfs-restart run under an allow-all seccomp filter: its restart of a strict task
    is refused (the filter would be dropped)."""
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    with open(os.path.join(work, "filtered.out"), "wb") as out:
        proc = subprocess.Popen([exe, "-filter", restarter, "-r", str(write_fd), image],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                pass_fds=(write_fd,), start_new_session=True)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        report = f.read(kernel._RESULT.size)
    child = report_of(report, proc)
    if child.errno == 0:
        os.killpg(proc.pid, 9)
    return gf.outcome(child)


def step(manifest):
    work = WORK
    exe = stage(work, {"sockstrict_target": manifest["sockstrict_target"]},
                mode=0o777)["sockstrict_target"]
    restarter = manifest["restarter"]
    result = {}
    try:
        result["ptrace"], image = run_one("ptrace", exe, work, restarter, "ptrace")
        result["kernel"], kimage = run_one("kernel", exe, work, restarter, "kernel")
        mine = os.path.join(work, "nobody")     # its log and socket file are nobody's,
        os.makedirs(mine)                       # in a directory of group 100's
        os.chown(mine, 0, g.NOBODY_GROUP)
        os.chmod(mine, 0o770)
        result["nobody"], nimage = run_one("nobody", exe, mine, restarter, "ptrace",
                                           uid=g.NOBODY, groups=[g.NOBODY_GROUP])
        if nimage:
            result["nobody_by_root"] = root_restarts_nobody(nimage, mine, restarter)
        result["dirty"] = {via: dirty(exe, work, via) for via in ("ptrace", "kernel")}
        result["unprivileged"] = unprivileged_checkpoint(exe, work)
        if image:
            socks = sockets_of(image)
            result["records"] = patched_records(image, socks)
            result["lying"] = lying_tables(image, socks)
            result["restarter"] = restarter_refusals(image, socks, restarter, work)
            result["chown"] = chown_refused(image, socks, restarter, work)
        if nimage:
            result["chown_as_task"] = chown_as_task(nimage, restarter)
            result["filtered"] = filtered_restarter(exe, image, restarter, work)
    except Exception as exc:      # noqa: BLE001 - reported, the other steps go on
        result["error"] = repr(exc)
    return result
