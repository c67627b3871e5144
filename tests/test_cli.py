"""The crfs command: info, records, verify, demo, --help, and its errors."""

import os
import struct
import subprocess

import pytest

from crfs.formats.source import Source
from crfs.model import registry
from mountfs import CRFS, WRITERS, Mount, errors_in_log, write_image


def crfs(*args):
    return subprocess.run(CRFS + [str(a) for a in args], capture_output=True, text=True)


@pytest.fixture(params=WRITERS, ids=lambda w: f"{w[0]}-{w[2]}")
def image(request, tmp_path):
    fmt, options, arch = request.param
    path = tmp_path / f"{fmt}-{arch}.img"
    write_image(path, fmt, arch, options=options)
    return path


def record_offsets(path, name):
    with Source.open(path) as source:
        return [r.offset for r in registry.records(source) if r.name == name]


@pytest.mark.parametrize("args", [["--help"], ["info", "--help"], ["records", "--help"],
                                  ["verify", "--help"], ["demo", "--help"],
                                  ["/mnt", "--help"]])
def test_every_command_has_help(args):
    result = crfs(*args)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: crfs")


def test_info_shows_header_tasks_and_vmas(image):
    result = crfs("info", image)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("format: ")
    assert "pid 4242 tgid 4242" in out and "comm 'synth'" in out
    assert "[heap]" in out and "/usr/bin/synth" in out and "8 pages]" in out


def test_records_cover_the_file_with_c_names(image):
    result = crfs("records", image)
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    offset = 0
    for line in lines:
        assert int(line[0], 16) == offset
        offset += int(line[2])
    assert offset == image.stat().st_size
    names = {line[1] for line in lines}
    prefix = {"ckpt": "CKPT_HDR_", "cr-": "CR_HDR_", "cpt": "CPT_OBJ_"}
    expected = next(p for key, p in prefix.items() if image.name.startswith(key))
    assert any(n.startswith(expected + "VMA") for n in names), names


def test_verify_sound_image(image):
    result = crfs("verify", image)
    assert result.returncode == 0, result.stdout
    assert result.stdout.splitlines()[-1] == "result: sound"
    assert "FAIL" not in result.stdout


def test_verify_truncated_image_fails_with_offset(image, tmp_path):
    cut = tmp_path / "cut.img"
    data = image.read_bytes()
    cut.write_bytes(data[:len(data) - 100])
    result = crfs("verify", cut)
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == "result: unsound"
    assert any(line.startswith("FAIL") and "offset 0x" in line
               for line in result.stdout.splitlines())


# Where each format stores a VMA's page count: (record, byte offset in the record, width).
PAGE_COUNTS = {
    "ckpt": ("CKPT_HDR_PGARR", 8, "<Q"),
    "cr": ("CR_HDR_VMA", 8 + 8, "<q"),
    "cpt": ("CPT_OBJ_VMA", 72, "<Q"),
}


@pytest.mark.parametrize("fmt", sorted(PAGE_COUNTS))
def test_lying_page_count_is_one_clean_line(fmt, tmp_path):
    path = tmp_path / "liar.img"
    options = {"dialect": "cr_hdr v4"} if fmt == "cr" else {}
    write_image(path, fmt, "x86_64", options=options)
    record, field, width = PAGE_COUNTS[fmt]
    at = record_offsets(path, record)[1] + field
    data = bytearray(path.read_bytes())
    struct.pack_into(width, data, at, 99999999)
    path.write_bytes(data)
    result = crfs("info", path)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{path}: offset 0x") and record in lines[0]
    assert "99999999" in lines[0] and "exceeds the file" in lines[0]
    verify = crfs("verify", path)
    assert verify.returncode == 1 and "exceeds the file" in verify.stdout


def test_not_an_image_and_missing_file(tmp_path):
    junk = tmp_path / "junk"
    junk.write_bytes(b"hello world, not a checkpoint\n")
    result = crfs("info", junk)
    assert result.returncode == 1
    assert result.stderr == f"{junk}: offset 0x0: not a checkpoint image (unknown magic)\n"
    missing = crfs("verify", tmp_path / "nope")
    assert missing.returncode == 1
    assert missing.stderr == f"crfs: {tmp_path / 'nope'}: No such file or directory\n"


def test_demo_writes_a_sound_image_per_format_and_arch(tmp_path):
    result = crfs("demo", tmp_path / "store")
    assert result.returncode == 0, result.stderr
    paths = result.stdout.split()
    assert len(paths) == 6
    descriptions = set()
    for path in paths:
        assert crfs("verify", path).returncode == 0
        descriptions.add(crfs("info", path).stdout.splitlines()[0])
    assert len(descriptions) == 6


def test_help_lists_every_subcommand_and_the_mount_form():
    result = crfs("--help")
    assert result.returncode == 0
    listed = {line.split()[0] for line in result.stdout.splitlines()
              if line.startswith("    ") and not line.startswith("     ")}
    assert listed == {"mount", "info", "records", "verify", "core", "diff", "demo", "checkpoint",
                      "convert", "restart", "doctor"}
    assert "crfs [STORE] MOUNTPOINT -o OPTIONS" in " ".join(result.stdout.split())
    for name in listed:
        help_of = crfs(name, "--help")
        assert help_of.returncode == 0 and help_of.stdout.startswith(f"usage: crfs {name} ")


@pytest.mark.parametrize("words", [["info"], ["mount", "info"]])
def test_a_mount_point_named_info_is_mounted(tmp_path, words):
    """mount.fuse runs `crfs MOUNTPOINT -o …`: a directory called like a subcommand is
    mounted when the arguments fit only a mount; a bare `crfs info` still wants an IMAGE."""
    mount = Mount(tmp_path, point="info")
    write_image(mount.store / "a.ckpt", "ckpt", "x86_64")
    try:
        result = subprocess.run(CRFS + words + mount.options(), cwd=tmp_path,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert os.path.ismount(mount.path)
        assert "a.ckpt" in os.listdir(mount.path)
    finally:
        mount.unmount()
    assert not errors_in_log(mount.log_text()), mount.log_text()
    bare = subprocess.run(CRFS + ["info"], cwd=tmp_path, capture_output=True, text=True)
    assert bare.returncode == 2 and "required: IMAGE" in bare.stderr
    assert not os.path.ismount(mount.path)
