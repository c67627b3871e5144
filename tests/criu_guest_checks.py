"""Guest side of tests/test_criu_guest.py (run in the kmod qemu guest, as root):

    criu_guest_checks.py CRFS_KO RESTARTER DIRTY_HEAP RESULTS_JSON [NS_PROG]

A real program (bench/dirty_heap.c, 16 MiB of heap, a tick every 100 ms) is dumped by
`criu dump`, converted by `crfs convert` into a ckpt image and restarted by crfs.ko; the
restarted program must go on ticking with its heap intact and its pid, into its own
stdout file (the dump's open files are carried by the conversion). Everything seen is
written to RESULTS_JSON for the host's tests to check.

With NS_PROG (tests/data/criu/ns_prog.c), a fresh dump of it (its own IPC and UTS
namespaces, cgroup v2 group /crfs-ns, SysV segments, inet listeners) is read by crfs and
what crfs shows is reported next to /proc read just before the dump ("ns").
"""

import json
import os
import signal
import subprocess
import sys
import time

from crfs import kernel

WORK = "/tmp/criu-guest"
CRIU_MODULES = ["nf_tables", "nfnetlink", "nft_ct", "nf_conntrack", "netlink_diag",
                "unix_diag", "inet_diag", "tcp_diag", "udp_diag", "af_packet_diag",
                "af_packet", "tun", "veth"]


