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


def restart_forked(path, threaded=False):
    """CRFS_IOC_RESTART from a forked child of this process (no vdso move, unlike
    crfs-restart): a restore would replace the child, never this process. The child
    reports on a pipe; EOF without a report means it was restored (then it is killed)."""
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
    data = b""
    while True:
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        data += chunk
    os.close(read_fd)
    if not data:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    if not data:
        return {"errno": "restored", "msg": f"wait status {status:#x}"}
    return json.loads(data)


def raw_check(dev, arg, **fields):
    """CRFS_IOC_CHECK with a hand-made argument (bad flags, bad pointer)."""
    if arg is None:
        args = kernel.ImageArgs(**fields)
        arg = ctypes.addressof(args)
    ret = kernel._ioctl(dev.fd, kernel.CRFS_IOC_CHECK, arg)
    return {"errno": name(-ret) if ret < 0 else 0}


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
    out["flags_set"] = raw_check(dev, None, fd=fd, flags=1)
    out["reserved_set"] = raw_check(dev, None, fd=fd, _reserved=1)
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


def records(data):
    """(offset, type, len) of the records of a ckpt_hdr image."""
    offset = 0
    while offset + 8 <= len(data):
        type_, length = struct.unpack_from("<II", data, offset)
        yield offset, type_, length
        if length < 8:
            return
        offset += length


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


def run_target(exe, data, out_path, limit, cli):
    """Start exe under setarch -R, let it tick, checkpoint it with --kill."""
    image = out_path + ".img"
    with open(out_path, "w") as out:
        proc = subprocess.Popen(["setarch", "-R", exe, data, str(limit)], stdout=out,
                                stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with open(out_path) as f:
            if f.read().count("\n") >= 15:
                break
        time.sleep(0.05)
    t0 = time.monotonic()
    if cli:
        ck = subprocess.run([sys.executable, "-m", "crfs", "checkpoint", str(proc.pid),
                             "-o", image, "--kill"], capture_output=True, text=True,
                            timeout=120)
        result = {"rc": ck.returncode, "stderr": ck.stderr}
    else:
        checkpoint(proc.pid, image, after="kill")
        result = {"rc": 0}
    result["seconds"] = round(time.monotonic() - t0, 2)
    result["returncode"] = proc.wait(timeout=60)
    with open(out_path) as f:
        result["before"] = f.read().splitlines()
    return image, result


def restart_direct(image, out_path, restarter, wait=True):
    with open(out_path, "wb") as out:
        t0 = time.monotonic()
        child = kernel.restart_in_child(image, restarter=restarter, stdout=out, timeout=120)
        latency = time.monotonic() - t0
    result = {"errno": name(child.errno), "msg": child.reason, "stage": child.stage,
              "latency": round(latency, 3)}
    if child.errno == 0:
        try:
            child.process.wait(timeout=120 if wait else 10)
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()
        result["exit"] = kernel.describe_exit(child.process.returncode)
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


def through_fuse(manifest, restore_image=None):
    """The daemon's side: `cp img /ckpt/restart/` on a crfs mount, with /dev/crfs present."""
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
            if restore_image:
                out["restore"] = fuse_restore(mnt, restore_image)
        finally:
            subprocess.run(["fusermount3", "-u", mnt], capture_output=True, timeout=60)
    if os.path.exists(log):
        with open(log) as f:
            out["log_tail"] = f.read()[-2000:]
    return out


def fuse_restore(mnt, image):
    """cp a real checkpoint into restart/: close(2) succeeds, the program runs on, its
    status and log are readable while the daemon keeps serving."""
    target = os.path.join(mnt, "restart", "prog.img")
    t0 = time.monotonic()
    cp = subprocess.run(["cp", image, target], capture_output=True, text=True, timeout=120)
    out = {"rc": cp.returncode, "stderr": cp.stderr, "seconds": round(time.monotonic() - t0, 2)}
    with open(target + ".status") as f:
        out["first_status"] = f.read()
    out["listing_while_running"] = sorted(os.listdir(os.path.join(mnt, "restart")))
    deadline = time.monotonic() + 120
    status = out["first_status"]
    while "exited" not in status and "killed" not in status and time.monotonic() < deadline:
        time.sleep(0.2)
        with open(target + ".status") as f:
            status = f.read()
    out["status"] = status
    with open(target + ".log") as f:
        out["log"] = f.read().splitlines()
    return out


def main(module, manifest_path, results_path):
    with open(manifest_path) as f:
        manifest = json.load(f)
    results = {"steps": {}, "images": {}}
    steps = results["steps"]
    t0 = time.monotonic()

    load = subprocess.run(["insmod", module], capture_output=True, text=True)
    steps["insmod"] = {"rc": load.returncode, "stderr": load.stderr}
    for _ in range(50):
        if os.path.exists(kernel.DEVICE):
            break
        time.sleep(0.05)
    if os.path.exists(kernel.DEVICE):
        st = os.stat(kernel.DEVICE)
        steps["device"] = {"char": stat.S_ISCHR(st.st_mode), "mode": stat.S_IMODE(st.st_mode)}
        with kernel.Device() as dev:
            steps["version"] = dev.version()
            steps["t_setup"] = round(time.monotonic() - t0, 2)
            for case in manifest["images"]:
                results["images"][case["name"]] = {
                    op: on_path(dev, case["path"], op) for op in case["ops"]}
            steps["t_images"] = round(time.monotonic() - t0, 2)
            steps["special"] = special_fds(dev, manifest["valid"], manifest["scratch"])
            steps["t_special"] = round(time.monotonic() - t0, 2)
        child = kernel.restart_in_child(manifest["valid"],
                                        restarter=manifest["restore"]["restarter"])
        steps["child_valid"] = {"errno": name(child.errno),
                                "msg": child.reason, "stage": child.stage}
        child = kernel.restart_in_child(manifest["invalid"],
                                        restarter=manifest["restore"]["restarter"])
        steps["child_invalid"] = {"errno": name(child.errno),
                                  "msg": child.reason, "offset": child.offset,
                                  "type": child.record_type}
        steps["t_child"] = round(time.monotonic() - t0, 2)
        steps["restore"] = restore_programs(manifest["restore"])
        steps["t_restore"] = round(time.monotonic() - t0, 2)
        os.environ["CRFS_RESTARTER"] = manifest["restore"]["restarter"]
        steps["fuse"] = through_fuse(manifest, steps["restore"]["dynamic"]["image"])
        steps["t_fuse"] = round(time.monotonic() - t0, 2)
    unload = subprocess.run(["rmmod", "crfs"], capture_output=True, text=True)
    steps["rmmod"] = {"rc": unload.returncode, "stderr": unload.stderr,
                      "device_gone": not os.path.exists(kernel.DEVICE)}
    dmesg = subprocess.run(["dmesg"], capture_output=True, text=True).stdout
    steps["dmesg_problems"] = [line for line in dmesg.splitlines()
                               if any(k in line for k in ("WARNING:", "BUG:", "Oops",
                                                          "Call Trace", "general protection"))]
    steps["seconds"] = round(time.monotonic() - t0, 2)
    with open(results_path + ".tmp", "w") as f:
        json.dump(results, f, indent=1)
    os.replace(results_path + ".tmp", results_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
