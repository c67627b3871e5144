"""Guest side of tests/test_kmod_guest.py: runs inside the qemu guest (kmod/harness).

usage: kmod_guest_checks.py MODULE.ko MANIFEST.json RESULTS.json

Loads the module, calls the ioctls of /dev/crfs on every image of the manifest and on
file descriptors that are not images, unloads the module, and writes what happened as JSON.
It decides nothing: the host-side tests hold the expectations. Only the standard library and
crfs.kernel are imported (Python is ~10x slower under TCG).
"""

import ctypes
import errno
import json
import os
import signal
import stat
import struct
import subprocess
import sys
import threading
import time

from crfs import kernel

# tests/, next to this script
import guest_files     # noqa: E402
from guest_util import dmesg_problems, in_child, read_until_eof, records   # noqa: E402
import guest_signals   # noqa: E402
import guest_zdtm      # noqa: E402


def name(code):
    """errno name; EOPNOTSUPP rather than its alias ENOTSUP."""
    if code == errno.EOPNOTSUPP:
        return "EOPNOTSUPP"
    return errno.errorcode.get(code, code)


def outcome(call):
    """{"errno": name or 0, "msg": reason, "offset": offset} of one ioctl call."""
    try:
        call()
    except kernel.KernelError as exc:
        return {"errno": name(exc.errno), "msg": exc.reason,
                "offset": exc.offset, "type": exc.record_type}
    except OSError as exc:
        return {"errno": name(exc.errno), "msg": str(exc)}
    return {"errno": 0, "msg": ""}


def on_path(dev, path, op, flags=os.O_RDONLY):
    if op == "restart":
        return restart_forked(path)
    fd = os.open(path, flags | os.O_CLOEXEC)
    try:
        return outcome(lambda: getattr(dev, op)(fd))
    finally:
        os.close(fd)


def restart_forked(path, threaded=False, timeout=30):
    """CRFS_IOC_RESTART from a forked child of this process (no vdso move, unlike
    crfs-restart): a restore would replace the child, never this process. The child
    reports on a pipe; EOF without a report means it was restored (then it is killed).
    No report after `timeout` seconds: "hung" (the child is killed)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:   # the child
        os.close(read_fd)
        try:
            if threaded:
                threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
            fd = os.open(path, os.O_RDONLY)
            with kernel.Device() as dev:
                result = outcome(lambda: dev.restart(fd))
        except BaseException as exc:   # noqa: BLE001 - always report
            result = {"errno": "child", "msg": repr(exc)}
        os.write(write_fd, json.dumps(result).encode())
        os._exit(0)
    os.close(write_fd)
    data = read_until_eof(read_fd, timeout)
    os.close(read_fd)
    if not data:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    if data is None:
        return {"errno": "hung", "msg": f"no answer after {timeout} s"}
    if not data:
        return {"errno": "restored", "msg": f"wait status {status:#x}"}
    return json.loads(data)


def raw_ioctl(dev, request, args_type, arg, **fields):
    """An ioctl with a hand-made argument (bad flags, bad pointer): `arg` is an address,
    or None for an `args_type` struct filled with `fields`."""
    if arg is None:
        args = args_type(**fields)
        arg = ctypes.addressof(args)
    ret = kernel._ioctl(dev.fd, request, arg)
    return {"errno": name(-ret) if ret < 0 else 0}


def raw_check(dev, arg, **fields):
    return raw_ioctl(dev, kernel.CRFS_IOC_CHECK, kernel.ImageArgs, arg, **fields)


def special_fds(dev, valid_image, scratch):
    out = {}
    out["dev_null"] = on_path(dev, "/dev/null", "check")
    out["directory"] = on_path(dev, "/", "check")
    out["write_only"] = on_path(dev, valid_image, "check", os.O_WRONLY) \
        if os.access(valid_image, os.W_OK) else {"errno": "skipped"}
    out["o_path"] = on_path(dev, valid_image, "check", os.O_PATH)
    read_end, write_end = os.pipe()
    os.write(write_end, open(valid_image, "rb").read(4096))
    out["pipe"] = outcome(lambda: dev.check(read_end))
    os.close(read_end)
    os.close(write_end)
    out["closed_fd"] = outcome(lambda: dev.check(987))
    out["negative_fd"] = outcome(lambda: dev.check(-1))
    fd = os.open(valid_image, os.O_RDONLY)
    out["flags_set"] = raw_check(dev, None, fd=fd, flags=0x80)     # not a RESTART flag
    out["task_index_past_tasks"] = raw_check(dev, None, fd=fd, task_index=1)
    out["bad_pointer"] = raw_check(dev, 16)
    os.close(fd)
    sparse = os.path.join(scratch, "sparse.img")
    with open(sparse, "wb") as f:
        f.truncate(1 << 41)
    out["huge_sparse"] = on_path(dev, sparse, "check")
    os.unlink(sparse)
    out["unknown_ioctl"] = {"errno": name(
        -kernel._ioctl(dev.fd, kernel.CRFS_IOC_CHECK + 0x40, 0))}
    return out


# --------------------------------------------------------------------------- restore


def patched(src, dst, patch):
    data = bytearray(open(src, "rb").read())
    patch(data)
    with open(dst, "wb") as f:
        f.write(data)
    return dst


def bad_mxcsr(data):
    """Reserved MXCSR bits set in CPU_FPU: the xstate dry run must refuse it."""
    for offset, type_, _ in records(data):
        if type_ == 201:
            struct.pack_into("<I", data, offset + 8 + 24, 0xFFFF1F80)


def file_vma_past_eof(datafile):
    """The data file's VMA moved 1000 pages into the (2-page) file: mmap works, filling
    its written page faults after the point of no return."""
    def patch(data):
        after_name = False
        for offset, type_, length in records(data):
            if type_ == 303 and datafile.encode() in data[offset:offset + length]:
                after_name = True
            elif type_ == 402 and after_name:
                struct.pack_into("<Q", data, offset + 64, 1000)
                return
    return patch


def missing_file(datafile):
    def patch(data):
        name = datafile.encode()
        for offset, type_, length in records(data):
            if type_ == 303:
                at = data.find(name, offset, offset + length)
                if at >= 0:
                    data[at + len(name) - 1] ^= 0x20
    return patch


def crfs_checkpoint(pid, *options):
    """`crfs checkpoint PID OPTIONS...` in a new Python (as a user runs it), 2 minutes at
    most: its completed process, output captured."""
    return subprocess.run([sys.executable, "-m", "crfs", "checkpoint", str(pid), *options],
                          capture_output=True, text=True, timeout=120)


def run_target(exe, data, out_path, limit, cli):
    """Start exe under setarch -R, let it tick, checkpoint it with --kill."""
    image = out_path + ".img"
    proc = start_ticking(exe, data, out_path, limit)
    t0 = time.monotonic()
    if cli:
        ck = crfs_checkpoint(proc.pid, "-o", image, "--kill", "--via", "ptrace")
        result = {"rc": ck.returncode, "stderr": ck.stderr}
    else:
        checkpoint(proc.pid, image, after="kill")
        result = {"rc": 0}
    result["seconds"] = round(time.monotonic() - t0, 2)
    result["returncode"] = proc.wait(timeout=60)
    with open(out_path) as f:
        result["before"] = f.read().splitlines()
    return image, result


def end_of(child, timeout=120):
    """How a restored program ended ("exited N", "killed by SIG..."), through its restarter
    (itself, or its relay); after `timeout` seconds it is killed with its process group."""
    try:
        child.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        for pid in {child.pid, child.process.pid}:
            try:
                os.killpg(os.getpgid(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        child.process.wait()
    return kernel.describe_exit(child.process.returncode)


def restart_to(image, restarter, out_path):
    """crfs-restart of `image` in a child with its output into `out_path` (2 minutes at
    most to report): the child, and the seconds until it reported."""
    with open(out_path, "wb") as out:
        t0 = time.monotonic()
        # -R: the program's stdio is this output, not the files it had (the files step
        # tests what it writes to without -R)
        child = kernel.restart_in_child(image, restarter=restarter, stdout=out, timeout=120,
                                        options=("-R",))
        return child, time.monotonic() - t0


def reported(child, **extra):
    """What a restarter child reported (errno name, reason, stage), then `extra`."""
    return {"errno": name(child.errno), "msg": child.reason, "stage": child.stage, **extra}


def restart_direct(image, out_path, restarter, wait=True, resume=False):
    """crfs-restart of `image`; with `resume`, the restored program is sent SIGCONT (an
    image of a stopped process is restored stopped)."""
    child, latency = restart_to(image, restarter, out_path)
    result = reported(child, latency=round(latency, 3), pid=child.pid)
    if child.errno == 0 and resume:
        os.kill(child.pid, signal.SIGCONT)
    if child.errno == 0:
        result["exit"] = end_of(child, 120 if wait else 10)
    with open(out_path) as f:
        result["after"] = f.read().splitlines()
    return result


def restore_programs(manifest):
    global checkpoint
    from crfs.checkpoint import checkpoint   # imported before any program runs (slow here)
    out = {}
    work, data, restarter = manifest["work"], manifest["datafile"], manifest["restarter"]
    for n, (label, exe) in enumerate(manifest["targets"].items()):
        image, before = run_target(exe, data, os.path.join(work, f"{label}.out"),
                                   manifest["limit"], cli=(n == 0))
        out[label] = {"checkpoint": before,
                      "restart": restart_direct(image, os.path.join(work, f"{label}.out2"),
                                                restarter)}
        out[label]["image"] = image
    image = out["dynamic"]["image"]
    errors = {}
    errors["vdso_not_moved"] = restart_forked(image)
    errors["threaded_caller"] = restart_forked(image, threaded=True)
    errors["missing_file"] = restart_direct(
        patched(image, image + ".nofile", missing_file(data)), image + ".nofile.out",
        restarter)
    errors["bad_xstate"] = restart_direct(
        patched(image, image + ".xstate", bad_mxcsr), image + ".xstate.out", restarter)
    errors["post_ponr_fault"] = restart_direct(
        patched(image, image + ".eof", file_vma_past_eof(data)), image + ".eof.out",
        restarter)
    out["errors"] = errors
    return out


def restore_chain(manifest):
    """restore_target checkpointed three times while it ticks: a full image with --track,
    a child with --parent, a grandchild with --parent --kill (snapshots but the last); the
    chain flattened (crfs.model.chain.flatten, as the restart path does) and restarted."""
    from crfs.checkpoint import checkpoint as ckpt
    from crfs.checkpoint import tracking
    from crfs.model import chain, registry
    work, data, restarter = manifest["work"], manifest["datafile"], manifest["restarter"]
    os.environ["CRFS_STATE_DIR"] = os.path.join(work, "chain-state")
    out_path = os.path.join(work, "chain.out")
    proc = start_ticking(manifest["targets"]["dynamic"], data, out_path, manifest["limit"])
    result = {"tracking": tracking.method(), "reports": [], "sizes": []}
    paths = [os.path.join(work, f"chain-{n}.img") for n in "abc"]
    options = ({"track": True}, {"parent": paths[0]}, {"parent": paths[1], "after": "kill"})
    try:
        for path, extra in zip(paths, options):
            report = {}
            ckpt(proc.pid, path, report=report, **extra)
            result["reports"].append(report)
            result["sizes"].append(os.path.getsize(path))
    except Exception as exc:      # reported, not raised: the other steps go on
        result["error"] = f"{type(exc).__name__}: {exc}"
        proc.kill()
        proc.wait()
        return result
    result["returncode"] = proc.wait(timeout=60)
    with open(out_path) as f:
        result["before"] = f.read().splitlines()
    image = registry.open_image(paths[2])
    try:
        result["chain"] = image.chain
        flat = chain.flatten(image, work, lambda img, out: registry.dump(img, out, "ckpt"))
    finally:
        image.close()
    result["restart"] = restart_direct(flat, os.path.join(work, "chain.out2"), restarter)
    return result


def child_cs_32(data):
    """Task 1's CPU record says a 32-bit code segment: that task alone is refused."""
    cpus = [offset for offset, type_, _ in records(data) if type_ == 107]
    struct.pack_into("<H", data, cpus[1] + 180, 1)


