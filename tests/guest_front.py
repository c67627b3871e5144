"""Guest side of the step "front" (tests/test_kmod_guest.py; kmod/crfs-front.c): root's
compiled `crfs` command, which does `crfs checkpoint` through crfs.ko itself and hands
everything else to the Python CLI.

What the front must do itself is run with a PATH holding no `crfs` (NO_CLI): had it handed
the command on, it would fail with status 2. What it must hand on is run both ways: with
NO_CLI it fails (status 2) having let the process go, with a PATH holding a `crfs` script
(this tree's CLI) it ends as the CLI ends. Runs inside the guest; decides nothing.
"""

import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import time

from crfs.checkpoint import procfs

WORK = "/tmp/crfs-front-step"
NO_CLI = "/usr/sbin:/usr/bin:/sbin:/bin"


def step(restore, k):
    """Each part's result (or its exception) by name; `k` is kmod_guest_checks."""
    os.makedirs(WORK, exist_ok=True)
    cli_path = f"{cli_dir()}:{NO_CLI}"
    out = {}
    for name, part in (("stopped", left_stopped), ("tree", tree_killed),
                       ("named", named), ("handed_on", handed_on), ("refused", refused),
                       ("interrupted", interrupted), ("terminal", on_a_terminal),
                       ("nobody", as_nobody), ("snapshot", snapshot)):
        try:
            out[name] = part(restore, k, cli_path)
        except Exception as exc:      # noqa: BLE001 - reported, the other parts go on
            out[name] = {"error": repr(exc)}
    return out


def cli_dir():
    """A directory holding `crfs`, a script running this tree's CLI."""
    path = os.path.join(WORK, "cli")
    os.makedirs(path, exist_ok=True)
    script = os.path.join(path, "crfs")
    with open(script, "w") as f:
        f.write(f'#!/bin/sh\nexec {sys.executable} -m crfs "$@"\n')
    os.chmod(script, 0o755)
    return path


def front(restore, argv, path=NO_CLI, timeout=120):
    """The front with `argv` and PATH `path`: rc, stdout, stderr, seconds."""
    t0 = time.monotonic()
    run = subprocess.run([restore["front"], *argv], capture_output=True, text=True,
                         timeout=timeout, env={**os.environ, "PATH": path})
    return {"rc": run.returncode, "stdout": run.stdout, "stderr": run.stderr[-2000:],
            "seconds": round(time.monotonic() - t0, 3)}


def state(pid):
    """(state letter, TracerPid) of `pid`, or None once it is gone."""
    try:
        fields = procfs.status_fields(f"/proc/{pid}/status")
    except OSError:
        return None
    return fields["State"].split()[0], int(fields["TracerPid"])


def temp_files(directory):
    return sorted(n for n in os.listdir(directory) if n.startswith(".crfs-"))


def left_stopped(restore, k, cli_path):
    """restore_target, `crfs checkpoint PID -o WORK//./stopped.img --leave-stopped --stop`:
    the path printed as the CLI prints it, the process left stopped and untraced; the same
    image as the CLI's `--via kernel` of the same stopped process; killed and restarted.
    --stop: the image is compared page by page with the stopped process, which a snapshot
    need not match (the kernel rewrites a thread's rseq cpu fields when the injected
    waitid that reaps the clone returns on another CPU; docs/checkpoint.md)."""
    out_path = os.path.join(WORK, "stopped.out")
    image = os.path.join(WORK, "stopped.img")
    proc = k.start_ticking(restore["targets"]["dynamic"], restore["datafile"], out_path,
                           restore["limit"])
    result = {"pid": proc.pid, "image": image,
              "checkpoint": front(restore, ["checkpoint", str(proc.pid), "-o",
                                            f"{WORK}//./stopped.img", "--leave-stopped",
                                            "--stop"])}
    try:
        if result["checkpoint"]["rc"] == 0 and k.wait_state(proc.pid, "T"):
            result["after"] = state(proc.pid)
            result["compare"] = k.image_vs_process(image, proc.pid)
            cli_image = os.path.join(WORK, "stopped-cli.img")
            cli = k.crfs_checkpoint(proc.pid, "-o", cli_image, "--via", "kernel",
                                    "--leave-stopped", "--stop")
            result["cli"] = {"rc": cli.returncode, "stderr": cli.stderr[-2000:]}
            if cli.returncode == 0:
                result["same_as_cli"] = k.image_outline(image) == k.image_outline(cli_image)
        result["temp_files"] = temp_files(WORK)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    result["before"] = k.tree_lines(out_path)
    if os.path.exists(image):
        result["restart"] = k.restart_direct(image, out_path + "2", restore["restarter"])
    return result


