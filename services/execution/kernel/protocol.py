"""Framing of the private service ⇄ kernel channel.

A kernel talks to the execution service over exactly one unix stream socket,
handed to it as an inherited file descriptor (`--fd N`, or the socket a
zygote passes to a forked kernel). The service writes `KernelRequest`s and
reads `KernelEvent`s (`reflow/execution/v1/kernel.proto`); each message is a
4-byte big-endian length followed by the serialized protobuf. Nothing is
pickled and the service parses nothing but these frames, because a kernel
runs untrusted code.

User output never touches that socket. The kernel's file descriptors 1 and 2
are pipes that the kernel's capture thread drains (`capture.py`): `print`,
C extensions writing to fd 1, and subprocesses that inherit fd 1/2 all land
in those pipes, and the capture thread forwards what they carry as
`StreamChunk` events, in batches. The socket itself is a descriptor user code
has no name for and subprocesses never inherit (it is non-inheritable), so
the only bytes on it are frames the kernel wrote on purpose, serialized under
one lock.

Every reader enforces `MAX_FRAME_BYTES`: a peer announcing a larger frame is
broken (or hostile) and the reader raises `ProtocolError` rather than
allocating what it asks for. Writers refuse to produce such frames too, so a
kernel finds out before the service does; the kernel keeps its own messages
far below the limit (outputs and stream chunks are capped much lower).

Interrupts are not frames: the service sends SIGINT, which reaches a kernel
that is busy running user code and not reading its socket.
"""

from __future__ import annotations

import asyncio
import struct
from typing import TYPE_CHECKING, Final, TypeVar

from google.protobuf.message import DecodeError, Message

if TYPE_CHECKING:
    import socket

M = TypeVar("M", bound=Message)

HEADER: Final = struct.Struct(">I")
# Far above any legitimate frame (a rich output is capped at 8 MiB, a stream
# chunk at 64 KiB), far below what would hurt a service holding many kernels.
MAX_FRAME_BYTES: Final = 64 * 1024 * 1024


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame."""


def encode_frame(message: Message) -> bytes:
    """Serialize `message` behind its length header."""
    body = message.SerializeToString()
    if len(body) > MAX_FRAME_BYTES:
        raise ProtocolError(
            f"a {len(body)}-byte {type(message).__name__} exceeds the "
            f"{MAX_FRAME_BYTES}-byte frame limit"
        )
    return HEADER.pack(len(body)) + body


def decode_body(body: bytes, message_type: type[M]) -> M:
    """Parse one frame's body as `message_type`."""
    try:
        return message_type.FromString(body)
    except DecodeError as error:
        raise ProtocolError(
            f"undecodable {message_type.__name__} frame: {error}"
        ) from error


def body_length(header: bytes) -> int:
    """The body length a header announces, checked against the limit."""
    (length,) = HEADER.unpack(header)
    if length > MAX_FRAME_BYTES:
        raise ProtocolError(
            f"peer announced a {length}-byte frame; the limit is {MAX_FRAME_BYTES}"
        )
    return int(length)


def write_frame(sock: socket.socket, message: Message) -> None:
    """Send one frame on a blocking socket (callers serialize writers)."""
    sock.sendall(encode_frame(message))


def read_frame(sock: socket.socket, message_type: type[M]) -> M | None:
    """Read one frame from a blocking socket; None on a clean end of stream."""
    header = _receive_exactly(sock, HEADER.size, at_boundary=True)
    if header is None:
        return None
    body = _receive_exactly(sock, body_length(header), at_boundary=False)
    assert body is not None  # only a frame boundary may end the stream cleanly
    return decode_body(body, message_type)


async def read_frame_async(
    reader: asyncio.StreamReader, message_type: type[M]
) -> M | None:
    """Read one frame from an asyncio stream; None on a clean end of stream."""
    try:
        header = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as error:
        if not error.partial:
            return None
        raise ProtocolError("stream ended inside a frame header") from error
    try:
        body = await reader.readexactly(body_length(header))
    except asyncio.IncompleteReadError as error:
        raise ProtocolError("stream ended inside a frame") from error
    return decode_body(body, message_type)


def _receive_exactly(
    sock: socket.socket, size: int, *, at_boundary: bool
) -> bytes | None:
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = sock.recv(min(remaining, 1 << 20))
        if not chunk:
            if at_boundary and remaining == size:
                return None
            raise ProtocolError("stream ended inside a frame")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
