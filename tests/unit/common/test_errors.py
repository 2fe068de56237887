"""One error tree: every exception gpudra defines derives from ``GpudraError``, and the tree
in ``gpudra.common.errors`` names each one, in its module, under its parent."""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass
from pathlib import Path

import gpudra
from gpudra.common import errors
from gpudra.common.errors import GpudraError

SRC = Path(gpudra.__file__).parent
NOT_IMPORTED = {"gpudra.__main__"}  # runs the command line when imported
# one entry of the tree: "<indent>Name (module[, ValueError]): what it means; what to do"
ENTRY = re.compile(
    r"^(?P<indent> *)(?P<name>[A-Z]\w*)"
    r"(?: \((?P<module>[a-z_.]+)(?P<value_error>, ValueError)?\))?: (?P<text>\S.*)$"
)


def gpudra_modules() -> list[str]:
    """Every module under src/gpudra, namespace packages included (pkgutil skips those)."""
    names = []
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        if "_proto" in parts:
            continue  # generated gRPC stubs define no errors of ours
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if name not in NOT_IMPORTED:
            names.append(name)
    return names


def defined_exceptions() -> list[type[BaseException]]:
    """The exception classes defined at the top level of gpudra's modules."""
    found = []
    for name in gpudra_modules():
        module = importlib.import_module(name)
        found += [
            obj
            for obj in vars(module).values()
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == name
        ]
    return found


@dataclass(frozen=True)
class Entry:
    name: str
    module: str  # as written, or the parent's
    value_error: bool
    parent: str | None
    text: str


def tree() -> dict[str, Entry]:
    """The entries of the module docstring's literal block, by class name."""
    doc = errors.__doc__ or ""
    block = doc.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    entries: dict[str, Entry] = {}
    stack: list[tuple[int, Entry]] = []  # the open ancestors, by indentation
    for line in block.splitlines():
        m = ENTRY.match(line)
        assert m, f"not a tree entry (Name (module): text): {line!r}"
        depth = len(m["indent"])
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parent = stack[-1][1] if stack else None
        module = m["module"] or (parent.module if parent else "common.errors")
        entry = Entry(
            m["name"], module, bool(m["value_error"]), parent.name if parent else None, m["text"]
        )
        assert entry.name not in entries, f"{entry.name} is in the tree twice"
        entries[entry.name] = entry
        stack.append((depth, entry))
    return entries


def test_every_exception_gpudra_defines_is_a_gpudra_error() -> None:
    classes = defined_exceptions()
    assert GpudraError in classes and len(classes) > 40
    bare = [f"{c.__module__}.{c.__qualname__}" for c in classes if not issubclass(c, GpudraError)]
    assert not bare, f"derive these from gpudra.common.errors.GpudraError: {bare}"


def test_exception_names_are_unique() -> None:
    """A name with two meanings (two ConfigErrors) cannot be caught or documented apart."""
    names = [c.__name__ for c in defined_exceptions()]
    assert sorted({n for n in names if names.count(n) > 1}) == []


def test_the_tree_names_every_class_in_its_module_under_its_parent() -> None:
    entries = tree()
    classes = {c.__name__: c for c in defined_exceptions()}
    assert sorted(set(classes) - set(entries)) == [], "missing from the tree"
    assert sorted(set(entries) - set(classes)) == [], "in the tree, but no such class"
    for name, entry in entries.items():
        cls = classes[name]
        assert cls.__module__ == f"gpudra.{entry.module}", (
            f"{name} is in {cls.__module__}; the tree says gpudra.{entry.module}"
        )
        ours = [b.__name__ for b in cls.__bases__ if issubclass(b, GpudraError)]
        assert ours == ([entry.parent] if entry.parent else []), f"{name}: bases {ours}"
        assert entry.value_error == issubclass(cls, ValueError), (
            f"{name}: mark it ', ValueError' in the tree exactly when it is one"
        )


def test_value_errors_stay_value_errors() -> None:
    """Re-based on GpudraError, the parsers' errors still satisfy ``except ValueError``."""
    from gpudra.kubetypes.quantity import QuantityError, parse_quantity

    try:
        parse_quantity("ten gigs")
    except ValueError as e:
        assert isinstance(e, QuantityError) and isinstance(e, GpudraError)
    else:
        raise AssertionError("parse_quantity accepted 'ten gigs'")
