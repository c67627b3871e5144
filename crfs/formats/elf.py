"""ELF core files (ET_CORE) for i386 (ELF32) and x86_64 (ELF64): headers and note payloads.

Layouts are the kernel's: include/uapi/linux/elf.h (Ehdr, Phdr, Nhdr), include/linux/elfcore.h
(elf_prstatus, elf_prpsinfo as fs/binfmt_elf.c fill_prstatus/fill_psinfo fill them),
arch/x86/include/asm/user_{32,64}.h (user_regs_struct, user_i387_struct, user_fxsr_struct) and
fs/binfmt_elf.c fill_files_note (NT_FILE). Checked against `readelf -n` of gdb's gcore output.
"""

from construct import (Array, Bytes, Const, Int8sl, Int8ul, Int16sl, Int16ul, Int32sl,
                       Int32ul, Int64ul, Padding, Struct)


# --------------------------------------------------------------------------- numbers

ELF = {
    "ELFCLASS32": 1, "ELFCLASS64": 2, "ELFDATA2LSB": 1, "EV_CURRENT": 1, "ELFOSABI_NONE": 0,
    "ET_CORE": 4,
    "EM_386": 3, "EM_X86_64": 62,
    "PT_LOAD": 1, "PT_NOTE": 4,
    "PF_X": 1, "PF_W": 2, "PF_R": 4,
    # note types (owner "CORE" unless NOTE_OWNER says otherwise)
    "NT_PRSTATUS": 1, "NT_PRFPREG": 2, "NT_PRPSINFO": 3, "NT_AUXV": 6,
    "NT_FILE": 0x46494C45, "NT_PRXFPREG": 0x46E62B7F, "NT_X86_XSTATE": 0x202,
}
NOTE_OWNER = {ELF["NT_PRXFPREG"]: b"LINUX", ELF["NT_X86_XSTATE"]: b"LINUX"}
ELF_PRARGSZ = 80
NOTE_ALIGN = 4                        # Linux core notes are 4-aligned in ELF64 too
CORE_PAGE_ALIGN = 4096                # ELF_EXEC_PAGESIZE: PT_LOAD offsets and p_align

# --------------------------------------------------------------------------- per-arch

ARCH = {
    "i386": {"class": ELF["ELFCLASS32"], "machine": ELF["EM_386"], "long": Int32ul},
    "x86_64": {"class": ELF["ELFCLASS64"], "machine": ELF["EM_X86_64"], "long": Int64ul},
}

# user_regs_struct member order; values named as gdb (crfs.model.registers) names them.
USER_REGS = {
    "x86_64": ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax",
               "rcx", "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss",
               "fs_base", "gs_base", "ds", "es", "fs", "gs"),
    "i386": ("ebx", "ecx", "edx", "esi", "edi", "ebp", "eax", "ds", "es", "fs", "gs",
             "orig_eax", "eip", "cs", "eflags", "esp", "ss"),
}


def _e_ident(elf_class):
    return Struct(
        "magic" / Const(b"\x7fELF"),
        "ei_class" / Const(elf_class, Int8ul),
        "ei_data" / Const(ELF["ELFDATA2LSB"], Int8ul),
        "ei_version" / Const(ELF["EV_CURRENT"], Int8ul),
        "ei_osabi" / Const(ELF["ELFOSABI_NONE"], Int8ul),
        Padding(8),
    )


def _ehdr(elf_class, addr):
    return Struct(
        "e_ident" / _e_ident(elf_class),
        "e_type" / Int16ul, "e_machine" / Int16ul, "e_version" / Int32ul,
        "e_entry" / addr, "e_phoff" / addr, "e_shoff" / addr,
        "e_flags" / Int32ul, "e_ehsize" / Int16ul, "e_phentsize" / Int16ul,
        "e_phnum" / Int16ul, "e_shentsize" / Int16ul, "e_shnum" / Int16ul,
        "e_shstrndx" / Int16ul,
    )


Elf32_Ehdr = _ehdr(ELF["ELFCLASS32"], Int32ul)
Elf64_Ehdr = _ehdr(ELF["ELFCLASS64"], Int64ul)

Elf32_Phdr = Struct(
    "p_type" / Int32ul, "p_offset" / Int32ul, "p_vaddr" / Int32ul, "p_paddr" / Int32ul,
    "p_filesz" / Int32ul, "p_memsz" / Int32ul, "p_flags" / Int32ul, "p_align" / Int32ul,
)
Elf64_Phdr = Struct(   # p_flags moves up to keep the 64-bit fields aligned
    "p_type" / Int32ul, "p_flags" / Int32ul, "p_offset" / Int64ul, "p_vaddr" / Int64ul,
    "p_paddr" / Int64ul, "p_filesz" / Int64ul, "p_memsz" / Int64ul, "p_align" / Int64ul,
)