def tree_lines(path):
    with open(path) as f:
        return f.read().splitlines()


def wait_for_output(path, done, timeout=60):
    """Poll `path` every 50 ms until done(its text) or `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(path) as f:
            if done(f.read()):
                return
        time.sleep(0.05)


def lines_starting(prefix, count):
    """done() for wait_for_output: `count` lines starting with `prefix`."""
    return lambda text: sum(line.startswith(prefix) for line in text.splitlines()) >= count


def full_lines(count):
    """done() for wait_for_output: `count` complete lines."""
    return lambda text: text.count("\n") >= count


def tree_processes():
    """Processes left of the tree: tree_target's or crfs-restart's."""
    return leftover(("tree_target", "crfs-restart"))


def restore_tree(manifest):
    """tree_target (a parent and its forked child) under setarch -R, `crfs checkpoint
    --tree --kill`, then crfs-restart: both go on counting, the child under the restored
    parent (/proc/PID/status PPid); then a tree whose child task is refused."""
    work, restarter, limit = manifest["work"], manifest["restarter"], manifest["limit"]
    out_path = os.path.join(work, "tree.out")
    image = out_path + ".img"
    proc = start_tree(manifest["tree_target"], out_path, limit)
    ck = crfs_checkpoint(proc.pid, "--tree", "-o", image, "--kill", "--via", "ptrace")
    result = {"image": image,
              "checkpoint": {"rc": ck.returncode, "stderr": ck.stderr[-2000:],
                             "returncode": proc.wait(timeout=60)}}
    time.sleep(0.2)   # the killed child's last line
    result["checkpoint"]["before"] = tree_lines(out_path)
    if not os.path.exists(image):      # the checkpoint failed: report it, go on
        return result
    result["restart"] = restart_tree(image, restarter, out_path + "2")
    # task 1 refused: the whole tree is killed, the restored root included
    bad = patched(image, image + ".cs32", child_cs_32)
    refused = reported(restart_to(bad, restarter, bad + ".out")[0])
    time.sleep(0.5)
    refused["survivors"] = tree_processes()
    refused["after"] = tree_lines(bad + ".out")
    result["refused"] = refused
    result["ids"] = {mode: tree_ids(manifest, mode) for mode in ("setsid", "setpgid")}
    # the child's group led by no process of the image: refused before any fork
    bad = patched(image, image + ".pgid", child_pgid_unknown)
    refused = reported(restart_to(bad, restarter, bad + ".out")[0])
    time.sleep(0.5)
    refused["survivors"] = tree_processes()
    result["bad_pgid"] = refused
    return result


def child_pgid_unknown(data):
    """The TREE's task 1 (ckpt_pids: vpid, vppid, vtgid, vpgid, vsid, depth) says pgid
    99999, a group no process of the image leads."""
    tree = [offset for offset, type_, _ in records(data) if type_ == 101][0]
    pids = tree + struct.unpack_from("<I", data, tree + 4)[0] + 8
    struct.pack_into("<i", data, pids + 24 + 12, 99999)


def ids_of(pid):
    """A process's pgrp and session (/proc/PID/stat) said as "self", "parent" or "other"."""
    stat = open(f"/proc/{pid}/stat").read()
    fields = stat[stat.rindex(")") + 2:].split()
    ppid, pgrp, sid = int(fields[1]), int(fields[2]), int(fields[3])
    return ["self" if v == pid else "parent" if v == ppid else "other" for v in (pgrp, sid)]


def child_of_tree(path):
    """The pid the last "child" line of tree_target's output names, or None."""
    pids = [int(line.split()[2][4:]) for line in tree_lines(path) if line.startswith("child ")]
    return pids[-1] if pids else None


def tree_ids(manifest, mode):
    """tree_target whose child made its own session or group (`mode`), checkpointed and
    restarted: its child's pgrp and session before and after (ids_of), the outcome."""
    work, restarter, limit = manifest["work"], manifest["restarter"], manifest["limit"]
    out_path = os.path.join(work, f"tree-{mode}.out")
    image = out_path + ".img"
    proc = start_tree(manifest["tree_target"], out_path, limit, mode)
    result = {"before": ids_of(child_of_tree(out_path))}
    ck = crfs_checkpoint(proc.pid, "--tree", "-o", image, "--kill", "--via", "ptrace")
    proc.wait(timeout=60)
    result["checkpoint"] = ck.returncode
    if not os.path.exists(image):
        return result
    child, _ = restart_to(image, restarter, out_path + "2")
    result["restart"] = reported(child)
    if child.errno == 0:
        wait_for_output(out_path + "2", lines_starting("child", 2))
        try:
            result["after"] = ids_of(child_of_tree(out_path + "2"))
        except (OSError, TypeError) as exc:
            result["after"] = repr(exc)
        result["exit"] = end_of(child)
    result["survivors"] = tree_processes()
    return result


def start_tree(exe, out_path, limit, *mode):
    """tree_target under setarch -R, once its child has printed 10 lines."""
    with open(out_path, "w") as out:
        proc = subprocess.Popen(["setarch", "-R", exe, str(limit), *mode], stdout=out,
                                stderr=subprocess.STDOUT)
    wait_for_output(out_path, lines_starting("child", 10))
    return proc


def restart_tree(image, restarter, out2):
    """crfs-restart of a tree_target image: its outcome, the restored child's /proc status
    (pid, PPid, Name), how the root ended, the output, and what is left of the tree."""
    child, _ = restart_to(image, restarter, out2)
    restart = reported(child, root=child.pid)
    if child.errno == 0:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "proc" not in restart:
            for line in tree_lines(out2):
                if line.startswith("child "):
                    pid = int(line.split()[2][4:])
                    try:
                        status = proc_status(pid)
                        restart["proc"] = {"pid": pid, "ppid": int(status["PPid"]),
                                           "name": status["Name"]}
                    except OSError as exc:
                        restart["proc"] = {"pid": pid, "error": repr(exc)}
                    break
            time.sleep(0.05)
        restart["exit"] = end_of(child)
    restart["after"] = tree_lines(out2)
    restart["survivors"] = tree_processes()
    return restart


def leftover(prefixes):
    """Processes whose comm starts with one of `prefixes`: what a test left running."""
    left = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
        except (OSError, ValueError):
            continue
        if comm.startswith(prefixes):
            left.append(f"{pid} {comm}")
    return left


def proc_status(pid):
    """/proc/PID/status as {field: value}."""
    with open(f"/proc/{pid}/status") as f:
        return dict(row.split(":\t", 1) for row in f.read().splitlines() if ":\t" in row)


def threads_of(pid):
    """/proc/PID/status Threads and the comm of each task, while it runs."""
    try:
        status = proc_status(pid)
        return {"threads": int(status["Threads"]), "name": status["Name"],
                "tids": sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))}
    except (OSError, KeyError, ValueError) as exc:
        return {"error": repr(exc)}


