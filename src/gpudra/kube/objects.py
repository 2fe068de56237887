"""The plain-data shapes the client returns: JSON objects, lists, watch events, patch types.

Objects stay ``dict[str, Any]`` exactly as the API server sent them, so fields the installed
``kubernetes`` package does not know (a newer server) survive a read-modify-write.  Decoding a
watch line is pure and lives here so it can be tested without a server.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from gpudra.api.meta import RawObject
from gpudra.kube.errors import KubeError, error_for_status


class PatchType(enum.Enum):
    """The PATCH flavours the API server accepts, by Content-Type."""

    MERGE = "application/merge-patch+json"
    JSON = "application/json-patch+json"
    STRATEGIC = "application/strategic-merge-patch+json"
    APPLY = "application/apply-patch+yaml"


@dataclass(frozen=True)
class ObjectList:
    """The items of a list call and the collection's resourceVersion (to start a watch from)."""

    items: list[RawObject]
    resource_version: str


class WatchEvent(NamedTuple):
    """One watch event: ``type`` is ADDED, MODIFIED, DELETED or BOOKMARK."""

    type: str
    object: RawObject


def iter_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Re-split a stream of arbitrary chunks into newline-terminated lines (the watch framing)."""
    buffer = bytearray()
    for chunk in chunks:
        buffer.extend(chunk)
        while (end := buffer.find(b"\n")) != -1:
            yield bytes(buffer[:end])
            del buffer[: end + 1]
    if buffer:
        yield bytes(buffer)


def decode_watch_line(line: bytes | str) -> WatchEvent | None:
    """Decode one line of a watch stream; None for a blank line.

    An ERROR event carries a ``Status`` and is raised as the matching `KubeError` (410 `Gone`
    when the resourceVersion is too old, so the caller re-lists).
    """
    try:
        text = line.decode("utf-8") if isinstance(line, bytes) else line
    except UnicodeDecodeError as e:
        raise KubeError(f"watch event is not UTF-8: {line[:200]!r}") from e
    if not text.strip():
        return None
    try:
        raw = json.loads(text)
    except ValueError as e:
        raise KubeError(f"undecodable watch event: {text[:200]!r}") from e
    if not isinstance(raw, dict) or not isinstance(raw.get("object"), dict):
        raise KubeError(f"malformed watch event: {text[:200]!r}")
    event_type = str(raw.get("type", ""))
    obj: RawObject = raw["object"]
    if event_type == "ERROR":
        raise error_for_status(int(obj.get("code") or 0), obj, fallback="watch error")
    return WatchEvent(event_type, obj)
