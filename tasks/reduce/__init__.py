"""REDUCE (a DAG node per day): raw partitions -> daily Parquet aggregates per (day, site, file).

In: raw Avro or JSON-lines partitions (a path or any fsspec URL). Out: ``reduced/<prefix>/<day>.parquet``
(:data:`~smartcache.tasks.common.schema.REDUCED_SCHEMA`), catalog datasets with lineage, and quarantine
rows for damaged partitions. :mod:`.readers` (with :mod:`.avro`, :mod:`.jsonl` and the shared
:mod:`.report`) stream records robustly; :mod:`.aggregate` filters and aggregates; :mod:`.trace`
exports the same logs as a request trace CSV. ``python -m smartcache.tasks.reduce``.
"""

from smartcache.tasks.reduce.readers import list_partitions, partition_day, read_partition, read_table
from smartcache.tasks.reduce.report import ReadReport, SourceError
from smartcache.tasks.reduce.task import PartitionResult, ReduceResult, main, reduce_partitions
from smartcache.tasks.reduce.trace import export_trace

__all__ = [
    "PartitionResult", "ReadReport", "ReduceResult", "SourceError", "export_trace", "list_partitions", "main",
    "partition_day", "read_partition", "read_table", "reduce_partitions"
]
