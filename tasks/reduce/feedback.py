"""Moved to :mod:`smartcache.tasks.feedback.partitions`; this name stays for the service's writer
(``inference/feedback.py``) until it imports from there."""

from smartcache.tasks.feedback.partitions import (KIND, SCHEMA, day_of, describe, export_feedback,  # noqa: F401
                                                  partition_dir, read_feedback)