def restart_threads(image, out_path, restarter):
    """crfs-restart of a threads_target image: outcome, /proc view while it runs, output."""
    child, _ = restart_to(image, restarter, out_path)
    result = reported(child, pid=child.pid)
    if child.errno == 0:
        wait_for_output(out_path, lines_starting("worker2", 3), timeout=30)
        result["proc"] = threads_of(child.pid)
        result["exit"] = end_of(child)
    result["after"] = tree_lines(out_path)
    result["survivors"] = leftover(("threads_target", "crfs-restart"))
    return result


def restore_threads(manifest):
    """threads_target (a main thread and two pthreads) under setarch -R, `crfs checkpoint
    --kill` (by crfs, then by the module), then crfs-restart: each thread counts on, in one
    process; then crfs's image with one thread's task refused (a 32-bit code segment)."""
    result = checkpoint_threads(manifest, "threads", "ptrace")
    if "restart" in result:
        bad = patched(result["image"], result["image"] + ".cs32", child_cs_32)
        result["refused"] = restart_threads(bad, bad + ".out", manifest["restarter"])
    result["kernel"] = checkpoint_threads(manifest, "kthreads", "kernel")
    return result


def checkpoint_threads(manifest, label, via):
    """threads_target checkpointed `--via` crfs (ptrace) or the module, then restarted."""
    work, restarter, limit = manifest["work"], manifest["restarter"], manifest["limit"]
    out_path = os.path.join(work, f"{label}.out")
    image = out_path + ".img"
    with open(out_path, "w") as out:
        proc = subprocess.Popen(["setarch", "-R", manifest["threads_target"], str(limit)],
                                stdout=out, stderr=subprocess.STDOUT)
    wait_for_output(out_path, lines_starting("worker2", 10))
    before = threads_of(proc.pid)
    ck = crfs_checkpoint(proc.pid, "-o", image, "--kill", "--via", via)
    result = {"image": image,
              "checkpoint": {"rc": ck.returncode, "stderr": ck.stderr[-2000:],
                             "returncode": proc.wait(timeout=60), "proc": before}}
    result["checkpoint"]["before"] = tree_lines(out_path)
    if os.path.exists(image):
        result["restart"] = restart_threads(image, out_path + "2", restarter)
    return result


def without_vdso(data):
    """MM_CONTEXT.vdso 0 and the VDSO VMA ignored: the restore needs no vdso in place."""
    for offset, type_, _ in records(data):
        if type_ == 404:                                   # MM_CONTEXT: u64 vdso first
            struct.pack_into("<Q", data, offset + 8, 0)
        elif type_ == 402 and struct.unpack_from("<I", data, offset + 8)[0] == 1:
            struct.pack_into("<I", data, offset + 8, 0)   # VMA: vma_type VDSO -> IGNORE


def in_threads(calls, main_call=None, idle=0, delay=1.0):
    """In a forked child: each (task_index, path) of `calls` RESTARTed by a thread of its
    own (with `idle` more threads that only sleep), then `main_call` by the main thread
    after `delay`. The outcomes, the main thread's last; "restored" if it went through."""
    return threads_outcome(*threads_child(calls, main_call, idle, delay))


def in_two_processes(calls):
    """in_threads(calls) in two processes at once: [outcomes of the first, of the second]."""
    first = threads_child(calls)
    second = threads_child(calls)
    return [threads_outcome(*first), threads_outcome(*second)]


def threads_child(calls, main_call=None, idle=0, delay=1.0):
    """The child of in_threads(), started: (its pid, the read end of its report pipe)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:   # the child
        os.close(read_fd)
        try:
            results = [None] * (len(calls) + 1)
            dev = kernel.Device()
            t0 = time.monotonic()

            tids = []

            def run(slot, index, path):
                tids.append(threading.get_native_id())
                fd = os.open(path, os.O_RDONLY)
                called = elapsed(t0)
                results[slot] = outcome(lambda: dev.restart(fd, index))
                results[slot]["called"], results[slot]["returned"] = called, elapsed(t0)

            threads = [threading.Thread(target=run, args=(slot, *call))
                       for slot, call in enumerate(calls)]
            threads += [threading.Thread(target=time.sleep, args=(60,), daemon=True)
                        for _ in range(idle)]
            for thread in threads:
                thread.start()
            if main_call is not None:
                time.sleep(delay)
                wait_in_group(tids, len(calls), results)
                run(len(calls), *main_call)
            for thread in threads[:len(calls)]:
                thread.join()
        except BaseException as exc:   # noqa: BLE001 - always report
            results = [{"errno": "child", "msg": repr(exc)}]
        os.write(write_fd, json.dumps(results).encode())
        os._exit(0)
    os.close(write_fd)
    return pid, read_fd


def wait_in_group(tids, count, results, limit=30):
    """Until each of the `count` calling threads waits in the module's thread group (or has
    returned): on a loaded host a fixed delay let the main thread call before them."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        waiting = sum(1 for tid in list(tids) if kernel_wait(tid).startswith("crfs_group"))
        done = sum(1 for result in results[:count] if result is not None)
        if len(tids) == count and waiting + done >= count:
            return
        time.sleep(0.05)


def kernel_wait(tid):
    """Where thread `tid` of this process sleeps in the kernel (/proc wchan), or ""."""
    try:
        with open(f"/proc/self/task/{tid}/wchan") as wchan:
            return wchan.read()
    except OSError:
        return ""


def threads_outcome(pid, read_fd):
    """What the child of threads_child() reported, once it has ended."""
    data = b""
    while chunk := os.read(read_fd, 65536):
        data += chunk
    os.close(read_fd)
    if not data:
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return json.loads(data) if data else "restored"


def thread_group_errors(image):
    """The ways the RESTART calls of a process's threads fail to meet, each before the point
    of no return (the module was loaded with group_timeout=GROUP_TIMEOUT)."""
    copy = patched(image, image + ".copy", lambda data: None)
    novdso = patched(image, image + ".novdso", without_vdso)
    return {
        "leader_in_a_thread": in_threads([(0, image)]),
        "task_claimed_twice": in_threads([(1, image), (1, image)]),
        "another_image": in_threads([(1, image)], (2, copy), idle=1),
        "leader_refused": in_threads([(1, image), (2, image)], (0, image)),
        "threads_missing": in_threads([], (0, novdso), idle=2),
        # the same task of the same image file, by a thread of two unrelated processes:
        # each process has its own group, neither call takes the other's task
        "another_process": in_two_processes([(1, image)]),
    }


def through_fuse(manifest, programs):
    """The daemon's side: `cp img /ckpt/restart/` on a crfs mount, with /dev/crfs present:
    the refusals, then `programs` ({key: (name in restart/, image)}) restored one after
    the other and left to run together to their end."""
    out = {}
    root = "/tmp/crfs-e2e"
    store, mnt = os.path.join(root, "store"), os.path.join(root, "mnt")
    log = os.path.join(root, "crfs.log")
    os.makedirs(store)
    os.makedirs(mnt)
    if not os.path.exists("/dev/fuse"):
        subprocess.run(["modprobe", "fuse"], capture_output=True)
    mount = subprocess.run([sys.executable, "-m", "crfs", mnt, "-o", f"store={store},log={log}"],
                           capture_output=True, text=True, timeout=120)
    out["mount"] = {"rc": mount.returncode, "stderr": mount.stderr}
    if mount.returncode == 0:
        try:
            for name, path in (("valid", manifest["valid"]),
                               ("invalid", manifest["kernel_invalid"])):
                cp = subprocess.run(["cp", path, os.path.join(mnt, "restart", f"{name}.img")],
                                    capture_output=True, text=True, timeout=120)
                with open(os.path.join(mnt, "restart", f"{name}.img.status")) as f:
                    status = f.read()
                out[name] = {"rc": cp.returncode, "stderr": cp.stderr, "status": status}
            for key, (name, image) in programs.items():
                if image and os.path.exists(image):
                    out[key] = fuse_guarded(fuse_start, mnt, image, name)
            for key, (name, _) in programs.items():
                if key in out and out[key].get("rc") == 0:
                    out[key].update(fuse_guarded(fuse_finish, mnt, name, out[key]["output"]))
            out["survivors"] = leftover(TARGETS)
        finally:
            subprocess.run(["fusermount3", "-u", mnt], capture_output=True, timeout=60)
    if os.path.exists(log):
        with open(log) as f:
            out["log_tail"] = f.read()[-2000:]
    return out


def fuse_guarded(step, *args):
    try:
        return step(*args)
    except OSError as exc:     # reported, so that the other programs and the log are kept
        return {"rc": None, "error": repr(exc), "first_status": "", "status": "", "log": []}


def own_output(image):
    """(path, position) of the file the image's first task had as its stdout: restart/
    reopens it there (an earlier restart of the same image wrote on from that position too:
    cut it back, so that what follows is this restart's)."""
    from crfs.model import registry
    fd1 = registry.open_image(image).tasks[0].files.get(1)
    path, pos = fd1.file.path, fd1.file.pos
    os.truncate(path, pos)
    return path, pos


def fuse_start(mnt, image, name):
    """cp a real checkpoint into restart/: close(2) succeeds once it is restored; its
    status is readable at once."""
    target = os.path.join(mnt, "restart", name)
    output = own_output(image)
    t0 = time.monotonic()
    cp = subprocess.run(["cp", image, target], capture_output=True, text=True, timeout=120)
    out = {"rc": cp.returncode, "stderr": cp.stderr, "seconds": round(time.monotonic() - t0, 2),
           "output": output}
    with open(target + ".status") as f:
        out["first_status"] = f.read()
    out["listing_while_running"] = sorted(os.listdir(os.path.join(mnt, "restart")))
    return out


