"""DRA device selectors, evaluated as kube-scheduler does (k8s.io/dynamic-resource-allocation/cel).

The only module that imports the CEL library, ``cel-expr-python`` (Google's cel-cpp): it
type-checks like cel-go, has ``cel.bind``, optionals and the strings extension, and takes custom
types as protobuf messages, so ``kubernetes.Quantity`` and ``kubernetes.Semver`` are real CEL
types with member functions.  Their messages hold only the value, so CEL's ``==`` compares values
as upstream does; the maths is in the pure `kubetypes.quantity` and `kubetypes.semver`.

A selector is type-checked against ``device`` as a ``kubernetes.DRADevice`` object and evaluated
with ``device`` as plain maps: ``attributes[domain][id]`` is int, bool, string or Semver,
``capacity[domain][id]`` a Quantity.  Upstream looks an unknown domain up as an empty map; here a
lookup that fails on a key that is not a domain of the device is retried with that key added as
an empty domain, which gives upstream's verdict and message unless the same expression also
tests for that domain's presence.

Cost guard, per evaluation and deterministic, as kube-scheduler's.  Upstream allows 1,000,000
cost units per evaluation: the apiserver refuses a selector whose static estimate exceeds that,
and the scheduler's CEL program stops an evaluation whose actual cost does (``cel.CostLimit``),
failing that evaluation only.  cel-cpp counts no cost units; what it counts per evaluation is
comprehension iterations, and it stops an evaluation after 9,999 of them (stricter than upstream
only for long literal lists).  That error is this one evaluation's: nothing is remembered, and
the next device, or the same device again, is evaluated afresh.  Wall-clock time is never
measured (a GC pause must not change a verdict).  The rest of an evaluation's work is bounded
by the 10 KiB expression limit, refused at compile time, except growth within one evaluation
(nested ``cel.bind`` doubling a string), which is not interrupted: the apiserver's static
estimate keeps such selectors out of stored objects.

Known differences (tests/data/cel-conformance.yaml shows some against the real scheduler):
``isInteger``/``asInteger`` follow the value, not Go's representation (see
`kubetypes.quantity`); a Semver or Quantity ``==`` another type is false here and an error
upstream, as is upstream's ``q == q.add(0)``; upstream's ``has(device.attributes.x)`` is always
true.  Compiling here but
rejected by the apiserver: what its static cost estimate refuses (``type(x)``, ``list.join()``),
invalid regex literals, mixed-type list literals.  Missing here (compile errors): the sets, lists,
regex ``find``, URL, IP, CIDR and named-format libraries and two-variable comprehensions.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cel_expr_python import cel  # type: ignore[import-untyped]
from cel_expr_python.ext import (  # type: ignore[import-untyped]
    ext_bindings,
    ext_optional,
    ext_strings,
)
from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    struct_pb2,
    text_format,
)

from gpudra.common.errors import GpudraError
from gpudra.kubetypes.quantity import Quantity, QuantityError, is_quantity
from gpudra.kubetypes.semver import Semver, SemverError, is_semver

MAX_EXPRESSION_BYTES = 10 * 1024  # CELSelectorExpressionMaxLength
ITERATION_BUDGET = 9_999  # cel-expr-python's fixed comprehension budget per evaluation
_MAX_PADDED_DOMAINS = 8
_POSITION = re.compile(r"<input>:(\d+):(\d+): ([^\n]*)")
_STATUS = re.compile(r"^[A-Z_]+: |\s*\[[A-Z_]+\]$")
_MISSING_KEY = re.compile(r'^Key not found in map : "(.*)"$')
_TYPES = ("kubernetes.Quantity", "kubernetes.Semver")
_ORDERINGS = {"_<_": "less", "_<=_": "less_equals", "_>_": "greater", "_>=_": "greater_equals"}


class CelCompileError(GpudraError):
    """A selector that does not compile; ``line``/``column`` are 1-based (None: whole text)."""

    def __init__(self, expression: str, detail: str, line: int | None, column: int | None):
        self.expression, self.detail, self.line, self.column = expression, detail, line, column
        text = expression if len(expression) <= 200 else expression[:200] + "..."
        where = "" if line is None else f" at line {line}, column {column}"
        super().__init__(f"CEL selector {text!r} does not compile{where}: {detail}")


class CelRuntimeError(GpudraError):
    """A selector failed on one device; the message says why (e.g. ``no such key: model``)."""


_PROTO = """
name: "gpudra/cel.proto" package: "kubernetes" syntax: "proto3"
dependency: "google/protobuf/struct.proto"
message_type { name: "Quantity"
  field { name: "mantissa" number: 1 type: TYPE_STRING label: LABEL_OPTIONAL }
  field { name: "exponent" number: 2 type: TYPE_INT64 label: LABEL_OPTIONAL } }
