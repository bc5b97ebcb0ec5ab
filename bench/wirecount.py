"""SQL round trips, counted on the wire: a PostgreSQL proxy that counts what clients send.

Ours and its baseline are pointed at the proxy (``url``) for a short counting run after the timed
rounds, so the figures do not pay for it. Every frontend message is parsed (PostgreSQL protocol 3):
a round trip is a message the client then waits on, i.e. a simple ``Query`` or a ``Sync`` that ends
an extended-protocol exchange (psycopg sends Parse/Bind/Describe/Execute/Sync as one). So BEGIN and
COMMIT count like any statement, as they cost the same wait, whatever the ORM reports. The proxy
refuses SSL and GSS encryption (a client with the default ``sslmode=prefer`` then talks plaintext);
it forwards everything else unchanged.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104
_CANCEL_REQUEST = 80877102


class WireCounter:
    """Listens on a free loopback port and forwards each connection to ``upstream`` (host, port)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._lock = threading.Lock()
        self.round_trips = 0
        self.statements = 0  # Query + Execute messages
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._closing = False
        self._sockets: list[socket.socket] = []
        self._accepter = threading.Thread(target=self._accept, name="wirecount-accept", daemon=True)

    def snapshot(self) -> tuple[int, int]:
        with self._lock:
            return self.round_trips, self.statements

    def url(self, database_url: str) -> str:
        """``database_url`` with its host and port replaced by the proxy's."""
        parts = urlsplit(database_url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = (userinfo + "@" if userinfo else "") + f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def start(self) -> None:
        self._accepter.start()

    def close(self) -> None:
        self._closing = True
        with contextlib.suppress(OSError):
            self._listener.close()
        for sock in list(self._sockets):
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._sockets.append(sock)
            threading.Thread(target=self._frontend, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _frontend(self, client: socket.socket, server: socket.socket) -> None:
        """Client to server: the untyped startup packets, then typed messages, counted as they pass."""
        buf = bytearray()

        def read(n: int) -> bytes:
            while len(buf) < n:
                data = client.recv(65536)
                if not data:
                    raise ConnectionError
                buf.extend(data)
            out = bytes(buf[:n])
            del buf[:n]
            return out

        try:
            while True:  # startup: SSL/GSS requests answered "no" here, then the real startup packet
                head = read(8)
                length, code = struct.unpack("!II", head)
                body = read(length - 8)
                if code in (_SSL_REQUEST, _GSSENC_REQUEST):
                    client.sendall(b"N")
                    continue
                server.sendall(head + body)
                if code == _CANCEL_REQUEST:
                    return
                break
            while True:
                head = read(5)
                kind = head[:1]
                (length,) = struct.unpack("!I", head[1:])
                server.sendall(head + read(length - 4))
                if kind in (b"Q", b"S"):
                    with self._lock:
                        self.round_trips += 1
                        self.statements += kind == b"Q"
                elif kind == b"E":
                    with self._lock:
                        self.statements += 1
        except (OSError, ConnectionError, struct.error):
            pass
        finally:
            for sock in (client, server):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def wire_counter(database_url: str) -> Iterator[WireCounter]:
    """A counting proxy in front of ``database_url``'s server, closed afterwards."""
    parts = urlsplit(database_url)
    counter = WireCounter((parts.hostname or "127.0.0.1", parts.port or 5432))
    counter.start()
    try:
        yield counter
    finally:
        counter.close()


def drive(
    host: str,
    requests: list[tuple[str, str, dict[str, str], str | None]],
    *,
    concurrency: int,
    timeout: float = 30,
) -> list[int]:
    """Send ``requests`` (method, path, headers, body) over ``concurrency`` keep-alive connections and wait
    for every answer: the statuses, in no particular order. For counting runs, where every request sent
    must be answered before the counters are read (a load generator may abandon some in flight)."""
    import http.client

    todo = list(reversed(requests))
    lock = threading.Lock()
    statuses: list[int] = []
    failures: list[BaseException] = []

    def client() -> None:
        conn = http.client.HTTPConnection(host, timeout=timeout)
        try:
            while True:
                with lock:
                    if not todo:
                        return
                    method, path, headers, body = todo.pop()
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                with lock:
                    statuses.append(resp.status)
        except Exception as exc:  # reported to the caller, which fails the benchmark
            with lock:
                failures.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout * len(requests))
    if failures:
        raise ConnectionError(f"{len(failures)} counting clients failed, e.g. {failures[0]!r}")
    return statuses
