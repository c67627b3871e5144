"""Where images live: the default store, and the names of its files that are not images.

Shared by the filesystem, the checkpointer and the CLI, which import nothing of each other
for it.
"""

import errno
import os

DEFAULT_STORE = "/var/lib/crfs"
TEMP_PREFIX = ".crfs-"    # hidden files being written: never shown or indexed as images


def temp_file(directory, what):
    """(fd, path) of a new hidden file DIRECTORY/.crfs-WHAT-<12 hex digits>, mode 0600,
    created exclusively, as tempfile.mkstemp does: without importing tempfile (random,
    weakref ...), a part of `crfs checkpoint`'s start-up under TCG."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(100):
        path = os.path.abspath(os.path.join(directory, f"{TEMP_PREFIX}{what}-"
                                            f"{os.urandom(6).hex()}"))
        try:
            return os.open(path, flags, 0o600), path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no unused temporary file name", str(directory))
