"""Guest side of the zdtm tests (tests/test_kmod_guest.py, step "zdtm" of
tests/kmod_guest_checks.py): CRIU's zdtm test programs checkpointed and restarted by crfs.

The host has built the programs (make -C lib libzdtmtst.a; make -C static TESTS) in a copy
of ../shared/zdtm and lists the runs in the manifest: which checkpointer (`crfs checkpoint
--via ptrace`, `--via kernel`, or root's compiled `crfs` front, kmod/crfs-front.c, which
writes through the module itself), which restart (`crfs-restart`, `crfs-restart --lazy`, or
`cp` into restart/ of a crfs mount) and which tests. Per test, as ../shared/zdtm/README.md describes: `make
TEST.pid` starts it, `crfs checkpoint PID --tree -o IMG --kill`, the restart, SIGTERM to the
restored root, then TEST.out says PASS or FAIL. Every wait is bounded (the limits below), a
test that fails leaves no process behind (its sessions are killed), and each result is
appended to a JSON-lines file on the shared work directory as soon as it is known, so that
a guest that runs out of time still leaves the results it had. The step as a whole stops
starting tests once its budget is spent (those tests say so).
"""

import json
import os
import shutil
import shlex
import signal
import subprocess
import sys
import threading
import time
import traceback

from crfs import kernel
from guest_util import read_until_eof

START, CHECKPOINT, RESTART, RESULT = 10, 20, 10, 10     # seconds, each wait at most
# (the manifest may raise START, CHECKPOINT and RESTART for a test: maps04 has 512 MiB)
WORK = "/tmp/zdtm"                  # the programs, copied off the 9p share
IMAGES = "/tmp/zdtm-images"
ELSEWHERE = "/tmp/zdtm-elsewhere"   # the restarter's cwd: a lost cwd must not look kept
MOUNT = "/tmp/zdtm-fuse"
# criu dumps: another tmpfs than IMAGES' /tmp (each is half the guest's memory at most):
# maps04's 512 MiB dump and its 512 MiB converted image do not fit one
CRIU_DUMPS = "/dev/shm/zdtm-criu"
# the way "front": PATH holds no Python `crfs`, so a checkpoint the front handed on to the
# CLI instead of writing it itself fails (status 2) rather than passes unseen
NO_CLI = "/usr/sbin:/usr/bin:/sbin:/bin"
front_path = None      # kmod/crfs-front, built next to the restarter (set by run())


def start_commands(static, names):
    """(Host side.) {name: the command `make NAME.pid` runs}, from `make -n` in the built
    static/ directory (`make NAME.pid` also runs `make -C ../lib`: two makes a start,
    seconds under TCG). A test missing here is started by make."""
    commands = {}
    for name in names:
        dry = subprocess.run(["make", "-s", "-n", f"{name}.pid"], cwd=static,
                             capture_output=True, text=True)
        lines = [line for line in dry.stdout.splitlines() if line.startswith(f"./{name} ")]
        if dry.returncode == 0 and len(lines) == 1:
            commands[name] = lines[0]
    return commands


def step(manifest):
    """The "zdtm" step: None (no step) when the host had no ../shared/zdtm."""
    if not manifest.get("zdtm"):
        return None
    return run(manifest["zdtm"], manifest["restore"]["restarter"])


def run(zdtm, restarter):
    """Every run of the manifest's `zdtm` section; a summary (counts and seconds)."""
    t0 = time.monotonic()
    deadline = t0 + min(zdtm["budget"], time_left(zdtm.get("guest_timeout")))
    if os.path.exists(WORK):
        shutil.rmtree(WORK)
    # off the 9p share, without the objects (only a fallback `make TEST.pid` would want them)
    shutil.copytree(zdtm["dir"], WORK, symlinks=True,
                    ignore=shutil.ignore_patterns("*.o", "*.d"))
    for path in (IMAGES, ELSEWHERE):
        os.makedirs(path, exist_ok=True)
    os.environ["CRFS_RESTARTER"] = restarter
    global front_path
    front_path = os.path.join(os.path.dirname(restarter), "crfs-front")
    warm_up()
    summary = {"setup": round(time.monotonic() - t0, 2), "runs": {}}
    with open(zdtm["results"], "a") as results:
        for spec in zdtm["runs"]:
            summary["runs"][spec["label"]] = one_run(spec, restarter, deadline, results)
    summary["seconds"] = round(time.monotonic() - t0, 2)
    return summary


