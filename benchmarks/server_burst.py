"""Issue 26 class 3: time to serve a burst of concurrent connections on loopback.

N client threads start at once; each connects to a :class:`~qcodes_stmtip.nanonis.server.
NanonisServer` on 127.0.0.1, sends one ``Bias.Get``, reads the whole reply and closes.
Prints the wall time until every client has its reply (or an error), how many were served,
refused for the cap, or failed, and the slowest client. ``--server-file`` loads the server
class from another copy of ``qcodes_stmtip/nanonis/server.py`` (e.g. the one before issue 26:
``git show 9a8707a:qcodes_stmtip/nanonis/server.py > /tmp/server_before.py``).

    .venv/bin/python benchmarks/server_burst.py --clients 200 --repeat 3
    .venv/bin/python benchmarks/server_burst.py --clients 200 --repeat 3 --server-file /tmp/server_before.py
"""

from __future__ import annotations

import argparse
import importlib.util
import socket
import statistics
import sys
import threading
import time

from qcodes_stmtip.nanonis.protocol import (
    COMMANDS,
    HEADER_SIZE,
    NanonisError,
    decode_response_body,
    decode_response_header,
    encode_request,
)


def _server_class(path: str | None):
    if path is None:
        from qcodes_stmtip.nanonis.server import NanonisServer

        return NanonisServer
    spec = importlib.util.spec_from_file_location("server_under_test", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.NanonisServer


def _recv(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def burst(port: int, clients: int, timeout: float) -> dict:
    request = encode_request("Bias.Get")
    outcome: dict[str, int] = {}
    latencies: list[float] = []
    guard = threading.Lock()
    go = threading.Event()

    def client() -> None:
        go.wait()
        t0 = time.perf_counter()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
                s.sendall(request)
                header = decode_response_header(_recv(s, HEADER_SIZE))
                body = _recv(s, header.body_size)
                try:
                    decode_response_body(COMMANDS["Bias.Get"], body)
                    what = "served"
                except NanonisError as exc:
                    what = "refused" if "busy" in str(exc) else "error reply"
        except (OSError, ValueError) as exc:
            what = type(exc).__name__
        with guard:
            outcome[what] = outcome.get(what, 0) + 1
            latencies.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    go.set()
    for t in threads:
        t.join()
    return {"wall_s": time.perf_counter() - t0, "outcome": outcome, "slowest_s": max(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=30.0, help="client socket timeout (s)")
    parser.add_argument("--server-file", default=None, help="server.py to load NanonisServer from")
    parser.add_argument("--backlog", type=int, default=None, help="listen backlog (default: the server's)")
    args = parser.parse_args()
    server_class = _server_class(args.server_file)
    extra = {} if args.backlog is None else {"backlog": args.backlog}
    server = server_class({"Bias.Get": lambda: {"bias": 0.5}}, **extra)
    server.start()
    try:
        walls = []
        for k in range(args.repeat):
            r = burst(server.port, args.clients, args.timeout)
            walls.append(r["wall_s"])
            print(f"run {k + 1}: {args.clients} concurrent connections in {r['wall_s']:.2f} s "
                  f"(slowest client {r['slowest_s']:.2f} s): {r['outcome']}")
        print(f"median {statistics.median(walls):.2f} s over {args.repeat} runs "
              f"(server: {args.server_file or 'qcodes_stmtip.nanonis.server'}, backlog "
              f"{getattr(server, 'backlog', 8)}, max_connections "
              f"{getattr(server, 'max_connections', 'none')})")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
