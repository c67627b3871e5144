"""The plain value classes of the lean checkpoint path compare and print as the
dataclasses they replaced did."""

import pytest

from crfs.checkpoint.procfs import MapsLine
from crfs.kernel import Outcome


def heap(**changes):
    fields = dict(start=0x1000, end=0x3000, perms="rw-p", offset=0, dev="00:00", inode=0,
                  name="[heap]")
    fields.update(changes)
    return MapsLine(**fields)


def test_maps_lines_equal_by_every_field():
    assert heap() == heap()
    assert heap() != heap(vm_flags=0x73)
    assert heap() != heap(dontfork=True)
    assert heap() != ("not", "a", "line")


def test_maps_line_is_mutable_and_unhashable():
    line = heap()
    line.end = 0x4000
    assert line == heap(end=0x4000)
    with pytest.raises(TypeError):
        hash(line)


def test_maps_line_replace_copies_with_changes():
    line = heap()
    moved = line.replace(start=0x2000, name="")
    assert moved == heap(start=0x2000, name="")
    assert line == heap()


def test_maps_line_repr_names_every_field():
    assert repr(heap()) == ("MapsLine(start=4096, end=12288, perms='rw-p', offset=0, "
                            "dev='00:00', inode=0, name='[heap]', vm_flags=0, "
                            "dontfork=False)")


def test_outcome_ignores_its_process_and_report_pipe():
    first = Outcome(0, pid=42, process=object(), reports=7)
    second = Outcome(0, pid=42)
    assert first == second
    assert hash(first) == hash(second)
    assert first != Outcome(0, pid=43)
    assert "process" not in repr(first) and "pid=42" in repr(first)


def test_outcome_is_immutable():
    outcome = Outcome(1, "no")
    with pytest.raises(AttributeError):
        outcome.errno = 0
