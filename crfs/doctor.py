"""`crfs doctor`: what this host has of what crfs needs, and the fix for each missing piece.

Checks, in order: FUSE (/dev/fuse, fusermount3, pyfuse3) for mounting; the kernel module
(/dev/crfs and its ABI version by CRFS_IOC_VERSION, whether this kernel loads modules at
all) and the restarter (where, and whether the daemon would run it) for restarting; root's
compiled front for a quick `crfs checkpoint` (kmod/crfs-front.c); kernel
features later work may use (soft-dirty bits, userfaultfd), and ptrace for checkpointing.
"""

import ctypes
import errno
import gzip
import os
import platform
import shutil
import sys
from dataclasses import asdict, dataclass

from crfs import __version__, kernel

# A check's level: "need" ones make `crfs doctor` exit 1 when missing; "want" ones only
# say what is not there.
NEED, WANT = "need", "want"


@dataclass
class Check:
    name: str
    ok: bool
    level: str
    detail: str
    fix: str = ""


def check_fuse():
    fusermount = shutil.which("fusermount3")
    problems, fixes = [], []
    if not os.path.exists("/dev/fuse"):
        problems.append("no /dev/fuse")
        fixes.append("modprobe fuse (in a container: run it with --device /dev/fuse)")
    if not fusermount:
        problems.append("no fusermount3 on PATH")
        fixes.append("apt-get install fuse3")
    try:
        import pyfuse3  # noqa: F401
    except ImportError:
        problems.append("no pyfuse3 module")
        fixes.append("pip install pyfuse3 (needs libfuse3-dev, pkg-config)")
    if problems:
        return Check("fuse", False, NEED, ", ".join(problems), "; ".join(fixes))
    return Check("fuse", True, NEED, f"/dev/fuse, fusermount3 at {fusermount}, pyfuse3")


MODULE_FIX = (f"dkms add ./kmod && dkms install crfs/{__version__} && modprobe crfs "
              "(README: Hosts that load modules), or make -C kmod && insmod kmod/crfs.ko")


def check_module(device=kernel.DEVICE):
    if not os.path.exists(device):
        if not os.path.exists("/proc/modules"):
            return Check("module", False, NEED,
                         f"no {device}, and kernel {platform.release()} cannot load modules "
                         "(no /proc/modules)",
                         "boot a kernel that loads modules (Debian's 6.1: "
                         "linux-image-amd64), then " + MODULE_FIX)
        loaded = os.path.exists("/sys/module/crfs")
        why = "crfs is loaded but" if loaded else "the crfs module is not loaded:"
        return Check("module", False, NEED, f"{why} no {device}",
                     "udevadm trigger (kmod/99-crfs.rules makes it)" if loaded else MODULE_FIX)
    try:
        with kernel.Device(device) as dev:
            version = dev.version()
    except OSError as exc:
        return Check("module", False, NEED, f"{device}: {exc.strerror or exc}",
                     "run as root (the device is root-only, 0600)"
                     if exc.errno in (errno.EACCES, errno.EPERM) else MODULE_FIX)
    if version != kernel.CRFS_ABI_VERSION:
        return Check("module", False, NEED,
                     f"{device}: ABI version {version}, crfs speaks {kernel.CRFS_ABI_VERSION}",
                     "rmmod crfs, then install and load the module of this crfs: "
                     + MODULE_FIX)
    return Check("module", True, NEED, f"{device}, ABI version {version}")


def check_restarter():
    found = kernel.find_restarter()
    if not found:
        return Check("restarter", False, NEED, f"no {kernel.RESTARTER}",
                     f"make -C kmod, then install it root-owned 0755 as "
                     f"{kernel.INSTALLED_RESTARTER} (bash .ci/setup does)")
    if not os.access(found, os.X_OK):
        return Check("restarter", False, NEED, f"{found} is not executable",
                     f"chmod 0755 {found}")
    unsafe = kernel.unsafe_restarter(found)
    if unsafe:
        return Check("restarter", False, NEED, f"{found}: the daemon refuses it: {unsafe}",
                     f"install it root-owned 0755 as {kernel.INSTALLED_RESTARTER}")
    how = ("$CRFS_RESTARTER" if os.environ.get("CRFS_RESTARTER") else
           "installed" if found == kernel.INSTALLED_RESTARTER else "found")
    return Check("restarter", True, NEED, f"{found} ({how})")


INSTALLED_FRONT = "/usr/local/sbin/crfs"     # kmod/install puts kmod/crfs-front there
FRONT_FIX = "bash kmod/install (as root; README: Hosts that load modules)"


def check_front(path=INSTALLED_FRONT):
    """Root's compiled `crfs` (docs/checkpoint.md "The compiled front"): installed, and
    whether `crfs` on this PATH is it."""
    what = "compiled front (crfs checkpoint through the module without Python)"
    try:
        with open(path, "rb") as f:
            elf = f.read(4) == b"\x7fELF"
    except OSError:
        return Check("front", False, WANT, f"{what}: no {path}", FRONT_FIX)
    if not elf:
        return Check("front", False, WANT, f"{what}: {path} is not it (not a binary)",
                     FRONT_FIX)
    first = shutil.which("crfs")
    if first and os.path.realpath(first) == os.path.realpath(path):
        return Check("front", True, WANT, f"{what}: {path}, first on PATH")
    return Check("front", True, WANT, f"{what}: {path}; `crfs` on this PATH is "
                 f"{first or 'none'}, not it (Debian's root PATH has /usr/local/sbin first)")


