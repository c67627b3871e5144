"""Shared fixtures: compiling the C programs in tests/c with gcc -m32 / -m64; a mount."""

import os
import subprocess
from pathlib import Path

import pytest

import guest_parts
from mountfs import Mount, errors_in_log

C_DIR = Path(__file__).parent / "c"


@pytest.fixture(scope="session")
def build_c(tmp_path_factory):
    """build_c("name", 32|64, *gcc_flags) -> path of tests/c/name.c compiled for that ABI
    (gcc_flags e.g. "-pthread")."""
    out_dir = tmp_path_factory.mktemp("cbin")
    built = {}

    def build(name, bits, *flags):
        key = (name, bits, flags)
        if key not in built:
            exe = out_dir / f"{name}-m{bits}"
            subprocess.run(["gcc", f"-m{bits}", "-O0", "-g", "-Wall", "-Werror", *flags,
                            "-o", str(exe), str(C_DIR / f"{name}.c")],
                           check=True, capture_output=True, text=True)
            built[key] = exe
        return built[key]

    return build


@pytest.fixture
def run_golden(build_c, tmp_path):
    """run_golden("name", bits) -> (image path, expected values printed by the C program as JSON)."""
    import json

    def run(name, bits, *args):
        exe = build_c(name, bits)
        image = tmp_path / f"{name}-m{bits}.img"
        proc = subprocess.run([str(exe), str(image), *map(str, args)], check=True,
                              capture_output=True, text=True, env={**os.environ})
        return image, json.loads(proc.stdout)

    return run


@pytest.fixture
def mount(tmp_path):
    """A crfs mount over an empty store in tmp_path (not yet mounted); unmounted at the
    end, when its log must show no error."""
    m = Mount(tmp_path)
    yield m
    m.unmount()
    assert not errors_in_log(m.log_text()), m.log_text()


@pytest.fixture(scope="session")
def guest_boot(request, tmp_path_factory, build_c):
    """THE one qemu guest boot of the session (tests/guest_parts.py): {part name: result}
    for the parts with a selected test; test modules pick theirs with guest_parts.result."""
    work = tmp_path_factory.mktemp("guest")
    return guest_parts.boot(request.session.items, work, build_c, tmp_path_factory)


def pytest_terminal_summary(terminalreporter):
    if guest_parts.BOOTS:
        terminalreporter.write_line(
            f"crfs guest boots this session: {len(guest_parts.BOOTS)} "
            + "; ".join(f"parts {','.join(b['parts'])} {b['seconds']}s status {b['rc']}"
                        for b in guest_parts.BOOTS))


def pytest_configure(config):
    config.addinivalue_line("markers", "guest_part: the test reads `guest_boot` through "
                            "request.getfixturevalue (tests/guest_parts.py selection)")
