#!/usr/bin/env python3
"""Coverage-guided fuzzing of the image readers with atheris (libFuzzer for Python).

    python fuzz/fuzz_formats.py --format ckpt|cr|cpt [libFuzzer args] [CORPUS_DIR ...]

Each input is an image file's bytes. `one_input` indexes it (registry.load over a
MemorySource), walks what loaded the way the mount does (the very tree of crfs.fs.image_tree:
every text file, VMA data, pages, mem, core, each read within a byte budget), lists its
records and runs `crfs verify` on it. FormatError is the one answer allowed for bad input;
anything else escapes and libFuzzer saves the input as a crash.

With --format, inputs whose magic is another format's (or none) return at once, so each
campaign stays on its own reader; tests/test_fuzz_corpus.py calls one_input directly.
"""

import argparse
import os
import resource
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

try:
    import atheris
    instrumented = atheris.instrument_imports(include=["crfs"])
except ImportError:     # one_input needs no atheris (tests/test_fuzz_corpus.py)
    import contextlib
    atheris = None
    instrumented = contextlib.nullcontext()

with instrumented:
    from crfs.errors import FormatError
    from crfs.formats.source import MemorySource
    from crfs.fs.image_tree import ImageDir
    from crfs.fs.nodes import Dir, File
    from crfs.fs.operations import MAX_FILE_SIZE
    from crfs.fs.store import image_mtime_ns
    from crfs.model import registry
    from crfs.model.verify import verify
    from crfs import render
    # registry imports each format's modules only when it first meets the format: import
    # them all here so that they are instrumented too.
    for _name in registry.FORMATS:
        registry._formats_module(_name)
        registry._model_module(_name)
    # and the CRIU reader's, which a directory or an archive brings in (fuzz_criu.py)
    from crfs.formats import criu, criu_archive, criu_tar  # noqa: F401
    from crfs.model import criu as criu_model, criu_load, criu_ns  # noqa: F401

CHUNK = 64 * 1024          # one read of a file, as FUSE asks them
FILE_BUDGET = 256 * 1024   # bytes read from the start of one file (then its last chunk)
NAMES_LIMIT = 64           # entries visited per directory (pages/ may list millions)
RECORDS_LIMIT = 100_000    # records listed per image (each one is at least a header)
MEMORY_LIMIT = 1 << 30     # RLIMIT_AS: no input may make crfs allocate past this


class Entry:
    """What crfs.fs.store.Entry gives an ImageDir, from an image named `name` whose bytes
    `open_source()` gives: in memory (fuzz_formats.py's inputs) or on disk (at_path)."""

    def __init__(self, name, open_source):
        self.name = name
        self.generation = 0
        self.open_source = open_source
        self.image = None
        self.error = None
        source = None
        try:
            source = open_source()      # an archive may fail to open
            self.image = registry.load(source)
        except FormatError as exc:
            if source is not None:
                source.close()
            self.error = exc
        self.file_mtime_ns = 0
        self.mtime_ns = image_mtime_ns(self.image, self.file_mtime_ns)

    def verify_text(self):
        with self.open_source() as source:
            return verify(source, self.image).text(self.name)

    def records_text(self):
        lines = []
        try:
            with self.open_source() as source:
                for i, rec in enumerate(registry.records(source)):
                    if i >= RECORDS_LIMIT:
                        break
                    lines.append(render.record_line(rec))
        except FormatError as exc:
            lines.append(f"error: {exc}\n")
        return "".join(lines)

    def close(self):
        if self.image is not None:
            self.image.close()


def in_memory(data):
    """The Entry of an image's bytes."""
    return Entry("fuzz.img", lambda: MemorySource(data))


def at_path(path):
    """The Entry of the image at `path` (a CRIU dump directory or archive too):
    fuzz_criu.py's inputs, tests/test_criu.py's mutated dumps."""
    return Entry(os.path.basename(path), lambda: registry.open_source(path))