def fuse_finish(mnt, name, output, timeout=180):
    """Wait until restart/NAME.status says the program ended; its status, what it wrote
    to its own stdout file from `output` = (path, position) on, and restart/NAME.log."""
    target = os.path.join(mnt, "restart", name)
    deadline = time.monotonic() + timeout
    with open(target + ".status") as f:
        status = f.read()
    while "exited" not in status and "killed" not in status and time.monotonic() < deadline:
        time.sleep(0.2)
        with open(target + ".status") as f:
            status = f.read()
    path, pos = output
    with open(path) as f:
        f.seek(pos)
        lines = f.read().splitlines()
    with open(target + ".log") as f:
        return {"status": status, "lines": lines, "log": f.read().splitlines()}


# --------------------------------------------------------------------------- checkpoint


TARGETS = ("restore_target", "tree_target", "threads_target", "crfs-restart", "files_target",
           "files_tree_targ", "sig_target", "anonfd_target", "pipes_target", "unix_target")
NOBODY = 65534
GROUP_TIMEOUT = 12    # seconds (module parameter): the threads' rendezvous gives up; margin for a
#                       loaded host, where a late leader would otherwise time out its threads
KCK_DIR = "/tmp/crfs-kck"     # world-readable: the unprivileged restart maps files here
KERNEL_IMAGE = os.path.join(KCK_DIR, "kernel.img")     # restore_target, by the module


def wait_state(pid, letters, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] in letters:
                return True
        time.sleep(0.02)
    return False


def start_ticking(exe, data, out_path, limit, lines=15):
    with open(out_path, "w") as out:
        proc = subprocess.Popen(["setarch", "-R", exe, data, str(limit)], stdout=out,
                                stderr=subprocess.STDOUT)
    wait_for_output(out_path, full_lines(lines))
    return proc


def image_vs_process(image_path, pid):
    """The image as crfs reads it against the stopped process: VMA ranges = /proc maps
    (less [vvar]/[vsyscall]), every saved page = /proc/<pid>/mem there."""
    from crfs.model import registry
    with open(f"/proc/{pid}/maps") as f:
        maps = [tuple(int(x, 16) for x in line.split()[0].split("-")) for line in f
                if not line.rstrip().endswith(("[vvar]", "[vsyscall]", "[vvar_vclock]"))]
    image = registry.open_image(image_path)
    out = {"pages": 0, "mismatched": [], "kinds": {}}
    try:
        task = image.tasks[0]
        out["task"] = {"pid": task.pid, "comm": task.comm, "nr_tasks": len(image.tasks),
                       "has_fpu": task.fpu is not None}
        vmas = task.mm.vmas
        out["maps_equal"] = [(v.start, v.end) for v in vmas] == maps
        with open(image_path, "rb") as img, open(f"/proc/{pid}/mem", "rb") as mem:
            for vma in vmas:
                out["kinds"][vma.kind] = out["kinds"].get(vma.kind, 0) + len(vma.pages)
                for addr, offset in vma.pages:
                    img.seek(offset)
                    mem.seek(addr)
                    out["pages"] += 1
                    if img.read(4096) != mem.read(4096):
                        out["mismatched"].append(hex(addr))
    finally:
        image.close()
    return out


# Process state the module does not checkpoint yet (credentials): the userspace writer
# saves it, the comparison of the two writers leaves it out.
STATE_RECORDS = {"CKPT_HDR_TASK_CREDS", "CKPT_HDR_CRED", "CKPT_HDR_USER", "CKPT_HDR_USER_NS",
                 "CKPT_HDR_GROUPINFO"}
MODULE_OBJECTS = ("CKPT_OBJ_FILE", "CKPT_OBJ_MM", "CKPT_OBJ_FS", "CKPT_OBJ_SIGHAND",
                  "CKPT_OBJ_FILE_TABLE")


def module_record_names(source):
    """The names of the records of the kinds the module writes, in order (objects of
    other kinds, with all their records, left out). The file tables are in."""
    from crfs.formats.ckpt_grammar import Walker
    kinds, names = {}, []
    for part in Walker(source).walk():
        if part.name == "CKPT_HDR_OBJREF":
            kinds[part.objref] = part.objtype
        if part.name in STATE_RECORDS or kinds.get(part.objref,
                                                   MODULE_OBJECTS[0]) not in MODULE_OBJECTS:
            continue
        names.append(part.name)
    return names


def files_outline(task):
    """A task's file table as both writers save it: per fd (fd, close-on-exec, kind, name,
    f_flags, f_mode, f_pos, the bytes of a pipe or FIFO at its first end)."""
    if task.files is None:
        return None
    out, pipes = [], set()
    for d in sorted(task.files.fds, key=lambda d: d.fd):
        f = d.file
        data = None
        if f.kind in ("pipe", "fifo") and f.data is not None and f.pipe not in pipes:
            pipes.add(f.pipe)
            data = f.data.read().hex()
        out.append([d.fd, bool(d.cloexec), f.kind, f.path, f.flags, f.mode, f.pos, data])
    return out


def task_state(task):
    """What both writers save alike of a task's signals and fs_struct: cwd, root, umask,
    its handlers, blocked mask, altstack and its process's rlimits (not the pending
    signals, which the freezer may hold, nor the itimers, which run)."""
    fs, sig = task.fs, task.signals
    return [fs and [fs.cwd, fs.root, fs.umask],
            sig and sig.handlers and [[a.handler, a.flags, a.restorer, a.mask]
                                      for a in sig.handlers.actions],
            sig and sig.blocked, sig and sig.altstack and [sig.altstack.sp, sig.altstack.size],
            sig and sig.group and [list(limit) for limit in sig.group.rlimits or ()]]


def image_outline(path):
    """The names of the records the module writes, in order; the tasks (pid, tgid, ppid,
    comm, index of their mm); per mm, per VMA (start, end, kind, saved page addresses);
    per task its task_state()."""
    from crfs.formats.source import Source
    from crfs.model import registry
    with Source.open(path) as source:
        names = module_record_names(source)
    image = registry.open_image(path)
    try:
        mms = list(image.mms())
        tasks = [(t.pid, t.tgid, t.ppid, t.comm, mms.index(t.mm)) for t in image.tasks]
        vmas = [(n, v.start, v.end, v.kind, [addr for addr, _ in v.pages])
                for n, mm in enumerate(mms) for v in mm.vmas]
        states = [task_state(t) for t in image.tasks]
        files = [files_outline(t) for t in image.tasks]
    finally:
        image.close()
    return names, tasks, vmas, states, files


def same_as_python(kernel_image, python_image):
    """The module's image against the userspace writer's of the same stopped processes."""
    k_names, k_tasks, k_vmas, k_states, k_files = image_outline(kernel_image)
    p_names, p_tasks, p_vmas, p_states, p_files = image_outline(python_image)
    return {"records_equal": k_names == p_names, "tasks_equal": k_tasks == p_tasks,
            "files_equal": k_files == p_files, "files": [k_files, p_files],
            "vmas_equal": k_vmas == p_vmas, "records": len(k_names), "tasks": k_tasks,
            "state_equal": k_states == p_states, "states": [k_states, p_states],
            "first_difference": next(([i, a, b] for i, (a, b) in
                                      enumerate(zip(k_names + k_tasks + k_vmas,
                                                    p_names + p_tasks + p_vmas))
                                      if a != b), None)}


def kernel_checkpoint_restart(manifest):
    """restore_target checkpointed by the module (`crfs checkpoint --via kernel`) into
    KERNEL_IMAGE, checked against the stopped process, killed, restarted by the module."""
    os.makedirs(KCK_DIR, exist_ok=True)
    os.chmod(KCK_DIR, 0o755)
    exe = os.path.join(KCK_DIR, "restore_target")
    data = os.path.join(KCK_DIR, "restore.data")
    subprocess.run(["cp", manifest["targets"]["dynamic"], exe], check=True)
    subprocess.run(["cp", manifest["datafile"], data], check=True)
    subprocess.run(["cp", manifest["restarter"], os.path.join(KCK_DIR, "crfs-restart")],
                   check=True)
    image = KERNEL_IMAGE
    proc = start_ticking(exe, data, os.path.join(KCK_DIR, "kernel.out"), manifest["limit"])
    t0 = time.monotonic()
    ck = crfs_checkpoint(proc.pid, "-o", image, "--via", "kernel", "--leave-stopped")
    out = {"checkpoint": {"rc": ck.returncode, "stderr": ck.stderr,
                          "seconds": round(time.monotonic() - t0, 2)}}
    if ck.returncode == 0 and wait_state(proc.pid, "T"):
        out["image_size"] = os.path.getsize(image)
        out["compare"] = image_vs_process(image, proc.pid)
        py_image = os.path.join(KCK_DIR, "ptrace.img")
        checkpoint(proc.pid, py_image, after="stop", via="ptrace")
        out["same_as_python"] = same_as_python(image, py_image)
        with open(os.path.join(KCK_DIR, "kernel.out")) as f:
            out["ticks_at_checkpoint"] = f.read().count("\n")
        out["pid_taken"] = restart_direct(image, os.path.join(KCK_DIR, "taken.out"),
                                          manifest["restarter"])
    proc.kill()
    proc.wait(timeout=60)
    with open(os.path.join(KCK_DIR, "kernel.out")) as f:
        out["before"] = f.read().splitlines()
    if os.path.exists(image):
        os.chmod(image, 0o644)
        out["restart"] = restart_direct(image, os.path.join(KCK_DIR, "kernel.out2"),
                                        manifest["restarter"])
    return out