def time_left(guest_timeout, margin=60):
    """Seconds until `margin` before the harness's timeout of the whole guest (counted from
    boot, /proc/uptime: a guest whose earlier steps ran long still ends with results)."""
    if not guest_timeout:
        return float("inf")
    with open("/proc/uptime") as f:
        return guest_timeout - float(f.read().split()[0]) - margin


def warm_up():
    """Import what `crfs checkpoint` imports, once: each checkpoint is a fork of this
    process (a new Python would spend seconds of the TCG guest on start-up alone)."""
    from crfs import cli   # noqa: F401
    from crfs import convert   # noqa: F401 - and what `crfs convert` of a CRIU dump reads
    from crfs.model import criu_load, ckpt_dump   # noqa: F401
    from crfs.checkpoint import fit, signals, timers   # noqa: F401 - criu_load's lazy ones
    cli.build_parser()


def one_run(spec, restarter, deadline, results):
    """One checkpointer + restart over its tests; {"passed", "failed", "seconds"}."""
    t0 = time.monotonic()
    counts = {"passed": 0, "failed": 0, "not_run": 0}
    mount = mount_crfs() if spec["restart"] == "cp" else None
    if spec["via"] == "criu":
        criu_setup()
    try:
        for name in spec["tests"]:
            if time.monotonic() > deadline:
                result = {"result": "NOT RUN", "reason": "the zdtm step's budget was spent"}
            elif mount is not None and "error" in mount:
                result = {"result": "FAIL", "reason": f"crfs mount: {mount['error']}"}
            else:
                result = one_test(name, spec, restarter, mount)
            result.update(test=name, run=spec["label"])
            key = {"PASS": "passed", "FAIL": "failed"}.get(result["result"], "not_run")
            counts[key] += 1
            results.write(json.dumps(result) + "\n")
            results.flush()
            os.fsync(results.fileno())
            print(f"[zdtm] {spec['label']} {name}: {result['result']} "
                  f"{result.get('reason', '')[:100]}", file=sys.stderr, flush=True)
    finally:
        if mount is not None and "error" not in mount:
            subprocess.run(["fusermount3", "-u", mount["mnt"]], capture_output=True, timeout=60)
    counts["seconds"] = round(time.monotonic() - t0, 2)
    return counts


def one_test(name, spec, restarter, mount):
    """Start, checkpoint, restart, SIGTERM, verdict; the session(s) killed whatever
    happened. {"result": PASS|FAIL, "reason", "seconds": {phase: s}}."""
    static = os.path.join(WORK, "static")
    clean(static, name)
    for stale in (f"{name}.img", f"{name}.log"):
        if os.path.exists(os.path.join(IMAGES, stale)):
            os.unlink(os.path.join(IMAGES, stale))
    times, sessions, held = {}, set(), {}
    outcome = {"result": "FAIL"}
    try:
        outcome = {**phases(name, spec, static, restarter, mount, times, sessions, held),
                   "seconds": times}
        return outcome
    except Exception as exc:      # a bug of this runner: reported, the next test runs
        return {"result": "FAIL", "reason": f"runner: {exc!r}: "
                f"{traceback.format_exc(limit=3)[-300:]}", "seconds": times}
    finally:
        kill_sessions(sessions)
        if held.get("process"):
            try:
                held["process"].wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
        image = os.path.join(IMAGES, f"{name}.img")
        if os.path.exists(image):
            os.unlink(image)
        keep_dump(criu_dir(image), spec.get("keep"), name, outcome["result"])


def keep_dump(dump, keep, name, result):
    """Remove the criu dump `dump` (if any); a failed test's is first copied to
    KEEP/NAME (CRFS_ZDTM_KEEP on the host: the dumps to look at, on the shared work dir)."""
    if not os.path.isdir(dump):
        return
    if keep and result != "PASS":
        shutil.copytree(dump, os.path.join(keep, name), dirs_exist_ok=True)
    shutil.rmtree(dump, ignore_errors=True)


