"""The format-neutral model: invariants every loader shares, conversions between formats."""

import io

import pytest

from crfs.errors import FormatError
from crfs.formats.source import MemorySource
from crfs.model import Vma, registry
from crfs.model.synth import synthetic_image

FORMATS = [("ckpt", {}), ("cpt", {}), ("cr", {"dialect": "cr_hdr v4"})]


def written(image, fmt, options):
    out = io.BytesIO()
    registry.dump(image, out, fmt, **options)
    return out.getvalue()


@pytest.mark.parametrize("fmt,options", FORMATS[:2])
def test_overlapping_vmas_are_refused_by_every_loader(fmt, options):
    image = synthetic_image("x86_64", heap_pages=2)
    mm = image.tasks[0].mm
    text = mm.vmas[0]
    mm.vmas.insert(1, Vma(text.start + 4096, text.end + 4096, text.vm_flags, text.prot, 0,
                          "anon"))
    with pytest.raises(FormatError, match="overlaps or precedes"):
        registry.load(MemorySource(written(image, fmt, options)))


@pytest.mark.parametrize("fmt,options", FORMATS)
def test_comm_bytes_survive_every_writer(fmt, options):
    image = synthetic_image("x86_64", heap_pages=2)
    image.tasks[0].comm = b"cr\xffsh".decode("utf-8", "surrogateescape")
    loaded = registry.load(MemorySource(written(image, fmt, options)))
    assert loaded.tasks[0].comm.encode("utf-8", "surrogateescape") == b"cr\xffsh"


@pytest.mark.parametrize("fmt,options", FORMATS[:2])
def test_process_group_and_session_survive_conversion_to_ckpt(fmt, options):
    image = synthetic_image("x86_64", heap_pages=2)
    image.tasks[0].pgid, image.tasks[0].sid = 4321, 1234
    first = registry.load(MemorySource(written(image, fmt, options)))
    again = registry.load(MemorySource(written(first, "ckpt", {})))
    assert (again.tasks[0].pgid, again.tasks[0].sid) == (4321, 1234)


def test_comm_bytes_shown_exactly_by_cli_and_mount(tmp_path):
    import subprocess
    import sys

    from mountfs import Mount

    image = synthetic_image("x86_64", heap_pages=2, pid=77)
    image.tasks[0].comm = b"cr\xffsh".decode("utf-8", "surrogateescape")
    mount = Mount(tmp_path)
    (mount.store / "odd.ckpt").write_bytes(written(image, "ckpt", {}))
    info = subprocess.run([sys.executable, "-m", "crfs", "info", str(mount.store / "odd.ckpt")],
                          capture_output=True, check=True, timeout=60)
    assert b"comm 'cr\\xffsh'" in info.stdout
    mount.mount()
    try:
        assert (mount / "odd.ckpt" / "tasks" / "77" / "comm").read_bytes() == b"cr\xffsh\n"
    finally:
        mount.unmount()


def test_verify_reports_its_progress_through_the_file(tmp_path):
    """verify(progress=) is told the bytes walked, up to the file's size (crfs verify shows
    it as a percentage on a terminal)."""
    from crfs.formats.source import Source
    from crfs.model import registry
    from crfs.model.synth import synthetic_image
    from crfs.model.verify import verify
    path = tmp_path / "img.ckpt"
    with open(path, "wb") as out:
        registry.dump(synthetic_image(heap_pages=8), out, "ckpt")
    calls = []
    with Source.open(str(path)) as source:
        report = verify(source, progress=lambda done, total: calls.append((done, total)))
    assert report.sound
    size = path.stat().st_size
    assert calls[-1] == (size, size)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and len(calls) > 3
