"""Small raw-log fixtures for the reader/reduce/feature tests: records and the files that hold them.

Independent of the generator on purpose: each test states exactly what it writes.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import random
from pathlib import Path

import fastavro

from smartcache.tasks.common.schema import RAW_AVRO_SCHEMA, RAW_FIELDS

SITES = ("T1_IT_CNAF", "T2_IT_Pisa", "T2_IT_Bari", "T2_US_UCSD", "T2_US_Caltech")
DATASETS = (
    ("/Muon0/Run2026C-PromptReco-v1/MINIAOD", "/store/data/Run2026C/Muon0/MINIAOD/PromptReco-v1/000/381/{:03d}/00000/"),
    ("/TTto2L2Nu/Run3Summer26MiniAODv7-160X_v3-v1/MINIAODSIM",
     "/store/mc/Run3Summer26MiniAODv7/TTto2L2Nu/MINIAODSIM/160X_v3-v1/{:05d}/"),
    ("/JetMET0/Run2026C-PromptReco-v1/NANOAOD",
     "/store/data/Run2026C/JetMET0/NANOAOD/PromptReco-v1/000/381/{:03d}/00000/"),
)


def lfn(ds: int, i: int) -> str:
    return DATASETS[ds][1].format(i % 7) + f"{ds:02d}{i:06d}-AAAA-BBBB-CCCC-DDDDEEEEFFFF.root"


def make_records(day: dt.date, n: int, seed: int = 0, files: int = 40, sites=SITES) -> list[dict]:
    """``n`` records of ``day``: mostly analysis, some production, failures, null sizes, remote reads."""
    rng = random.Random(f"{seed}-{day}")
    t0 = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp() * 1000)
    out = []
    for k in range(n):
        ds = rng.randrange(len(DATASETS))
        f = rng.randrange(files)
        start = t0 + rng.randrange(0, 20 * 3600_000)
        r = {name: None for name, _, _ in RAW_FIELDS}
        r.update(
            JobId=f"job-{seed}-{day}-{k // 3}", FileName=lfn(ds, f), IsParentFile=False,
            ProtocolUsed=rng.choice(["Local", "Local", "Remote"]), SuccessFlag=1 if rng.random() > 0.1 else 0,
            FileType="EDM", BlockId=ds * 100 + f // 10, BlockName=f"{DATASETS[ds][0]}#b{f // 10}",
            InputCollection=DATASETS[ds][0], Application="cmsRun", ApplicationVersion="CMSSW_16_0_1",
            Type="analysis" if rng.random() > 0.15 else "production", GenericType="analysis",
            SubmissionTool="crab3", InputSE="se.example", TargetCE="ce.example", SiteName=rng.choice(sites),
            SchedulerName="condor", JobMonitorId=f"m{k}", TaskJobId=f"{k}", TaskId=rng.randrange(5),
            TaskMonitorId=f"task{k % 5}", NEventsPerJob=1000, JobExecExitCode=0, JobExecExitTimeStamp=start + 7200_000,
            StartedRunningTimeStamp=start, FinishedTimeStamp=start + 7200_000, WrapWC=float(rng.randrange(100, 9000)),
            WrapCPU=float(rng.randrange(50, 8000)), ExeCPU=1.0, NCores=1, NEvProc=1000, WNHostName="wn1",
            JobType="analysis", UserId=rng.randrange(8), GridName="/CN=someone",
            FileSize=None if rng.random() < 0.03 else 1_000_000_000 + (ds * 1000 + f) * 1000,
        )
        if r["SuccessFlag"] == 0:
            r["JobExecExitCode"] = 8021
        out.append(r)
    return out


def partition_file(root: Path, day: dt.date, fmt: str = "avro", part: int = 0) -> Path:
    ext = {"avro": "avro", "json": "json.gz"}[fmt]
    p = root / f"year={day.year}" / f"month={day.month}" / f"day={day.day}" / f"part-{part:05d}.{ext}"
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def write_avro(path: Path, records: list[dict], codec: str = "deflate", sync_interval: int = 4000,
               schema: dict | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        fastavro.writer(f, fastavro.parse_schema(schema or RAW_AVRO_SCHEMA), records, codec=codec,
                        sync_interval=sync_interval)
    return path


def write_json(path: Path, records: list[dict], gz: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in records).encode()
    path.write_bytes(gzip.compress(text) if gz else text)
    return path


def write(root: Path, day: dt.date, records: list[dict], fmt: str = "avro") -> Path:
    p = partition_file(root, day, fmt)
    return write_avro(p, records) if fmt == "avro" else write_json(p, records)


def avro_blocks(path: Path) -> tuple[int, list[tuple[int, int, int]], bytes]:
    """(header length, [(block start, record count, block end incl. sync)], sync) of an Avro file."""
    from smartcache.tasks.reduce.avro import _read_header, _Stream
    with open(path, "rb") as f:
        s = _Stream(f)
        header, _, sync = _read_header(s)
        blocks = []
        while s.fill(1):
            start = s.offset
            count, size = s.varint(), s.varint()
            s.take(size)
            s.take(16)
            blocks.append((start, count, s.offset))
    return len(header), blocks, sync