# Same layout in both classes: three u32, then name and desc, each padded to 4.
Elf_Nhdr = Struct("n_namesz" / Int32ul, "n_descsz" / Int32ul, "n_type" / Int32ul)


def _user_regs_struct(arch):
    long = ARCH[arch]["long"]
    return Struct(*(name / long for name in USER_REGS[arch]))


user_regs_struct = {arch: _user_regs_struct(arch) for arch in ARCH}


def _elf_prstatus(arch):
    long = ARCH[arch]["long"]
    timeval = Struct("tv_sec" / long, "tv_usec" / long)
    return Struct(
        "si_signo" / Int32sl, "si_code" / Int32sl, "si_errno" / Int32sl,   # elf_siginfo
        "pr_cursig" / Int16sl, Padding(2),
        "pr_sigpend" / long, "pr_sighold" / long,
        "pr_pid" / Int32sl, "pr_ppid" / Int32sl, "pr_pgrp" / Int32sl, "pr_sid" / Int32sl,
        "pr_utime" / timeval, "pr_stime" / timeval,
        "pr_cutime" / timeval, "pr_cstime" / timeval,
        "pr_reg" / user_regs_struct[arch],
        "pr_fpvalid" / Int32sl,
        Padding(0 if arch == "i386" else 4),
    )


elf_prstatus = {arch: _elf_prstatus(arch) for arch in ARCH}   # 144 / 336 bytes


def _elf_prpsinfo(arch):
    long = ARCH[arch]["long"]
    uid = Int16ul if arch == "i386" else Int32ul    # __kernel_uid_t is u16 on i386
    return Struct(
        "pr_state" / Int8sl, "pr_sname" / Int8ul, "pr_zomb" / Int8sl, "pr_nice" / Int8sl,
        Padding(0 if arch == "i386" else 4),
        "pr_flag" / long,
        "pr_uid" / uid, "pr_gid" / uid,
        "pr_pid" / Int32sl, "pr_ppid" / Int32sl, "pr_pgrp" / Int32sl, "pr_sid" / Int32sl,
        "pr_fname" / Bytes(16),
        "pr_psargs" / Bytes(ELF_PRARGSZ),
    )


elf_prpsinfo = {arch: _elf_prpsinfo(arch) for arch in ARCH}   # 124 / 136 bytes

# i386 NT_PRFPREG: user_i387_struct, the fsave image (108 bytes).
user_i387_struct = Struct(
    "cwd" / Int32ul, "swd" / Int32ul, "twd" / Int32ul, "fip" / Int32ul, "fcs" / Int32ul,
    "foo" / Int32ul, "fos" / Int32ul, "st_space" / Bytes(80),
)

# The fxsave image (user_fxsr_struct on i386, user_i387_struct on x86_64): what NT_PRXFPREG
# (i386) and NT_PRFPREG (x86_64) carry, and the first 512 bytes of an xsave area.
user_fxsr_struct = Struct(
    "cwd" / Int16ul, "swd" / Int16ul, "twd" / Int16ul, "fop" / Int16ul,
    "fip" / Int32ul, "fcs" / Int32ul, "foo" / Int32ul, "fos" / Int32ul,
    "mxcsr" / Int32ul, "mxcsr_mask" / Int32ul,
    "st_space" / Array(8, Bytes(16)),     # 80-bit registers in 16-byte slots
    "xmm_space" / Bytes(256),
    "padding" / Bytes(48),
    "sw_reserved" / Bytes(48),
)


def _nt_file_header(arch):
    long = ARCH[arch]["long"]
    return Struct("count" / long, "page_size" / long)


def _nt_file_entry(arch):
    long = ARCH[arch]["long"]
    return Struct("start" / long, "end" / long, "file_ofs" / long)


def _auxv_entry(arch):
    long = ARCH[arch]["long"]
    return Struct("a_type" / long, "a_val" / long)


# NT_FILE: header, `count` entries (file_ofs in pages), then `count` NUL-terminated names.
nt_file_header = {arch: _nt_file_header(arch) for arch in ARCH}
nt_file_entry = {arch: _nt_file_entry(arch) for arch in ARCH}
auxv_entry = {arch: _auxv_entry(arch) for arch in ARCH}

EHDR = {"i386": Elf32_Ehdr, "x86_64": Elf64_Ehdr}
PHDR = {"i386": Elf32_Phdr, "x86_64": Elf64_Phdr}