def phases(name, spec, static, restarter, mount, times, sessions, held):
    t = time.monotonic()
    limits = {"start": START, "checkpoint": CHECKPOINT, "restart": RESTART,
              **spec.get("limits", {}).get(name, {})}
    pid, error = start(name, static, sessions, spec.get("commands", {}).get(name),
                       limits["start"])
    times["start"] = lap(t)
    if error:
        return fail(f"start: {error}")
    if spec["via"] == "none":    # the baseline: no checkpoint, SIGTERM to the original
        t = time.monotonic()
        verdict = result(name, static, pid, lambda: "ended", None)
        times["result"] = lap(t)
        return verdict
    image = os.path.join(IMAGES, f"{name}.img")
    t = time.monotonic()
    rc, text = checkpoint(pid, image, spec["via"], limits["checkpoint"])
    times["checkpoint"] = lap(t)
    if spec["via"] == "criu" and not spec.get("keep"):
        shutil.rmtree(criu_dir(image), ignore_errors=True)   # its memory, for the restart
    if rc != 0:
        return fail(f"checkpoint: {last_line(text) or f'status {rc}'}")
    t = time.monotonic()
    root, process, error = restart(name, image, restarter, mount, limits["restart"],
                                   ("--lazy",) if spec["restart"] == "lazy" else ())
    times["restart"] = lap(t)
    held["process"] = process
    if error:
        return fail(f"restart: {error}")
    for pid_ in (root, process.pid if process else None):
        if pid_:
            sessions.add(session_of(pid_))
    t = time.monotonic()
    if mount is None:
        verdict = result(name, static, root, lambda: ended(process),
                         os.path.join(IMAGES, f"{name}.log"))
    else:
        target = os.path.join(mount["mnt"], "restart", f"{name}.img")
        verdict = result(name, static, root, lambda: status_state(target + ".status"),
                         target + ".log")
    times["result"] = lap(t)
    return verdict


def lap(t0):
    return round(time.monotonic() - t0, 2)


def fail(reason):
    return {"result": "FAIL", "reason": reason}


def clean(static, name):
    for suffix in (".out", ".out.inprogress", ".pid", ".test", ".dir.test"):
        path = os.path.join(static, name + suffix)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            os.unlink(path)


def start(name, static, sessions, command=None, timeout=START):
    """`make TEST.pid`, or the `command` it runs (the host's `make -n TEST.pid`: two makes
    less, seconds under TCG), in a session of its own: (the test's pid, None) or (None,
    why)."""
    argv = shlex.split(command) if command else ["make", "-s", f"{name}.pid"]
    proc = subprocess.Popen(argv, cwd=static, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    sessions.add(proc.pid)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_sessions({proc.pid})
        proc.communicate()
        return None, f"{argv[0]} did not return within {timeout}s"
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        return None, f"{' '.join(argv)}: status {proc.returncode}: {last_line(text)}"
    try:
        with open(os.path.join(static, f"{name}.pid")) as f:
            pid = int(f.read().split()[0])
    except (OSError, ValueError, IndexError) as exc:
        return None, f"no pid in {name}.pid: {exc}"
    sessions.add(session_of(pid))
    return pid, None


def checkpoint(pid, image, via, timeout=CHECKPOINT):
    """`crfs checkpoint PID --tree -o IMAGE --kill --via VIA` (via "criu": criu dump +
    crfs convert), killed after `timeout` seconds: (status, its output)."""
    if via == "criu":
        return criu_checkpoint(pid, image, timeout)
    if via == "front":
        return front_checkpoint(pid, image, timeout)
    return run_cli(["checkpoint", str(pid), "--tree", "-o", image, "--kill", "--via", via],
                   timeout)


def front_checkpoint(pid, image, timeout=CHECKPOINT):
    """`crfs checkpoint PID --tree -o IMAGE --leave-stopped` by the compiled front (via
    "front"), with no Python CLI on PATH, then SIGKILL to the tree: (status, output) as
    checkpoint(). Not --kill, which takes no snapshot: this way every test goes through
    CRFS_IOC_SNAPSHOT (the front's default), its clones and their reaping, and nothing
    runs between the snapshot and the kill."""
    try:
        run = subprocess.run([front_path, "checkpoint", str(pid), "--tree", "-o", image,
                              "--leave-stopped"], capture_output=True, text=True,
                             timeout=timeout, start_new_session=True,
                             env={**os.environ, "PATH": NO_CLI})
    except subprocess.TimeoutExpired:
        return -1, f"no answer within {timeout}s"
    if run.returncode == 0:
        gone = kill_tree(pid)
        if gone:
            return 1, f"the stopped tree did not go: {gone}"
    return run.returncode, run.stdout + run.stderr


def kill_tree(pid, timeout=10):
    """SIGKILL to `pid` and its descendants; the pids still there after `timeout` s
    (each reaped by its parent or by init), [] once all are gone."""
    from crfs.checkpoint import procfs
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo.extend(procfs.children(p))
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if os.path.exists(f"/proc/{p}")]
        if not left:
            return []
        time.sleep(0.01)
    return left


