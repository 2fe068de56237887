"""Selectors in the Kubernetes DRA CEL environment: a table of expression x device -> verdict."""

from __future__ import annotations

import time
from typing import Any

import pytest

from gpudra.allocation.cel import (
    ITERATION_BUDGET,
    MAX_EXPRESSION_BYTES,
    CelCompileError,
    CelRuntimeError,
    DeviceInput,
    compile_selector,
    evaluate,
)
from gpudra.kubetypes.quantity import Quantity
from gpudra.kubetypes.semver import Semver

DRIVER = "gpu.gpudra.io"
H100: dict[str, Any] = {
    "name": "gpu-2",
    "attributes": {
        "index": {"int": 2},
        "uuid": {"string": "GPU-4d3b5a1e"},
        "productName": {"string": "NVIDIA H100 80GB HBM3"},
        "driverVersion": {"version": "580.82.7"},
        "cudaVersion": {"version": "13.0.0-rc.1"},
        "migCapable": {"bool": True},
        "resource.kubernetes.io/pciBusID": {"string": "0000:3b:00.0"},
    },
    "capacity": {"memory": {"value": "80Gi"}, "clock": {"value": "1980M"}},
}
MIG: dict[str, Any] = {
    "name": "gpu-2-mig-1g10gb-0",
    "attributes": {"profile": {"string": "1g.10gb"}, "migCapable": {"bool": False}},
    "capacity": {"memory": {"value": "10Gi"}},
}
BARE: dict[str, Any] = {"name": "bare"}
DEVICES = {
    "h100": DeviceInput.from_slice_device(DRIVER, H100),
    "mig": DeviceInput.from_slice_device(DRIVER, MIG),
    "bare": DeviceInput.from_slice_device(DRIVER, BARE),
    "other": DeviceInput.from_slice_device("net.example.com", {"name": "nic", **H100}),
}
A = f'device.attributes["{DRIVER}"]'
C = f'device.capacity["{DRIVER}"]'