message_type { name: "Semver"
  field { name: "major" number: 1 type: TYPE_UINT64 label: LABEL_OPTIONAL }
  field { name: "minor" number: 2 type: TYPE_UINT64 label: LABEL_OPTIONAL }
  field { name: "patch" number: 3 type: TYPE_UINT64 label: LABEL_OPTIONAL }
  field { name: "pre" number: 4 type: TYPE_STRING label: LABEL_OPTIONAL } }
message_type { name: "DRADevice"
  field { name: "driver" number: 1 type: TYPE_STRING label: LABEL_OPTIONAL }
  field { name: "allowMultipleAllocations" number: 2 type: TYPE_BOOL label: LABEL_OPTIONAL }
  field { name: "attributes" number: 3 type: TYPE_MESSAGE label: LABEL_REPEATED
          type_name: ".kubernetes.DRADevice.AttributesEntry" }
  field { name: "capacity" number: 4 type: TYPE_MESSAGE label: LABEL_REPEATED
          type_name: ".kubernetes.DRADevice.CapacityEntry" }
  nested_type { name: "AttributesEntry" options { map_entry: true }
    field { name: "key" number: 1 type: TYPE_STRING label: LABEL_OPTIONAL }
    field { name: "value" number: 2 type: TYPE_MESSAGE label: LABEL_OPTIONAL
            type_name: ".google.protobuf.Struct" } }
  nested_type { name: "CapacityEntry" options { map_entry: true }
    field { name: "key" number: 1 type: TYPE_STRING label: LABEL_OPTIONAL }
    field { name: "value" number: 2 type: TYPE_MESSAGE label: LABEL_OPTIONAL
            type_name: ".google.protobuf.Struct" } } }
"""


def _message_types() -> tuple[Any, Any, Any]:
    """A private pool with the Quantity and Semver values and the DRADevice used for checking
    (its maps of ``Struct`` are ``map(string, map(string, dyn))`` to the type checker)."""
    pool = descriptor_pool.DescriptorPool()
    pool.Add(descriptor_pb2.FileDescriptorProto.FromString(struct_pb2.DESCRIPTOR.serialized_pb))
    pool.Add(text_format.Parse(_PROTO, descriptor_pb2.FileDescriptorProto()))
    quantity, semver = (
        message_factory.GetMessageClass(pool.FindMessageTypeByName(n)) for n in _TYPES
    )
    return pool, quantity, semver


_POOL, _QuantityMsg, _SemverMsg = _message_types()


def _quantity_msg(q: Quantity) -> Any:
    return _QuantityMsg(mantissa=str(q.mantissa), exponent=q.exponent)


def _semver_msg(v: Semver) -> Any:
    pre = ".".join(str(p) for p in v.pre)
    return _SemverMsg(major=v.major, minor=v.minor, patch=v.patch, pre=pre)


def _q(msg: Any) -> Quantity:
    if not isinstance(msg, _QuantityMsg):
        raise ValueError("no such overload")
    return Quantity(int(msg.mantissa or 0), msg.exponent)


def _s(msg: Any) -> Semver:
    if not isinstance(msg, _SemverMsg):
        raise ValueError("no such overload")
    pre = tuple(int(p) if p.isdigit() else p for p in msg.pre.split(".")) if msg.pre else ()
    return Semver(msg.major, msg.minor, msg.patch, pre)


@functools.lru_cache(maxsize=4096)
def _quantity(text: str) -> Any:
    return _quantity_msg(Quantity.parse(text))


@functools.lru_cache(maxsize=1024)
def _semver(text: str, normalize: bool = False) -> Any:
    return _semver_msg(Semver.parse(text, normalize=normalize))


def _compare(a: Any, b: Any) -> int:
    """compareTo of both types: cel-cpp dispatches on kinds, so one impl serves both."""
    return _s(a).compare(_s(b)) if isinstance(a, _SemverMsg) else _q(a).compare(_q(b))


def _as_integer(q: Any) -> int:
    value = _q(q).as_int64()
    if value is None:
        raise ValueError("cannot convert value to integer")
    return value


def _add(a: Any, b: Any, sign: int = 1) -> Any:
    other = Quantity.of(b) if isinstance(b, int) else _q(b)
    return _quantity_msg(_q(a) + Quantity(sign * other.mantissa, other.exponent))


def _int64(value: int) -> int:
    """Go's ``int64(uint64)``."""
    return (value + 2**63) % 2**64 - 2**63


