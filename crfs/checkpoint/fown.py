"""Each open file's owner for SIGIO and its signal (fcntl F_SETOWN_EX / F_SETSIG), which
no /proc file shows: asked of the stopped process with injected fcntl(F_GETOWN_EX) and
fcntl(F_GETSIG) (crfs.checkpoint.inject), once per open file description. O_ASYNC is in
fdinfo's flags already. The answers go to the file's CkptFileFields (owner_pid,
owner_type, signum), written as the image's CRFS_HDR_FILE_OWNER; a file without an owner
or a signal gets none. A file whose process cannot be asked safely (see inject's
docstring) keeps none either."""

from crfs.model.ckpt_load import CkptFileFields

SYS_FCNTL = 72
F_GETSIG = 11
F_GETOWN_EX = 16


def capture(pid, regs, table, injector, seen):
    """Owner and signal of every file of `table` (process `pid`, its leader's `regs`)
    not in `seen` (ids of the files asked already, shared by the processes of a tree)."""
    for fd in table.fds:
        file = fd.file
        if id(file) in seen:
            continue
        seen.add(id(file))
        owner = injector.call(pid, regs, SYS_FCNTL,
                              lambda scratch, fd=fd.fd: (fd, F_GETOWN_EX, scratch))
        signum = injector.syscall(pid, regs, SYS_FCNTL, (fd.fd, F_GETSIG))
        owner_type = int.from_bytes(owner[:4], "little") if owner else 0
        owner_pid = int.from_bytes(owner[4:8], "little", signed=True) if owner else 0
        signum = signum if signum and signum > 0 else 0
        if not owner_pid and not signum:
            continue
        if not isinstance(file.native, CkptFileFields):
            file.native = CkptFileFields()
        file.native.owner_pid, file.native.owner_type = owner_pid, owner_type
        file.native.signum = signum