# (id, expression, device, expected): True/False, or "error: <substring of the reason>".
CASES: list[tuple[str, str, str, bool | str]] = [
    ("driver", f'device.driver == "{DRIVER}"', "h100", True),
    ("driver-other", f'device.driver == "{DRIVER}"', "other", False),
    ("string", f'{A}.productName == "NVIDIA H100 80GB HBM3"', "h100", True),
    ("string-ext", f'{A}.productName.lowerAscii().startsWith("nvidia h100")', "h100", True),
    ("string-matches", f'{A}.uuid.matches("^GPU-[0-9a-f]+$")', "h100", True),
    ("int", f"{A}.index == 2", "h100", True),
    ("int-in", f"{A}.index in [0, 1]", "h100", False),
    ("int-cross-type", f"{A}.index < 2.5", "h100", True),
    ("bool", f"{A}.migCapable", "h100", True),
    ("bool-false", f"{A}.migCapable", "mig", False),
    ("field-select", "device.attributes[device.driver].index == 2", "h100", True),
    (
        "domain-qualified",
        'device.attributes["resource.kubernetes.io"].pciBusID == "0000:3b:00.0"',
        "h100",
        True,
    ),
    ("own-domain-only", f"has({A}.pciBusID)", "h100", False),
    ("other-driver-domain", 'device.attributes["net.example.com"].index == 2', "other", True),
    ("missing-attribute", f'{A}.model == "x"', "h100", "error: no such key: model"),
    (
        "missing-domain",
        'device.attributes["nvidia.com"].model == "x"',
        "h100",
        "error: no such key: model",
    ),
    ("missing-all", f"{A}.index == 0", "bare", "error: no such key: index"),
    (
        "missing-capacity",
        f"{C}.memory.isGreaterThan(quantity('1'))",
        "bare",
        "error: no such key: memory",
    ),
    ("has-guard", f"has({A}.model) && {A}.model == 'x'", "h100", False),
    ("has-missing-domain", 'has(device.attributes["nvidia.com"].model)', "h100", False),
    ("has-capacity-missing-domain", f"has({C}.memory)", "bare", False),
    ("in-missing-domain", '"nvidia.com" in device.attributes', "h100", False),
    ("size-missing-domain", 'size(device.attributes["nvidia.com"]) == 0', "h100", True),
    ("error-absorbed", f"{A}.index == 2 || {A}.model == 'x'", "h100", True),
    (
        "error-not-absorbed",
        f"{A}.index == 3 || {A}.model == 'x'",
        "h100",
        "error: no such key: model",
    ),
    ("optional", f'{A}.?model.orValue("none") == "none"', "h100", True),
    ("bind", f"cel.bind(g, {A}, g.index == 2 && g.migCapable)", "h100", True),
    ("exists", f'{A}.exists(k, k == "uuid")', "h100", True),
    ("quantity-capacity", f'{C}.memory.compareTo(quantity("40Gi")) >= 0', "h100", True),
    ("quantity-capacity-mig", f'{C}.memory.compareTo(quantity("40Gi")) >= 0', "mig", False),
    ("quantity-eq-value", f'{C}.memory == quantity("81920Mi")', "h100", True),
    ("quantity-decimal-cap", f'{C}.clock.isGreaterThan(quantity("1.9G"))', "h100", True),
    ("quantity-suffixes", 'quantity("80Gi").compareTo(quantity("81920Mi")) == 0', "bare", True),
    ("quantity-1.5Gi", 'quantity("1.5Gi").compareTo(quantity("1536Mi")) == 0', "bare", True),
    ("quantity-k", 'quantity("1k") == quantity("1000")', "bare", True),
    ("quantity-milli", 'quantity("100m").isLessThan(quantity("0.2"))', "bare", True),
    ("quantity-milli-eq", 'quantity("100m") == quantity("0.1")', "bare", True),
    (
        "quantity-arith",
        'quantity("50k").add(20).sub(quantity("100k")).asInteger() == -49980',
        "bare",
        True,
    ),
    ("quantity-sign", 'sign(quantity("-1Mi")) == -1', "bare", True),
    ("quantity-float", 'quantity("1.5").asApproximateFloat() == 1.5', "bare", True),
    (
        "quantity-isInteger",
        'quantity("1k").isInteger() && !quantity("1.5").isInteger()',
        "bare",
        True,
    ),
    (
        "quantity-asInteger-fraction",
        'quantity("1.5").asInteger() == 1',
        "bare",
        "error: cannot convert",
    ),
    ("isQuantity", 'isQuantity("10Gi") && !isQuantity("10GB") && isQuantity("Mi")', "bare", True),
    (
        "quantity-invalid",
        'quantity("10GB") == quantity("1")',
        "bare",
        "error: quantities must match",
    ),
    ("quantity-type", f"type({C}.memory) == kubernetes.Quantity", "h100", True),
    ("version", f'{A}.driverVersion.isGreaterThan(semver("9.0.0"))', "h100", True),
    ("version-not-string", f'{A}.driverVersion == "580.82.7"', "h100", False),
    ("version-eq", f'{A}.driverVersion == semver("580.82.7")', "h100", True),
    (
        "version-parts",
        f"{A}.driverVersion.major() == 580 && {A}.driverVersion.minor() == 82",
        "h100",
        True,
    ),
    ("version-prerelease", f'{A}.cudaVersion.isLessThan(semver("13.0.0"))', "h100", True),
    ("version-compareTo", f'{A}.cudaVersion.compareTo(semver("13.0.0-rc.0")) == 1', "h100", True),
    ("semver-normalize", 'semver("v1.02", true) == semver("1.2.0")', "bare", True),
    ("isSemver", 'isSemver("1.2.3") && !isSemver("1.2") && isSemver("1.2", true)', "bare", True),
    ("semver-invalid", 'semver("1.2") == semver("1.2.0")', "bare", "error: No Major.Minor.Patch"),
    ("multi-alloc", "device.allowMultipleAllocations", "h100", False),
    ("non-bool", f"{A}.index", "h100", "error: CEL result of type int is not a bool"),
    ("division-by-zero", f"{A}.index / 0 == 1", "h100", "error: divide by zero"),
]


