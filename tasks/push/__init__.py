"""PUSH: placement lists -> the sites' destinations (``file://``, ``root://``, ``https://``).

In: catalog placement rows and their list files. Out: each list at its site, written aside, checked by
SHA-256 and renamed into place (:mod:`.backends`: one class per kind of destination); push status in the
catalog. ``python -m smartcache.tasks.push``.
"""

from smartcache.tasks.push.backends import Destination, PushError, open_destination
from smartcache.tasks.push.task import main, push_placement, push_sites

__all__ = [
    "Destination", "PushError", "main", "open_destination", "push_placement", "push_sites"
]