def criu_dump_argv(pid, images):
    """`criu dump` of the tree of `pid` into the directory `images` (which kills the tree),
    as bench/zdtm_vs_criu.py dumps a zdtm test (--shell-job: the test's session is not the
    dumped tree's own), its log in images/dump.log."""
    return ["criu", "dump", "-t", str(pid), "-D", images, "--shell-job", "-o", "dump.log"]


def criu_log_errors(path, count=3):
    """The first `count` "Error" lines of a criu log, " / "-joined ("" without one)."""
    try:
        with open(path, errors="replace") as f:
            return " / ".join([line.strip() for line in f if "Error" in line][:count])
    except OSError:
        return ""


def criu_dir(image):
    """Where the criu dump converted into `image` is made."""
    return os.path.join(CRIU_DUMPS, os.path.basename(image) + ".criu")


def criu_checkpoint(pid, image, timeout=CHECKPOINT):
    """The "criu+convert" way: `criu dump` into CRIU_DUMPS/NAME.criu/, then `crfs convert
    DUMP -o IMAGE --format ckpt` in a fork of this process, each within `timeout` seconds:
    (status, output) as checkpoint()."""
    images = criu_dir(image)
    shutil.rmtree(images, ignore_errors=True)
    os.makedirs(images)
    try:
        dump = subprocess.run(criu_dump_argv(pid, images), capture_output=True, text=True,
                              timeout=timeout, start_new_session=True)
    except subprocess.TimeoutExpired:
        return -1, f"criu dump: no answer within {timeout}s"
    if dump.returncode != 0:
        errors = criu_log_errors(os.path.join(images, "dump.log"))
        return dump.returncode, f"criu dump: status {dump.returncode}: {errors}"
    rc, text = run_cli(["convert", images, "-o", image, "--format", "ckpt"], timeout)
    return rc, (text if rc == 0 else f"crfs convert: {last_line(text)}")


def criu_setup():
    """What `criu dump` wants of the guest, once (as tests/criu_guest_checks.py): `lo` up,
    the diag and netfilter modules its feature probe and socket dumps use."""
    from criu_guest_checks import CRIU_MODULES
    subprocess.run(["ip", "link", "set", "lo", "up"], capture_output=True)
    subprocess.run(["modprobe", "-a", *CRIU_MODULES], capture_output=True)


