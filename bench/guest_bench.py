"""What the guest benchmarks against criu share (bench/restart_vs_criu.py,
bench/zdtm_vs_criu.py): the host's checks and build, one guest session that runs the
benchmark's own script with --in-guest, and the guest's set-up (criu's modules, crfs.ko,
criu's version and `criu check`)."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "kmod" / "harness"
# what `criu check` wants loaded in Debian's guest kernel
CRIU_MODULES = ["nf_tables", "nfnetlink", "nft_ct", "unix_diag", "inet_diag", "tcp_diag",
                "udp_diag", "netlink_diag", "af_packet_diag", "tun", "veth", "af_packet"]


def host_ready():
    """None when criu and the qemu harness are there, else what to install (printed)."""
    if shutil.which("criu") is None:
        return ("criu is not installed; it is the baseline of this benchmark. Install it "
                "with:\n    apt-get install criu")
    if shutil.which("qemu-system-x86_64") is None or not (HARNESS / "run-in-guest").exists():
        return "the qemu guest harness is not set up: bash kmod/harness/setup"
    return None


def build_kmod(tmp):
    """crfs.ko and crfs-restart built in tmp/kmod (the tree stays clean); False (printed)
    when make fails."""
    kdir = tmp / "kmod"
    kdir.mkdir()
    for f in (ROOT / "kmod").iterdir():
        if f.suffix in (".c", ".h") or f.name in ("Kbuild", "Makefile"):
            shutil.copy(f, kdir / f.name)
    make = subprocess.run(["make", "-C", str(kdir)], capture_output=True, text=True)
    if make.returncode:
        print(make.stdout + make.stderr, file=sys.stderr)
        return False
    return True


def run_guest(tmp, script, guest_args, timeout, memory="2G", quiet=False):
    """One guest session running `script --in-guest --tmp TMP GUEST_ARGS...` with tmp as
    the shared work directory; its exit status (the harness stops qemu at the timeout)."""
    cmd = ["bash", str(HARNESS / "run-in-guest"), "-q", "-t", str(timeout), "-m", memory,
           "-w", str(tmp), "-e", f"PYTHONPATH={ROOT}", "-C", str(ROOT), "--",
           sys.executable, str(Path(script).resolve()), "--in-guest", "--tmp", str(tmp),
           *guest_args]
    t0 = time.monotonic()
    guest = subprocess.Popen(cmd, stdout=subprocess.DEVNULL if quiet else None)
    try:
        rc = guest.wait(timeout=timeout + 60)
    except subprocess.TimeoutExpired:
        guest.terminate()     # run-in-guest's trap stops its qemu
        rc = guest.wait()
    print(f"host: guest session {time.monotonic() - t0:.1f} s, status {rc}\n")
    return rc


def guest_setup(tmp):
    """(Guest side.) Loopback up, criu's modules and crfs.ko loaded: what each said, with
    criu's version and `criu check`, for the report."""
    setup = {"uname": os.uname().release,
             "mem_total": open("/proc/meminfo").readline().split()[1]}
    subprocess.run(["ip", "link", "set", "lo", "up"], capture_output=True)
    mods = subprocess.run(["modprobe", "-a"] + CRIU_MODULES, capture_output=True, text=True)
    setup["modprobe"] = mods.stderr.strip()
    module = os.path.join(tmp, "kmod", "crfs.ko")
    if os.path.exists(module):       # not built for a benchmark of the mount alone
        ins = subprocess.run(["insmod", module], capture_output=True, text=True)
        setup["insmod"] = ins.stderr.strip() or "ok"
    setup["criu_version"] = subprocess.run(["criu", "--version"], capture_output=True,
                                           text=True).stdout.strip().replace("\n", ", ")
    check = subprocess.run(["criu", "check"], capture_output=True, text=True)
    setup["criu_check"] = f"exit {check.returncode}: " + (check.stdout + check.stderr).strip()
    return setup


def compile_crfs():
    """(Guest side.) Write the bytecode of the crfs package, as an installed package has
    it (pip compiles at install). The harness exports PYTHONDONTWRITEBYTECODE=1 and the
    worktree holds no __pycache__, so without this every `python3 -m crfs` in the guest
    compiles each crfs module from source again (more than half of a small checkpoint's
    time under TCG). The .pyc files land in the guest's throw-away overlay."""
    import compileall
    compileall.compile_dir(str(ROOT / "crfs"), quiet=1)


# The console script pip writes for pyproject's [project.scripts] crfs = "MODULE:FUNC"
CONSOLE_SCRIPT = """# -*- coding: utf-8 -*-
import re
import sys
from {module} import {func}
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit({func}())
"""


def console_script():
    """CONSOLE_SCRIPT for pyproject.toml's entry point of `crfs`."""
    import tomllib
    with open(ROOT / "pyproject.toml", "rb") as f:
        entry = tomllib.load(f)["project"]["scripts"]["crfs"]
    module, func = entry.split(":")
    return CONSOLE_SCRIPT.format(module=module, func=func)


def make_venv(venv):
    """crfs installed as a user installs it, in a new venv at `venv` (made with `python3 -m
    venv --without-pip`: no system site-packages, so none of this machine's .pth files,
    the sandbox's certifi hook and crfs's editable-install finder): the package's files in
    its site-packages with their bytecode compiled and the `crfs` console script, as `pip
    install` lays out a pure-Python package (pip needs the `wheel` package to build one from
    this tree, which this machine lacks). The dependencies are left out: `crfs checkpoint`
    on the kernel path imports none of them, and none brings a .pth file. Put it outside
    the guest's -w directories: the guest sees it through the host root's 9p mount with
    cache=loose, as it sees the Python it runs, not through a cache=mmap share that asks
    the host at every stat. Returns the path of its `crfs` script."""
    venv = Path(venv)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    shutil.copytree(ROOT / "crfs", site / "crfs", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([str(venv / "bin" / "python"), "-m", "compileall", "-q", str(site)],
                   check=True, stdout=subprocess.DEVNULL)
    script = venv / "bin" / "crfs"
    script.write_text(f"#!{venv / 'bin' / 'python'}\n" + console_script())
    script.chmod(0o755)
    return script


def installed_env():
    """(Guest side.) The environment of the venv's crfs: no PYTHONPATH (the harness sets
    one to the worktree), no VIRTUAL_ENV."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def warm_memory(keep_mib=384):
    """(Guest side.) Write all but `keep_mib` of the guest's available memory once, then
    free it: qemu backs guest RAM with host memory at its first write, so without this
    whichever tool first gets never-used pages pays the host's page faults (a real
    machine's RAM has none)."""
    with open("/proc/meminfo") as f:
        info = {line.split(":")[0]: int(line.split()[1]) for line in f}
    size = max(info["MemAvailable"] // 1024 - keep_mib, 0) << 20
    block = bytearray(size)     # zero-filled: every page written
    del block