def kernel_config():
    """({CONFIG_X: value}, path read) of the running kernel, from /boot/config-RELEASE or
    /proc/config.gz; None when neither is there."""
    paths = (f"/boot/config-{platform.release()}", "/proc/config.gz")
    for path in paths:
        try:
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rt") as f:
                return dict(line.strip().split("=", 1) for line in f
                            if line.startswith("CONFIG_") and "=" in line), path
        except OSError:
            continue
    return None


def check_soft_dirty(config):
    what = "soft-dirty page bits (incremental checkpoints)"
    if config is None:
        return Check("soft-dirty", False, WANT, f"{what}: unknown, no /boot/config-"
                     f"{platform.release()} nor /proc/config.gz",
                     "a kernel built with CONFIG_MEM_SOFT_DIRTY=y (Debian's is)")
    config, path = config
    if config.get("CONFIG_MEM_SOFT_DIRTY") == "y":
        return Check("soft-dirty", True, WANT, f"{what}: CONFIG_MEM_SOFT_DIRTY=y ({path})")
    return Check("soft-dirty", False, WANT,
                 f"{what}: CONFIG_MEM_SOFT_DIRTY is not set ({path})",
                 "a kernel built with CONFIG_MEM_SOFT_DIRTY=y (Debian's is)")


SYS_USERFAULTFD = 323      # x86_64
UFFD_USER_MODE_ONLY = 1


def userfaultfd_probe():
    """0 when userfaultfd(2) gives this process a descriptor, else the errno."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.syscall(SYS_USERFAULTFD, os.O_CLOEXEC | os.O_NONBLOCK | UFFD_USER_MODE_ONLY)
    if fd < 0:
        code = ctypes.get_errno()
        if code != errno.EINVAL:
            return code
        fd = libc.syscall(SYS_USERFAULTFD, os.O_CLOEXEC | os.O_NONBLOCK)
        if fd < 0:
            return ctypes.get_errno()
    os.close(fd)
    return 0


def check_userfaultfd():
    what = "userfaultfd (lazy restore)"
    try:
        with open("/proc/sys/vm/unprivileged_userfaultfd") as f:
            sysctl = f"vm.unprivileged_userfaultfd={f.read().strip()}"
    except OSError:
        sysctl = "no vm.unprivileged_userfaultfd"
    code = userfaultfd_probe()
    if code == 0:
        return Check("userfaultfd", True, WANT, f"{what}: available to this process "
                     f"({sysctl})")
    if code == errno.ENOSYS:
        return Check("userfaultfd", False, WANT, f"{what}: not in this kernel",
                     "a kernel built with CONFIG_USERFAULTFD=y")
    return Check("userfaultfd", False, WANT,
                 f"{what}: {os.strerror(code)} for this process ({sysctl})",
                 "run as root, or sysctl vm.unprivileged_userfaultfd=1")


def check_ptrace():
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope") as f:
            scope = int(f.read())
    except (OSError, ValueError):
        return Check("ptrace", True, NEED, "no Yama restriction (crfs checkpoint works "
                     "on your own processes)")
    if scope >= 3:
        return Check("ptrace", False, NEED, "kernel.yama.ptrace_scope=3: ptrace is off",
                     "reboot (scope 3 cannot be lowered at run time)")
    if scope >= 1 and os.geteuid() != 0:
        return Check("ptrace", True, NEED, f"kernel.yama.ptrace_scope={scope}: checkpoint "
                     "needs root (or CAP_SYS_PTRACE)", "")
    return Check("ptrace", True, NEED, f"kernel.yama.ptrace_scope={scope}")


def checks(device=kernel.DEVICE):
    config = kernel_config()
    return [check_fuse(), check_module(device), check_restarter(), check_front(),
            check_ptrace(), check_soft_dirty(config), check_userfaultfd()]


def text(results):
    lines = []
    for c in results:
        mark = "ok" if c.ok else "MISSING" if c.level == NEED else "absent"
        lines.append(f"{mark:<8}{c.name}: {c.detail}")
        if c.fix and not c.ok:
            lines.append(f"{'':<8}fix: {c.fix}")
    return "\n".join(lines) + "\n"


def ready(results):
    return all(c.ok for c in results if c.level == NEED)


def doctor(args):
    results = checks(args.device)
    if args.json:
        from crfs import jsonout
        jsonout.write({"ready": ready(results), "checks": [asdict(c) for c in results]})
    else:
        sys.stdout.write(text(results))
    return 0 if ready(results) else 1


def add_parser(sub):
    text_ = "say what this host has of what crfs needs (FUSE, module, restarter, kernel)"
    p = sub.add_parser("doctor", help=text_, description=text_ + ", with the fix for each "
                       "missing piece; exit 0 when mounting, checkpointing and restarting "
                       "can all work, 1 when not.")
    p.add_argument("--json", action="store_true",
                   help="print JSON, with the keys of docs/json.md")
    p.add_argument("--device", metavar="DEV", default=kernel.DEVICE,
                   help="the crfs device (default %(default)s)")
    p.set_defaults(func=doctor, image=None, reporter="crfs doctor")
    return p
