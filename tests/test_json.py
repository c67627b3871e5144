"""`--json` of info, records, verify and diff: every key printed is documented in
docs/json.md with its type, every documented key (unless optional) is printed."""

import json
import re
import subprocess
from pathlib import Path

import pytest

from mountfs import CRFS, WRITERS, write_image

DOC = Path(__file__).parent.parent / "docs" / "json.md"
TYPES = {"string": str, "number": int, "boolean": bool, "object": dict, "array": list,
         "hex": str, "change": dict, "vma": dict, "any": object}
VMA_KEYS = {"start": "hex", "end": "hex", "perms": "string", "name": "string",
            "kind": "string", "pages": "number"}


def documented():
    """{command: {key path: (type, optional)}} from the tables of docs/json.md."""
    out, command = {}, None
    for line in DOC.read_text().splitlines():
        heading = re.match(r"## crfs (\w+) --json", line)
        if heading:
            command = out.setdefault(heading.group(1), {})
            continue
        row = re.match(r"\| ([\w.*\[\]]+) \| (\w+)(\??) \|", line)
        if command is not None and row and row.group(1) != "key":
            command[row.group(1)] = (row.group(2), bool(row.group(3)))
    return out


def walk(value, path, seen):
    """(key path, value) of everything in `value`, as the doc spells paths."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from walk_item(item, f"{path}.{key}" if path else key, path, seen)
    elif isinstance(value, list):
        for item in value:
            yield from walk_item(item, f"{path}[]", path, seen)


def walk_item(item, full, parent, seen):
    if full not in seen and parent:
        star = re.sub(r"\.[^.\[\]]+$", ".*", full)
        if star in seen:
            full = star
    yield full, item
    kind = seen.get(full, ("?",))[0]
    if kind == "change":
        assert set(item) == {"a", "b"}, (full, item)
    elif kind == "vma":
        assert {k: type(v) for k, v in item.items()} == \
            {k: TYPES[t] for k, t in VMA_KEYS.items()}, (full, item)
    elif kind != "any":
        yield from walk(item, full, seen)


def check(command, doc):
    keys = documented()[command]
    printed = set()
    for path, value in walk(doc, "", keys):
        assert path in keys, f"{command} --json prints undocumented {path}"
        kind = keys[path][0]
        assert isinstance(value, TYPES[kind]), (path, value)
        if kind == "hex":
            assert re.fullmatch(r"0x[0-9a-f]+", value), (path, value)
        printed.add(path)
    return printed, keys


def crfs_json(*args):
    result = subprocess.run(CRFS + [*map(str, args), "--json"], capture_output=True,
                            text=True, timeout=120)
    return result.returncode, json.loads(result.stdout)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("json")
    paths = []
    for fmt, options, arch in WRITERS:
        path = tmp / f"{fmt}-{arch}.img"
        write_image(path, fmt, arch, heap_pages=4, options=options)
        paths.append(path)
    return paths


def required(keys, prefix=""):
    return {k for k, (_, optional) in keys.items()
            if not optional and "*" not in k and k.startswith(prefix)}


@pytest.mark.parametrize("command", ["info", "records", "verify"])
def test_image_commands(images, command):
    for path in images:
        code, doc = crfs_json(command, path)
        assert code == 0
        printed, keys = check(command, doc)
        assert required(keys) <= printed, required(keys) - printed
        assert doc["image"] == str(path)


def test_verify_unsound(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\0" * 64)
    code, doc = crfs_json("verify", bad)
    assert code == 1 and doc["sound"] is False and doc["checks"][0]["ok"] is False
    check("verify", doc)


def test_diff(images, tmp_path):
    """Equal and different: every key of a full diff documented (a real program's diff is
    checked in tests/test_diff.py)."""
    code, doc = crfs_json("diff", images[0], images[0])
    assert code == 0 and doc["equal"] is True
    check("diff", doc)
    other = tmp_path / "other.img"
    fmt, options, arch = WRITERS[0]
    write_image(other, fmt, arch, heap_pages=6, options=options, pid=99)
    printed = set()
    for a, b in ((images[0], other), (other, images[0])):
        code, doc = crfs_json("diff", a, b)
        assert code == 1 and doc["equal"] is False
        printed |= check("diff", doc)[0]
    assert {"tasks.added[].pid", "tasks.gone[].comm"} <= printed