def read_file(node):
    """Read `node` as cat would, up to FILE_BUDGET, then its last chunk."""
    size = node.size()
    offset = 0
    while offset < min(size, FILE_BUDGET):
        data = node.read(offset, CHUNK)
        if not data:
            break
        offset += len(data)
    if size > FILE_BUDGET:
        node.read(max(size - CHUNK, 0), CHUNK)


def read_mem(node):
    """mem at the edges of every VMA: offsets are addresses, reads past a VMA are short."""
    from crfs.errors import FsError
    for vma in node.mm.vmas[:NAMES_LIMIT]:
        for addr in (vma.start, max(vma.end - 16, vma.start), vma.end - 1):
            try:
                node.read(addr, 4096)
            except FsError:
                pass    # EIO outside every VMA: the answer /proc/<pid>/mem gives


def check_attributes(node):
    """What the mount's getattr sends the kernel: pyfuse3 fails on values past C long."""
    if not -(1 << 63) <= node.mtime_ns < (1 << 63):
        raise AssertionError(f"mtime_ns {node.mtime_ns} does not fit st_mtime_ns")
    if not 0 <= min(node.size(), MAX_FILE_SIZE) < (1 << 63):
        raise AssertionError(f"size {node.size()} is not a file size")


def walk(node, depth=0):
    try:
        check_attributes(node)
    except FormatError:
        return      # a lazily parsed text that is malformed: getattr answers EINVAL
    if isinstance(node, Dir):
        names = node.names()
        count = len(names)
        picks = range(count) if count <= NAMES_LIMIT else \
            list(range(NAMES_LIMIT // 2)) + list(range(count - NAMES_LIMIT // 2, count))
        for i in picks:
            name = names[i]
            child = node.child(name)
            if child is None:
                raise AssertionError(f"listed name {name!r} has no node")
            walk(child, depth + 1)
    elif isinstance(node, File):
        if type(node).__name__ == "MemFile":
            read_mem(node)
        else:
            try:
                read_file(node)
            except FormatError:
                pass    # a lazily parsed part is malformed: the mount answers EINVAL


def one_input(data, fmt=None):
    """Index, walk, list and verify `data`; only FormatError may escape from crfs (caught)."""
    if fmt is not None:
        try:
            if registry.detect(MemorySource(data)) != fmt:
                return
        except FormatError:
            return
    walk_entry(in_memory(bytes(data)))


def walk_entry(entry):
    """The mount's tree of `entry` walked, then the CLI's reads (crfs cat/pages), which go
    through the same Mm.read with no budget of the tree's: a few chunks over every VMA."""
    walk(ImageDir(entry))
    if entry.image is None:
        return
    for task in entry.image.tasks:
        if task.mm is None:
            continue
        for vma in task.mm.vmas[:NAMES_LIMIT]:
            addr = vma.start
            for _ in range(4):
                if addr >= vma.end:
                    break
                chunk = task.mm.read(addr, CHUNK)
                if not chunk:
                    raise AssertionError(f"no bytes at {addr:#x} inside its VMA")
                addr += len(chunk)


def limit_memory(limit=MEMORY_LIMIT):
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard == resource.RLIM_INFINITY or hard > limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard if hard != resource.RLIM_INFINITY
                                                else resource.RLIM_INFINITY))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=False)
    parser.add_argument("--format", required=True, choices=sorted(registry.FORMATS))
    parser.add_argument("--memory-mb", type=int, default=MEMORY_LIMIT >> 20,
                        help="RLIMIT_AS of this process (0: none)")
    args, rest = parser.parse_known_args(argv)
    if atheris is None:
        sys.exit("fuzz_formats.py needs atheris: pip install atheris")
    if args.memory_mb:
        limit_memory(args.memory_mb << 20)
    fmt = args.format
    # libFuzzer re-runs argv for -merge=1 and -fork: keep --format in it, as one word it
    # ignores (with a warning) rather than takes for a corpus directory.
    atheris.Setup([sys.argv[0], f"--format={fmt}", *rest], lambda data: one_input(data, fmt))
    atheris.Fuzz()


if __name__ == "__main__":
    main()
