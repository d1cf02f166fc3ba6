"""A small HTTP/1.1 load generator (keep-alive, raw sockets), run as its own process.

``python benchmarks/loadgen.py --host 127.0.0.1 --port P --path /json --body FILE
--concurrency C --requests N [--max-seconds S] [--method POST]`` prints one JSON line:
latency percentiles (ms), throughput (req/s), status counts, errors.

Each of C threads holds one persistent connection and sends its share of N requests one
after another; the run stops early after ``--max-seconds``. Raw sockets keep the client's
own cost per request small (it shares the machine's cores with the server under test).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from collections import Counter


def build_request(method: str, host: str, port: int, path: str, body: bytes) -> bytes:
    head = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: keep-alive"]
    if body or method == "POST":
        head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Conn:
    def __init__(self, host: str, port: int):
        self.addr = (host, port)
        self.sock: socket.socket | None = None
        self.buf = b""

    def _connect(self) -> None:
        self.sock = socket.create_connection(self.addr, timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.sock is None:
            self._connect()
        self.sock.sendall(raw)
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length, close = 0, False
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            k = k.strip().lower()
            if k == b"content-length":
                length = int(v)
            elif k == b"connection" and v.strip().lower() == b"close":
                close = True
        while len(rest) < length:
            rest += self._recv()
        body, self.buf = rest[:length], rest[length:]
        if close:
            self.close()
        return status, body

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        return data

    def _fill(self) -> None:
        self.buf += self._recv()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = None


def run(host: str, port: int, raw: bytes | list[bytes], concurrency: int, requests: int, max_seconds: float) -> dict:
    """``raw``: one request, or a list of them each connection cycles through (from its own offset)."""
    raws = raw if isinstance(raw, list) else [raw]
    lat: list[list[float]] = [[] for _ in range(concurrency)]
    statuses: list[Counter] = [Counter() for _ in range(concurrency)]
    errors: list[int] = [0] * concurrency
    deadline = time.perf_counter() + max_seconds
    per = [requests // concurrency + (1 if i < requests % concurrency else 0) for i in range(concurrency)]
    start_gate = threading.Barrier(concurrency + 1)

    def worker(i: int) -> None:
        conn = Conn(host, port)
        try:
            conn._connect()
        except OSError:
            errors[i] += per[i]
            start_gate.wait()
            return
        start_gate.wait()
        k = i * len(raws) // max(concurrency, 1)
        for _ in range(per[i]):
            if time.perf_counter() > deadline:
                break
            t0 = time.perf_counter()
            k = (k + 1) % len(raws)
            try:
                status, _ = conn.request(raws[k])
            except (OSError, ValueError, IndexError):
                errors[i] += 1
                conn.close()
                continue
            lat[i].append(time.perf_counter() - t0)
            statuses[i][status] += 1
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    start_gate.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    all_lat = sorted(x for part in lat for x in part)
    status_total = sum((c for c in statuses), Counter())
    return {
        "requests": len(all_lat), "errors": sum(errors), "seconds": round(elapsed, 3),
        "rps": round(len(all_lat) / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": _pct(all_lat, 50), "p90_ms": _pct(all_lat, 90), "p99_ms": _pct(all_lat, 99),
        "max_ms": round(all_lat[-1] * 1e3, 3) if all_lat else None,
        "status": {str(k): v for k, v in sorted(status_total.items())},
    }


def _pct(sorted_lat: list[float], p: float) -> float | None:
    if not sorted_lat:
        return None
    k = min(len(sorted_lat) - 1, max(0, round(p / 100 * len(sorted_lat)) - 1))
    return round(sorted_lat[k] * 1e3, 3)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/json")
    ap.add_argument("--method", default="POST")
    ap.add_argument("--body", help="file with the request body")
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--max-seconds", type=float, default=30.0)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--paths", help="file of request paths, one a line, cycled (instead of --path)")
    args = ap.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        ap.error("load is only ever sent to this machine (127.0.0.1)")
    body = open(args.body, "rb").read() if args.body else b""
    paths = [x for x in open(args.paths).read().splitlines() if x] if args.paths else [args.path]
    raws = [build_request(args.method, args.host, args.port, path, body) for path in paths]
    raw = raws if len(raws) > 1 else raws[0]
    if args.warmup:
        run(args.host, args.port, raws[0], 1, args.warmup, args.max_seconds)
    import resource
    before = resource.getrusage(resource.RUSAGE_SELF)
    result = run(args.host, args.port, raw, args.concurrency, args.requests, args.max_seconds)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result["client_cpu_us_per_request"] = round(cpu / max(result["requests"], 1) * 1e6, 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
