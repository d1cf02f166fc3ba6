"""gunicorn's gthread worker, with the errors gunicorn answers itself in the service's JSON shape.

gunicorn answers a request it cannot parse (over-long request line 414, header fields 431,
bad request line 400, ...) before the application sees it, with an HTML page. The service
promises ``{"error": "..."}`` for every error; so :class:`JSONThreadWorker` writes those in
JSON. gunicorn's handler calls ``gunicorn.util.write_error``; the worker replaces it in its
own process (the serve command's workers only) with :func:`write_json_error`.

It also formats each response's ``Date`` header once a second (:func:`http_date`), not once a response:
``email.utils.formatdate`` cost ~5 us of a /decide's few hundred.
"""

from __future__ import annotations

import json
import time

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    body = json.dumps({"error": f"{reason}: {mesg}" if mesg else reason}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    util.write_nonblock(sock, head + body)


_plain_http_date = util.http_date
_date: tuple[int, str] = (-1, "")


def http_date(timestamp: float | None = None) -> str:
    """gunicorn's ``util.http_date``, the same string, remembered for the current second."""
    global _date
    t = time.time() if timestamp is None else timestamp
    sec = int(t)
    if t - sec > 0.999999:     # within datetime's microsecond rounding of the next second: no shortcut
        return _plain_http_date(t)
    last = _date
    if last[0] != sec:
        last = _date = (sec, _plain_http_date(t))
    return last[1]


class JSONThreadWorker(ThreadWorker):
    def init_process(self) -> None:
        util.write_error = write_json_error
        util.http_date = http_date
        super().init_process()
