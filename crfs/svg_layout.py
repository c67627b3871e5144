"""tasks/<pid>/mm/layout.svg: an address space drawn per region, for a browser.

An address space is sparse (a program near 0x400000 or 0x55…, libraries and stack near
0x7f…): drawn to one scale, everything but the gaps would vanish. So the VMAs are grouped
into regions (runs of VMAs with gaps under REGION_GAP between them), each region drawn to
its own scale on a band of the picture, the gaps between regions written out. Each VMA is a
rectangle coloured by type (program or library code, file data, anonymous, heap, stack,
vdso, shared memory), labelled (file base name, [heap], [stack] …) where there is room and
always in its tooltip; under it a strip shows the density of dumped pages (darker: more of
its pages are in the image).

Every VMA rectangle carries data-start, data-end, data-kind, data-pages and data-name, so
that programs (and tests) read the picture as well as people.
"""

import os
from xml.sax.saxutils import escape, quoteattr

from crfs import render
from crfs.formats.common import encode_text
from crfs.formats.x86 import PAGE_SIZE, VmFlags

WIDTH = 1000            # px, the drawing; margins around
MARGIN = 10
BAND = 44               # px, a VMA row
STRIP = 10              # px, the density strip under it
REGION_TITLE = 18
REGION_GAP = 1 << 30    # a gap of this many bytes or more starts a new region
BIN = 4                 # px per density bin

COLOURS = {"code": "#4e79a7", "data": "#a0cbe8", "anon": "#f28e2b", "heap": "#e15759",
           "stack": "#59a14f", "vdso": "#b07aa1", "shm": "#edc948", "none": "#bab0ac"}
LEGEND = (("code", "file, executable"), ("data", "file, data"), ("anon", "anonymous"),
          ("heap", "[heap]"), ("stack", "[stack]"), ("vdso", "[vdso]"),
          ("shm", "shared memory"), ("none", "no access"))


def vma_type(vma, name):
    """The colour class of a VMA."""
    if name == "[heap]":
        return "heap"
    if name == "[stack]":
        return "stack"
    if vma.kind == "vdso":
        return "vdso"
    if vma.kind.startswith("shm"):
        return "shm"
    if not vma.vm_flags & (VmFlags.VM_READ | VmFlags.VM_WRITE | VmFlags.VM_EXEC):
        return "none"
    if vma.file:
        return "code" if vma.vm_flags & VmFlags.VM_EXEC else "data"
    return "anon"


def regions(vmas, gap=REGION_GAP):
    """The VMAs (ascending) in runs whose neighbours are less than `gap` bytes apart."""
    out = []
    for vma in vmas:
        if out and vma.start - out[-1][-1].end < gap:
            out[-1].append(vma)
        else:
            out.append([vma])
    return out


def size_text(size):
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift:
            value = size / (1 << shift)
            return f"{value:.0f} {unit}" if value >= 10 else f"{value:.1f} {unit}"
    return f"{size} B"