_GLOBAL_FUNCTIONS = ("quantity", "isQuantity", "sign", "semver", "isSemver")


def _functions() -> list[Any]:
    """The Kubernetes quantity and semver libraries, and the ordering operators redeclared with
    cel-go's cross-type numeric overloads (``1 < 1.5``), which cel-cpp's runtime implements."""
    t = cel.Type
    q, s, b, i, st = t("kubernetes.Quantity"), t("kubernetes.Semver"), t.BOOL, t.INT, t.STRING
    table: list[tuple[str, str, Any, list[Any], Callable[..., Any] | None]] = [
        ("quantity", "string_to_quantity", q, [st], _quantity),
        ("isQuantity", "is_quantity_string", b, [st], is_quantity),
        ("sign", "quantity_sign", i, [q], lambda x: _q(x).sign),
        ("compareTo", "quantity_compare_to", i, [q, q], _compare),
        ("isGreaterThan", "quantity_is_greater_than", b, [q, q], lambda x, y: _compare(x, y) > 0),
        ("isLessThan", "quantity_is_less_than", b, [q, q], lambda x, y: _compare(x, y) < 0),
        (
            "asApproximateFloat",
            "quantity_get_float",
            t.DOUBLE,
            [q],
            lambda x: _q(x).as_approximate_float(),
        ),
        ("asInteger", "quantity_get_int", i, [q], _as_integer),
        ("isInteger", "quantity_is_integer", b, [q], lambda x: _q(x).as_int64() is not None),
        ("add", "quantity_add", q, [q, q], _add),
        ("add", "quantity_add_int", q, [q, i], _add),
        ("sub", "quantity_sub", q, [q, q], lambda x, y: _add(x, y, -1)),
        ("sub", "quantity_sub_int", q, [q, i], lambda x, y: _add(x, y, -1)),
        ("semver", "string_to_semver", s, [st], _semver),
        ("semver", "string_bool_to_semver", s, [st, b], _semver),
        ("isSemver", "is_semver_string", b, [st], is_semver),
        ("isSemver", "is_semver_string_bool", b, [st, b], is_semver),
        ("major", "semver_major", i, [s], lambda v: _int64(_s(v).major)),
        ("minor", "semver_minor", i, [s], lambda v: _int64(_s(v).minor)),
        ("patch", "semver_patch", i, [s], lambda v: _int64(_s(v).patch)),
    ]
    # Semver comparisons share the Quantity overloads' impls (same kinds at run time).
    table += [
        (n, f"semver_{n}", r, [s, s], None)
        for n, r in (("compareTo", i), ("isGreaterThan", b), ("isLessThan", b))
    ]
    overloads: dict[str, list[Any]] = {}
    for name, oid, ret, params, impl in table:
        member = name not in _GLOBAL_FUNCTIONS
        overloads.setdefault(name, []).append(
            cel.Overload(oid, ret, params, is_member=member, impl=impl)
        )
    numeric = {"int64": t.INT, "uint64": t.UINT, "double": t.DOUBLE}
    same = {**numeric, "string": st, "bool": b, "bytes": t.BYTES}
    same |= {"timestamp": t.TIMESTAMP, "duration": t.DURATION}
    pairs = [(n, [k, k]) for n, k in same.items()]
    pairs += [(f"{x}_{y}", [numeric[x], numeric[y]]) for x in numeric for y in numeric if x != y]
    for op, prefix in _ORDERINGS.items():
        overloads[op] = [cel.Overload(f"{prefix}_{n}", b, p) for n, p in pairs]
    return [cel.FunctionDecl(name, made) for name, made in overloads.items()]


