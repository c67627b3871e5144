"""Packaging: kmod/dkms.conf builds and installs crfs.ko with DKMS (private trees, Debian's
6.1 headers: nothing goes into the host's module tree), the guest loads the installed
module and restarts a real program with `crfs restart`; the udev rule and the installed
restarter."""

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import crfs
import guest_parts
from crfs import kernel
from guest_parts import debian_kver, dkms_conf  # noqa: F401 - used by other modules too

REPO = Path(__file__).parent.parent
KMOD = REPO / "kmod"
HARNESS = KMOD / "harness"


def test_dkms_conf_matches_crfs():
    conf = dkms_conf()
    assert conf["PACKAGE_NAME"] == "crfs"
    assert conf["PACKAGE_VERSION"] == crfs.__version__
    assert conf["BUILT_MODULE_NAME[0]"] == "crfs"
    assert "KDIR=${kernel_source_dir}" in conf["MAKE[0]"]


def test_udev_rule_keeps_the_device_root_only():
    rule = (KMOD / "99-crfs.rules").read_text()
    (line,) = [ln for ln in rule.splitlines() if ln and not ln.startswith("#")]
    assert 'KERNEL=="crfs"' in line and 'MODE="0600"' in line and 'OWNER="root"' in line


@pytest.fixture(scope="module")
def packaging(guest_boot):
    """Part "packaging" of the session's one guest boot (guest_parts.prepare_packaging):
    the DKMS build on the host, then tests/packaging_guest.py in the guest."""
    return guest_parts.result(guest_boot, "packaging")


@pytest.fixture(scope="module")
def dkms_module(packaging):
    """crfs.ko built and installed by dkms into private trees, for Debian's kernel."""
    host = packaging["host"]
    for step in ("add", "build", "install"):
        result = host["steps"].get(step)
        assert result and result["rc"] == 0, result
    return host["kver"], host["ko"], host["steps"]


def test_dkms_builds_and_installs(dkms_module):
    kver, ko, steps = dkms_module
    assert ko.exists(), steps["install"]["stdout"]
    info = subprocess.run(["modinfo", "-F", "vermagic", str(ko)], capture_output=True,
                          text=True, check=True).stdout
    assert info.split()[0] == kver
    assert "CC [M]" in steps["make.log"] and "warning" not in steps["make.log"].lower()


def test_front_is_installed_for_root():
    """After .ci/setup (kmod/install): /usr/local/sbin/crfs is the compiled front (an ELF
    binary), root-owned 0755, which hands `crfs --help` to the Python CLI on PATH."""
    path = "/usr/local/sbin/crfs"
    if not os.path.exists(path):
        pytest.skip(f"{path} not installed (bash kmod/install as root)")
    st = os.stat(path)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o755)
    with open(path, "rb") as f:
        assert f.read(4) == b"\x7fELF"
    help_text = subprocess.run([path, "--help"], capture_output=True, text=True,
                               env={**os.environ, "PATH": f"/usr/local/sbin:{os.environ['PATH']}"})
    assert help_text.returncode == 0 and help_text.stdout.startswith("usage: crfs"), help_text


def test_restarter_is_installed_root_only():
    """After .ci/setup (kmod/install): root-owned 0755, and the daemon's first choice."""
    path = kernel.INSTALLED_RESTARTER
    if not os.path.exists(path):
        pytest.skip(f"{path} not installed (bash kmod/install as root)")
    st = os.stat(path)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o755)
    assert kernel.unsafe_restarter(path) is None
    env = {k: v for k, v in os.environ.items() if k != "CRFS_RESTARTER"}
    found = subprocess.run([sys.executable, "-c", "from crfs import kernel; "
                            "print(kernel.find_restarter())"], env=env, capture_output=True,
                           text=True, check=True).stdout.strip()
    assert found == path


@pytest.fixture(scope="module")
def guest(dkms_module, packaging):
    if packaging.get("why_not"):
        pytest.skip(packaging["why_not"])
    assert packaging["report"] is not None, f"guest status {packaging['rc']}:\n" \
        f"{packaging['stdout'][-3000:]}\n{packaging['stderr'][-3000:]}"
    assert packaging["rc"] == 0, packaging["stdout"][-3000:] + packaging["stderr"][-3000:]
    return packaging["report"]


def test_guest_loads_the_dkms_module(guest):
    assert guest["insmod"]["rc"] == 0, guest["insmod"]
    assert guest["device_mode"] == "0o600"
    doctor = json.loads(guest["doctor"]["stdout"])
    module = next(c for c in doctor["checks"] if c["name"] == "module")
    assert module["ok"] and module["detail"] == \
        f"/dev/crfs, ABI version {kernel.CRFS_ABI_VERSION}"
    restarter = next(c for c in doctor["checks"] if c["name"] == "restarter")
    assert restarter["ok"], restarter
    if os.path.exists(kernel.INSTALLED_RESTARTER):       # what the guest restarts with
        assert restarter["detail"] == f"{kernel.INSTALLED_RESTARTER} (installed)"


def test_guest_restarts_a_real_program_from_the_command_line(guest):
    assert guest["checkpoint"]["rc"] == 0, guest["checkpoint"]
    restart = guest["restart"]
    assert restart["rc"] == 0, restart
    assert re.fullmatch(r"crfs restart: \S+: restored pid \d+\n", restart["stderr"])
    assert guest["restored_counts"] is True
    half = guest["restart_half"]
    assert half["rc"] == 1 and "not restarted: unsound image: records: " in half["stderr"]


def test_guest_mount_restarts_with_the_installed_restarter(guest):
    """mount -t fuse crfs, cp to restart/: the daemon finds the installed restarter (the
    source tree's was removed in the guest)."""
    if not os.path.exists(kernel.INSTALLED_RESTARTER):
        pytest.skip(f"{kernel.INSTALLED_RESTARTER} not installed (bash kmod/install)")
    through = guest["mount_restart"]
    assert through["mount"]["rc"] == 0, through
    assert through["cp"]["rc"] == 0, through
    assert "state: running" in through["status"] and through["counts"] is True, through
