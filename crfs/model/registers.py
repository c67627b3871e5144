"""Registers as one canonical set per arch, named as gdb names them."""

GDB_REGISTERS = {
    "x86_64": ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
               "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
               "rip", "eflags", "cs", "ss", "ds", "es", "fs", "gs",
               "fs_base", "gs_base", "orig_rax"),
    "i386": ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi",
             "eip", "eflags", "cs", "ss", "ds", "es", "fs", "gs", "orig_eax"),
}


class Registers:
    """General registers of one task; segment registers hold decoded selectors."""

    __slots__ = ("arch", "_values")

    def __init__(self, arch, values):
        names = GDB_REGISTERS[arch]
        unknown = set(values) - set(names)
        if unknown:
            raise KeyError(f"not {arch} registers: {sorted(unknown)}")
        self.arch = arch
        self._values = {name: values.get(name, 0) for name in names}

    def __getitem__(self, name):
        return self._values[name]

    def items(self):
        """(name, value) in gdb's order."""
        return self._values.items()

    def as_dict(self):
        return dict(self._values)

    def __eq__(self, other):
        return (isinstance(other, Registers) and self.arch == other.arch
                and self._values == other._values)

    def __repr__(self):
        return f"Registers({self.arch!r}, {self._values!r})"
