"""Names a package imports from its submodules when they are first used (PEP 562), so
that importing one submodule imports no more: the lean `crfs checkpoint --via kernel`
path imports crfs.model.registry and crfs.checkpoint.via_kernel, not the whole model."""

import importlib


def lazy_names(namespace, names):
    """(__getattr__, __dir__) for the package whose globals are `namespace`: each of
    `names` ({name: submodule}) is crfs.<package>.<submodule>.<name>, imported and kept in
    the package at its first use."""
    package = namespace["__name__"]

    def __getattr__(name):
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    def __dir__():
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__
