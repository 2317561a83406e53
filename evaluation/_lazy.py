"""A package's exports loaded on first use (PEP 562), shared by :mod:`evaluation` and :mod:`evaluation.claims`: their
entry points (``python -m evaluation.<name>``) reach their own code, which answers Ctrl-C with one line, before torch
is imported. Imports only the standard library."""
import importlib
import sys
import types
from typing import Any, Callable

__all__ = ["lazy_exports"]


class _LazyPackage(types.ModuleType):
    """An export may share its module's name (``evaluation.distances``, ``evaluation.field_errors``): importing that
    module binds it on the package, which would hide the export behind it; as with eager imports, the export wins."""

    def __setattr__(self, name: str, value: Any) -> None:
        if not (name in self.__dict__.get("_LAZY_EXPORTS", ()) and isinstance(value, types.ModuleType)):
            super().__setattr__(name, value)


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """The module ``__getattr__`` of the package named ``package`` (already in ``sys.modules``: call it from the
    package's ``__init__``) that loads each of ``exports`` (``{name: relative module}``, e.g. ``{"distances":
    ".distances"}``) from its module when first asked for; an unknown name is an ``AttributeError`` (so ``from
    package import submodule`` still finds a submodule). Also keeps an export from being hidden by a submodule of the
    same name (:class:`_LazyPackage`)."""
    exports = dict(exports)
    module = sys.modules[package]
    module._LAZY_EXPORTS = exports
    module.__class__ = _LazyPackage

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name], package), name)

    return __getattr__