def run_cli(argv, timeout):
    """`crfs ARGV` in a fork of this process (the CLI's main(), as `crfs` runs it), killed
    after `timeout` seconds: (status, its output). A fresh Python when this process has
    threads (a fork would copy their locks)."""
    if threading.active_count() > 1:
        return subprocess_checkpoint(argv, timeout)
    sys.stdout.flush()
    sys.stderr.flush()
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child == 0:    # pragma: no cover - the child
        code = 3
        try:
            os.close(read_fd)
            os.dup2(write_fd, 1)
            os.dup2(write_fd, 2)
            # new streams for the pipe: the inherited ones were made for this process's
            # stdout, a file when tests/guest_all.py runs it, and would seek on the pipe
            sys.stdout = open(1, "w", closefd=False)
            sys.stderr = open(2, "w", closefd=False)
            os.setsid()
            from crfs import cli
            code = cli.main(argv)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code or 0)
    os.close(write_fd)
    text = read_bounded(read_fd, timeout)
    if text is None:
        kill_sessions({child})
        wait_child(child, 5)
        return -1, f"no answer within {timeout}s"
    status = wait_child(child, 5)
    return (-1 if status is None else os.waitstatus_to_exitcode(status)), text


def wait_child(pid, timeout):
    """waitpid(pid) for at most `timeout` seconds: its status, None if it has not ended
    (then it is reaped by a later wait, or by init when this process ends)."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done or time.monotonic() > deadline:
            return status if done else None
        time.sleep(0.05)


def subprocess_checkpoint(argv, timeout):
    try:
        run = subprocess.run([sys.executable, "-m", "crfs", *argv], capture_output=True,
                             text=True, timeout=timeout, start_new_session=True)
    except subprocess.TimeoutExpired:
        return -1, f"no answer within {timeout}s"
    return run.returncode, run.stdout + run.stderr


def read_bounded(fd, timeout):
    """All `fd` gives until EOF (text), None if that takes more than `timeout` seconds;
    closes `fd`."""
    try:
        data = read_until_eof(fd, timeout)
    finally:
        os.close(fd)
    return None if data is None else data.decode(errors="replace")


def restart(name, image, restarter, mount, timeout=RESTART, options=()):
    """The image restarted (crfs-restart OPTIONS, or cp into restart/): (restored root pid,
    restarter process or None, None) or (None, None, why)."""
    if mount is not None:
        return restart_by_cp(name, image, mount, timeout)
    cwd = os.getcwd()
    os.chdir(ELSEWHERE)
    try:
        with open(os.path.join(IMAGES, f"{name}.log"), "wb") as log:
            outcome = kernel.restart_in_child(image, restarter=restarter, timeout=timeout,
                                              stdout=log, options=options)
    finally:
        os.chdir(cwd)
    if outcome.errno:
        return None, None, f"{outcome.stage or 'restart'}: {outcome.reason}"
    return outcome.pid or outcome.process.pid, outcome.process, None


def restart_by_cp(name, image, mount, timeout=RESTART):
    """`cp IMAGE MNT/restart/TEST.img`: close(2) succeeds once it is restored; the pid is
    in restart/TEST.img.status."""
    target = os.path.join(mount["mnt"], "restart", f"{name}.img")
    try:
        cp = subprocess.run(["cp", image, target], capture_output=True, text=True,
                            timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, None, f"cp into restart/ did not return within {timeout}s"
    try:
        with open(target + ".status") as f:
            status = f.read()
    except OSError as exc:
        status = f"(no status: {exc.strerror})"
    if cp.returncode != 0:
        error = [line for line in status.splitlines() if line.startswith("error:")]
        return None, None, f"cp: {last_line(cp.stderr)}; {' '.join(error) or status}"
    pids = [line.split()[1] for line in status.splitlines() if line.startswith("pid:")]
    if not pids:
        return None, None, f"no pid in restart/{name}.img.status: {status!r}"
    return int(pids[0]), None, None


def mount_crfs():
    """A crfs mount (its daemon restarts with CRFS_RESTARTER): {"mnt"} or {"error"}."""
    store, mnt = os.path.join(MOUNT, "store"), os.path.join(MOUNT, "mnt")
    os.makedirs(store, exist_ok=True)
    os.makedirs(mnt, exist_ok=True)
    if not os.path.exists("/dev/fuse"):
        subprocess.run(["modprobe", "fuse"], capture_output=True)
    mount = subprocess.run([sys.executable, "-m", "crfs", mnt, "-o",
                            f"store={store},log={os.path.join(MOUNT, 'crfs.log')}"],
                           capture_output=True, text=True, timeout=120)
    if mount.returncode != 0:
        return {"error": last_line(mount.stderr) or f"status {mount.returncode}"}
    return {"mnt": mnt}


def result(name, static, root, how, log):
    """SIGTERM to the restored root, then at most RESULT seconds for TEST.out (less when the
    root ends without writing it): the verdict. how() says how the root ended, `log` is
    where its restarter's output went."""
    out = os.path.join(static, f"{name}.out")
    try:
        os.kill(root, signal.SIGTERM)
    except ProcessLookupError:
        return fail(f"the restored root had ended before SIGTERM ({how()}){log_tail(log)}")
    deadline = time.monotonic() + RESULT
    gone_at = None
    while time.monotonic() < deadline and not os.path.exists(out):
        if gone_at is None and not alive(root):
            gone_at = time.monotonic()
        if gone_at is not None and time.monotonic() - gone_at > 0.5:
            break
        time.sleep(0.05)
    if os.path.exists(out):
        with open(out, errors="replace") as f:
            text = f.read()
        if any(line.split(":")[-1].strip() == "PASS" for line in text.splitlines()):
            return {"result": "PASS"}
        return fail(fail_line(text) or "TEST.out without PASS")
    why = "no output"
    partial = os.path.join(static, f"{name}.out.inprogress")
    if os.path.exists(partial):
        with open(partial, errors="replace") as f:
            line = fail_line(f.read())
        if line:
            why += f" (TEST.out.inprogress: {line})"
    state = "still running after SIGTERM" if alive(root) else how()
    return fail(f"{why}; the restored root {state}{log_tail(log)}")


