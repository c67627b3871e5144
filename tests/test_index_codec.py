"""crfs.model.index_codec: the saved index is read back as untrusted input."""

import copy
import hashlib
import random

import pytest
from hypothesis import given, settings, strategies as st

from crfs import render
from crfs.formats.source import Source
from crfs.model import index_codec, registry
from mountfs import WRITERS, write_image


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    out = []
    for fmt, options, arch in WRITERS:
        path = tmp_path_factory.mktemp("img") / f"{fmt}-{arch}.img"
        write_image(path, fmt, arch, options=options, heap_pages=12)
        image = registry.open_image(str(path))
        out.append((image, index_codec.encode(image, {"k": 1})))
    return out


def views(image):
    text = [render.header(image), image.description]
    for task in image.tasks:
        text += [render.status(task), repr(task.native)]
        if task.regs is not None:
            text.append(render.regs(task.regs))
        if task.mm is not None:
            text += [render.maps(task.mm, image.arch), repr(task.mm.fields)]
            for vma in task.mm.vmas:
                text += [render.vma_info(vma), task.mm.read(vma.start, vma.size)]
    return text


def test_round_trip_gives_the_same_model(indexed):
    for image, data in indexed:
        head, again = index_codec.decode(data, image.source)
        assert head == {"k": 1}
        assert views(again) == views(image)


def resign(body):
    return bytes(body) + hashlib.sha256(bytes(body)).digest()


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_indexes_are_rejected_or_valid(indexed, data):
    image, blob = indexed[data.draw(st.integers(0, len(indexed) - 1))]
    body = bytearray(blob[:-32])
    rng = random.Random(data.draw(st.integers(0, 2**32)))
    for _ in range(data.draw(st.integers(1, 8))):
        what = rng.random()
        pos = rng.randrange(len(body))
        if what < 0.6:
            body[pos] = rng.randrange(256)
        elif what < 0.8:
            del body[pos:pos + rng.randrange(1, 64)]
        else:
            body[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 16)))
    try:
        _, again = index_codec.decode(resign(body), image.source)
    except index_codec.IndexCorrupt:
        return
    index_codec.check(again, image.source.size)   # what decode returns has been checked


def test_pages_outside_the_file_are_rejected(indexed, tmp_path):
    image, blob = indexed[0]
    small = tmp_path / "small"
    small.write_bytes(b"\0" * 4096)
    with Source.open(str(small)) as source:
        with pytest.raises(index_codec.IndexCorrupt, match="outside the file"):
            index_codec.decode(blob, source)


def test_no_class_outside_the_model_is_made(indexed):
    image, blob = indexed[0]
    body = blob[:-32].replace(b'"c":"Creds"', b'"c":"Popen"').replace(
        b'"c":"Exit"', b'"c":"Popen"')
    with pytest.raises(index_codec.IndexCorrupt):
        index_codec.decode(resign(body), image.source)


def test_process_state_round_trips_and_stays_shared(tmp_path):
    """Signals, credentials and fs_struct come back from a saved index as the loader gave
    them, with what threads share still one object."""
    from crfs.model.image import (Creds, FsStruct, Itimers, Pending, SigAction, SigHand,
                                  SigInfo, Signals, ThreadGroup)
    from crfs.model.synth import synthetic_image

    image = synthetic_image("x86_64", heap_pages=2, pid=50)
    task = image.tasks[0]
    handlers = SigHand()
    handlers.actions[9] = SigAction(handler=0x401000, flags=0x4000000, mask=1 << 11)
    group = ThreadGroup(rlimits=[(8 << 20, (1 << 64) - 1)] * 16, itimers=Itimers(real_value=5),
                        shared_pending=Pending(mask=1 << 9, queue=[SigInfo(signo=10, pid=7)]))
    task.signals = Signals(handlers=handlers, group=group, blocked=1 << 11)
    task.fs = FsStruct(cwd="/srv/a b", root="/", umask=0o27)
    task.creds = Creds(*[1000] * 8, groups=[4, 24], cap_bnd=(1 << 41) - 1)
    thread = copy.copy(task)
    thread.pid = 51
    thread.signals = Signals(handlers=handlers, group=group)
    image.tasks.append(thread)
    path = tmp_path / "state.ckpt"
    with open(path, "wb") as out:
        registry.dump(image, out, "ckpt")
    loaded = registry.open_image(str(path))
    head, back = index_codec.decode(index_codec.encode(loaded, {"k": 1}), loaded.source)
    index_codec.check(back, path.stat().st_size)
    assert views(back) == views(loaded)
    for before, after in zip(loaded.tasks, back.tasks):
        assert render.signals(after.signals.handlers) == render.signals(before.signals.handlers)
        assert render.limits(after.signals.group.rlimits) == render.limits(
            before.signals.group.rlimits)
        assert (after.fs.cwd, after.fs.root, after.fs.umask) == ("/srv/a b", "/", 0o27)
        assert after.creds.groups == [4, 24]
    main, second = back.tasks
    assert main.signals.handlers is second.signals.handlers
    assert main.signals.group is second.signals.group and main.fs is second.fs


def test_open_files_round_trip_and_stay_shared(run_golden):
    """tests/c/ckpt_files_golden.c's file tables come back from a saved index: one OpenFile
    for the fds that share it, pipe bytes still read from the image file."""
    path, _ = run_golden("ckpt_files_golden", 64)
    loaded = registry.open_image(str(path))
    try:
        data = index_codec.encode(loaded, {"k": 1})
        _, back = index_codec.decode(data, loaded.source)
        main, thread, child = back.tasks
        assert main.files is thread.files
        assert main.files.get(1).file is main.files.get(2).file is child.files.get(0).file
        assert main.files.get(3).file.data.read() == b"0123456789"
        epoll = child.files.get(11).file
        assert epoll.watches[0].file is child.files.get(1).file is main.files.get(4).file
        assert [render.fdinfo(d) for t in back.tasks for d in t.files.fds] == [
            render.fdinfo(d) for t in loaded.tasks for d in t.files.fds]
        assert [d.file.link() for d in child.files.fds] == [
            d.file.link() for d in loaded.tasks[2].files.fds]
        loaded.tasks[0].files.get(3).file.data.length = 1 << 40
        outside = index_codec.encode(loaded, {"k": 1})
        with pytest.raises(index_codec.IndexCorrupt, match="outside the file"):
            index_codec.decode(outside, loaded.source)
    finally:
        loaded.close()
