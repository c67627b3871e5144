"""crfs.model.index_codec: the saved index is read back as untrusted input."""

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
