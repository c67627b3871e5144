"""What every format does the same way: C text, kernel versions, padding, u64 arrays.

Text: images store names (comm, file paths, uname strings) as bytes in no declared
encoding. crfs reads them as UTF-8 with surrogateescape, as os.fsdecode does, and writes
them back the same way, so every byte survives the trip through str.
"""

import re
import sys
from array import array

from construct import Bytes, Default

TEXT_CODEC = ("utf-8", "surrogateescape")


def decode_text(raw):
    """C string bytes -> str up to the first NUL, every byte kept."""
    return bytes(raw).split(b"\0", 1)[0].decode(*TEXT_CODEC)


def encode_text(text):
    """The bytes decode_text() read `text` from (no NUL added)."""
    return text.encode(*TEXT_CODEC)


def c_chars(text, limit, size=None):
    """A NUL-padded char[size] holding at most `limit` bytes of `text` (cut, as strncpy)."""
    return encode_text(text)[:limit].ljust(size or limit, b"\0")


def c_field(text, size, what):
    """A NUL-padded char[size] holding all of `text`; ValueError when it does not fit."""
    data = encode_text(text)
    if len(data) > size:
        raise ValueError(f"{what} {text!r} is longer than {size} bytes")
    return data.ljust(size, b"\0")


def kernel_version(release):
    """(major, minor, patch) of a release string: "6.1.0-18-amd64" -> (6, 1, 0).

    The first three numbers, zeros for missing ones, as every header stores them."""
    numbers = [int(n) for n in re.findall(r"\d+", str(release))[:3]]
    return tuple(numbers + [0] * (3 - len(numbers)))


def kernel_text(release):
    """"6.1.0-18-amd64" -> "6.1.0": the header's major.minor.patch as text."""
    return ".".join(str(n) for n in kernel_version(release))


def name_of(enum_type, value, default=None):
    """The C name `enum_type` gives `value`, or `default` for a value it does not define."""
    try:
        return enum_type(value).name
    except ValueError:
        return default


def Pad(size):
    """Padding bytes: kept as stored when parsed (so build(parse(b)) == b), zeros when
    a writer does not give them."""
    return Default(Bytes(size), bytes(size))


def u64_array(little_endian):
    """An array('Q') of the little-endian u64 words in `little_endian`."""
    values = array("Q")
    values.frombytes(little_endian)
    if sys.byteorder != "little":
        values.byteswap()
    return values


def u64_bytes(values):
    """The little-endian bytes of the u64 `values` (an array('Q') or ints): u64_array's
    inverse."""
    words = array("Q", values)
    if sys.byteorder != "little":
        words.byteswap()
    return words.tobytes()


def dev_text(dev):
    """st_dev as /proc/<pid>/maps shows it, major:minor in hex (glibc's gnu_dev_major and
    gnu_dev_minor, which read the kernel's new_encode_dev too)."""
    major = (dev >> 8 & 0xFFF) | (dev >> 32 & ~0xFFF)
    minor = (dev & 0xFF) | (dev >> 12 & 0xFFFFFF00)
    return f"{major:02x}:{minor:02x}"
