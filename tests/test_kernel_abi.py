"""crfs/kernel.py and the restart/ status mapping, on the host (no module needed).

The module's real answers are checked in the guest (tests/test_kmod_guest.py); here the
restarter child is pointed at devices that are not /dev/crfs, and the errno -> status
mapping of crfs/fs/restart.py is checked for every errno the ABI documents.
"""

import ctypes
import errno

import pytest

from crfs import kernel
from crfs.formats import ckpt as fmt
from crfs.fs import restart


def test_args_struct_is_the_c_size():
    assert ctypes.sizeof(kernel.ImageArgs) == 120
    assert kernel.CRFS_IOC_CHECK != kernel.CRFS_IOC_RESTART


def test_child_without_device(tmp_path):
    image = tmp_path / "img"
    image.write_bytes(b"x")
    outcome = kernel.restart_in_child(str(image), device=str(tmp_path / "no-such-device"))
    assert (outcome.errno, outcome.stage) == (errno.ENOENT, "open-device")
    error, status = restart._kernel_outcome("p.img", outcome)
    assert error.errno == errno.ENODEV
    assert "state: failed" in status and "kernel module is not loaded" in status


def test_child_with_a_device_that_is_not_crfs(tmp_path):
    image = tmp_path / "img"
    image.write_bytes(b"x")
    outcome = kernel.restart_in_child(str(image), device="/dev/null")
    assert (outcome.errno, outcome.stage) == (errno.ENOTTY, "version")
    error, status = restart._kernel_outcome("p.img", outcome)
    assert error.errno == errno.ENODEV
    assert "/dev/crfs" in status


def _map(code, **kw):
    return restart._kernel_outcome("p.img", kernel.Outcome(code, **kw))


def test_validated_but_not_restored():
    error, status = _map(errno.EOPNOTSUPP, reason="valid image; restore is not implemented yet")
    assert error.errno == errno.EOPNOTSUPP
    assert "state: failed" in status and "restore not implemented yet" in status


def test_rejected_with_the_offending_record():
    error, status = _map(errno.EINVAL, reason="vma 0x1000 overlaps or precedes the one before",
                         offset=0x1234, record_type=fmt.CKPT_HDR["CKPT_HDR_VMA"])
    assert error.errno == errno.EINVAL
    assert ("error: the kernel module rejected the image: offset 0x1234: CKPT_HDR_VMA: "
            "vma 0x1000 overlaps") in status
    assert "state: rejected" in status


def test_wrong_arch_is_unsupported():
    error, status = _map(errno.ENOEXEC, reason="arch_id 1: only x86_64 images are restarted",
                         offset=0, record_type=1)
    assert error.errno == errno.EOPNOTSUPP
    assert "cannot restart it" in status


@pytest.mark.parametrize("code", [errno.EFBIG, errno.ENOMEM, errno.EIO, errno.ETIMEDOUT])
def test_other_errors_pass_through(code):
    error, status = _map(code)
    assert error.errno == code
    assert "state: failed" in status


def test_success():
    error, status = _map(0)
    assert error is None
    assert "state: restarted" in status
