"""A TCP proxy on loopback whose connections a test can cut: every open connection
reset, new ones refused, until restored."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading


class TcpProxy:
    """cut_after: once one response has sent its client this many bytes (a large download
    cut in the middle; a response is what comes back after the client last sent something),
    that response ends there and every other connection is reset. It ends by FIN, not reset:
    a reset makes the client's kernel drop what it holds unread, and on a busy machine that
    can be the whole of it, so the client would keep nothing of a cut it was sent.
    `sent` counts all bytes sent to clients and `requests` keeps the start of what each
    connection sent upstream (HTTP request lines and headers, for a test to read)."""

    def __init__(self, target_port: int, host: str = "127.0.0.1", cut_after: int | None = None) -> None:
        self.target = (host, target_port)
        self.cut_after = cut_after
        self.sent = 0
        self.requests: list[bytes] = []
        self.listener = socket.create_server((host, 0))
        self.port = int(self.listener.getsockname()[1])
        self.cut_off = threading.Event()
        self.closed = threading.Event()
        self.conns: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self, keep: socket.socket | None = None) -> None:
        self.cut_off.set()
        with self.lock:
            conns = {s for s in self.conns if s is not keep}
            self.conns -= conns
        for s in conns:
            _reset(s)

    def restore(self) -> None:
        self.cut_off.clear()

    def close(self) -> None:
        self.closed.set()
        self.cut()
        _reset(self.listener)  # shutdown wakes the blocked accept(); close alone keeps the port taken

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut_off.is_set():
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            with self.lock:
                self.conns |= {client, upstream}
                self.accepted += 1
            response = [0]  # bytes sent back since the client's last request, shared by the pair
            for a, b, down in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(target=self._pump, args=(a, b, down, response), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, down: bool, response: list[int]) -> None:
        ended = None  # a client whose response was ended by FIN: closed by its own pump, on its hang-up
        try:
            while data := src.recv(65536 if self.cut_after is None else 4096):
                if not down:
                    with self.lock:
                        self.requests.append(data[:2048])
                        response[0] = 0
                dst.sendall(data)
                if down:
                    response[0] += len(data)
                    if self._count(len(data), response[0]):
                        ended = dst
                        with contextlib.suppress(OSError):
                            dst.shutdown(socket.SHUT_WR)
                        self.cut(keep=dst)
                        self.restore()
                        return
        except OSError:
            pass
        finally:
            for s in (src, dst):
                if s is not ended:
                    with self.lock:
                        self.conns.discard(s)
                    _reset(s)

    def _count(self, n: int, response: int) -> bool:
        """Counts bytes sent; True for the one response to end here."""
        with self.lock:
            self.sent += n
            due = self.cut_after is not None and response >= self.cut_after
            if due:
                self.cut_after = None  # once
        return due


def _reset(s: socket.socket) -> None:
    # shutdown first: a close() alone does not wake a thread blocked in recv() on the
    # socket, and the kernel then sends nothing: the peer would hang until its timeout.
    with contextlib.suppress(OSError):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        s.close()
