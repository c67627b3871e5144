"""Write small real images of every format and arch into OUT/<format>/: the fuzzers' seeds.

    python fuzz/make_seeds.py OUT [--no-golden]

Sources: the demo store (crfs.demo, heap_pages=2), synthetic images through every writer
option the registry lists (and both cr_hdr dialects, with and without threads where the
format holds them), and the golden C writers of tests/c built with gcc -m32 and -m64.
The committed corpora under fuzz/corpus/ are these, merged and minimized by libFuzzer.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from crfs.demo import write_demo_store  # noqa: E402
from crfs.formats.source import Source  # noqa: E402
from crfs.model import registry  # noqa: E402
from crfs.model.synth import synthetic_image  # noqa: E402

C_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "c")
GOLDEN = [("cr_golden", ("v4",)), ("cr_golden", ("v14",)), ("ckpt_golden", ()),
          ("cpt_golden", ())]


def fmt_of(path):
    with Source.open(path) as source:
        return registry.detect(source)


def put(out, path, name):
    fmt = fmt_of(path)
    os.makedirs(os.path.join(out, fmt), exist_ok=True)
    shutil.copyfile(path, os.path.join(out, fmt, name))
    return fmt


def synthetic(out, tmp):
    for fmt in registry.FORMATS.values():
        option_sets = [dict(options) for _, _, _, options in fmt.demo]
        if fmt.name == "cr":
            option_sets += [{"dialect": "cr_hdr v14"}]
        for arch in ("i386", "x86_64"):
            for i, options in enumerate(option_sets):
                image = synthetic_image(arch, heap_pages=1, comm=f"s{i}", pid=100 + i)
                path = os.path.join(tmp, "synth")
                try:
                    with open(path, "wb") as f:
                        registry.dump(image, f, fmt.name, **options)
                except ValueError:
                    continue
                put(out, path, f"synth-{arch}-{i}{fmt.extension}")


def golden(out, tmp):
    for name, args in GOLDEN:
        for bits in (32, 64):
            exe = os.path.join(tmp, f"{name}-m{bits}")
            build = subprocess.run(["gcc", f"-m{bits}", "-O0", "-Wall", "-o", exe,
                                    os.path.join(C_DIR, f"{name}.c")], capture_output=True)
            if build.returncode:
                print(f"skip {name} -m{bits}: gcc failed", file=sys.stderr)
                continue
            image = os.path.join(tmp, "golden.img")
            subprocess.run([exe, image, *args], check=True, capture_output=True)
            put(out, image, f"golden-{name}-{'-'.join(args) or 'img'}-m{bits}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--no-golden", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = os.path.join(tmp, "demo")
        for path in write_demo_store(store, heap_pages=2):
            put(args.out, path, "demo-" + os.path.basename(path))
        synthetic(args.out, tmp)
        if not args.no_golden:
            golden(args.out, tmp)
    for fmt in sorted(os.listdir(args.out)):
        files = os.listdir(os.path.join(args.out, fmt))
        size = sum(os.path.getsize(os.path.join(args.out, fmt, f)) for f in files)
        print(f"{fmt}: {len(files)} seeds, {size} bytes")


if __name__ == "__main__":
    main()