@functools.cache
def _env(device_type: str) -> Any:
    """The checking environment (``kubernetes.DRADevice``) or the evaluating one (``map``)."""
    excluded = "".join(f'\n    - name: "{op}"' for op in _ORDERINGS)
    t = cel.Type
    device = t(device_type) if device_type != "map" else t.Map(t.STRING, t.DYN)
    return cel.NewEnv(
        _POOL,
        config=cel.NewEnvConfigFromYaml(f"stdlib:\n  exclude_functions:{excluded}\n"),
        variables={"device": device},
        extensions=[
            ext_strings.ExtStrings(2),
            ext_bindings.ExtBindings(),
            ext_optional.ExtOptional(),
        ],
        functions=_functions(),
    )


AttributeValue = int | bool | str | Semver


@dataclass(eq=False)
class DeviceInput:
    """One device as a selector sees it; its CEL activation is built once and reused.

    ``error`` is set when the device itself cannot be evaluated (an unparsable version, a list or
    empty attribute value): upstream then fails every selector on that device.
    """

    driver: str
    name: str
    attributes: Mapping[str, Mapping[str, AttributeValue]]
    capacity: Mapping[str, Mapping[str, Quantity]]
    allow_multiple_allocations: bool = False
    error: str | None = None
    _activations: dict[frozenset[str], Any] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def from_slice_device(cls, driver: str, device: Mapping[str, Any]) -> DeviceInput:
        """From a resource.k8s.io/v1 ResourceSlice device (JSON dict) published by ``driver``."""
        attributes: dict[str, dict[str, AttributeValue]] = {}
        capacity: dict[str, dict[str, Quantity]] = {}
        errors = []
        for name, attr in (device.get("attributes") or {}).items():
            domain, ident = name.split("/", 1) if "/" in name else (driver, name)
            try:
                attributes.setdefault(domain, {})[ident] = _attribute_value(attr)
            except ValueError as e:
                errors.append(f"attribute {name}: {e}")
        for name, cap in (device.get("capacity") or {}).items():
            domain, ident = name.split("/", 1) if "/" in name else (driver, name)
            try:
                capacity.setdefault(domain, {})[ident] = Quantity.parse(str(cap.get("value", "")))
            except QuantityError as e:
                errors.append(f"capacity {name}: {e}")
        multi = bool(device.get("allowMultipleAllocations", False))
        name = str(device.get("name", ""))
        return cls(driver, name, attributes, capacity, multi, errors[0] if errors else None)

    def activation(self, padded: frozenset[str] = frozenset()) -> Any:
        """The CEL activation, with the ``padded`` domains added as empty maps where missing."""
        found = self._activations.get(padded)
        if found is None:
            empty: dict[str, Any] = {d: {} for d in padded}
            attrs = {d: {k: _cel(v) for k, v in m.items()} for d, m in self.attributes.items()}
            caps = {
                d: {k: _quantity_msg(v) for k, v in m.items()} for d, m in self.capacity.items()
            }
            device = {
                "driver": self.driver,
                "allowMultipleAllocations": self.allow_multiple_allocations,
                "attributes": {**empty, **attrs},
                "capacity": {**empty, **caps},
            }
            found = self._activations[padded] = _env("map").Activation({"device": device})
        return found

    def is_domain(self, key: str) -> bool:
        """Whether ``key`` is a domain of both the attribute and the capacity map."""
        return key in self.attributes and key in self.capacity


