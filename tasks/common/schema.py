"""The raw CMS access record (JobMonitoring "data popularity") and the reduced-table contracts.

Shared by the generator (which writes raw records), the readers and the reduce task (which read
them), and the features task (which reads the reduced tables). Field names are CMS's own
(ARCHITECTURE.md §2); ``FileSize`` is carried from DBS. Timestamps are epoch milliseconds.
"""

from __future__ import annotations

import pyarrow as pa

# (name, avro type, arrow type) -- order is the Avro field order.
RAW_FIELDS: list[tuple[str, object, pa.DataType]] = [
    ("JobId", "string", pa.string()),
    ("FileName", "string", pa.string()),
    ("IsParentFile", "boolean", pa.bool_()),
    ("ProtocolUsed", "string", pa.string()),          # Local | Remote
    ("SuccessFlag", "int", pa.int32()),               # 1 = success
    ("FileType", "string", pa.string()),              # EDM | ...
    ("BlockId", "long", pa.int64()),
    ("BlockName", "string", pa.string()),
    ("InputCollection", "string", pa.string()),       # the dataset /Primary/Processed/TIER
    ("Application", "string", pa.string()),
    ("ApplicationVersion", "string", pa.string()),
    ("Type", "string", pa.string()),                  # analysis | production | test ...
    ("GenericType", "string", pa.string()),
    ("SubmissionTool", "string", pa.string()),        # crab3 | wmagent | ...
    ("InputSE", "string", pa.string()),
    ("TargetCE", "string", pa.string()),
    ("SiteName", "string", pa.string()),
    ("SchedulerName", "string", pa.string()),
    ("JobMonitorId", "string", pa.string()),
    ("TaskJobId", "string", pa.string()),
    ("TaskId", "long", pa.int64()),
    ("TaskMonitorId", "string", pa.string()),
    ("NEventsPerJob", "long", pa.int64()),
    ("JobExecExitCode", "int", pa.int32()),
    ("JobExecExitTimeStamp", "long", pa.int64()),
    ("StartedRunningTimeStamp", "long", pa.int64()),
    ("FinishedTimeStamp", "long", pa.int64()),
    ("WrapWC", "double", pa.float64()),
    ("WrapCPU", "double", pa.float64()),
    ("ExeCPU", "double", pa.float64()),
    ("NCores", "int", pa.int32()),
    ("NEvProc", "long", pa.int64()),
    ("WNHostName", "string", pa.string()),
    ("JobType", "string", pa.string()),
    ("UserId", "long", pa.int64()),
    ("GridName", "string", pa.string()),
    ("FileSize", "long", pa.int64()),                 # bytes; null when DBS did not know it
]

RAW_ARROW_SCHEMA = pa.schema([pa.field(n, t, nullable=True) for n, _, t in RAW_FIELDS])

# Avro schema: every field nullable, as CMS's popularity records are.
RAW_AVRO_SCHEMA: dict = {
    "type": "record",
    "name": "PopularityRecord",
    "namespace": "cms.jobmonitoring",
    "fields": [{"name": n, "type": ["null", t], "default": None} for n, t, _ in RAW_FIELDS],
}

# Reduced partition: one row per (day, site, file).
REDUCED_SCHEMA = pa.schema([
    ("day", pa.date32()),
    ("site", pa.string()),
    ("lfn", pa.string()),
    ("dataset", pa.string()),
    ("tier", pa.string()),
    ("size", pa.int64()),
    ("n_access", pa.int64()),
    ("n_jobs", pa.int64()),
    ("n_users", pa.int64()),
    ("n_tasks", pa.int64()),
    ("cpu_s", pa.float64()),
    ("wall_s", pa.float64()),
    ("first_ts", pa.int64()),          # epoch ms of the first access that day
    ("last_ts", pa.int64()),
    ("local_frac", pa.float64()),      # fraction of accesses with ProtocolUsed == Local
])

PARTITION_GLOB = "year=*/month=*/day=*/part-*"


def partition_path(year: int, month: int, day: int, fmt: str = "avro", part: int = 0) -> str:
    """Relative path of one daily partition, as CMS lays them out on HDFS."""
    ext = {"avro": "avro", "json": "json.gz"}[fmt]
    return f"year={year}/month={month}/day={day}/part-{part:05d}.{ext}"