def kernel_checkpoint_tree(manifest):
    """tree_target (a parent and its forked child) checkpointed by the module (`crfs
    checkpoint --tree --via kernel --leave-stopped`), compared with the userspace writer's
    image of the same stopped tree, killed, then the module's image restarted by the
    module. Also the time of both writers called from here (no Python start-up)."""
    from crfs.checkpoint import procfs
    work, restarter = manifest["work"], manifest["restarter"]
    out_path = os.path.join(work, "ktree.out")
    image = os.path.join(work, "ktree.img")
    limit = manifest["limit"]
    proc = start_tree(manifest["tree_target"], out_path, limit)
    pids = [proc.pid] + procfs.children(proc.pid)
    t0 = time.monotonic()
    ck = crfs_checkpoint(proc.pid, "--tree", "--via", "kernel", "--leave-stopped", "-o",
                         image)
    out = {"pids": pids, "limit": limit, "image": image,
           "checkpoint": {"rc": ck.returncode, "stderr": ck.stderr[-2000:],
                          "seconds": round(time.monotonic() - t0, 2)}}
    try:
        if ck.returncode == 0 and all(wait_state(pid, "T") for pid in pids):
            out["image_size"] = os.path.getsize(image)
            py_image = os.path.join(work, "ktree-ptrace.img")
            checkpoint(proc.pid, py_image, tree=True, after="stop", via="ptrace")
            out["same_as_python"] = same_as_python(image, py_image)
            seconds = {}
            for via in ("ptrace", "kernel", "ptrace", "kernel"):
                t0 = time.monotonic()
                checkpoint(proc.pid, os.path.join(work, f"ktree-{via}.time.img"), tree=True,
                           after="stop", via=via)
                seconds.setdefault(via, []).append(round(time.monotonic() - t0, 3))
            out["api_seconds"] = seconds
    except Exception as exc:      # noqa: BLE001 - reported, the other steps go on
        out["error"] = repr(exc)
    for pid in reversed(pids):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=60)
    out["before"] = tree_lines(out_path)
    if os.path.exists(image):
        out["restart"] = restart_tree(image, restarter, out_path + "2")
    return out


def threads_checkpoint(pid, dev, label, compare=False):
    """Every thread of `pid` stopped from here (crfs's freezer), CHECKPOINT, left stopped:
    the image as crfs reads it; with `compare`, against the userspace writer's image of the
    stopped process. (Not for python3: its heap maps the zero page, which the userspace
    writer saves as a present page and the module, like the linux-cr writers, skips.)"""
    from crfs.checkpoint.freezer import Freezer
    from crfs.model import registry
    path = os.path.join(KCK_DIR, f"{label}.img")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    freezer = Freezer()
    try:
        freezer.freeze(pid, False)
        result = outcome(lambda: dev.checkpoint(pid, fd))
        result["tids"] = freezer.processes[pid]
    except Exception as exc:      # noqa: BLE001 - reported, the other steps go on
        return {"errno": "freezer", "msg": repr(exc)}
    finally:
        freezer.thaw("stop")
        os.close(fd)
    if result["errno"] != 0:
        return result
    image = registry.open_image(path)
    try:
        result["tasks"] = [[t.pid, t.tgid, t.comm] for t in image.tasks]
        result["mms"] = len(list(image.mms()))
        result["registers"] = [t.regs is not None and t.fpu is not None for t in image.tasks]
    finally:
        image.close()
    if compare:
        py_image = path + ".ptrace"
        checkpoint(pid, py_image, after="stop", via="ptrace")
        result["same_as_python"] = same_as_python(path, py_image)
    return result


def ioctl_checkpoint(pid, fd):
    with kernel.Device() as dev:
        return outcome(lambda: dev.checkpoint(pid, fd))


def as_nobody(call):
    """call() in a forked child that dropped to uid/gid nobody (keeping the fds it
    inherited, e.g. an open /dev/crfs); its outcome."""
    def dropped():
        os.setgroups([])
        os.setresgid(NOBODY, NOBODY, NOBODY)
        os.setresuid(NOBODY, NOBODY, NOBODY)
        return call()
    return in_child(dropped, {"errno": "no report"})


def traced_checkpoint(pid, fd, dev, interrupt=True):
    """Seize `pid` from this process (and stop it), CHECKPOINT it, detach."""
    from crfs.checkpoint import ptrace
    ptrace.seize(pid)
    try:
        if interrupt:
            ptrace.interrupt(pid)
            ptrace.wait_stop(pid)
        return outcome(lambda: dev.checkpoint(pid, fd))
    finally:
        if not interrupt:      # PTRACE_DETACH needs a ptrace stop
            ptrace.interrupt(pid)
            ptrace.wait_stop(pid)
        ptrace.detach(pid)


PR_SET_DUMPABLE = 4


def own_child_checkpoint(dev, fd, dumpable):
    """(Run as nobody.) Fork a child, seize it while it is dumpable, let it set
    PR_SET_DUMPABLE to `dumpable`, stop it and CHECKPOINT it; then kill it."""
    from crfs.checkpoint import ptrace
    go_r, go_w = os.pipe()
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            prctl = ctypes.CDLL(None, use_errno=True).prctl
            prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)    # setresuid() to nobody cleared it
            os.write(ready_w, b"a")
            os.read(go_r, 1)
            prctl(PR_SET_DUMPABLE, int(dumpable), 0, 0, 0)
            os.write(ready_w, b"b")
            time.sleep(60)
        finally:
            os._exit(0)
    try:
        os.read(ready_r, 1)
        ptrace.seize(pid)
        os.write(go_w, b"g")
        os.read(ready_r, 1)
        ptrace.interrupt(pid)
        ptrace.wait_stop(pid)
        return outcome(lambda: dev.checkpoint(pid, fd))
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        for end in (go_r, go_w, ready_r, ready_w):
            os.close(end)


def snapshot_outcome(dev, pid, fd, pairs, spool=None, resume=None, **fields):
    """SNAPSHOT of the stopped process `pid` with `pairs` ({pid: clone}): its outcome,
    with "resumed", what the module added to the resume eventfd. `spool` and `resume`
    replace the memfd and the eventfd; `fields` set SnapshotArgs fields by hand (then
    the call is raw: errno only)."""
    efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
    memfd = os.memfd_create("spool", os.MFD_CLOEXEC)
    try:
        spool_fd = memfd if spool is None else spool
        resume_fd = efd if resume is None else resume
        if fields:
            table = (kernel.Clone * max(len(pairs), 1))(
                *[kernel.Clone(p, c) for p, c in pairs.items()])
            args = kernel.SnapshotArgs(ck=kernel.CheckpointArgs(pid=pid, fd=fd),
                                       clones=ctypes.addressof(table),
                                       nr_clones=len(pairs), resume_fd=resume_fd,
                                       spool_fd=spool_fd)
            for key, value in fields.items():
                setattr(args, key, value)
            ret = kernel._ioctl(dev.fd, kernel.CRFS_IOC_SNAPSHOT, ctypes.addressof(args))
            result = {"errno": name(-ret) if ret < 0 else 0,
                      "msg": args.ck.err_msg.decode(errors="replace")}
        else:
            result = outcome(lambda: dev.snapshot(pid, fd, pairs, resume_fd, spool_fd))
        try:
            result["resumed"] = os.eventfd_read(efd)
        except BlockingIOError:
            result["resumed"] = 0
        return result
    finally:
        os.close(efd)
        os.close(memfd)


def stopped(*pids):
    """Seize and stop each of `pids` (this process their tracer)."""
    from crfs.checkpoint import ptrace
    for pid in pids:
        ptrace.seize(pid)
        ptrace.interrupt(pid)
        ptrace.wait_stop(pid)


def let_go(*pids):
    from crfs.checkpoint import ptrace
    for pid in pids:
        try:
            ptrace.detach(pid)
        except OSError:
            pass