def _attribute_value(attr: Mapping[str, Any]) -> AttributeValue:
    """The one value of a DeviceAttribute, checked in upstream's order."""
    if attr.get("int") is not None:
        return int(attr["int"])
    if attr.get("bool") is not None:
        return bool(attr["bool"])
    if attr.get("string") is not None:
        return str(attr["string"])
    if attr.get("version") is not None:
        try:
            return Semver.parse(str(attr["version"]))
        except SemverError as e:
            raise SemverError(f"parse semantic version: {e}") from e
    raise ValueError("unsupported attribute value")


def _cel(value: AttributeValue) -> Any:
    return _semver_msg(value) if isinstance(value, Semver) else value


class Selector:
    """One compiled selector; `matches` raises `CelRuntimeError` when it fails on a device.

    Stateless: a verdict depends on the expression and the device only, never on an earlier
    evaluation.
    """

    def __init__(self, expression: str, program: Any) -> None:
        self.expression = expression
        self._program = program

    def matches(self, device: DeviceInput) -> bool:
        if device.error:
            raise CelRuntimeError(device.error)
        padded: frozenset[str] = frozenset()
        while True:
            try:
                result = self._program.eval(device.activation(padded))
            except Exception as e:  # the budget, or anything else: this evaluation only
                raise CelRuntimeError(_reason(str(e))) from e
            kind = result.type().name()
            if kind == "BOOL":
                return bool(result.value())
            if kind != "ERROR":
                raise CelRuntimeError(f"CEL result of type {kind.lower()} is not a bool")
            reason = _reason(str(result.value()))
            missing = _MISSING_KEY.match(reason)
            if not missing:
                raise CelRuntimeError(reason)
            key = missing.group(1)
            if key in padded or device.is_domain(key) or len(padded) >= _MAX_PADDED_DOMAINS:
                raise CelRuntimeError(f"no such key: {key}")
            padded |= {key}


def _reason(message: str) -> str:
    if "Iteration budget exceeded" in message:
        return f"actual cost limit exceeded: more than {ITERATION_BUDGET} comprehension iterations"
    return _STATUS.sub("", message.strip())


def compile_selector(expression: str) -> Selector:
    """Compile (or fetch from the cache) a DeviceClass or request selector."""
    size = len(expression.encode())
    if size > MAX_EXPRESSION_BYTES:
        detail = f"{size} bytes, more than the {MAX_EXPRESSION_BYTES} (10 KiB) the API allows"
        raise CelCompileError(expression, detail, None, None)
    return _compile(expression)


@functools.lru_cache(maxsize=2048)
def _compile(expression: str) -> Selector:
    try:
        output = _env("kubernetes.DRADevice").compile(expression).return_type().name()
        program = _env("map").compile(expression)
    except RuntimeError as e:
        errors = _POSITION.findall(str(e))
        if not errors:
            raise CelCompileError(expression, _STATUS.sub("", str(e)), None, None) from e
        line, column, detail = errors[0]
        more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
        raise CelCompileError(expression, detail + more, int(line), int(column)) from e
    if output not in ("BOOL", "DYN"):
        detail = f"must evaluate to bool or the unknown type, not {output.lower()}"
        raise CelCompileError(expression, detail, 1, 1)
    return Selector(expression, program)


def evaluate(selector: Selector, device: DeviceInput) -> tuple[bool, str | None]:
    """(selected, why not when the selector failed); a runtime error never selects."""
    try:
        return selector.matches(device), None
    except CelRuntimeError as e:
        return False, str(e)
