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
import stat
import subprocess
import sys
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
    fd = os.open(path, flags | os.O_CLOEXEC)
    try:
        return outcome(lambda: getattr(dev, op)(fd))
    finally:
        os.close(fd)


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


def through_fuse(manifest):
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
        finally:
            subprocess.run(["fusermount3", "-u", mnt], capture_output=True, timeout=60)
    if os.path.exists(log):
        with open(log) as f:
            out["log_tail"] = f.read()[-2000:]
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
        child = kernel.restart_in_child(manifest["valid"])
        steps["child_valid"] = {"errno": name(child.errno),
                                "msg": child.reason, "stage": child.stage}
        child = kernel.restart_in_child(manifest["invalid"])
        steps["child_invalid"] = {"errno": name(child.errno),
                                  "msg": child.reason, "offset": child.offset,
                                  "type": child.record_type}
        steps["t_child"] = round(time.monotonic() - t0, 2)
        steps["fuse"] = through_fuse(manifest)
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
