"""Framed messages between Hawk and a sandbox child, bounded on the receiving side.

A message is an 8-byte length, a JSON header of that length, then the raw payloads whose
byte lengths the header lists under ``"blobs"``. Nothing is unpickled and nothing is
evaluated; a reader states how much it accepts before it reads a byte, so a child that
writes gigabytes, garbage or nothing costs the parent a bounded buffer and a clear error.
"""

from __future__ import annotations

import json
import os
import select
import struct
import time

_LEN = struct.Struct(">Q")


class ChannelError(Exception):
    """The other side sent something unreadable, too large, or hung up."""


class ChannelTimeout(ChannelError):
    """Nothing (or not all of a message) arrived in time."""


def encode(header: dict, blobs=()) -> list[bytes | memoryview]:
    views = [_raw(b) for b in blobs]
    head = json.dumps({**header, "blobs": [len(v) for v in views]}).encode()
    return [_LEN.pack(len(head)), head, *views]


def _raw(blob) -> memoryview:
    if hasattr(blob, "dtype"):  # a contiguous numpy array of any dtype (bfloat16 has no buffer format)
        blob = blob.reshape(-1).view("uint8")
    return memoryview(blob).cast("B")


def write_message(fd: int, header: dict, blobs=()) -> None:
    for part in encode(header, blobs):
        view = memoryview(part)
        while view:
            view = view[os.write(fd, view):]


def read_message(fd: int, *, max_header: int, max_blobs: int,
                 deadline: float | None = None) -> tuple[dict, list[bytes]]:
    """One message from ``fd``; raises ChannelError beyond the bounds or at EOF."""
    (size,) = _LEN.unpack(_read_exact(fd, _LEN.size, deadline))
    if size > max_header:
        raise ChannelError(f"message header of {size} bytes; at most {max_header} accepted")
    try:
        header = json.loads(_read_exact(fd, size, deadline))
    except ValueError as err:
        raise ChannelError(f"unreadable message header: {err}") from None
    sizes = header.get("blobs") if isinstance(header, dict) else None
    if not isinstance(sizes, list) or not all(isinstance(n, int) and n >= 0 for n in sizes):
        raise ChannelError("message header without a valid blob list")
    if sum(sizes) > max_blobs:
        raise ChannelError(f"message payload of {sum(sizes)} bytes; at most {max_blobs} accepted")
    return header, [_read_exact(fd, n, deadline) for n in sizes]


SIGNAL_CHECK_S = 0.2


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChannelTimeout("no reply in time")
            # short waits: a signal taken by another thread (SIGTERM, Ctrl-C) must not wait
            # for the deadline before the main thread acts on it
            if not select.select([fd], [], [], min(left, SIGNAL_CHECK_S))[0]:
                continue
        chunk = os.read(fd, min(n - len(buf), 1 << 20))
        if not chunk:
            raise ChannelError("the other side closed the channel")
        buf += chunk
    return bytes(buf)