def snapshot_errors(dev, fd, scratch, manifest):
    """SNAPSHOT of tree_target's parent, stopped, whose forked child (stopped too, or not)
    stands for its clone: accepted, and refused with each bad clone, count, pointer or fd."""
    out_path = os.path.join(KCK_DIR, "snapshot-tree.out")
    proc = start_tree(manifest["tree_target"], out_path, manifest["limit"])
    other = subprocess.Popen(["sleep", "60"])
    out = {}
    try:
        parent = proc.pid
        child = int(open(f"/proc/{parent}/task/{parent}/children").read().split()[0])
        stopped(parent)
        try:
            out["clone_untraced"] = snapshot_outcome(dev, parent, fd, {parent: child})
            stopped(child, other.pid)
            try:
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)
                out["accepted"] = snapshot_outcome(dev, parent, fd, {parent: child})
                out["accepted"]["verify"] = subprocess.run(
                    [sys.executable, "-m", "crfs", "verify", scratch], capture_output=True,
                    text=True, timeout=300).stdout[-2000:]
                out["no_clone"] = snapshot_outcome(dev, parent, fd, {})
                out["clone_missing"] = snapshot_outcome(dev, parent, fd, {parent: 4 << 20})
                out["clone_itself"] = snapshot_outcome(dev, parent, fd, {parent: parent})
                out["clone_not_child"] = snapshot_outcome(dev, parent, fd, {parent: other.pid})
                out["clone_twice"] = snapshot_outcome(dev, parent, fd, {parent: child,
                                                                        other.pid: child})
                out["not_written"] = snapshot_outcome(dev, child, fd, {parent: child})
                out["too_many"] = snapshot_outcome(dev, parent, fd, {parent: child},
                                                   nr_clones=1025)
                out["bad_pointer"] = snapshot_outcome(dev, parent, fd, {parent: child},
                                                      clones=16)
                out["reserved_set"] = snapshot_outcome(dev, parent, fd, {parent: child},
                                                       _reserved=1)
                out["resume_not_eventfd"] = snapshot_outcome(dev, parent, fd, {parent: child},
                                                             resume=fd)
                ro = os.open(scratch, os.O_RDONLY)
                null = os.open("/dev/null", os.O_RDWR)
                try:
                    out["spool_read_only"] = snapshot_outcome(dev, parent, fd,
                                                              {parent: child}, spool=ro)
                    out["spool_dev_null"] = snapshot_outcome(dev, parent, fd,
                                                             {parent: child}, spool=null)
                finally:
                    os.close(ro)
                    os.close(null)
                out["spool_closed"] = snapshot_outcome(dev, parent, fd, {parent: child},
                                                       spool=987)
            finally:
                let_go(child, other.pid)
        finally:
            let_go(parent)
        out["pids"] = {"parent": parent, "child": child, "other": other.pid}
    finally:
        proc.kill()
        proc.wait()
        other.kill()
        other.wait()
    out["nobody_family"] = as_nobody(lambda: family_snapshot(dev, fd, True))
    out["nobody_family_undumpable"] = as_nobody(lambda: family_snapshot(dev, fd, False))
    return out


def family_snapshot(dev, fd, dumpable):
    """(Run as nobody.) A child and its own child, both seized while dumpable; the
    grandchild then sets PR_SET_DUMPABLE to `dumpable`; both stopped: SNAPSHOT of the
    child with the grandchild as its clone."""
    go_r, go_w = os.pipe()
    ready_r, ready_w = os.pipe()
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    child = os.fork()
    if child == 0:
        try:
            prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)    # setresuid() to nobody cleared it
            if os.fork() == 0:
                os.write(ready_w, struct.pack("<i", os.getpid()))
                os.read(go_r, 1)
                prctl(PR_SET_DUMPABLE, int(dumpable), 0, 0, 0)
                os.write(ready_w, b"b")
            time.sleep(60)
        finally:
            os._exit(0)
    grandchild = None
    try:
        grandchild = struct.unpack("<i", os.read(ready_r, 4))[0]
        from crfs.checkpoint import ptrace
        ptrace.seize(child)
        ptrace.seize(grandchild)
        os.write(go_w, b"g")
        os.read(ready_r, 1)
        for pid in (child, grandchild):
            ptrace.interrupt(pid)
            ptrace.wait_stop(pid)
        return snapshot_outcome(dev, child, fd, {child: grandchild})
    finally:
        for pid in (grandchild, child):
            if pid:
                os.kill(pid, signal.SIGKILL)
        os.waitpid(child, 0)
        for end in (go_r, go_w, ready_r, ready_w):
            os.close(end)


def raw_checkpoint(dev, arg, **fields):
    return raw_ioctl(dev, kernel.CRFS_IOC_CHECKPOINT, kernel.CheckpointArgs, arg, **fields)


def at_position(dev, pid):
    """A successful CHECKPOINT of a stopped `sleep` into a file holding 5 bytes: the
    image starts there, the fd's offset ends after it; the call's time."""
    path = os.path.join(KCK_DIR, "position.img")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, b"HEAD!")
        t0 = time.monotonic()
        result = traced_checkpoint(pid, fd, dev)
        result["seconds"] = round(time.monotonic() - t0, 3)
        result["offset"] = os.lseek(fd, 0, os.SEEK_CUR)
    finally:
        os.close(fd)
    with open(path, "rb") as f:
        data = f.read()
    result["size"] = len(data)
    result["magic"] = struct.unpack_from("<Q", data, 5 + 8)[0] if len(data) >= 21 else None
    os.unlink(path)
    return result


def refusal_targets(manifest):
    """The processes CHECKPOINT is asked about: a sleep of nobody's, one of root's, a
    two-threaded python3 and ckpt_threads with 3 threads, each running (and counting)."""
    nobody_sleep = subprocess.Popen(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
                                     "--clear-groups", "sleep", "60"])
    root_sleep = subprocess.Popen(["sleep", "60"])
    threaded = subprocess.Popen([sys.executable, "-c", "import threading, time; "
                                 "threading.Thread(target=time.sleep, args=(60,)).start(); "
                                 "print(flush=True); time.sleep(60)"],
                                stdout=subprocess.PIPE)
    threaded.stdout.readline()
    threads_c = subprocess.Popen([manifest["ckpt_threads"], "3"], stdout=subprocess.PIPE)
    threads_c.stdout.readline()      # "ready ...": its 3 threads count
    return nobody_sleep, root_sleep, threaded, threads_c


def who_may_checkpoint(dev, fd, nobody_sleep, root_sleep, threaded, threads_c):
    """CHECKPOINT into `fd` asked by nobody or by root, of their own processes or not,
    traced and stopped or not, with every thread stopped or not."""
    out = {}
    out["nobody_untraced_own"] = as_nobody(
        lambda: outcome(lambda: dev.checkpoint(nobody_sleep.pid, fd)))
    out["nobody_root_process"] = as_nobody(
        lambda: outcome(lambda: dev.checkpoint(root_sleep.pid, fd)))
    out["nobody_traced_own"] = as_nobody(
        lambda: traced_checkpoint(nobody_sleep.pid, fd, dev))
    out["nobody_own_child"] = as_nobody(lambda: own_child_checkpoint(dev, fd, True))
    out["nobody_own_child_undumpable"] = as_nobody(
        lambda: own_child_checkpoint(dev, fd, False))
    out["root_untraced"] = outcome(lambda: dev.checkpoint(root_sleep.pid, fd))
    out["root_traced_running"] = traced_checkpoint(root_sleep.pid, fd, dev, interrupt=False)
    # only the leader stopped: its other thread could run
    out["thread_not_stopped"] = traced_checkpoint(threaded.pid, fd, dev)
    out["thread_not_stopped"]["tids"] = sorted(
        int(tid) for tid in os.listdir(f"/proc/{threaded.pid}/task"))
    out["threads"] = threads_checkpoint(threaded.pid, dev, "threads")
    out["threads_c"] = threads_checkpoint(threads_c.pid, dev, "threads_c", compare=True)
    return out


def argument_errors(dev, fd, scratch, pid):
    """CHECKPOINT of root's process `pid` with a bad pid, fd, flag or pointer, then one
    into a file at an offset."""
    out = {}
    out["no_such_pid"] = outcome(lambda: dev.checkpoint(4 << 20, fd))
    out["pid_zero"] = outcome(lambda: dev.checkpoint(0, fd))
    ro = os.open(scratch, os.O_RDONLY)
    out["read_only_fd"] = traced_checkpoint(pid, ro, dev)
    os.close(ro)
    r, w = os.pipe()
    out["pipe_fd"] = traced_checkpoint(pid, w, dev)
    os.close(r)
    os.close(w)
    out["closed_fd"] = traced_checkpoint(pid, 987, dev)
    out["flags_set"] = raw_checkpoint(dev, None, pid=pid, fd=fd, flags=2)
    out["tree_untraced"] = raw_checkpoint(dev, None, pid=pid, fd=fd,
                                          flags=kernel.CHECKPOINT_TREE)
    out["reserved_set"] = raw_checkpoint(dev, None, pid=pid, fd=fd, _reserved=1)
    out["bad_pointer"] = raw_checkpoint(dev, 16)
    out["max_pages_4"] = with_max_pages(4, lambda: traced_checkpoint(pid, fd, dev))
    out["zombie"] = zombie_checkpoint(dev, fd)
    out["at_position"] = at_position(dev, pid)
    return out


def zombie_checkpoint(dev, fd):
    """CHECKPOINT of a child that has exited and is not reaped yet: no task is collected
    (the path a root exiting during the collection takes)."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            time.sleep(0.01)
        return outcome(lambda: dev.checkpoint(pid, fd))
    finally:
        os.waitpid(pid, 0)


def with_max_pages(pages, call):
    """call() with the module's max_pages parameter set to `pages`, then set back."""
    path = "/sys/module/crfs/parameters/max_pages"
    if not os.path.exists(path):
        return {"errno": "no max_pages parameter"}
    with open(path) as f:
        old = f.read().strip()
    with open(path, "w") as f:
        f.write(str(pages))
    try:
        return call()
    finally:
        with open(path, "w") as f:
            f.write(old)


def checkpoint_refusals(manifest, root_image):
    """Who may CHECKPOINT what, the argument errors, and the uid of a restart by nobody."""
    out = {}
    targets = refusal_targets(manifest)
    root_sleep = targets[1]
    scratch = os.path.join(KCK_DIR, "scratch.img")
    fd = os.open(scratch, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666)
    os.chmod(scratch, 0o666)
    try:
        dev = kernel.Device()
        try:
            out.update(who_may_checkpoint(dev, fd, *targets))
            out.update(argument_errors(dev, fd, scratch, root_sleep.pid))
            out["snapshot"] = snapshot_errors(dev, fd, scratch, manifest)
        finally:
            dev.close()
    finally:
        os.close(fd)
        for p in targets:
            p.kill()
            p.wait()
    restarter = os.path.join(KCK_DIR, "crfs-restart")
    out["nobody_restart"] = restart_as_nobody(root_image, restarter)
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope") as f:
            out["yama_ptrace_scope"] = int(f.read())
    except OSError:
        out["yama_ptrace_scope"] = None
    return out