def wait_line(path, pred, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                for line in f:
                    if line.endswith("\n") and pred(line):
                        return line.strip()
        except FileNotFoundError:
            pass
        time.sleep(0.05)
    return None


def ticks(path):
    with open(path) as f:
        return [line.split() for line in f if line.startswith("tick ")]


def crfs(*args):
    run = subprocess.run([sys.executable, "-m", "crfs", *args], capture_output=True, text=True,
                         timeout=300)
    return {"rc": run.returncode, "stdout": run.stdout, "stderr": run.stderr[-2000:]}


def main(module, restarter, exe, results_path, ns_exe=None):
    results = {}
    subprocess.run(["ip", "link", "set", "lo", "up"], capture_output=True)
    subprocess.run(["modprobe", "-a"] + CRIU_MODULES, capture_output=True)
    results["insmod"] = subprocess.run(["insmod", module], capture_output=True,
                                       text=True).returncode
    check = subprocess.run(["criu", "check"], capture_output=True, text=True)
    results["criu_check"] = check.returncode
    os.makedirs(f"{WORK}/dump")
    out, out2 = f"{WORK}/out", f"{WORK}/out2"
    with open(out, "w") as stdout:
        proc = subprocess.Popen(["setarch", "-R", exe, "16", "100"], stdin=subprocess.DEVNULL,
                                stdout=stdout, stderr=subprocess.STDOUT, start_new_session=True)
    results["ready"] = wait_line(out, lambda s: s.startswith("tick 3 "))
    dump = subprocess.run(["criu", "dump", "-t", str(proc.pid), "-D", f"{WORK}/dump",
                           "-o", "dump.log"], capture_output=True, text=True)
    results["dump"] = {"rc": dump.returncode, "stderr": dump.stderr[-2000:]}
    proc.wait(timeout=60)
    results["pid"] = proc.pid
    results["before"] = ticks(out)
    results["info"] = crfs("info", f"{WORK}/dump")
    results["convert"] = crfs("convert", f"{WORK}/dump", "-o", f"{WORK}/prog.ckpt")
    results["verify"] = crfs("verify", f"{WORK}/prog.ckpt")
    with open(out2, "wb") as stdout:
        child = kernel.restart_in_child(f"{WORK}/prog.ckpt", restarter=restarter,
                                        stdout=stdout, timeout=120)
    results["restart"] = {"errno": child.errno, "reason": child.reason, "pid": child.pid}
    if child.errno == 0:
        # The converted image carries the dump's fd table (files.img, fdinfo-*.img): the
        # program's stdout is its own `out` again, reopened by path at its position.
        target = int(results["before"][-1][1]) + 5
        wait_line(out, lambda s: s.startswith("tick ") and int(s.split()[1]) >= target, 60)
        try:
            results["stdout_link"] = os.readlink(f"/proc/{child.pid}/fd/1")
        except OSError as exc:
            results["stdout_link"] = str(exc)
        for pid in {child.pid, child.process.pid}:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        child.process.wait(timeout=30)
    results["after"] = ticks(out)[len(results["before"]):]
    results["restarter_out"] = open(out2, errors="replace").read()[-2000:]
    if ns_exe:
        results["ns"] = ns_check(ns_exe)
    with open(results_path, "w") as f:
        json.dump(results, f, indent=1)


def ns_check(exe):
    """ns_prog dumped by criu: /proc just before the dump, and what crfs makes of the dump
    (the texts of ns/, cgroup, sysvipc/, net/ and the refusal of crfs convert)."""
    from crfs import render_ns
    from crfs.model import registry
    subprocess.run(["mount", "-t", "cgroup2", "none", "/sys/fs/cgroup"], capture_output=True)
    os.makedirs("/sys/fs/cgroup/crfs-ns", exist_ok=True)
    work = f"{WORK}/ns"
    os.makedirs(f"{work}/dump")
    with open(f"{work}/out", "w") as stdout:
        proc = subprocess.Popen([exe], stdin=subprocess.DEVNULL, stdout=stdout,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd=work)
    out = {"ready": wait_line(f"{work}/out", lambda s: s.startswith("ready"), 60)}
    pid = proc.pid
    with open("/sys/fs/cgroup/crfs-ns/cgroup.procs", "w") as f:
        f.write(f"{pid}\n")
    # and a cgroup v1 hierarchy (named, no controller): its line has a hierarchy id
    os.makedirs("/run/crfs-cgv1", exist_ok=True)
    v1 = subprocess.run(["mount", "-t", "cgroup", "-o", "none,name=crfsv1", "crfsv1",
                         "/run/crfs-cgv1"], capture_output=True, text=True)
    out["cgroup_v1_mount"] = v1.returncode
    if v1.returncode == 0:
        os.makedirs("/run/crfs-cgv1/grp", exist_ok=True)
        with open("/run/crfs-cgv1/grp/cgroup.procs", "w") as f:
            f.write(f"{pid}\n")
    truth = {"pid": pid, "out": open(f"{work}/out").read(),
             "cgroup": open(f"/proc/{pid}/cgroup").read(),
             "ns": {n: os.readlink(f"/proc/{pid}/ns/{n}") for n in os.listdir(f"/proc/{pid}/ns")},
             "self_ns": {n: os.readlink(f"/proc/self/ns/{n}") for n in os.listdir("/proc/self/ns")},
             "fd": {n: os.readlink(f"/proc/{pid}/fd/{n}") for n in os.listdir(f"/proc/{pid}/fd")},
             "sysvipc": subprocess.run(["nsenter", "-t", str(pid), "-i", "cat",
                                        "/proc/sysvipc/shm"], capture_output=True,
                                       text=True).stdout}
    for name in ("tcp", "udp", "tcp6"):
        truth[f"net-{name}"] = open(f"/proc/{pid}/net/{name}").read()
    out["truth"] = truth
    dump = subprocess.run(["criu", "dump", "-t", str(pid), "-D", f"{work}/dump", "-o",
                           "dump.log"], capture_output=True, text=True)
    out["dump"] = {"rc": dump.returncode, "stderr": dump.stderr[-2000:]}
    proc.wait(timeout=60)
    out["files"] = sorted(os.listdir(f"{work}/dump"))
    image = registry.open_image(f"{work}/dump")
    try:
        task = image.tasks[0]
        shown = {"namespaces": render_ns.namespaces(image.namespaces or []),
                 "ns": task.namespaces, "cgroup": task.cgroup,
                 "fd": {str(d.fd): d.file.link() for d in task.files.fds}}
        if task.ipc is not None:
            shown["sysvipc"] = render_ns.sysvipc_shm(task.ipc)
            shown["segments"] = {str(s.shmid): [s.size] + [
                s.read(at, 32).rstrip(b"\0").decode("latin-1") for at in (0, 4096, 8192)]
                for s in task.ipc.shms}
        socks = render_ns.inet_socks(image, task)
        for name in render_ns.NET_FILES:
            shown[f"net-{name}"] = render_ns.proc_net(socks, name)
    finally:
        image.close()
    out["crfs"] = shown
    out["convert"] = crfs("convert", f"{work}/dump", "-o", f"{work}/ns.ckpt")
    out["host_ipc"] = host_ipc_check(exe)
    return out


def host_ipc_check(exe):
    """ns_prog host-ipc: its SysV segment in the IPC namespace criu runs in (which criu
    does not dump): criu 3.17 refuses to dump it (its log's errors reported), and if it
    ever dumps it, what crfs shows of the mapping."""
    from crfs import render
    from crfs.model import registry
    work = f"{WORK}/ns-host"
    os.makedirs(f"{work}/dump")
    with open(f"{work}/out", "w") as stdout:
        proc = subprocess.Popen([exe, "host-ipc"], stdin=subprocess.DEVNULL, stdout=stdout,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd=work)
    out = {"ready": wait_line(f"{work}/out", lambda s: s.startswith("ready"), 60)}
    out["maps"] = [line for line in open(f"/proc/{proc.pid}/maps") if "SYSV" in line]
    dump = subprocess.run(["criu", "dump", "-t", str(proc.pid), "-D", f"{work}/dump", "-o",
                           "dump.log", "-v4"], capture_output=True, text=True)
    out["dump"] = {"rc": dump.returncode, "stderr": dump.stderr[-2000:]}
    try:
        log = open(f"{work}/dump/dump.log", errors="replace").read()
        out["log"] = [line for line in log.splitlines() if "Error" in line][-10:]
    except OSError:
        pass
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=60)
    out["files"] = sorted(os.listdir(f"{work}/dump"))
    if dump.returncode == 0:
        try:
            image = registry.open_image(f"{work}/dump")
            try:
                task = image.tasks[0]
                vma = next((v for v in task.mm.vmas if v.kind == "shm-ipc"), None)
                out["crfs_maps"] = render.maps_line(vma, task.mm, "x86_64") if vma else None
                out["crfs_mem"] = task.mm.read(vma.start, 20).decode("latin-1") if vma else None
                out["sysvipc"] = task.ipc is not None
            finally:
                image.close()
        except Exception as exc:            # reported: the test says what it expects
            out["crfs_error"] = f"{type(exc).__name__}: {exc}"
        out["convert"] = crfs("convert", f"{work}/dump", "-o", f"{work}/ns.ckpt")
    return out


if __name__ == "__main__":
    main(*sys.argv[1:])
