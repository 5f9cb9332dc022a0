"""Many internal messages in one Kafka record, so that a hop costs one record per partition, not per message.

An envelope is one line per message: the message's key as a JSON string, a tab, its JSON body. JSON
written by orjson never holds a raw tab or newline, so splitting needs no parsing, and kcat shows it
as text. A record whose value starts with ``{`` is one message, as written before envelopes.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson

#: bits of a position (``Incoming.position``) that number the messages of one record
ENVELOPE_BITS = 16
#: the most messages one envelope holds
MAX_MESSAGES = 1 << ENVELOPE_BITS
_TAB, _NEWLINE, _QUOTE = b"\t", b"\n", b'"'


def line(key: bytes, value: bytes) -> bytes:
    """One message of an envelope; the key must be UTF-8 (every internal key is a string)."""
    return orjson.dumps(key.decode()) + _TAB + value


def pack(lines: Iterable[bytes]) -> bytes:
    """The envelope of these lines, in their order."""
    return _NEWLINE.join(lines)


def is_envelope(value: bytes | None) -> bool:
    """Whether an internal record's value is an envelope rather than one message."""
    return value is not None and value.startswith(_QUOTE)


def unpack(value: bytes) -> list[tuple[bytes | None, bytes]]:
    """Each message's key and value, in order; a line that cannot be read has no key (and is dead-lettered)."""
    messages: list[tuple[bytes | None, bytes]] = []
    for each in value.split(_NEWLINE):
        quoted, tab, body = each.partition(_TAB)
        key: bytes | None = None
        if tab:
            try:
                decoded = orjson.loads(quoted)
            except orjson.JSONDecodeError:
                decoded = None
            if isinstance(decoded, str):
                key = decoded.encode()
        messages.append((key, body) if key is not None else (None, each))
    return messages
