"""Public names that load their module on first use (PEP 562), as transformers' own `__init__` does: a package
re-exports its modules' names without paying for their imports until one is used."""

import importlib
import sys
from collections.abc import Callable


def lazy_exports(package: str, names_by_module: dict[str, tuple[str, ...]]) -> tuple[Callable, Callable]:
    """The `__getattr__` and `__dir__` of `package` that load each name of `names_by_module` (module name relative
    to `package` -> names) from its module on first use, and keep it."""
    module_of = {name: module for module, names in names_by_module.items() for name in names}

    def __getattr__(name: str):
        if name not in module_of:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module_of[name]}", package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(module_of))

    return __getattr__, __dir__