def tree_killed(restore, k, cli_path):
    """tree_target, `crfs checkpoint PID --tree --kill --store STORE`: the image named as
    the CLI names it, the pids free when the command returns (but the parent, a zombie
    this process must reap), the tree restarted from the stored image."""
    out_path = os.path.join(WORK, "tree.out")
    store = os.path.join(WORK, "store")
    os.makedirs(store, exist_ok=True)
    proc = k.start_tree(restore["tree_target"], out_path, restore["limit"])
    pids = [proc.pid] + procfs.children(proc.pid)
    ck = front(restore, ["checkpoint", str(proc.pid), "--tree", "--kill", "--store", store])
    result = {"pids": pids, "store": store, "checkpoint": ck,
              "states": [state(pid) for pid in pids], "listing": sorted(os.listdir(store))}
    proc.wait(timeout=60)
    result["before"] = k.tree_lines(out_path)
    image = ck["stdout"].strip()
    if ck["rc"] == 0 and os.path.isfile(image):
        result["restart"] = k.restart_tree(image, restore["restarter"], out_path + "2")
    return result


def start_counter(exe):
    """ckpt_counter (tests/c), once it is ready: its Popen and its ready line."""
    proc = subprocess.Popen([exe], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return proc, proc.stdout.readline().decode(errors="replace")


def named(restore, k, cli_path):
    """The store already holds images named as the front would name this one in each of
    the next 10 seconds: its image gets the name with "-1" and theirs stay as they were."""
    store = os.path.join(WORK, "named")
    os.makedirs(store, exist_ok=True)
    proc, ready = start_counter(restore["counter64"])
    try:
        with open(f"/proc/{proc.pid}/comm") as f:
            comm = f.read().rstrip("\n")
        taken = []
        for second in range(int(time.time()), int(time.time()) + 10):
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))
            taken.append(f"{comm}-{proc.pid}-{stamp}.ckpt")
            with open(os.path.join(store, taken[-1]), "w") as f:
                f.write("taken")
        result = {"ready": ready, "taken": taken,
                  "checkpoint": front(restore, ["checkpoint", str(proc.pid), "--store",
                                                store]),
                  "listing": sorted(os.listdir(store))}
        result["untouched"] = all(open(os.path.join(store, n)).read() == "taken"
                                  for n in taken)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    return result


def image_format(path):
    """registry.detect() of `path`, or why not."""
    from crfs.formats.source import Source
    from crfs.model import registry
    try:
        with Source.open(path) as source:
            return registry.detect(source)
    except Exception as exc:      # noqa: BLE001 - reported
        return repr(exc)


def handed_on(restore, k, cli_path):
    """What the front does not parse goes to the CLI unchanged: `--via ptrace`, `--format
    cr`, another command. Without a CLI on PATH each fails (status 2) and leaves the
    process running untraced."""
    proc, ready = start_counter(restore["counter64"])
    pid = str(proc.pid)
    cr_image = os.path.join(WORK, "handed.cr")
    ptrace_image = os.path.join(WORK, "handed-ptrace.img")
    result = {"ready": ready}
    try:
        for name, argv in (("ptrace", ["checkpoint", pid, "--via", "ptrace", "-o",
                                       ptrace_image]),
                           ("cr", ["checkpoint", pid, "--format", "cr", "-o", cr_image])):
            result[name] = {"no_cli": front(restore, argv), "after_no_cli": state(proc.pid),
                            "cli": front(restore, argv, cli_path),
                            "after_cli": state(proc.pid)}
        result["cr"]["format"] = image_format(cr_image)
        result["ptrace"]["format"] = image_format(ptrace_image)
        info = ["info", ptrace_image]
        result["info"] = {"front": front(restore, info, cli_path),
                          "python": subprocess.run([sys.executable, "-m", "crfs", *info],
                                                   capture_output=True, text=True).stdout}
    finally:
        proc.kill()
        proc.wait(timeout=60)
    return result


def refused(restore, k, cli_path):
    """A 32-bit process, which crfs.ko does not write (EOPNOTSUPP): the front lets it go
    and hands the command on, where --via auto falls back to the userspace writer."""
    image = os.path.join(WORK, "counter32.ckpt")
    proc, ready = start_counter(restore["counter32"])
    result = {"ready": ready}
    try:
        argv = ["checkpoint", str(proc.pid), "-o", image]
        result["no_cli"] = front(restore, argv)
        result["after_no_cli"] = state(proc.pid)
        result["temp_files"] = temp_files(WORK)
        result["image_after_no_cli"] = os.path.exists(image)
        result["cli"] = front(restore, argv, cli_path)
        result["after_cli"] = state(proc.pid)
        result["verify"] = subprocess.run([sys.executable, "-m", "crfs", "verify", image],
                                          capture_output=True, text=True).returncode
    finally:
        proc.kill()
        proc.wait(timeout=60)
    return result


