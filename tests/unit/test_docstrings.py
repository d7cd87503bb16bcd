"""Every public name has a docstring, so the generated API reference documents all of it."""

from __future__ import annotations

import inspect

import shakesco_async


def _undocumented() -> list[str]:
    missing = []
    for name in shakesco_async.__all__:
        obj = getattr(shakesco_async, name)
        if name.startswith("__") or isinstance(obj, str):
            continue
        if not (inspect.getdoc(obj) or "").strip():
            missing.append(name)
        if not inspect.isclass(obj):
            continue
        for attr in dir(obj):
            if attr.startswith("_"):
                continue
            member = inspect.getattr_static(obj, attr)
            owner = next((c for c in obj.__mro__ if attr in vars(c)), obj)
            if not owner.__module__.startswith("shakesco_async"):
                continue  # attrs', Exception's, enum's own
            target = member.fget if isinstance(member, property) else getattr(obj, attr)
            if (callable(target) or isinstance(member, property)) and not (inspect.getdoc(target) or "").strip():
                missing.append(f"{name}.{attr}")
    return sorted(missing)


def test_every_public_name_has_a_docstring() -> None:
    assert _undocumented() == []
