"""The one exception type for images that do not follow their format."""


class FormatError(Exception):
    """An image is malformed: says where (byte offset), in which record, and why.

    str() gives the line the CLI prints, e.g.
    ``img: offset 0x1234: CR_HDR_VMA: nr_pages 99999999 exceeds the file``.
    """

    def __init__(self, message, *, offset=None, record=None, path=None):
        super().__init__(message)
        self.message = message
        self.offset = offset
        self.record = record
        self.path = path

    def __str__(self):
        parts = []
        if self.path is not None:
            parts.append(str(self.path))
        if self.offset is not None:
            parts.append(f"offset {self.offset:#x}")
        if self.record:
            parts.append(self.record)
        parts.append(self.message)
        return ": ".join(parts)