def fail_line(text):
    """The first FAIL/ERR line of a zdtm log, without its time and pid prefix."""
    for line in text.splitlines():
        for word in ("FAIL", "ERR", "Error", "error"):
            at = line.find(word)
            if at >= 0:
                return line[at:].strip()[:300]
    return ""


def log_tail(path):
    if not path:
        return ""
    try:
        with open(path, errors="replace") as f:
            text = f.read().strip()
    except OSError:
        return ""
    return f"; restarter output: {text[-200:]}" if text else ""


def status_state(path):
    """The state line of a restart/NAME.status (exited N, killed by SIG...), after at most
    1 s for the daemon to see the end."""
    deadline, state = time.monotonic() + 1, "ended"
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                lines = [line for line in f.read().splitlines() if line.startswith("state:")]
        except OSError:
            return state
        state = lines[0][6:].strip() if lines else state
        if state != "running":
            return state
        time.sleep(0.1)
    return state


def ended(process):
    if process is None:
        return "ended"
    try:
        process.wait(timeout=1)
    except subprocess.TimeoutExpired:
        return "ended, its restarter still running"
    return kernel.describe_exit(process.returncode)


def last_line(text):
    """The last line of `text`; after a traceback, its last frame's place too."""
    lines = [line for line in (text or "").splitlines() if line.strip()]
    if not lines:
        return ""
    frames = [line.strip() for line in lines if line.lstrip().startswith('File "')]
    where = f" (at {frames[-1][:200]})" if "Traceback" in text and frames else ""
    return (lines[-1].strip() + where)[:500]


def stat_fields(pid):
    """(state, pgrp, session) of /proc/PID/stat, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[2]), int(fields[3])


def alive(pid):
    fields = stat_fields(pid)
    return fields is not None and fields[0] not in "ZX"


def session_of(pid):
    fields = stat_fields(pid)
    return fields[2] if fields else pid


def kill_sessions(sessions):
    """SIGKILL every process whose session or process group is one of `sessions` (the
    test's, its restarter's); wait (2 s at most) until none is left (or a zombie)."""
    sessions = {s for s in sessions if s and s > 1 and s != os.getsid(0)}
    if not sessions:
        return
    deadline = time.monotonic() + 2
    while True:
        left = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            fields = stat_fields(int(entry))
            if fields and (fields[1] in sessions or fields[2] in sessions):
                left.append(int(entry))
                try:
                    os.kill(int(entry), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        live = [pid for pid in left if alive(pid)]
        if not live or time.monotonic() > deadline:
            return
        time.sleep(0.05)