def interrupted(restore, k, cli_path):
    """SIGTERM while crfs.ko writes a 128 MiB image (its temporary file growing): the
    front lets the write end, lets the process go, removes the file and dies of the
    signal; nothing is handed on."""
    work = os.path.join(WORK, "sigterm")
    os.makedirs(work, exist_ok=True)
    proc = subprocess.Popen([restore["lazy_target"], work, "idle", "128"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    result = {"ready": proc.stdout.readline().decode(errors="replace")}
    image = os.path.join(work, "big.img")
    try:
        ck = subprocess.Popen([restore["front"], "checkpoint", str(proc.pid), "-o", image],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PATH": NO_CLI})
        result["growing"] = wait_growing(work)
        ck.send_signal(signal.SIGTERM)
        stdout, stderr = ck.communicate(timeout=120)
        result.update(rc=ck.returncode, stdout=stdout, stderr=stderr[-2000:],
                      temp_files=temp_files(work), image=os.path.exists(image),
                      after=state(proc.pid))
    finally:
        proc.kill()
        proc.wait(timeout=60)
    return result


def wait_growing(directory, timeout=60):
    """Whether a temporary image in `directory` had bytes within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name in temp_files(directory):
            try:
                if os.path.getsize(os.path.join(directory, name)) > 0:
                    return True
            except OSError:
                pass
        time.sleep(0.005)
    return False


def with_tty(argv, env=None, timeout=300):
    """`argv` with its stderr on a pseudo-terminal: rc, stdout, what the terminal got,
    seconds."""
    master, slave = pty.openpty()
    t0 = time.monotonic()
    try:
        run = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=slave, text=True,
                               env=env)
        os.close(slave)
        slave = None
        seen = b""
        while True:
            ready = select.select([master], [], [], 0.5)[0]
            try:
                chunk = os.read(master, 4096) if ready else b""
            except OSError:        # EIO: the last writer closed it
                chunk = b""
            seen += chunk
            if not chunk and run.poll() is not None:
                break
        stdout = run.communicate(timeout=timeout)[0]
    finally:
        os.close(master)
        if slave is not None:
            os.close(slave)
    return {"rc": run.returncode, "stdout": stdout, "tty": seen.decode(errors="replace"),
            "seconds": round(time.monotonic() - t0, 3)}


def on_a_terminal(restore, k, cli_path):
    """stderr on a terminal: the front's summary line (and, after a second, its progress),
    none with -q, and the CLI's `--via kernel` line, of lazy_target's 256 MiB."""
    work = os.path.join(WORK, "tty")
    os.makedirs(work, exist_ok=True)
    result = {}
    env = {**os.environ, "PATH": NO_CLI}
    for name, argv in (("front", [restore["front"]]), ("quiet", [restore["front"]]),
                       ("cli", [sys.executable, "-m", "crfs"])):
        proc = subprocess.Popen([restore["lazy_target"], work, "idle", "256"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            ready = proc.stdout.readline().decode(errors="replace")
            options = ["-q"] if name == "quiet" else ["--via", "kernel"] if name == "cli" else []
            result[name] = with_tty([*argv, "checkpoint", str(proc.pid), "-o",
                                     os.path.join(work, f"{name}.img"), "--kill", *options],
                                    env if name != "cli" else None)
            result[name].update(ready=ready, pid=proc.pid)
        finally:
            proc.kill()
            proc.wait(timeout=60)
            for leftover in os.listdir(work):
                if leftover.endswith(".img"):
                    os.unlink(os.path.join(work, leftover))
    return result


NOBODY = 65534


def as_nobody(restore, k, cli_path):
    """uid 65534 runs the front on root's process, into a directory it may write: it cannot
    open /dev/crfs (0600), so it touches nothing and hands the command on (no CLI on PATH:
    status 2); the process runs on untraced and no image or temporary file is left."""
    work = os.path.join(WORK, "nobody")
    os.makedirs(work, exist_ok=True)
    os.chmod(work, 0o1777)
    front_copy = os.path.join(WORK, "crfs-front")    # the build directory is root's alone
    shutil.copy(restore["front"], front_copy)
    proc, ready = start_counter(restore["counter64"])
    image = os.path.join(work, "root.img")

    def drop():
        os.setgroups([])
        os.setresgid(NOBODY, NOBODY, NOBODY)
        os.setresuid(NOBODY, NOBODY, NOBODY)
    try:
        run = subprocess.run([front_copy, "checkpoint", str(proc.pid), "-o", image],
                             capture_output=True, text=True, timeout=120, preexec_fn=drop,
                             env={**os.environ, "PATH": NO_CLI})
        result = {"ready": ready, "rc": run.returncode, "stdout": run.stdout,
                  "stderr": run.stderr, "after": state(proc.pid),
                  "left": sorted(os.listdir(work)),
                  "device_mode": oct(os.stat("/dev/crfs").st_mode & 0o777)}
    finally:
        proc.kill()
        proc.wait(timeout=60)
    return result


PAGE = 4096
WORDS = PAGE // 8


def start_rewriter(exe, threads, pages):
    """ckpt_rewrite (tests/c) once every thread has written every page twice: its Popen
    and its ready line's numbers."""
    proc = subprocess.Popen([exe, str(threads), str(pages)], stdout=subprocess.PIPE,
                            text=True)
    line = proc.stdout.readline()
    ready = {key: int(value, 16) for key, value in (item.split("=") for item in line.split()[1:])}
    deadline = time.monotonic() + 120
    while min(g for g, _ in rewriter_progress(proc.pid, ready)) < 3:
        if time.monotonic() > deadline:
            raise TimeoutError("ckpt_rewrite did not get going")
        time.sleep(0.05)
    return proc, ready


def read_mem(pid, address, size):
    with open(f"/proc/{pid}/mem", "rb") as mem:
        mem.seek(address)
        return mem.read(size)


def rewriter_progress(pid, ready, read=None):
    """[(generation, page)] of each thread, from the process or with read(address, size)."""
    import struct
    read = read or (lambda address, size: read_mem(pid, address, size))
    data = read(ready["progress"], 16 * ready["threads"])
    return [struct.unpack_from("<QQ", data, 16 * t) for t in range(ready["threads"])]


def one_instant(image_path, ready):
    """Where the image's pattern breaks: each thread's pages below its progress word hold
    generation g, the others g - 1 (the page being written: g, then g - 1)."""
    import struct

    from crfs.model import registry
    image = registry.open_image(image_path)
    problems = []
    try:
        mm = image.tasks[0].mm
        pages = ready["pages"]
        for t, (g, i) in enumerate(rewriter_progress(0, ready, mm.read)):
            data = mm.read(ready["buf"] + t * pages * PAGE, pages * PAGE)
            words = struct.unpack(f"<{pages * WORDS}Q", data)
            for page in range(pages):
                got = words[page * WORDS:(page + 1) * WORDS]
                if page == i:
                    k = got.index(g - 1) if g - 1 in got else WORDS
                    ok = set(got[:k]) <= {g} and set(got[k:]) <= {g - 1}
                else:
                    ok = set(got) == {g if page < i else g - 1}
                if not ok:
                    problems.append((t, page, g, i, sorted(set(got))[:4]))
    finally:
        image.close()
    return problems[:10]


def traces(pid):
    """What a program could see of a checkpoint: its children (zombies too), its fds."""
    children = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as f:
            children |= set(f.read().split())
    return [sorted(children), sorted(os.listdir(f"/proc/{pid}/fd"))]


def snapshot(restore, k, cli_path):
    """ckpt_rewrite (2 threads rewriting 16 MiB each) checkpointed through crfs.ko, on a
    terminal, as it runs on (the default: a snapshot), by the front alone and by the
    Python CLI's `--via kernel`: for each, the summary line, the image's pattern (one
    instant), verify's word for it, and what the program could see: its children, zombies
    and fds before and after, its SIGCHLD count, and its progress."""
    return {"front": snapshot_by(restore, [restore["front"]], {"PATH": NO_CLI}),
            "cli": snapshot_by(restore, [sys.executable, "-m", "crfs"], {}, "--via",
                               "kernel")}


def snapshot_by(restore, crfs, env, *options):
    image = os.path.join(WORK, "snapshot.img")
    proc, ready = start_rewriter(restore["ckpt_rewrite"], 2, 4096)
    try:
        before = traces(proc.pid)
        run = with_tty([*crfs, "checkpoint", str(proc.pid), "-o", image, *options],
                       {**os.environ, **env})
        result = {"pid": proc.pid, "image": image, "run": run, "before": before,
                  "after": traces(proc.pid), "state": state(proc.pid)}
        result["sigchld"] = int.from_bytes(read_mem(proc.pid, ready["sigchld"], 8), "little")
        if run["rc"] == 0:
            result["problems"] = one_instant(image, ready)
            result["image_progress"] = rewriter_progress(0, ready, _image_reader(image))
            result["progress_now"] = rewriter_progress(proc.pid, ready)
            verify = subprocess.run([sys.executable, "-m", "crfs", "verify", image],
                                    capture_output=True, text=True, timeout=300)
            result["verify"] = {"rc": verify.returncode, "stdout": verify.stdout[-3000:]}
    finally:
        proc.kill()
        proc.wait(timeout=60)
        if os.path.exists(image):
            os.unlink(image)
    return result


def _image_reader(path):
    from crfs.model import registry

    def read(address, size):
        image = registry.open_image(path)
        try:
            return image.tasks[0].mm.read(address, size)
        finally:
            image.close()
    return read
