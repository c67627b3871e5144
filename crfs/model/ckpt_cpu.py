"""ckpt_hdr_cpu <-> Registers: one record layout for both archs, gdb names in the model.

The CPU record stores pt_regs in x86_64 order, the FS/GS bases, and the segment selectors as
CKPT_X86_SEG_* codes. x86_32 images use the same record; the fields i386 has no register for
(r8..r15, the bases) are kept in the task's CkptTaskFields so that nothing stored is lost.
"""

from crfs.formats.ckpt import CPU_REGS, CPU_SEGMENTS
from crfs.formats.x86 import ckpt_decode_segment, ckpt_encode_segment

# CPU record field -> gdb register name, per arch.
GPR_NAMES = {
    "x86_64": {"r15": "r15", "r14": "r14", "r13": "r13", "r12": "r12", "bp": "rbp",
               "bx": "rbx", "r11": "r11", "r10": "r10", "r9": "r9", "r8": "r8", "ax": "rax",
               "cx": "rcx", "dx": "rdx", "si": "rsi", "di": "rdi", "orig_ax": "orig_rax",
               "ip": "rip", "sp": "rsp", "flags": "eflags", "fs": "fs_base", "gs": "gs_base"},
    "i386": {"bp": "ebp", "bx": "ebx", "ax": "eax", "cx": "ecx", "dx": "edx", "si": "esi",
             "di": "edi", "orig_ax": "orig_eax", "ip": "eip", "sp": "esp", "flags": "eflags"},
}
# Fields an arch has no gdb register for: their name in the model.
EXTRA_NAMES = {
    "x86_64": {},
    "i386": {"r15": "r15", "r14": "r14", "r13": "r13", "r12": "r12", "r11": "r11",
             "r10": "r10", "r9": "r9", "r8": "r8", "fs": "fs_base", "gs": "gs_base"},
}
CPU_ONLY_FIELDS = tuple(EXTRA_NAMES["i386"].values())
SEGMENT_NAMES = {"fsindex": "fs", "gsindex": "gs", "cs": "cs", "ss": "ss", "ds": "ds", "es": "es"}


def registers_from_cpu(cpu, arch):
    """(gdb register values, values of CPU_ONLY_FIELDS) of a parsed CPU record.

    ValueError for a segment code that CKPT_X86_SEG_* does not define.
    """
    values = {GPR_NAMES[arch][f]: cpu[f] for f in CPU_REGS if f in GPR_NAMES[arch]}
    extra = {EXTRA_NAMES[arch][f]: cpu[f] for f in CPU_REGS if f in EXTRA_NAMES[arch]}
    for field in CPU_SEGMENTS:
        values[SEGMENT_NAMES[field]] = ckpt_decode_segment(cpu[field], arch)
    return values, extra


def cpu_fields(regs, extra, arch):
    """CPU record fields (without h and used_math) from Registers and the CPU_ONLY_FIELDS
    values in `extra` (a dict; 0 for those missing).

    ValueError for a selector that CKPT_X86_SEG_* cannot express.
    """
    fields = {}
    for field in CPU_REGS:
        if field in GPR_NAMES[arch]:
            fields[field] = regs[GPR_NAMES[arch][field]]
        else:
            fields[field] = extra.get(EXTRA_NAMES[arch][field]) or 0
    for field in CPU_SEGMENTS:
        fields[field] = ckpt_encode_segment(regs[SEGMENT_NAMES[field]], arch)
    return fields
