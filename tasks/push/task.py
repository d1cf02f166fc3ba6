"""Push placement lists to the sites: atomic, checksummed, retried, idempotent, recorded.

The protocol, the same for every kind of destination (:mod:`smartcache.tasks.push.backends`):

1. Read the list now at the destination. If its sha256 equals ours, nothing is sent (idempotent: the
   same list pushed twice changes nothing, neither at the site nor in the catalog).
2. Upload to ``<name>.tmp-<token>`` beside the target, read it back and compare sha256.
3. Rename it onto the target (atomic on the server), then publish ``<name>.sha256`` (``sha256sum``
   format) the same way, so a site agent can check what it reads.
4. Any failure removes the temporary upload; the target is only ever replaced by a verified list, so
   a failed push leaves the previous list intact. Retryable faults (network, 5xx, timeouts) are
   retried with exponential backoff.

The catalog records the outcome on the placement row (``store.set_push_status``): ``pushed`` with the
destination, or ``failed`` with the reason; ``smartcache push SITE`` retries the latest list.

    python -m smartcache.tasks.push --catalog-url URL [--run-id N] [--site S ...] [--dest URI]
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import unquote, urlsplit

from smartcache.catalog import Placement, Store, open_store
from smartcache.catalog.errors import Invalid, NotFound, SmartcacheError
from smartcache.tasks.push.backends import Destination, PushError, open_destination, split_target

log = logging.getLogger("smartcache.push")

ATTEMPTS = 4
BASE_DELAY_S = 0.5
MAX_DELAY_S = 8.0


@dataclass(frozen=True)
class PushResult:
    site: str
    placement_id: int | None
    destination: str            # full URI of the list at the site
    sha256: str
    n_bytes: int
    changed: bool               # False: the destination already held this exact list
    attempts: int
    ok: bool = True
    error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def with_retries(fn: Callable[[], object], *, attempts: int = ATTEMPTS, base_delay: float = BASE_DELAY_S,
                 max_delay: float = MAX_DELAY_S, sleep: Callable[[float], None] = time.sleep):
    """Call ``fn``; on a retryable :class:`PushError` wait base·2^i (capped) and try again.

    Returns ``(value, attempts used)``; the last error is raised when every attempt failed.
    """
    for i in range(attempts):
        try:
            return fn(), i + 1
        except PushError as e:
            if not e.retryable or i == attempts - 1:
                e.attempts = i + 1  # type: ignore[attr-defined]
                raise
            delay = min(max_delay, base_delay * 2 ** i)
            log.warning("push attempt %d/%d failed (%s); retrying in %.1fs", i + 1, attempts, e, delay)
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _replace(dest: Destination, target: str, data: bytes, digest: str) -> None:
    """Upload aside, verify, rename over ``target``; the temporary file never survives a failure."""
    tmp = f"{target}.tmp-{uuid.uuid4().hex[:12]}"
    try:
        dest.write(tmp, data)
        back = dest.read(tmp)
        if back is None or sha256_hex(back) != digest:
            raise PushError(f"checksum mismatch after upload to {dest.url} {tmp}: "
                            f"sent {len(data)} bytes, read back {0 if back is None else len(back)}")
        dest.move(tmp, target)
    except BaseException:
        dest.remove(tmp)
        raise


def push_bytes(dest: Destination, name: str, data: bytes) -> bool:
    """One push attempt of ``data`` as ``name`` under ``dest``; returns whether the target changed."""
    digest = sha256_hex(data)
    sidecar = f"{name}.sha256"
    side_text = f"{digest}  {name}\n".encode()
    current = dest.read(name)
    changed = current is None or sha256_hex(current) != digest
    if changed:
        _replace(dest, name, data, digest)
    if dest.read(sidecar) != side_text:
        _replace(dest, sidecar, side_text, sha256_hex(side_text))
    final = dest.read(name)
    if final is None or sha256_hex(final) != digest:  # another writer raced us: let the retry settle it
        raise PushError(f"{dest.url} {name} does not hold the pushed list after the rename")
    return changed


def push_file(local: Path, push_uri: str, site: str, *, attempts: int = ATTEMPTS,
              base_delay: float = BASE_DELAY_S, expect_sha256: str | None = None) -> PushResult:
    """Push one local list file to ``push_uri`` (a folder, or the list's own path); raises on failure."""
    try:
        data = local.read_bytes()
    except OSError as e:
        raise PushError(f"cannot read placement list {local}: {e}", retryable=False) from e
    digest = sha256_hex(data)
    if expect_sha256 and digest != expect_sha256:
        raise PushError(f"placement list {local} does not match its catalog checksum "
                        f"({digest[:12]}… != {expect_sha256[:12]}…): refusing to push it", retryable=False)
    root, name = split_target(push_uri, site)
    dest = open_destination(root)
    changed, used = with_retries(lambda: push_bytes(dest, name, data), attempts=attempts, base_delay=base_delay)
    return PushResult(site, None, f"{root.rstrip('/')}/{name}", digest, len(data), bool(changed), used)


def local_path(uri: str) -> Path:
    """A placement's list location (a path or a file:// URI) as a local path."""
    parts = urlsplit(uri)
    if parts.scheme in ("", "file"):
        return Path(unquote(parts.path) if parts.scheme else uri)
    raise Invalid(f"placement list {uri!r} is not a local file")


def push_placement(store: Store, placement: Placement, *, dest_uri: str | None = None,
                   attempts: int = ATTEMPTS, base_delay: float = BASE_DELAY_S) -> PushResult:
    """Push one catalog placement to its site's destination and record the outcome on its row.

    Never raises for a failed transfer: the result says ``ok=False`` and the row is ``failed``.
    """
    site = store.get_site(placement.site)
    uri = dest_uri or site.push_uri
    if not uri:
        msg = f"site {site.name} has no push destination (smartcache sites set {site.name} --push URI)"
        store.set_push_status(placement.id, "failed", msg)
        return PushResult(site.name, placement.id, "", placement.checksum or "", 0, False, 0, False, msg)
    try:
        result = push_file(local_path(placement.uri), uri, site.name, attempts=attempts, base_delay=base_delay,
                           expect_sha256=placement.checksum)
    except (PushError, Invalid) as e:
        msg = str(e)
        store.set_push_status(placement.id, "failed", msg[:1000])
        return PushResult(site.name, placement.id, uri, placement.checksum or "", 0, False,
                          getattr(e, "attempts", 1), False, msg)
    result = PushResult(**{**result.to_dict(), "placement_id": placement.id})
    # Idempotent: an already recorded push of this very list at this destination is left as it is.
    already = (placement.push_status == "pushed" and not result.changed
               and (placement.push_message or "").startswith(result.destination + " "))
    if not already:
        store.set_push_status(placement.id, "pushed", f"{result.destination} sha256={result.sha256}")
    return result


def push_sites(store: Store, sites: Iterable[str] | None = None, *, run_id: int | None = None,
               dest_uri: str | None = None, attempts: int = ATTEMPTS,
               base_delay: float = BASE_DELAY_S) -> list[PushResult]:
    """Push the latest placement of each site (all sites with one when ``sites`` is empty).

    With ``run_id``, only placements made by that run are pushed (a DAG's push node).
    """
    names = list(sites or [s.name for s in store.list_sites()])
    results = []
    for name in names:
        found = [p for p in store.list_placements(name) if run_id is None or p.run_id == run_id]
        if not found:
            if sites:  # asked for by name: say so
                raise NotFound(f"no placement list for site {name}" + (f" in run {run_id}" if run_id else ""))
            continue
        results.append(push_placement(store, found[0], dest_uri=dest_uri, attempts=attempts,
                                      base_delay=base_delay))
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m smartcache.tasks.push", description=__doc__.split("\n")[0])
    ap.add_argument("--catalog-url", required=True)
    ap.add_argument("--run-id", type=int, help="push only placements made by this run")
    ap.add_argument("--site", action="append", default=[], help="site to push (repeatable; default: all)")
    ap.add_argument("--dest", help="override the sites' push destination (one site only)")
    ap.add_argument("--attempts", type=int, default=ATTEMPTS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.dest and len(args.site) != 1:
        print("error: --dest needs exactly one --site", file=sys.stderr)
        return 2
    try:
        store = open_store(args.catalog_url)
        try:
            results = push_sites(store, args.site, run_id=args.run_id, dest_uri=args.dest, attempts=args.attempts)
        finally:
            store.close()
    except SmartcacheError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for r in results:
        state = ("unchanged" if not r.changed else "pushed") if r.ok else "FAILED"
        print(f"{r.site}: {state} {r.destination} ({r.n_bytes} bytes, {r.attempts} attempt(s))"
              + (f": {r.error}" if r.error else ""))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
