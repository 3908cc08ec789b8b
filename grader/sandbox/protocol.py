"""Length-prefixed frames over a stream socket, with deadlines on the grader's side.

The grader never trusts the other end: a frame longer than its limit, a stalled writer or a closed socket is
an exception (``FrameTooLarge``, ``Timeout``, ``Closed``), never a hang.
"""

from __future__ import annotations

import select
import socket
import struct
import time

_HEADER = struct.Struct("!Q")


class Closed(ConnectionError):
    """The other end closed the socket (its process died)."""


class Timeout(TimeoutError):
    """The deadline passed before the frame was complete."""


class FrameTooLarge(ValueError):
    """The other end announced a frame above the limit."""


def _wait(sock: socket.socket, deadline: float | None, write: bool) -> None:
    if deadline is None:
        return
    left = deadline - time.monotonic()
    if left <= 0:
        raise Timeout("deadline passed")
    r, w, _ = select.select([] if write else [sock], [sock] if write else [], [], left)
    if not (r or w):
        raise Timeout("deadline passed")


def send_frame(sock: socket.socket, data: bytes, deadline: float | None = None) -> None:
    """Send one frame; with a deadline the socket must be non-blocking."""
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        _wait(sock, deadline, write=True)
        try:
            n = sock.send(view)
        except (BlockingIOError, InterruptedError):
            continue
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise Closed(str(exc)) from None
        view = view[n:]


def _recv_exact(sock: socket.socket, n: int, deadline: float | None) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        _wait(sock, deadline, write=False)
        try:
            chunk = sock.recv(min(n - len(buf), 1 << 20))
        except (BlockingIOError, InterruptedError):
            continue
        except ConnectionResetError as exc:
            raise Closed(str(exc)) from None
        if not chunk:
            raise Closed("the other end closed the connection")
        buf += chunk
    return bytes(buf)


def recv_frame(sock: socket.socket, deadline: float | None = None, max_bytes: int | None = None) -> bytes:
    """Receive one frame; raise ``FrameTooLarge`` before reading a payload above ``max_bytes``."""
    (size,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size, deadline))
    if max_bytes is not None and size > max_bytes:
        raise FrameTooLarge(f"frame of {size} bytes, limit {max_bytes}")
    return _recv_exact(sock, size, deadline)