def without_task_creds(data):
    """TASK_CREDS retyped to a type no reader knows (skipped by its length): an image
    without credentials, as other writers make them."""
    for offset, type_, _ in records(data):
        if type_ == 117:
            struct.pack_into("<I", data, offset, 7777)


def restart_as_nobody(image, restarter):
    """crfs-restart run as nobody on an image of a root process, without its credentials
    (the module's CHECKPOINT writes them: with them, nobody is refused): the restored
    process has nobody's uid. /dev/crfs is opened to everyone for the duration (test
    only)."""
    if not os.path.exists(image):
        return {"errno": "no image"}
    image = patched(image, image + ".nocreds", without_task_creds)
    os.chmod(image, 0o644)
    out_path = os.path.join(KCK_DIR, "nobody.out")
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    os.chmod(kernel.DEVICE, 0o666)
    try:
        with open(out_path, "wb") as out:
            proc = subprocess.Popen(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
                                     "--clear-groups", restarter, "-R", "-r", str(write_fd),
                                     image],
                                    stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, pass_fds=(write_fd,))
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as f:
            report = f.read()
    finally:
        os.chmod(kernel.DEVICE, 0o600)
    result = {"report": len(report)}
    try:
        with open(f"/proc/{proc.pid}/status") as f:
            result["uid"] = [line.split()[1:] for line in f if line.startswith("Uid:")][0]
        wait_for_output(out_path, full_lines(3), timeout=30)
    except OSError as exc:
        result["status_error"] = repr(exc)
    proc.kill()
    proc.wait()
    with open(out_path) as f:
        result["after"] = f.read().splitlines()
    return result


# ---------------------------------------------------------------- restart credentials

OTHER_USER = 65533
NOBODY_GROUP = 100      # a supplementary group of the original (setpriv needs no such group)
CRED, GROUPINFO = 114, 116


def status_fields(pid, names=("Uid", "Gid", "Groups", "CapEff", "CapPrm", "NoNewPrivs")):
    """The lines `names` of /proc/<pid>/status, split: {name: [values...]}."""
    with open(f"/proc/{pid}/status") as f:
        rows = [line.split(":", 1) for line in f]
    return {key: value.split() for key, value in rows if key in names}


def setpriv(uid, groups=()):
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}",
            f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups"]


def restart_as(uid, image, restarter, out_path, groups=()):
    """crfs-restart of `image` run as `uid` (None: root) with `groups`, /dev/crfs opened to
    everyone for the duration (test only): its report, and for a restored program its /proc
    status and the lines it printed after the restart (then it is killed)."""
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    os.chmod(kernel.DEVICE, 0o666)
    try:
        with open(out_path, "wb") as out:
            proc = subprocess.Popen((setpriv(uid, groups) if uid else []) +
                                    [restarter, "-R", "-r", str(write_fd), image],
                                    stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, pass_fds=(write_fd,))
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as f:
            report = f.read(kernel._RESULT.size)
    finally:
        os.chmod(kernel.DEVICE, 0o600)
    result, pid = {"errno": "restored"}, proc.pid
    if len(report) == kernel._RESULT.size:
        code, _, _, stage, reason = kernel._RESULT.unpack(report)
        reason = reason.rstrip(b"\0").decode("utf-8", "replace")
        if code or not reason.startswith("pid "):
            result, pid = {"errno": name(code), "stage": stage.rstrip(b"\0").decode(),
                           "msg": reason}, None
        else:
            pid = int(reason[4:])     # restored with its pid, in a child of the relay
    elif report:
        result, pid = {"errno": "short report"}, None
    if pid:
        try:
            result["status"] = status_fields(pid)
            wait_for_output(out_path, full_lines(3), timeout=30)
        except OSError as exc:
            result["status_error"] = repr(exc)
        if pid != proc.pid:
            os.kill(pid, signal.SIGKILL)
    proc.kill()
    proc.wait()
    with open(out_path) as f:
        result["after"] = f.read().splitlines()[:5]
    return result


def cred_uid_root(data):
    """Every CRED says uid/suid/euid/fsuid 0."""
    for offset, type_, _ in records(data):
        if type_ == CRED:
            struct.pack_into("<4I", data, offset + 8, 0, 0, 0, 0)


def groupinfo_count(count):
    """Every GROUPINFO says count(its ngroups) groups (its len is left alone)."""
    def patch(data):
        for offset, type_, _ in records(data):
            if type_ == GROUPINFO:
                ngroups, = struct.unpack_from("<I", data, offset + 8)
                struct.pack_into("<I", data, offset + 8, count(ngroups))
    return patch


def restart_creds(manifest):
    """restore_target run as nobody in group NOBODY_GROUP, checkpointed by `crfs checkpoint`
    (its credentials in the image), restarted: by root and by nobody in that group (runs as
    nobody, in the group), by nobody without it (EPERM), by another user (EPERM); the image
    patched to uid 0 restarted by nobody (EPERM); malformed GROUPINFOs (EINVAL)."""
    exe = os.path.join(KCK_DIR, "restore_target")
    data = os.path.join(KCK_DIR, "restore.data")
    restarter = os.path.join(KCK_DIR, "crfs-restart")
    image = os.path.join(KCK_DIR, "creds.img")
    out_path = os.path.join(KCK_DIR, "creds.out")
    with open(out_path, "w") as out:
        proc = subprocess.Popen(setpriv(NOBODY, [NOBODY_GROUP]) + ["setarch", "-R", exe, data,
                                                   str(manifest["limit"])],
                                stdout=out, stderr=subprocess.STDOUT)
    wait_for_output(out_path, full_lines(5))
    out = {"original": status_fields(proc.pid)}
    ck = crfs_checkpoint(proc.pid, "-o", image, "--kill", "--via", "ptrace")
    out["checkpoint"] = {"rc": ck.returncode, "stderr": ck.stderr}
    proc.wait(timeout=60)
    if ck.returncode:
        return out
    os.chmod(image, 0o644)
    with open(image, "rb") as f:
        out["records"] = sorted({t for _, t, _ in records(f.read())
                                 if t in (CRED, GROUPINFO, 117)})
    for label, uid, groups, img in (
            ("by_root", None, (), image),
            ("by_nobody", NOBODY, [NOBODY_GROUP], image),
            ("by_nobody_not_in_group", NOBODY, (), image),
            ("by_other", OTHER_USER, [NOBODY_GROUP], image),
            ("uid0_by_nobody", NOBODY, [NOBODY_GROUP],
             patched(image, image + ".uid0", cred_uid_root))):
        out[label] = restart_as(uid, img, restarter, os.path.join(KCK_DIR, f"creds.{label}"),
                                groups)
    for label, count in (("groups_huge", lambda n: 0xFFFFFFFF), ("groups_len", lambda n: n + 1)):
        out[label] = restarter_child(patched(image, f"{image}.{label}", groupinfo_count(count)),
                                     restarter, where=True)
    return out


def kmemleak():
    """After rmmod: kmemleak's report on crfs, or that the kernel has no kmemleak."""
    path = "/sys/kernel/debug/kmemleak"
    if not os.path.ismount("/sys/kernel/debug"):
        subprocess.run(["mount", "-t", "debugfs", "debugfs", "/sys/kernel/debug"],
                       capture_output=True)
    if not os.path.exists(path):
        return {"available": False}
    with open(path, "w") as f:
        f.write("scan")
    with open(path) as f:
        report = f.read()
    return {"available": True, "crfs": [line for line in report.splitlines() if "crfs" in line]}


def progress(step, t0):
    print(f"[guest {time.monotonic() - t0:6.1f}s] {step}", file=sys.stderr, flush=True)


def elapsed(t0):
    return round(time.monotonic() - t0, 2)


def load_module(module, steps):
    """insmod, then wait (up to 2.5 s) for /dev/crfs: whether it appeared."""
    load = subprocess.run(["insmod", module, f"group_timeout={GROUP_TIMEOUT}"],
                          capture_output=True, text=True)
    steps["insmod"] = {"rc": load.returncode, "stderr": load.stderr}
    for _ in range(50):
        if os.path.exists(kernel.DEVICE):
            break
        time.sleep(0.05)
    return os.path.exists(kernel.DEVICE)


def device_checks(manifest, results, t0):
    """Through one open /dev/crfs: its mode and version, every image of the manifest, the
    descriptors that are not images."""
    steps = results["steps"]
    st = os.stat(kernel.DEVICE)
    steps["device"] = {"char": stat.S_ISCHR(st.st_mode), "mode": stat.S_IMODE(st.st_mode)}
    if manifest.get("fifo") and not os.path.exists(manifest["fifo"]):
        os.mkfifo(manifest["fifo"], 0o644)
    with kernel.Device() as dev:
        steps["version"] = dev.version()
        steps["t_setup"] = elapsed(t0)
        for case in manifest["images"]:
            results["images"][case["name"]] = {
                op: on_path(dev, case["path"], op) for op in case["ops"]}
        steps["t_images"] = elapsed(t0)
        steps["special"] = special_fds(dev, manifest["valid"], manifest["scratch"])
        steps["t_special"] = elapsed(t0)


