#!/usr/bin/env python3
"""Coverage-guided fuzzing of the CRIU dump reader with atheris (libFuzzer for Python).

    python fuzz/fuzz_criu.py --seeds DIR         # write the seed inputs into DIR
    python fuzz/fuzz_criu.py [libFuzzer args] [CORPUS_DIR ...]

A CRIU dump is a directory of files, so an input is an edit of one member of one of the
committed dumps (tests/data/criu: threads, fork, files, ns), or of a container export of
one (EXPORT: the threads dump in an uncompressed tar laid out as podman writes it),
applied to a working copy:
  byte 0      the (dump, member) pair of MEMBERS, modulo their number;
  byte 1      how, modulo 3: 0 XOR the rest into the member at OFFSET (its length kept),
              1 cut the member at OFFSET and append the rest, 2 replace it by the rest;
  bytes 2-4   OFFSET, little-endian, modulo the member's length;
  bytes 5-    the rest.
Small inputs so make small edits of a real member, which keeps most of its structure and
reaches the decoders behind the first error. The dump is then indexed and walked as
fuzz_formats.py walks an image (the mount's tree: every directory, every file read as cat
would, mem at VMA edges, core, verify, records; then the CLI's reads), and the member is put
back. FormatError is the one answer allowed; anything else escapes and libFuzzer saves the
input as a crash. The pages-*.img files are left out: they are served by offset and never
parsed.
"""

import argparse
import atexit
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fuzz_formats  # noqa: E402 - its atheris instrumentation covers crfs, CRIU included

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    "tests", "data", "criu")
DUMPS = ("threads", "fork", "files", "ns")
EXPORT = "threads.tar"      # the member is the archive itself: ("threads.tar", "")


def members():
    """(dump, member) of every metadata file of the committed dumps, in a stable order,
    then the export."""
    return [(dump, name) for dump in DUMPS
            for name in sorted(os.listdir(os.path.join(DATA, dump)))
            if name.endswith(".img") and not name.startswith("pages-")] + [(EXPORT, "")]


def export_bytes(dump="threads"):
    """`dump` as podman's checkpoint export holds it (config.dump, then checkpoint/<file>),
    an uncompressed PAX tar, byte for byte the same on every machine."""
    import io
    import tarfile
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        files = [("config.dump", b"{}\n")]
        for name in sorted(os.listdir(os.path.join(DATA, dump))):
            with open(os.path.join(DATA, dump, name), "rb") as f:
                files.append((f"checkpoint/{name}", f.read()))
        for arcname, data in files:
            info = tarfile.TarInfo(arcname)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


MEMBERS = members()


def edited(original, edit):
    """`original` with `edit` (how, OFFSET, the rest: see the module's docstring) applied."""
    how = edit[0] % 3 if edit else 0
    offset = int.from_bytes(edit[1:4], "little") % max(len(original), 1)
    rest = edit[4:]
    if how == 0:
        data = bytearray(original)
        for i, b in enumerate(rest[:len(data) - offset]):
            data[offset + i] ^= b
        return bytes(data)
    if how == 1:
        return original[:offset] + rest
    return rest


class Workspace:
    """Working copies of the dumps and the export (in /dev/shm when there is one): an
    input's member is written into its copy, walked, and put back."""

    last_loaded = False     # whether the last input's dump loaded (the tests count them)

    def __init__(self):
        base = "/dev/shm" if os.path.isdir("/dev/shm") else None
        self.root = tempfile.mkdtemp(prefix="crfs-fuzz-criu-", dir=base)
        for dump in DUMPS:
            shutil.copytree(os.path.join(DATA, dump), os.path.join(self.root, dump))
        with open(os.path.join(self.root, EXPORT), "wb") as f:
            f.write(export_bytes())
        self.originals = {}     # (dump, member): its bytes, read once
        for dump, name in MEMBERS:
            with open(self.path(dump, name), "rb") as f:
                self.originals[dump, name] = f.read()

    def path(self, dump, name):
        """The working copy of `name` of `dump` (the export itself when `name` is "")."""
        return os.path.join(self.root, dump, name) if name else os.path.join(self.root, dump)

    def close(self):
        shutil.rmtree(self.root, ignore_errors=True)

    def one_input(self, data):
        if not data:
            return
        dump, name = MEMBERS[data[0] % len(MEMBERS)]
        path, original = self.path(dump, name), self.originals[dump, name]
        with open(path, "wb") as f:
            f.write(edited(original, data[1:]))
        try:
            entry = fuzz_formats.at_path(os.path.join(self.root, dump))
            self.last_loaded = entry.image is not None
            try:
                fuzz_formats.walk_entry(entry)
            finally:
                entry.close()
        finally:
            with open(path, "wb") as f:
                f.write(original)


def write_seeds(directory):
    """One input a member: each member as it is (an empty XOR)."""
    os.makedirs(directory, exist_ok=True)
    for i, (dump, name) in enumerate(MEMBERS):
        with open(os.path.join(directory, f"{i:03d}-{dump}-{name}"), "wb") as f:
            f.write(bytes([i, 0, 0, 0, 0]))
    print(f"{len(MEMBERS)} seeds in {directory}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=False)
    parser.add_argument("--seeds", metavar="DIR")
    parser.add_argument("--memory-mb", type=int, default=fuzz_formats.MEMORY_LIMIT >> 20,
                        help="RLIMIT_AS of this process (0: none)")
    args, rest = parser.parse_known_args(argv)
    if args.seeds:
        return write_seeds(args.seeds)
    if len(MEMBERS) > 256:
        sys.exit("more members than one byte can pick")
    if fuzz_formats.atheris is None:
        sys.exit("fuzz_criu.py needs atheris: pip install atheris")
    if args.memory_mb:
        fuzz_formats.limit_memory(args.memory_mb << 20)
    work = Workspace()
    atexit.register(work.close)      # libFuzzer ends the process itself
    fuzz_formats.atheris.Setup([sys.argv[0], *rest], work.one_input)
    fuzz_formats.atheris.Fuzz()


if __name__ == "__main__":
    main()
