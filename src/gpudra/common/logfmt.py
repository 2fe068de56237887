"""How gpudra's log lines look (text or JSON), klog's verbosity levels, and fields bound to a
logger (stdlib only; the CLI installs the handler).

``text`` (the default) is the line gpudra always wrote, ``<time> <LEVEL> <logger>:
<message>``, with the record's fields appended as `` key=value`` (``claim=ns/name``).
``json`` is one object per line, what log collectors parse without a regex: ``ts`` (RFC
3339, UTC, milliseconds), ``level``, ``logger``, ``msg``, then the fields, then ``exc`` (the
traceback) when there is one.  A record's fields are its attributes beyond the standard
`logging.LogRecord` ones: those `bind` puts on every record of a logger, and a call's
``extra=``.

Verbosity is a klog level, ``-v N`` with N from 0 to 7, so operators used to Kubernetes
components need not learn another scale: gpudra logs INFO and above below 4, and DEBUG (from
every library too, as ``-v`` always did) from 4 on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any

FORMATS = ("text", "json")
MAX_VERBOSITY = 7
DEBUG_VERBOSITY = 4  # the level ``-v`` alone means

_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# attributes every record has (and the two Formatter.format adds): anything else is a field
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}


def level_for(verbosity: int) -> int:
    """The `logging` level of a klog verbosity."""
    return logging.DEBUG if verbosity >= DEBUG_VERBOSITY else logging.INFO


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a record carries beyond the standard attributes, in the order given."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _text_value(value: Any) -> str:
    text = str(value)
    if not text or any(c.isspace() or c in '"=' for c in text):
        return json.dumps(text, ensure_ascii=False)  # quoted, so the line still splits on spaces
    return text


class TextFormatter(logging.Formatter):
    """The classic line, then `` key=value`` per field (quoted when it has spaces)."""

    def __init__(self) -> None:
        super().__init__(_TEXT)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        line = super().formatMessage(record)
        return line + "".join(f" {k}={_text_value(v)}" for k, v in record_fields(record).items())


class JsonFormatter(logging.Formatter):
    """One JSON object per record; a field never replaces ``ts``, ``level``, ``logger``."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, tz=UTC)
        doc: dict[str, Any] = {
            "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record_fields(record).items():
            doc.setdefault(key, value)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


def formatter(fmt: str) -> logging.Formatter:
    """The formatter of a ``--log-format`` value (one of `FORMATS`)."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: use one of {', '.join(FORMATS)}")
    return JsonFormatter() if fmt == "json" else TextFormatter()


class BoundLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger whose every record carries the bound fields (a call's ``extra=`` adds more)."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **(kwargs.get("extra") or {})}
        return msg, kwargs


def bind(log: logging.Logger | BoundLogger, **fields: Any) -> BoundLogger:
    """``log`` with ``fields`` on each record, e.g. ``bind(log, claim="ns/name")``; a field
    given as None is left out, and binding a bound logger adds to its fields."""
    bound: Mapping[str, Any] = {}
    if isinstance(log, BoundLogger):
        bound, log = log.extra or {}, log.logger
    return BoundLogger(log, {**bound, **{k: v for k, v in fields.items() if v is not None}})


class ProcessFields(logging.Filter):
    """Puts the process's own fields (a node daemon's ``node``) on every record that lacks
    them, so a collector can tell the nodes' lines apart without parsing messages."""

    def __init__(self, **fields: Any) -> None:
        super().__init__()
        self.fields = {k: v for k, v in fields.items() if v is not None}

    def filter(self, record: logging.LogRecord) -> bool:
        for k, v in self.fields.items():
            if not hasattr(record, k):
                setattr(record, k, v)
        return True


def bind_process(**fields: Any) -> None:
    """Add ``fields`` to every record the root logger's handlers write (``node=<name>``)."""
    f = ProcessFields(**fields)
    for handler in logging.getLogger().handlers:
        handler.addFilter(f)
