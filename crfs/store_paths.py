"""Where images live: the default store, and the names of its files that are not images.

Shared by the filesystem, the checkpointer and the CLI, which import nothing of each other
for it.
"""

DEFAULT_STORE = "/var/lib/crfs"
TEMP_PREFIX = ".crfs-"    # hidden files being written: never shown or indexed as images
