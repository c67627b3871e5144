"""tasks/<pid>/mm/layout.svg through a real mount: parsed with xml.etree, one rectangle per
VMA of mm/maps at its place, labels for the stack, heap and libraries, dumped-page
density where pages were dumped."""

import re
import xml.etree.ElementTree as ET

from crfs import svg_layout
from crfs.checkpoint import checkpoint
from mountfs import write_image
from test_checkpoint import Program

SVG = "{http://www.w3.org/2000/svg}"


def parse(path):
    root = ET.fromstring(path.read_bytes())
    assert root.tag == f"{SVG}svg"
    return root


def vma_rects(root):
    return [r for r in root.iter(f"{SVG}rect") if r.get("class", "").startswith("vma ")]


def maps_ranges(text):
    return [tuple(int(x, 16) for x in line.split()[0].split("-")) for line in text.splitlines()]


def test_real_program(mount, build_c):
    with Program(build_c("ckpt_counter", 64)) as program:
        checkpoint(program.pid, mount.store / "counter.ckpt", via="ptrace")
        pid = program.pid
    mount.mount()
    mm = mount.path / "counter.ckpt" / "tasks" / str(pid) / "mm"
    root = parse(mm / "layout.svg")
    rects = vma_rects(root)
    maps = (mm / "maps").read_text()
    assert [(int(r.get("data-start"), 16), int(r.get("data-end"), 16)) for r in rects] == \
        maps_ranges(maps)
    names = {r.get("data-name") for r in rects}
    assert {"[stack]", "[heap]", "[vdso]"} <= names
    assert any(re.search(r"/libc[.-]", n) for n in names), names
    kinds = {r.get("data-name"): r.get("class").split()[1] for r in rects}
    assert (kinds["[stack]"], kinds["[heap]"], kinds["[vdso]"]) == ("stack", "heap", "vdso")
    labels = {t.text for t in root.iter(f"{SVG}text") if t.get("class") == "label"}
    assert "[stack]" in labels or "[heap]" in labels, labels
    # tooltips say how many pages were dumped, as vmas/*/info does
    for rect in rects:
        info = (mm / "vmas" / f"{int(rect.get('data-start'), 16):08x}-"
                f"{int(rect.get('data-end'), 16):08x}" / "info").read_text()
        assert f"pages dumped: {rect.get('data-pages')}\n" in info
        assert f"{rect.get('data-pages')} of " in rect.find(f"{SVG}title").text
    assert root.findall(f".//{SVG}rect[@class='density']")
    regions = root.findall(f".//{SVG}g[@class='region']")
    assert len(regions) >= 2      # the program and the mmap/stack area are far apart
    assert any("gap of" in (t.text or "") for t in root.iter(f"{SVG}text"))


def test_density_and_scale(mount):
    """The synthetic image: a heap fully dumped (density 1), a stack of which 4 of 32 pages
    are; within a region VMAs are drawn to its scale."""
    image = write_image(mount.store / "s.ckpt", "ckpt", "x86_64", heap_pages=8)
    mount.mount()
    pid = image.tasks[0].pid
    root = parse(mount.path / "s.ckpt" / "tasks" / str(pid) / "mm" / "layout.svg")
    rects = {r.get("data-name"): r for r in vma_rects(root)}
    heap, stack = rects["[heap]"], rects["[stack]"]
    assert heap.get("data-pages") == "8" and stack.get("data-pages") == "4"
    stack_x, stack_w = float(stack.get("x")), float(stack.get("width"))
    strip_y = float(stack.get("y")) + svg_layout.BAND + 1      # the strip under it
    stack_density = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "density"
                     and float(r.get("y")) == strip_y
                     and stack_x <= float(r.get("x")) < stack_x + stack_w]
    covered = sum(float(r.get("width")) for r in stack_density)
    assert abs(covered / stack_w - 4 / 32) < 0.05      # only the top 4 pages
    assert all(float(r.get("x")) >= stack_x + stack_w * 0.8 for r in stack_density)
    assert float(stack.get("x")) + stack_w <= svg_layout.WIDTH + svg_layout.MARGIN + 0.01


def test_regions_split_on_big_gaps():
    class V:
        def __init__(self, start, end):
            self.start, self.end = start, end
    vmas = [V(0x1000, 0x2000), V(0x3000, 0x4000), V(0x7f0000000000, 0x7f0000001000)]
    assert [[v.start for v in r] for r in svg_layout.regions(vmas)] == \
        [[0x1000, 0x3000], [0x7f0000000000]]
    assert svg_layout.size_text(3 << 20) == "3.0 MiB"
