"""x86 numbers shared by every format: page size, GDT selectors, segment encodings.

Selector values are the kernel's (arch/x86/include/asm/segment.h). The two segment
encodings are the ones the images store instead of raw selectors: linux-cr's
CKPT_X86_SEG_* (ckpt_hdr, v19+) and OpenVZ's CPT_SEG_* (v2 patchset, Andrey Mirkin, 17 Oct 2008).
"""

import enum

PAGE_SIZE = 4096
PAGE_SHIFT = 12
TASK_COMM_LEN = 16
GDT_ENTRY_TLS_ENTRIES = 3
LDT_ENTRY_SIZE = 8
FXSAVE_SIZE = 512       # the legacy FXSAVE region, the start of every XSAVE area


class VmFlags(enum.IntFlag):
    """vm_area_struct.vm_flags bits (include/linux/mm.h) that crfs reads or writes."""
    VM_READ = 0x1
    VM_WRITE = 0x2
    VM_EXEC = 0x4
    VM_SHARED = 0x8
    VM_GROWSDOWN = 0x100
    VM_PFNMAP = 0x400
    VM_IO = 0x4000
    VM_HUGETLB = 0x400000

# GDT selectors of user segments, per arch.
# Where an arch's addresses end: a VMA reaching past it is no process's. i386: 4 GiB (its
# core's ELF32 fields hold no more), though formats with u64 fields can claim more;
# x86_64: all of u64 (the [vsyscall] page that gcore keeps sits at 0xffffffffff600000).
USER_END = {"i386": 1 << 32, "x86_64": 1 << 64}

USER_CS = {"i386": 0x73, "x86_64": 0x33}
USER_DS = {"i386": 0x7B, "x86_64": 0x2B}
USER32_CS_X86_64 = 0x23
GDT_ENTRY_TLS_MIN = {"i386": 6, "x86_64": 12}

SEL_RPL_USER = 3
SEL_TI_LDT = 4


def _tls_index(selector, arch):
    """GDT TLS slot 0..2 of a selector, or None."""
    if selector & SEL_TI_LDT:
        return None
    index = (selector >> 3) - GDT_ENTRY_TLS_MIN[arch]
    return index if 0 <= index < GDT_ENTRY_TLS_ENTRIES else None


def _tls_selector(index, arch):
    return ((GDT_ENTRY_TLS_MIN[arch] + index) << 3) | SEL_RPL_USER


# linux-cr ckpt_hdr (v19+): CKPT_X86_SEG_*
CKPT_X86_SEG_NULL = 0
CKPT_X86_SEG_USER32_CS = 1
CKPT_X86_SEG_USER32_DS = 2
CKPT_X86_SEG_USER64_CS = 3
CKPT_X86_SEG_USER64_DS = 4
CKPT_X86_SEG_TLS = 0x4000
CKPT_X86_SEG_LDT = 0x8000


def ckpt_encode_segment(selector, arch):
    """Raw selector -> CKPT_X86_SEG_* code. ValueError for selectors it cannot express."""
    if selector == 0:
        return CKPT_X86_SEG_NULL
    if selector & SEL_TI_LDT:
        return CKPT_X86_SEG_LDT | (selector >> 3)
    tls = _tls_index(selector, arch)
    if tls is not None:
        return CKPT_X86_SEG_TLS | tls
    if arch == "x86_64":
        table = {0x33: CKPT_X86_SEG_USER64_CS, 0x2B: CKPT_X86_SEG_USER64_DS,
                 USER32_CS_X86_64: CKPT_X86_SEG_USER32_CS}
    else:
        table = {0x73: CKPT_X86_SEG_USER32_CS, 0x7B: CKPT_X86_SEG_USER32_DS}
    if selector in table:
        return table[selector]
    raise ValueError(f"selector {selector:#x} has no CKPT_X86_SEG code")


def ckpt_decode_segment(code, arch):
    """CKPT_X86_SEG_* code -> raw selector. ValueError for unknown codes."""
    if code == CKPT_X86_SEG_NULL:
        return 0
    if code & CKPT_X86_SEG_LDT:
        return ((code & ~CKPT_X86_SEG_LDT) << 3) | SEL_TI_LDT | SEL_RPL_USER
    if code & CKPT_X86_SEG_TLS:
        index = code & ~CKPT_X86_SEG_TLS
        if index >= GDT_ENTRY_TLS_ENTRIES:
            raise ValueError(f"segment code {code:#x}: TLS index {index} out of range")
        return _tls_selector(index, arch)
    if arch == "x86_64":
        # __USER32_DS == __USER_DS on x86_64, so both DS codes give 0x2b.
        table = {CKPT_X86_SEG_USER32_CS: USER32_CS_X86_64, CKPT_X86_SEG_USER32_DS: 0x2B,
                 CKPT_X86_SEG_USER64_CS: 0x33, CKPT_X86_SEG_USER64_DS: 0x2B}
    else:
        table = {CKPT_X86_SEG_USER32_CS: 0x73, CKPT_X86_SEG_USER32_DS: 0x7B}
    if code in table:
        return table[code]
    raise ValueError(f"unknown segment code {code:#x}")


# OpenVZ (cpt_image.h of the v2 patchset, patch 03/10): CPT_SEG_*
CPT_SEG_ZERO = 0
CPT_SEG_TLS1 = 1
CPT_SEG_TLS3 = 3
CPT_SEG_USER32_DS = 4
CPT_SEG_USER32_CS = 5
CPT_SEG_USER64_DS = 6
CPT_SEG_USER64_CS = 7
CPT_SEG_LDT = 256


def cpt_encode_segment(selector, arch):
    """Raw selector -> CPT_SEG_* id, as the v2 dumper's encode_segment() does (unknown -> ZERO)."""
    if selector == 0 or (selector & 3) != SEL_RPL_USER:
        return CPT_SEG_ZERO
    if selector & SEL_TI_LDT:
        return CPT_SEG_LDT + (selector >> 3)
    tls = _tls_index(selector, arch)
    if tls is not None:
        return CPT_SEG_TLS1 + tls
    if arch == "x86_64":
        # The v2 dumper tests __USER32_DS first; it equals __USER_DS, so 64-bit DS encodes as 4.
        table = {0x2B: CPT_SEG_USER32_DS, USER32_CS_X86_64: CPT_SEG_USER32_CS,
                 0x33: CPT_SEG_USER64_CS}
    else:
        table = {0x7B: CPT_SEG_USER32_DS, 0x73: CPT_SEG_USER32_CS}
    return table.get(selector, CPT_SEG_ZERO)


def cpt_decode_segment(code, arch):
    """CPT_SEG_* id -> raw selector. ValueError for unknown ids."""
    if code == CPT_SEG_ZERO:
        return 0
    if code >= CPT_SEG_LDT:
        return ((code - CPT_SEG_LDT) << 3) | SEL_TI_LDT | SEL_RPL_USER
    if CPT_SEG_TLS1 <= code <= CPT_SEG_TLS3:
        return _tls_selector(code - CPT_SEG_TLS1, arch)
    if arch == "x86_64":
        table = {CPT_SEG_USER32_DS: 0x2B, CPT_SEG_USER32_CS: USER32_CS_X86_64,
                 CPT_SEG_USER64_DS: 0x2B, CPT_SEG_USER64_CS: 0x33}
    else:
        table = {CPT_SEG_USER32_DS: 0x7B, CPT_SEG_USER32_CS: 0x73}
    if code in table:
        return table[code]
    raise ValueError(f"unknown segment id {code}")
