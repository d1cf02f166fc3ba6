"""FEEDBACK (the retrain workflow's export node): the accesses the inference service saw -> a trace.

In: daily Parquet partitions per site that the service writes (``<data_root>/feedback/site=S/day=D/``),
each registered as catalog dataset ``feedback/<S>/<D>`` (kind ``feedback``). Out: a trace CSV
(``timestamp,site,lfn,size``) of the last N days, registered as a ``trace`` dataset whose parents are those
feedback datasets, with its first held-out day. :mod:`.partitions` reads and writes the files (also for
``smartcache export trace --feedback``), :mod:`.window` picks the days from the catalog, :mod:`.task` is the
node. ``python -m smartcache.tasks.feedback``.
"""

from smartcache.tasks.feedback.partitions import (KIND, SCHEMA, day_of, describe, export_feedback, partition_dir,
                                                  read_days, read_feedback, write_trace)
from smartcache.tasks.feedback.task import Exported, export_window, main, trace_name
from smartcache.tasks.feedback.window import FeedbackDay, Window, choose_window, feedback_days, held_out_day

__all__ = [
    "KIND", "SCHEMA", "Exported", "FeedbackDay", "Window", "choose_window", "day_of", "describe",
    "export_feedback", "export_window", "feedback_days", "held_out_day", "main", "partition_dir", "read_days",
    "read_feedback", "trace_name", "write_trace"
]