def restarter_child(image, restarter, where=False):
    """What crfs-restart of `image`, run in a child, reported: with `where`, the offset and
    the type of the record it was refused at, else the stage it failed at."""
    child = kernel.restart_in_child(image, restarter=restarter)
    if where:
        return {"errno": name(child.errno), "msg": child.reason, "offset": child.offset,
                "type": child.record_type}
    return reported(child)


def thread_group_errors_of(threads):
    """thread_group_errors() of the threads image, None (no step) when there is none."""
    if os.path.exists(threads["image"]):
        return thread_group_errors(threads["image"])
    return None


def fuse_programs(manifest, steps):
    """The restarter for the daemon, and the images it restores: {key: (name, image)}."""
    os.environ["CRFS_RESTARTER"] = manifest["restore"]["restarter"]
    return {
        "restore": ("prog.img", steps["restore"]["dynamic"]["image"]),
        "static": ("static.img", steps["restore"]["static"]["image"]),
        "tree": ("tree.img", steps["tree"]["image"]),
        "threads": ("threads.img", steps["threads"]["image"]),
        "kernel_restore": ("kernel-prog.img", KERNEL_IMAGE),
        "kernel_tree": ("kernel-tree.img", steps["kernel_checkpoint_tree"]["image"]),
        "kernel_threads": ("kernel-threads.img", steps["threads"]["kernel"]["image"]),
    }


# The steps after the device checks, in order: (name, function, its arguments from the
# manifest and the steps so far, the t_ key that then records the seconds since the start).
STEPS = (
    ("child_valid", restarter_child,
     lambda m, s: (m["valid"], m["restore"]["restarter"]), None),
    ("child_invalid", restarter_child,
     lambda m, s: (m["invalid"], m["restore"]["restarter"], True), "t_child"),
    ("restore", restore_programs, lambda m, s: (m["restore"],), None),
    ("tree", restore_tree, lambda m, s: (m["restore"],), None),
    ("chain", restore_chain, lambda m, s: (m["restore"],), None),
    ("threads", restore_threads, lambda m, s: (m["restore"],), None),
    ("thread_group_errors", thread_group_errors_of, lambda m, s: (s["threads"],),
     "t_restore"),
    ("kernel_checkpoint", kernel_checkpoint_restart, lambda m, s: (m["restore"],),
     "t_kernel_checkpoint"),
    ("kernel_checkpoint_tree", kernel_checkpoint_tree, lambda m, s: (m["restore"],),
     "t_kernel_checkpoint_tree"),
    # root's compiled `crfs` (kmod/crfs-front.c; tests/guest_front.py)
    ("front", lambda m, k: __import__("guest_front").step(m, k),
     lambda m, s: (m["restore"], sys.modules[__name__]), "t_front"),
    ("fuse", through_fuse, lambda m, s: (m, fuse_programs(m, s)), "t_fuse"),
    ("checkpoint_refusals", checkpoint_refusals, lambda m, s: (m["restore"], KERNEL_IMAGE),
     "t_checkpoint_refusals"),
    ("restart_creds", restart_creds, lambda m, s: (m["restore"],), "t_restart_creds"),
    ("files", guest_files.files_step, lambda m, s: (m["restore"],), "t_files"),
    ("files_tree", guest_files.files_tree_step, lambda m, s: (m["restore"],),
     "t_files_tree"),
    # signal state, rlimits, cwd/root/umask (tests/guest_signals.py)
    ("signals", guest_signals.signals, lambda m, s: (m["restore"], same_as_python),
     "t_signals"),
    ("file_id", lambda m: __import__("guest_file_id").file_id_checks(m),
     lambda m, s: (m["restore"],), "t_file_id"),
    ("kernel_creds", lambda m: __import__("guest_ckpt_creds").kernel_creds(m),
     lambda m, s: (m["restore"],), "t_kernel_creds"),
    # the file table written by CHECKPOINT (tests/guest_ckpt_files.py)
    ("kernel_files", lambda m: __import__("guest_ckpt_files").kernel_files_step(
        m, same_as_python), lambda m, s: (m["restore"],), "t_kernel_files"),
    # eventfd, timerfd, signalfd, epoll (tests/guest_anonfd.py)
    ("anonfd", lambda m: __import__("guest_anonfd").anonfd_step(m),
     lambda m, s: (m["restore"],), "t_anonfd"),
    # pipes without their other end, pipes larger than 64 KiB (tests/guest_pipes.py)
    ("pipes", lambda m: __import__("guest_pipes").pipes_step(m),
     lambda m, s: (m["restore"],), "t_pipes"),
    ("fuzz", lambda m, s: __import__("guest_fuzz").fuzz_step(m, s), lambda m, s: (m, s),
     "t_fuzz"),
    # anonymous shared memory between a tree's processes (tests/guest_shm.py)
    ("shm_tree", lambda m: __import__("guest_shm").shm_tree_step(m),
     lambda m, s: (m["restore"],), "t_shm_tree"),
    ("shm_tree_kernel", lambda m: __import__("guest_shm").shm_tree_step(m, "kernel"),
     lambda m, s: (m["restore"],), "t_shm_tree_kernel"),
    # files with an owner for SIGIO, F_SETSIG, O_ASYNC (tests/guest_fown.py)
    ("fown", lambda m: __import__("guest_fown").step(m), lambda m, s: (m,), "t_fown"),
    # oom_score_adj, rseq, zombies, a stopped child (tests/guest_task_state.py)
    ("task_state", lambda m: __import__("guest_task_state").task_state(m),
     lambda m, s: (m,), "t_task_state"),
    # files deleted while open, a deleted cwd, O_PATH and namespace fds (guest_deleted.py)
    ("deleted", lambda m: __import__("guest_deleted").step(m), lambda m, s: (m["restore"],),
     "t_deleted"),
    # UNIX socketpairs with their queues (tests/guest_unix.py)
    ("unix", lambda m: __import__("guest_unix").step(m), lambda m, s: (m["restore"],),
     "t_unix"),
    # a listener and its unaccepted connection, seccomp strict (tests/guest_sockstrict.py)
    ("sockstrict", lambda m: __import__("guest_sockstrict").step(m),
     lambda m, s: (m["restore"],), "t_sockstrict"),
    # POSIX timers (tests/guest_timers.py)
    ("timers", lambda m: __import__("guest_timers").step(m), lambda m, s: (m["restore"],),
     "t_timers"),
    # /proc/PID/exe, a memfd opened twice across processes (tests/guest_exe.py)
    ("exe_memfd", lambda m: __import__("guest_exe").step(m), lambda m, s: (m["restore"],),
     "t_exe_memfd"),
    # personality, THP, subreaper, nice and policy, exit_signal (tests/guest_taskattr.py)
    ("taskattr", lambda m: __import__("guest_taskattr").step(m), lambda m, s: (m,),
     "t_taskattr"),
    # CRIU's zdtm programs (tests/guest_zdtm.py); results also go to a file as they come
    ("zdtm", guest_zdtm.step, lambda m, s: (m,), "t_zdtm"),
    # lazy restart: pages through userfaultfd from crfs-restart --lazy (tests/guest_lazy.py)
    ("lazy", lambda m: __import__("guest_lazy").step(m), lambda m, s: (m["restore"],),
     "t_lazy"),
)


def selected_steps():
    """STEPS, or only those named in $CRFS_GUEST_STEPS (comma-separated): a developer's
    shortcut for one feature's steps; the tests of the others then fail."""
    wanted = os.environ.get("CRFS_GUEST_STEPS")
    if not wanted:
        return STEPS
    names = set(wanted.split(","))
    unknown = names - {step[0] for step in STEPS}
    if unknown:
        raise SystemExit(f"CRFS_GUEST_STEPS: unknown steps {sorted(unknown)}")
    return [step for step in STEPS if step[0] in names]


def run_step(manifest, steps, t0, step):
    """One step of STEPS: its progress line, then its result in steps[name] (unless it
    returns None), then the time so far in steps[timing] (if it has one)."""
    name, function, args, timing = step
    progress(name, t0)
    result = function(*args(manifest, steps))
    if result is not None:
        steps[name] = result
    if timing:
        steps[timing] = elapsed(t0)


def unload_module(steps):
    """Kill any restored program still running (it would keep the module busy), rmmod,
    then what kmemleak and dmesg say."""
    steps["stragglers"] = leftover(TARGETS)
    for row in steps["stragglers"]:
        os.kill(int(row.split()[0]), signal.SIGKILL)
    time.sleep(0.5 if steps["stragglers"] else 0)
    unload = subprocess.run(["rmmod", "crfs"], capture_output=True, text=True)
    steps["rmmod"] = {"rc": unload.returncode, "stderr": unload.stderr,
                      "device_gone": not os.path.exists(kernel.DEVICE)}
    steps["kmemleak"] = kmemleak()
    steps["dmesg_problems"] = dmesg_problems()


def main(module, manifest_path, results_path):
    with open(manifest_path) as f:
        manifest = json.load(f)
    results = {"steps": {}, "images": {}}
    steps = results["steps"]
    t0 = time.monotonic()

    if load_module(module, steps):
        device_checks(manifest, results, t0)
        for step in selected_steps():
            run_step(manifest, steps, t0, step)
    unload_module(steps)
    steps["seconds"] = elapsed(t0)
    with open(results_path + ".tmp", "w") as f:
        json.dump(results, f, indent=1)
    os.replace(results_path + ".tmp", results_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
