"""A trivial task for DAG tests, pool smoke tests and executor benchmarks.

``python -m smartcache.tasks.noop --out DIR --name NAME [INPUT ...]`` writes ``DIR/NAME.txt``: its
name followed by the contents of its inputs (so a fan-in's output proves its parents ran first
and is identical however the DAG was run). Failure on demand: ``--fail-times N --counter FILE``
fails the first N runs (FILE counts every run, so DAG retries see it succeed later); ``--fail-while
PATH`` fails while PATH exists (a cause that must be fixed before a resume can succeed). ``--wait-for PATH``
blocks until PATH exists: a test's "go", so that it knows the node is still running when it acts.
With ``--catalog-url`` and ``--run-id`` it also registers its output as dataset ``noop/NAME``.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path


def produce(out: Path, name: str, inputs: list[Path]) -> Path:
    """Write ``out/name.txt`` atomically; return its path."""
    out.mkdir(parents=True, exist_ok=True)
    body = name + "\n" + "".join(Path(p).read_text() for p in inputs)
    path = out / f"{name}.txt"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(body)
    tmp.replace(path)
    return path


def _should_fail(fail_times: int, counter: Path | None, fail_while: Path | None) -> str | None:
    """Count this attempt in ``counter``; say why it must fail, if it must."""
    n = 0
    if counter is not None:
        n = int(counter.read_text() or 0) if counter.exists() else 0
        counter.write_text(str(n + 1))
    if fail_while is not None and fail_while.exists():
        return f"failing while {fail_while} exists"
    if n < fail_times:
        return f"failing on purpose (attempt {n + 1}, fails {fail_times} times)"
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m smartcache.tasks.noop", description="a trivial DAG node")
    p.add_argument("inputs", nargs="*", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--fail-times", type=int, default=0)
    p.add_argument("--counter", type=Path)
    p.add_argument("--fail-while", type=Path)
    p.add_argument("--wait-for", type=Path, help="block until this path exists")
    p.add_argument("--trace", type=Path, help="append 'NAME START END' (epoch seconds) to this file")
    p.add_argument("--catalog-url")
    p.add_argument("--run-id", type=int)
    a = p.parse_args(argv)
    if a.fail_times and a.counter is None:
        p.error("--fail-times needs --counter")
    a.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    while a.wait_for is not None and not a.wait_for.exists():
        time.sleep(0.02)
    if a.sleep:
        time.sleep(a.sleep)
    if a.trace is not None:
        with open(a.trace, "a") as f:   # one short append: atomic enough between processes
            f.write(f"{a.name} {start:.6f} {time.time():.6f}\n")
    reason = _should_fail(a.fail_times, a.counter, a.fail_while)
    if reason:
        print(reason, file=sys.stderr)
        return 1
    path = produce(a.out, a.name, a.inputs)
    if a.catalog_url:
        from smartcache.catalog import open_store   # only when asked: keeps the plain task light
        store = open_store(a.catalog_url)
        try:
            data = path.read_bytes()
            store.register_dataset(f"noop/{a.name}", "noop", str(path.absolute()), format="txt",
                                   checksum=hashlib.sha256(data).hexdigest(), n_bytes=len(data), run_id=a.run_id)
        finally:
            store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