@pytest.mark.parametrize(
    ("expression", "device", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_selector_verdicts(expression: str, device: str, expected: bool | str) -> None:
    selected, reason = evaluate(compile_selector(expression), DEVICES[device])
    if isinstance(expected, bool):
        assert (selected, reason) == (expected, None)
    else:
        assert not selected
        assert reason is not None
        assert expected.removeprefix("error: ") in reason


def test_matches_raises_the_runtime_error() -> None:
    with pytest.raises(CelRuntimeError, match="no such key: model"):
        compile_selector(f'{A}.model == "x"').matches(DEVICES["h100"])


COMPILE_ERRORS = [
    ("syntax", "device.driver ==", 1, 17, "Syntax error"),
    ("second-line", f"{A}.index == 1 &&\n  (1 + )", 2, 8, "Syntax error"),
    ("undeclared", "foo(device)", 1, 4, "undeclared reference to 'foo'"),
    ("type-mismatch", "device.driver == 1", 1, 15, "no matching overload"),
    ("unknown-field", "device.drivers == 'x'", 1, 7, "undefined field 'drivers'"),
    ("non-bool-output", "device.driver", 1, 1, "must evaluate to bool"),
    (
        "quantity-method-on-string",
        'device.driver.compareTo(quantity("1")) == 0',
        1,
        24,
        "no matching overload",
    ),
    ("sign-is-global", 'quantity("1").sign() == 1', 1, 19, "undeclared reference to 'sign'"),
]


@pytest.mark.parametrize(
    ("expression", "line", "column", "detail"),
    [c[1:] for c in COMPILE_ERRORS],
    ids=[c[0] for c in COMPILE_ERRORS],
)
def test_compile_errors_name_the_position(
    expression: str, line: int, column: int, detail: str
) -> None:
    with pytest.raises(CelCompileError) as info:
        compile_selector(expression)
    err = info.value
    assert (err.line, err.column) == (line, column)
    assert detail in err.detail
    assert repr(expression)[:40] in str(err)
    assert f"line {line}, column {column}" in str(err)


def test_the_api_length_limit_is_enforced() -> None:
    padding = " " * (MAX_EXPRESSION_BYTES - len("true"))
    assert compile_selector("true" + padding).matches(DEVICES["bare"])
    with pytest.raises(CelCompileError, match="10241 bytes, more than the 10240"):
        compile_selector("true " + padding)
    with pytest.raises(CelCompileError, match="bytes"):  # bytes, not characters
        compile_selector('"é" == "é"' + " " * (MAX_EXPRESSION_BYTES - 10))


def test_compiled_selectors_are_cached() -> None:
    assert compile_selector("device.driver == 'a'") is compile_selector("device.driver == 'a'")


def test_iteration_budget_is_a_runtime_error() -> None:
    hundred = "[" + ", ".join(str(i) for i in range(100)) + "]"
    cheap = compile_selector(f"{hundred}.all(x, {hundred[:200]}].all(y, x + y >= 0))")
    assert cheap.matches(DEVICES["bare"])
    costly = compile_selector(f"{hundred}.all(x, {hundred}.all(y, x + y >= 0))")
    with pytest.raises(CelRuntimeError, match="cost limit exceeded"):
        costly.matches(DEVICES["bare"])


def test_the_cost_budget_is_per_evaluation() -> None:
    """Over budget on one device is an error for that evaluation only: the same selector
    still selects a device it is cheap on, before and after, and fails again on the first."""
    hundred = "[" + ", ".join(str(i) for i in range(100)) + "]"
    costly = f"{hundred}.all(x, {hundred}.all(y, x + y >= 0))"
    selector = compile_selector(f"{A}.index == 0 || {costly}")
    cheap = DeviceInput.from_slice_device(
        DRIVER, {"name": "g0", "attributes": {"index": {"int": 0}}}
    )
    over = (
        False,
        f"actual cost limit exceeded: more than {ITERATION_BUDGET} comprehension iterations",
    )
    for _ in range(2):
        assert evaluate(selector, cheap) == (True, None)
        assert evaluate(selector, DEVICES["h100"]) == over


def test_a_slow_evaluation_is_not_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 14: one evaluation that took long (a GC pause) disabled the selector for the life
    of the process.  The verdict must not depend on time at all."""
    ticks = iter([0.0, 10.0])  # the first evaluation seems to take 10 s, then time stands still

    def slow_once() -> float:
        return next(ticks, 10.0)

    monkeypatch.setattr(time, "perf_counter", slow_once)
    monkeypatch.setattr(time, "monotonic", slow_once)
    selector = compile_selector(f"{A}.index == 2 && device.driver != 'slow-once'")
    for _ in range(3):
        assert evaluate(selector, DEVICES["h100"]) == (True, None)


@pytest.mark.parametrize(
    ("attributes", "reason"),
    [
        ({"v": {"version": "1.02.3"}}, "attribute v: parse semantic version: Minor number"),
        ({"l": {"ints": [1, 2]}}, "attribute l: unsupported attribute value"),
    ],
    ids=["bad-version", "list-attribute"],
)
def test_a_device_with_a_bad_attribute_fails_every_selector(
    attributes: dict[str, Any], reason: str
) -> None:
    device = DeviceInput.from_slice_device(DRIVER, {"name": "d", "attributes": attributes})
    assert evaluate(compile_selector("true"), device) == (False, device.error)
    assert device.error is not None
    assert device.error.startswith(reason)


def test_device_input_maps_names_to_domains() -> None:
    dev = DEVICES["h100"]
    assert dev.attributes[DRIVER]["index"] == 2
    assert dev.attributes[DRIVER]["driverVersion"] == Semver(580, 82, 7)
    assert dev.attributes["resource.kubernetes.io"] == {"pciBusID": "0000:3b:00.0"}
    assert dev.capacity[DRIVER]["memory"] == Quantity.parse("80Gi")
    assert (dev.driver, dev.name, dev.error) == (DRIVER, "gpu-2", None)
    assert dev.activation() is dev.activation()  # built once
