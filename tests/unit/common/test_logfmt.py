"""Log lines as text or JSON, klog's verbosity levels, and fields bound to a logger."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from gpudra.common.logfmt import (
    JsonFormatter,
    ProcessFields,
    TextFormatter,
    bind,
    formatter,
    level_for,
    record_fields,
)


def record(msg: str = "prepared %s", *args: object, **fields: object) -> logging.LogRecord:
    r = logging.LogRecord("gpudra.kubeletplugin.node", logging.INFO, "node.py", 1, msg, args, None)
    r.created = 1_700_000_000.25
    for k, v in fields.items():
        setattr(r, k, v)
    return r


def test_json_is_one_object_with_the_core_keys_then_the_fields() -> None:
    line = JsonFormatter().format(record("prepared %s", "gpu-0", claim="ns/c", claim_uid="u1"))
    assert "\n" not in line
    assert json.loads(line) == {
        "ts": "2023-11-14T22:13:20.250Z",
        "level": "INFO",
        "logger": "gpudra.kubeletplugin.node",
        "msg": "prepared gpu-0",
        "claim": "ns/c",
        "claim_uid": "u1",
    }


def test_json_carries_the_traceback_and_never_lets_a_field_replace_a_core_key() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        r = record("failed", level="not-a-level")
        r.exc_info = sys.exc_info()
    doc = json.loads(JsonFormatter().format(r))
    assert doc["level"] == "INFO" and doc["msg"] == "failed"
    assert doc["exc"].startswith("Traceback") and "RuntimeError: boom" in doc["exc"]


@pytest.mark.parametrize(
    ("fields", "suffix"),
    [
        pytest.param({}, "", id="no fields: the line gpudra always wrote"),
        pytest.param({"claim": "ns/c"}, " claim=ns/c", id="a field"),
        pytest.param({"claim": "ns/c", "node": "n1"}, " claim=ns/c node=n1", id="in order"),
        pytest.param({"why": "two words"}, ' why="two words"', id="quoted with a space"),
        pytest.param({"empty": ""}, ' empty=""', id="quoted when empty"),
    ],
)
def test_text_appends_the_fields(fields: dict[str, object], suffix: str) -> None:
    line = TextFormatter().format(record("prepared %s", "gpu-0", **fields))
    assert line.endswith(f" INFO gpudra.kubeletplugin.node: prepared gpu-0{suffix}")


def test_bind_puts_the_fields_on_every_record_and_adds_to_a_bound_logger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("gpudra.test.bind")
    claim = bind(log, claim="ns/c", pod=None)  # None: left out
    device = bind(claim, device="gpu-0")
    with caplog.at_level(logging.INFO, logger=log.name):
        claim.info("one")
        device.info("two", extra={"attempt": 2})
    one, two = (vars(r) for r in caplog.records)
    assert (one["claim"], "pod" in one, "device" in one) == ("ns/c", False, False)
    assert (two["claim"], two["device"], two["attempt"]) == ("ns/c", "gpu-0", 2)


@pytest.mark.parametrize(
    ("verbosity", "level"),
    [(0, logging.INFO), (3, logging.INFO), (4, logging.DEBUG), (7, logging.DEBUG)],
)
def test_klog_verbosity_maps_to_info_then_debug(verbosity: int, level: int) -> None:
    assert level_for(verbosity) == level


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="use one of text, json"):
        formatter("xml")


def test_a_process_field_lands_on_every_record_and_a_bound_one_wins() -> None:
    f = ProcessFields(node="node-a", absent=None)
    rec = logging.LogRecord("gpudra.x", logging.INFO, __file__, 1, "hello", None, None)
    assert f.filter(rec) and record_fields(rec) == {"node": "node-a"}
    own = logging.LogRecord("gpudra.x", logging.INFO, __file__, 1, "hello", None, None)
    own.node = "node-b"
    f.filter(own)
    assert record_fields(own) == {"node": "node-b"}
