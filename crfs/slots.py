"""A value class on __slots__, for modules on the lean `crfs checkpoint --via kernel`
path: dataclasses (with inspect) is a large part of that path's start-up under TCG, so
its records are plain classes, and this module imports nothing."""


class SlotRecord:
    """Equality, repr and replace() over the slots a subclass names in _COMPARED."""

    __slots__ = ()
    _COMPARED = ()

    def _key(self):
        return tuple(getattr(self, name) for name in self._COMPARED)

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._key() == other._key()

    __hash__ = None     # mutable unless a subclass says otherwise

    def __repr__(self):
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._COMPARED)
        return f"{self.__class__.__name__}({fields})"

    def replace(self, **changes):
        """A copy with `changes` (as dataclasses.replace); every slot is an __init__
        argument of the same name."""
        values = {name: getattr(self, name) for name in self.__slots__}
        values.update(changes)
        return self.__class__(**values)
