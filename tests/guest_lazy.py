"""Guest side of the lazy restart tests (tests/test_kmod_guest.py, step "lazy"; issue #14).

lazy_target (tests/c/lazy_target.c: a dirty anonymous heap with holes) is checkpointed and
restarted by `crfs-restart --lazy`: its pages come in through userfaultfd from the
restarter, which stays as the page server (docs/kmod.md, "Lazy restart"). Cases: every
byte checked; two threads faulting at once; a fork (and a fork of the child) at once,
each process checking every byte; the server killed after such a fork; madvise(DONTNEED), munmap and mremap before
the pages arrive; the image deleted as soon as the program runs; the server killed while
pages are still to come; a tree of four processes served, its server killed, a tree beyond
the server's bound refused. Runs inside the guest; decides nothing.
"""

import ctypes
import errno
import os
import shutil
import signal
import subprocess
import sys
import time

from crfs import kernel

WORK = "/tmp/crfs-lazy"
RESULT = kernel._RESULT


def wait_lines(path, pred, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(path) as f:
            lines = f.read().splitlines()
        if pred(lines):
            return lines
        time.sleep(0.02)
    with open(path) as f:
        return f.read().splitlines()


def start(exe, mode, mib, out_path):
    """lazy_target started, its pid once it says ready."""
    with open(out_path, "w") as out:
        proc = subprocess.Popen(["setarch", "-R", exe, WORK, mode, str(mib)],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    lines = wait_lines(out_path, lambda ls: any(x.startswith("ready") for x in ls))
    return proc, lines


def maps_of(pid):
    """(range, perms, name) of each line of /proc/PID/maps."""
    with open(f"/proc/{pid}/maps") as f:
        return [(p[0], p[1], p[5] if len(p) > 5 else "") for p in (ln.split() for ln in f)]


def checkpoint(proc, image, tree=False):
    ck = subprocess.run([sys.executable, "-m", "crfs", "checkpoint", str(proc.pid), "-o", image,
                         "--kill", *(["--tree"] if tree else [])],
                        capture_output=True, text=True, timeout=300)
    proc.wait(timeout=60)
    return {"rc": ck.returncode, "stderr": ck.stderr[-2000:]}


class Restart:
    """crfs-restart [--lazy] of an image in a child, its reports read as they come."""

    def __init__(self, restarter, image, out_path, lazy=True):
        self.read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        self.t0 = time.monotonic()
        with open(out_path, "ab") as out:
            self.proc = subprocess.Popen(
                [restarter, "-r", str(write_fd), *(["--lazy"] if lazy else []), image],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                pass_fds=(write_fd,), start_new_session=True)
        os.close(write_fd)

    def report(self):
        """The next report {errno, stage, reason, t} ({} at EOF)."""
        data = b""
        while len(data) < RESULT.size:
            chunk = os.read(self.read_fd, RESULT.size - len(data))
            if not chunk:
                return {"eof": True, "t": time.monotonic() - self.t0}
            data += chunk
        code, _, _, stage, reason = RESULT.unpack(data)
        return {"errno": code, "stage": stage.rstrip(b"\0").decode(),
                "reason": reason.rstrip(b"\0").decode("utf-8", "replace"),
                "t": time.monotonic() - self.t0}

    def end(self, timeout=300):
        os.close(self.read_fd)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            return "hung"
        return kernel.describe_exit(self.proc.returncode)


def pid_of(report):
    reason = report.get("reason", "")
    return int(reason.split()[1].rstrip(":")) if reason.startswith("pid ") else None


def run(manifest, label, mode, mib=64, lazy=True, during=None):
    """lazy_target MODE checkpointed (with --tree for the tree modes), restarted (lazily),
    `during(restart, pid, image)` called once it runs; its reports, exit, output."""
    exe = manifest["lazy_target"]
    out_path = os.path.join(WORK, f"{label}.out")
    image = os.path.join(WORK, f"{label}.img")
    for name in ("go", "stop"):
        if os.path.exists(os.path.join(WORK, name)):
            os.unlink(os.path.join(WORK, name))
    proc, _ = start(exe, mode, mib, out_path)
    result = {"maps_before": maps_of(proc.pid)}
    result["checkpoint"] = checkpoint(proc, image, tree=mode.startswith("tree"))
    if result["checkpoint"]["rc"]:
        return result
    r = Restart(manifest["restarter"], image, out_path, lazy)
    result["first"] = r.report()
    pid = pid_of(result["first"])
    if pid and during:
        result["during"] = during(r, pid, image)
    if lazy and pid and "second" not in result.get("during", {}):
        result["second"] = r.report()
    result["exit"] = r.end()
    with open(out_path) as f:
        result["lines"] = f.read().splitlines()
    if label != "check" and os.path.exists(image):
        os.unlink(image)    # /tmp is the guest's memory: only check.img is used again
    return result


def lazy_ioctl(pid, op, uffd=-1, reserved=0, room=0):
    """CRFS_IOC_LAZY from this process (not the parent of anything restored): errno name."""
    ranges = (kernel.LazyRange * max(room, 1))()
    args = kernel.LazyArgs(pid=pid, op=op, ranges=ctypes.addressof(ranges), nr_ranges=room,
                           uffd=uffd, _reserved=reserved)
    with kernel.Device() as dev:
        ret = kernel._ioctl(dev.fd, kernel.CRFS_IOC_LAZY, ctypes.addressof(args))
    return errno.errorcode.get(-ret, ret) if ret < 0 else ret


def userfaultfd():
    """A userfaultfd of ours (SYS_userfaultfd 323 on x86_64), O_CLOEXEC."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.syscall(323, os.O_CLOEXEC | os.O_NONBLOCK)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "userfaultfd")
    return fd


def argument_errors():
    """CRFS_IOC_LAZY asked wrongly: no lazy restore of that pid, an unknown op, a reserved
    field set, GO with a closed fd or one that is not a userfaultfd."""
    me = os.getpid()
    out = {"ranges_not_waiting": lazy_ioctl(me, kernel.LAZY_RANGES, room=4),
           "done_not_waiting": lazy_ioctl(me, kernel.LAZY_DONE),
           "unknown_op": lazy_ioctl(me, 9),
           "reserved": lazy_ioctl(me, kernel.LAZY_RANGES, reserved=1),
           "go_closed_fd": lazy_ioctl(me, kernel.LAZY_GO, uffd=999),
           "fork_closed_fd": lazy_ioctl(me, kernel.LAZY_FORK, uffd=999)}
    with open("/dev/null") as f:
        out["go_not_uffd"] = lazy_ioctl(me, kernel.LAZY_GO, uffd=f.fileno())
        out["fork_not_uffd"] = lazy_ioctl(me, kernel.LAZY_FORK, uffd=f.fileno())
    uffd = userfaultfd()
    try:
        out["fork_not_waiting"] = lazy_ioctl(me, kernel.LAZY_FORK, uffd=uffd)
    finally:
        os.close(uffd)
    return out


def deleted_image(r, pid, image):
    """The image unlinked as soon as the program runs; the maps then; the server's fd;
    RANGES of the program asked by another process than its parent."""
    not_parent = lazy_ioctl(pid, kernel.LAZY_RANGES, room=4)
    os.unlink(image)
    maps = maps_of(pid)
    fd_dir = f"/proc/{r.proc.pid}/fd"
    fds = [os.readlink(f"{fd_dir}/{fd}") for fd in os.listdir(fd_dir)]
    second = r.report()
    with open(os.path.join(WORK, "stop"), "w"):
        pass
    return {"maps_after": maps, "server_fds": fds, "second": second,
            "not_parent": not_parent}


def gone(pid, timeout=60):
    """Whether `pid` has ended (gone or a zombie) within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def kill_server(r, pid, image):
    """The server killed as soon as the program runs (pages still to come)."""
    os.kill(r.proc.pid, signal.SIGKILL)
    t = time.monotonic()
    ended = gone(pid)
    return {"program_ended": ended, "seconds": round(time.monotonic() - t, 2),
            "second": r.report()}


def kill_server_after_fork(r, pid, image):
    """The program forked at once (pages still to come in both): the server killed; the
    module kills the child too (the server's descendant), nothing hangs."""
    out_path = os.path.join(WORK, "forkkilled.out")
    lines = wait_lines(out_path, lambda ls: any(x.startswith("child ") for x in ls))
    child = next((int(x.split()[1]) for x in lines if x.startswith("child ")), None)
    os.kill(r.proc.pid, signal.SIGKILL)
    return {"child": child, "program_ended": gone(pid),
            "child_ended": child is not None and gone(child), "second": r.report()}


def status_of(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError as exc:
        return f"(no status: {exc.strerror})"


def wait_status(path, pred, timeout=120):
    deadline = time.monotonic() + timeout
    text = status_of(path)
    while not pred(text) and time.monotonic() < deadline:
        time.sleep(0.05)
        text = status_of(path)
    return text


def through_mount(m, label, env=None):
    """lazy_target (idle, 64 MiB) checkpointed, then `cp` into restart/ of a crfs mount
    mounted with -o lazy (its daemon's environment plus `env`): the status as close(2)
    returned, once it says resident or failed, and once the program ended; its output."""
    base = os.path.join(WORK, f"{label}-fuse")
    store, mnt = os.path.join(base, "store"), os.path.join(base, "mnt")
    os.makedirs(store)
    os.makedirs(mnt)
    out_path = os.path.join(WORK, f"{label}.out")
    image = os.path.join(WORK, f"{label}.img")
    for name in ("go", "stop"):
        if os.path.exists(os.path.join(WORK, name)):
            os.unlink(os.path.join(WORK, name))
    proc, _ = start(m["lazy_target"], "idle", 64, out_path)
    result = {"checkpoint": checkpoint(proc, image)}
    if result["checkpoint"]["rc"]:
        return result
    if not os.path.exists("/dev/fuse"):
        subprocess.run(["modprobe", "fuse"], capture_output=True)
    mount = subprocess.run([sys.executable, "-m", "crfs", mnt, "-o",
                            f"store={store},log={base}/crfs.log,lazy"], capture_output=True,
                           text=True, timeout=120,
                           env={**os.environ, "CRFS_RESTARTER": m["restarter"], **(env or {})})
    if mount.returncode:
        return {**result, "mount": mount.stderr[-1000:]}
    try:
        target = os.path.join(mnt, "restart", "lazy.img")
        cp = subprocess.run(["cp", image, target], capture_output=True, text=True, timeout=120)
        result["cp"] = {"rc": cp.returncode, "stderr": cp.stderr[-500:]}
        os.unlink(image)    # /tmp is the guest's memory
        result["at_close"] = status_of(target + ".status")
        result["memory"] = wait_status(target + ".status", lambda t: "memory: coming in" not in t)
        with open(os.path.join(WORK, "stop"), "w"):
            pass
        result["ended"] = wait_status(target + ".status", lambda t: "state: running" not in t)
    finally:
        subprocess.run(["fusermount3", "-u", mnt], capture_output=True, timeout=60)
    with open(out_path) as f:
        result["lines"] = f.read().splitlines()
    result["survivors"] = survivors()
    return result


def descendants(pid):
    """The pids of the live processes below `pid` (gone or zombie ones left out)."""
    children = {}
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] not in ("Z", "X"):
            children.setdefault(int(fields[1]), []).append(int(p))
    out, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return sorted(out)


def tree_served(r, pid, image):
    """The tree restored (every process waiting for WORKDIR/stop): its processes below the
    server; RANGES of a child of the program asked by this process (an ancestor, but the
    server between is not a restored process: EPERM); then let go, the second report."""
    tree = descendants(r.proc.pid)
    child = next((p for p in tree if p != pid), None)
    not_server = lazy_ioctl(child, kernel.LAZY_RANGES, room=4) if child else None
    with open(os.path.join(WORK, "stop"), "w"):
        pass
    return {"tree": tree, "not_server": not_server, "second": r.report()}


def tree_killed(r, pid, image):
    """The server killed as soon as the tree runs (pages still to come in each process):
    every process of the tree ends, nothing hangs."""
    tree = descendants(r.proc.pid)
    os.kill(r.proc.pid, signal.SIGKILL)
    return {"tree": tree, "ended": {p: gone(p) for p in tree}, "second": r.report()}


def alive(pid):
    """Whether `pid` runs now (not gone, not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def tree_gone(r, pid, image):
    """The others of the tree end at once, reaped, while the server serves: resident
    reported, the program still running after the server let its processes go; then let
    go."""
    second = r.report()
    time.sleep(0.5)     # the server's close of its device, after its report
    running = alive(pid)
    with open(os.path.join(WORK, "stop"), "w"):
        pass
    return {"second": second, "program_running": running}


def tree_cases(m, out):
    """A tree of four processes restarted --lazy: each checks its heap at once; the same
    waiting (ancestor refused, then let go); the server killed; a server bound to two
    processes (test hook "max2") refuses it before anything is forked."""
    cases = (("tree", "tree", 32, None, None), ("treeidle", "treeidle", 32, tree_served, None),
             ("treekilled", "treeidle", 48, tree_killed, None),
             ("treegone", "treegone", 32, tree_gone, None),
             ("treemax", "tree", 16, None, "max2"))
    for label, mode, mib, during, test in cases:
        if test:
            os.environ["CRFS_LAZY_TEST"] = test
        try:
            out[label] = run(m, label, mode, mib=mib, during=during)
        except Exception as exc:    # noqa: BLE001 - reported, the test decides
            with open(os.path.join(WORK, f"{label}.out")) as f:
                out[label] = {"error": repr(exc), "lines": f.read().splitlines()[-20:]}
        finally:
            os.environ.pop("CRFS_LAZY_TEST", None)
        out[label].pop("maps_before", None)
        out[label]["survivors"] = survivors()


def unprivileged_refused(restarter, image, allowed="0"):
    """crfs-restart --lazy run as nobody (/dev/crfs opened to everyone for the duration,
    vm.unprivileged_userfaultfd=ALLOWED): refused with its reason, before RESTART (0: no
    userfaultfd; 1: one, but no UFFD_FEATURE_EVENT_FORK without CAP_SYS_PTRACE)."""
    sysctl = "/proc/sys/vm/unprivileged_userfaultfd"
    with open(sysctl) as f:
        old = f.read().strip()
    os.chmod(image, 0o644)
    os.chmod(kernel.DEVICE, 0o666)
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    try:
        with open(sysctl, "w") as f:
            f.write(allowed)
        proc = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                 restarter, "--lazy", "-r", str(write_fd), image],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, pass_fds=(write_fd,))
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as f:
            data = f.read(RESULT.size)
        _, stderr = proc.communicate(timeout=120)
    finally:
        with open(sysctl, "w") as f:
            f.write(old)
        os.chmod(kernel.DEVICE, 0o600)
    if len(data) != RESULT.size:
        return {"short": len(data), "stderr": stderr.decode(errors="replace")}
    code, _, _, stage, reason = RESULT.unpack(data)
    return {"errno": code, "stage": stage.rstrip(b"\0").decode(),
            "reason": reason.rstrip(b"\0").decode(), "exit": proc.returncode}


def restore_targets(manifest):
    """restore_target (static, dynamic) checkpointed by the CLI and restarted with
    --lazy (and -R, as the restore step does): its output after the restart, its exit."""
    import kmod_guest_checks as kc     # noqa: E402 - guest-side helpers
    out = {}
    for label in ("static", "dynamic"):
        exe = manifest["targets"][label]
        out_path = os.path.join(WORK, f"rt_{label}.out")
        image, before = kc.run_target(exe, manifest["datafile"], out_path, manifest["limit"],
                                      cli=True)
        after_path = out_path + "2"
        with open(after_path, "wb") as f:
            child = kernel.restart_in_child(image, restarter=manifest["restarter"], stdout=f,
                                            timeout=120, options=("-R", "--lazy"))
        run = {"checkpoint": before, "restart": kc.reported(child)}
        if child.errno == 0:
            run["restart"]["exit"] = kc.end_of(child)
        with open(after_path) as f:
            run["restart"]["after"] = f.read().splitlines()
        out[label] = run
    return out


def survivors(name="lazy_target", timeout=30):
    """Pids of live processes called `name`, once none is left or after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        live = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    comm, state = f.read().rsplit(")", 1)
            except OSError:
                continue
            if comm.split("(", 1)[1] == name and state.split()[0] not in ("Z", "X"):
                live.append(int(pid))
        if not live or time.monotonic() > deadline:
            return live
        time.sleep(0.1)


def misbehaving(manifest, how, mode="check"):
    """lazy_target MODE restarted by a server that misbehaves ($CRFS_LAZY_TEST=how; "late"
    with the module's lazy_timeout at 1 s): the reports, the restarter's exit, what is
    left."""
    param = "/sys/module/crfs/parameters/lazy_timeout"
    with open(param) as f:
        old = f.read().strip()
    os.environ["CRFS_LAZY_TEST"] = how
    try:
        if how == "late":
            with open(param, "w") as f:
                f.write("1")
        result = run(manifest, f"bad_{how}_{mode}", mode, mib=16)
    finally:
        del os.environ["CRFS_LAZY_TEST"]
        with open(param, "w") as f:
            f.write(old)
    result.pop("maps_before", None)
    t = time.monotonic()
    result["survivors"] = survivors()
    result["survivors_s"] = round(time.monotonic() - t, 2)    # lazy_timeout is 60 s
    return result


def fork_cases(m, out):
    """The program forks before it is resident: served; the server killed then (pages on
    fault only, test hook "nostream": streamed, 64 MiB can be in before the child's line
    is seen, and the server would be killed too late to show anything)."""
    for label, mode, mib, during in (("fork", "fork", 64, None),
                                     ("forkkilled", "forkidle", 64, kill_server_after_fork)):
        if during:
            os.environ["CRFS_LAZY_TEST"] = "nostream"
        try:
            out[label] = run(m, label, mode, mib=mib, during=during)
        except Exception as exc:    # noqa: BLE001 - reported, the test decides
            with open(os.path.join(WORK, f"{label}.out")) as f:
                out[label] = {"error": repr(exc), "lines": f.read().splitlines()[-20:]}
        finally:
            os.environ.pop("CRFS_LAZY_TEST", None)
        out[label]["survivors"] = survivors()


def step(manifest):
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    m = dict(manifest)
    exe = os.path.join(WORK, "lazy_target")
    shutil.copy(manifest["lazy_target"], exe)
    m["lazy_target"] = exe
    out = {}
    out["check"] = run(m, "check", "check")
    out["eager"] = run(m, "eager", "check", lazy=False)
    os.environ["CRFS_LAZY_STREAMS"] = "1"     # the serving thread streams alone
    try:
        out["one_stream"] = run(m, "one_stream", "check")
    finally:
        del os.environ["CRFS_LAZY_STREAMS"]
    out["threads"] = run(m, "threads", "threads")
    out["madvise"] = run(m, "madvise", "madvise")
    out["deleted"] = run(m, "deleted", "idle", during=deleted_image)
    out["killed"] = run(m, "killed", "idle", mib=128, during=kill_server)
    fork_cases(m, out)
    for label, env in (("mount", None), ("mount_eio", {"CRFS_LAZY_TEST": "eio"})):
        try:
            out[label] = through_mount(m, label, env)
        except Exception as exc:    # noqa: BLE001 - reported, the test decides
            out[label] = {"error": repr(exc)}
    out["arguments"] = argument_errors()
    for how, mode, label in (("exit", "check", "exit"), ("late", "check", "late"),
                             ("unregistered", "check", "unregistered"),
                             ("nostream", "forks300", "nostream"),
                             ("exit", "treeidle", "tree_exit")):
        try:
            out[f"server_{label}"] = misbehaving(m, how, mode)
        except Exception as exc:    # noqa: BLE001 - reported, the test decides
            out[f"server_{label}"] = {"error": repr(exc)}
    try:
        out["targets"] = restore_targets(manifest)
    except Exception as exc:    # noqa: BLE001 - reported, the test decides
        out["targets"] = {"error": repr(exc)}
    try:
        out["nobody"] = unprivileged_refused(m["restarter"], os.path.join(WORK, "check.img"))
    except Exception as exc:    # noqa: BLE001 - reported, the test decides
        out["nobody"] = {"error": repr(exc)}
    try:
        out["nobody_fork"] = unprivileged_refused(m["restarter"],
                                                  os.path.join(WORK, "check.img"), "1")
    except Exception as exc:    # noqa: BLE001 - reported, the test decides
        out["nobody_fork"] = {"error": repr(exc)}
    tree_cases(m, out)
    return out