def density(vma, bins):
    """Fraction of dumped pages in each of `bins` equal slices of the VMA."""
    pages = [0] * bins
    span = vma.end - vma.start
    for addr, length, _ in vma.pages.extents(vma.start, vma.end):
        for page in range(addr, addr + length, PAGE_SIZE):
            pages[min(bins - 1, (page - vma.start) * bins // span)] += 1
    per_bin = span / PAGE_SIZE / bins
    return [min(1.0, count / per_bin) for count in pages]


def clean(text):
    """A name from an image as XML text: its bytes decoded as UTF-8, invalid ones replaced,
    control characters (not allowed in XML 1.0) as U+FFFD."""
    text = encode_text(text).decode("utf-8", "replace")
    return "".join(c if c >= " " or c in "\t\n" else "\ufffd" for c in text)


def _label(name):
    return os.path.basename(name) if name.startswith("/") else name


def _vma_svg(vma, mm, x, width, y):
    name = clean(render.vma_name(vma, mm))
    kind = vma_type(vma, name)
    tip = (f"{vma.start:#x}-{vma.end:#x} {render.perms(vma)} {name or '(anonymous)'}: "
           f"{size_text(vma.size)}, {len(vma.pages)} of {vma.size // PAGE_SIZE} pages dumped")
    attrs = (f'class="vma {kind}" x="{x:.2f}" y="{y}" width="{max(width, 1):.2f}" '
             f'height="{BAND}" fill="{COLOURS[kind]}" stroke="#333" stroke-width="0.5" '
             f'data-start="{vma.start:#x}" data-end="{vma.end:#x}" data-kind="{vma.kind}" '
             f'data-pages="{len(vma.pages)}" data-name={quoteattr(name)}')
    parts = [f"<rect {attrs}><title>{escape(tip)}</title></rect>"]
    label = _label(name)
    if label and width >= 7 * len(label) + 6:
        parts.append(f'<text class="label" x="{x + 3:.2f}" y="{y + BAND / 2 + 4}" '
                     f'font-size="11">{escape(label)}</text>')
    bins = max(1, min(int(width // BIN), vma.size // PAGE_SIZE))
    for i, fraction in enumerate(density(vma, bins)):
        if fraction:
            parts.append(f'<rect class="density" x="{x + i * width / bins:.2f}" '
                         f'y="{y + BAND + 1}" width="{width / bins:.2f}" height="{STRIP}" '
                         f'fill="#000" fill-opacity="{0.15 + 0.85 * fraction:.2f}"/>')
    return parts


def _region_svg(vmas, mm, y):
    start, end = vmas[0].start, vmas[-1].end
    scale = WIDTH / (end - start)
    dumped = sum(len(v.pages) for v in vmas)
    parts = [f'<g class="region" data-start="{start:#x}" data-end="{end:#x}">',
             f'<text class="region-title" x="{MARGIN}" y="{y + 13}" font-size="12">'
             f'{start:#x}-{end:#x}: {size_text(end - start)}, {len(vmas)} VMAs, {dumped} '
             f'pages dumped</text>']
    y += REGION_TITLE
    for vma in vmas:
        x = MARGIN + (vma.start - start) * scale
        parts += _vma_svg(vma, mm, x, (vma.end - vma.start) * scale, y)
    parts.append("</g>")
    return parts, y + BAND + STRIP + 8


def _legend(y):
    parts = ['<g class="legend">']
    x = MARGIN
    for kind, text in LEGEND:
        parts.append(f'<rect x="{x}" y="{y}" width="12" height="12" fill="{COLOURS[kind]}"/>'
                     f'<text x="{x + 16}" y="{y + 10}" font-size="11">{escape(text)}</text>')
        x += 24 + 7 * len(text)
    parts.append(f'<text x="{x}" y="{y + 10}" font-size="11">dark strip: dumped pages'
                 '</text></g>')
    return parts, y + 24


def svg(mm, title=""):
    """The picture of address space `mm` as SVG text."""
    y = MARGIN
    body = []
    if title:
        body.append(f'<text class="title" x="{MARGIN}" y="{y + 14}" font-size="14" '
                    f'font-weight="bold">{escape(clean(title))}</text>')
        y += 24
    legend, y = _legend(y)
    body += legend
    groups = regions(mm.vmas)
    for i, vmas in enumerate(groups):
        if i:
            gap = vmas[0].start - groups[i - 1][-1].end
            body.append(f'<text class="gap" x="{MARGIN}" y="{y + 10}" font-size="11" '
                        f'fill="#666">… gap of {size_text(gap)} …</text>')
            y += 16
        region, y = _region_svg(vmas, mm, y)
        body += region
    height = y + MARGIN
    total = WIDTH + 2 * MARGIN
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="{height}" '
            f'viewBox="0 0 {total} {height}" font-family="sans-serif">')
    return "\n".join([head, *body, "</svg>"]) + "\n"
