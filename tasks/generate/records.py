"""Turn a day's tasks into JobMonitoring popularity records (one row per job x file), vectorised.

Tasks are split into jobs (a tier-dependent number of files per job); each job gets a worker node,
a protocol (Local, or Remote via AAA), a duration, CPU, events, an exit code; failed jobs are often
resubmitted and succeed later the same day. Records are sorted by the time their job finished: a
record belongs to the UTC day its job finished on.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from smartcache.tasks.common.schema import RAW_ARROW_SCHEMA
from smartcache.tasks.generate import names as nm
from smartcache.tasks.generate.workload import KIND_PRODUCTION, RegionWorkload, Tasks
from smartcache.tasks.generate.world import DatasetWorld

DAY_S = 86400.0
# (exit code, weight for local reads, weight for remote reads)
EXIT_CODES = np.array([(8001, 25, 10), (50664, 15, 10), (50660, 20, 8), (8028, 8, 25), (8021, 10, 25),
                       (8020, 4, 17), (134, 10, 3), (60307, 8, 2)], dtype=np.float64)


def _str(values) -> pa.Array:
    return pa.array(list(values), type=pa.string())


class SiteVocab:
    """Per-site strings of every region, in one global site order."""

    def __init__(self, world: DatasetWorld):
        sites = [(r, s) for r, reg in enumerate(world.params.regions) for s in reg.sites]
        self.offset = np.cumsum([0] + [len(reg.sites) for reg in world.params.regions])[:-1]
        self.name = _str(s.name for _, s in sites)
        self.ce = _str(s.ce for _, s in sites)
        self.se = _str([s.se for _, s in sites] + list(nm.REMOTE_SES))
        self.remote = np.array([s.remote_frac for _, s in sites])
        self.fail = np.array([s.fail_rate for _, s in sites])
        self.n_wn = np.array([s.n_wn for _, s in sites])
        self.wn_offset = np.cumsum([0] + [s.n_wn for _, s in sites])[:-1]
        self.wn = _str(s.wn.format(i) for _, s in sites for i in range(1, s.n_wn + 1))


class Identities:
    """UserId / GridName of all regions' users, followed by the production service accounts."""

    def __init__(self, workloads: list[RegionWorkload]):
        self.offset = np.cumsum([0] + [len(w.users.weight) for w in workloads])[:-1]
        agents = nm.PRODUCTION_AGENTS
        self.prod = int(sum(len(w.users.weight) for w in workloads))
        self.ids = np.concatenate([w.users.user_id for w in workloads] + [10_000 + np.arange(len(agents))])
        self.login = [x for w in workloads for x in w.users.login] + list(agents)
        self.dn = _str([x for w in workloads for x in w.users.dn]
                       + [f"/DC=ch/DC=cern/OU=Organic Units/OU=Users/CN={a}/CN=7{i}4321/CN=CMS Production"
                          for i, a in enumerate(agents)])


def _task_strings(rng, day: int, t: Tasks, ident_idx: np.ndarray, ident: Identities, names: list[str],
                  years: np.ndarray) -> tuple[pa.Array, pa.Array]:
    """TaskMonitorId and ApplicationVersion per task (a Python loop over tasks, not records)."""
    d = nm.to_date(day)
    minor = rng.integers(0, 3, len(t))
    patch = rng.integers(1, 30, len(t))
    tag = rng.integers(0, 10_000, len(t))
    monitor, version = [], []
    for i in range(len(t)):
        secs = int(t.t0[i])
        stamp = f"{d:%y%m%d}_{secs // 3600:02d}{secs // 60 % 60:02d}{secs % 60:02d}"
        primary, tier = names[i].split("/")[1], names[i].rsplit("/", 1)[1]
        login = ident.login[ident_idx[i]]
        if t.kind[i] == KIND_PRODUCTION:
            monitor.append(f"{login}_task_{primary[:24]}_{stamp}_{tag[i]}")
        else:
            monitor.append(f"{stamp}:{login}_crab_{primary.split('_')[0]}_{tier.lower()}_{tag[i]}")
        version.append(f"CMSSW_{nm.release_major(int(years[i]))}_{minor[i]}_{patch[i]}")
    return _str(monitor), _str(version)


def _take(arr: pa.Array, idx: np.ndarray) -> pa.Array:
    return arr.take(pa.array(idx, type=pa.int64()))


def _const(value, n: int, typ=pa.string()) -> pa.Array:
    return pa.array([value], type=typ).take(pa.array(np.zeros(n, dtype=np.int64)))


def build_records(world: DatasetWorld, workloads: list[RegionWorkload], sites: SiteVocab, ident: Identities,
                  day: int, t: Tasks) -> pa.Table:
    """All records of ``day`` for the tasks ``t`` (already drawn), as a table with RAW_ARROW_SCHEMA."""
    return build_part(world, workloads, sites, ident, day, t)[0]


def build_part(world: DatasetWorld, workloads: list[RegionWorkload], sites: SiteVocab, ident: Identities,
               day: int, t: Tasks, *, shard: int = 0, task_index: np.ndarray | None = None,
               job_base: int = 0) -> tuple[pa.Table, int]:
    """The records of one share of a day's tasks, and how many job ids it used.

    A big day is built in shares (part files) so that memory stays bounded: share ``shard`` holds
    the tasks ``t`` (``task_index``: their indices among the day's tasks, for TaskId) and numbers
    its jobs from ``job_base`` (the job ids the earlier shares used), so ids stay unique in the day.
    Share 0 of a day built whole is exactly ``build_records``.
    """
    p = world.params
    if len(t) == 0:                                   # tiny scales can have quiet days
        return RAW_ARROW_SCHEMA.empty_table(), 0
    rng = np.random.default_rng([world.seed, 301, day] + ([shard] if shard else []))
    gsite = sites.offset[t.region] + t.site
    uniq, ds_of_task = np.unique(t.uid, return_inverse=True)
    fsets = [world.files(int(u)) for u in uniq]
    located = [world.locate(int(u)) for u in uniq]
    ds_tier = np.array([b.tier[i] for b, i in located], dtype=np.int64)
    ds_names = [b.names[i] for b, i in located]
    ds_year = np.array([nm.to_date(int(b.birth[i])).year for b, i in located])
    tier = ds_tier[ds_of_task]
    prod = t.kind == KIND_PRODUCTION
    # jobs: a tier-dependent number of files each; failed jobs retried once
    fpj = np.where(prod, 1, np.array([x.files_per_job for x in p.tiers])[tier])
    nj = -(-t.n // fpj)
    job_task = np.repeat(np.arange(len(t)), nj)
    job_rank = np.arange(len(job_task)) - np.repeat(np.cumsum(nj) - nj, nj)
    job_first = job_rank * fpj[job_task]
    job_nf = np.minimum(fpj[job_task], t.n[job_task] - job_first)
    J = len(job_task)
    remote = rng.random(J) < np.where(prod[job_task], 0.5, 1.0) * sites.remote[gsite[job_task]]
    failed = rng.random(J) < sites.fail[gsite[job_task]] * np.where(remote, 2.0, 1.0)
    retry = np.flatnonzero(failed & (rng.random(J) < p.retry_frac))
    src = np.concatenate([np.arange(J), retry])                     # job -> the job whose files it reads
    remote = np.concatenate([remote, rng.random(len(retry)) < sites.remote[gsite[job_task[retry]]]])
    failed = np.concatenate([failed, np.zeros(len(retry), dtype=bool)])
    job_task, job_first, job_nf, job_rank = job_task[src], job_first[src], job_nf[src], job_rank[src]
    J = len(src)
    # records: one per (job, file)
    rec_job = np.repeat(np.arange(J), job_nf)
    job_rec0 = np.cumsum(job_nf) - job_nf
    rec_task = job_task[rec_job]
    rec_file = t.off[rec_task] + job_first[rec_job] + (np.arange(len(rec_job)) - job_rec0[rec_job])
    file_base = np.cumsum([0] + [len(f.size) for f in fsets])[:-1]
    block_base = np.cumsum([0] + [len(f.block_id) for f in fsets])[:-1]
    gfile = file_base[ds_of_task[rec_task]] + rec_file
    size = np.concatenate([f.size for f in fsets])[gfile]
    gblock = np.concatenate([f.block + b for f, b in zip(fsets, block_base)])[gfile]
    # timing, CPU and events per job
    job_bytes = np.add.reduceat(size, job_rec0).astype(np.float64)
    jtier = tier[job_task]
    sec_per_gb = np.array([x.sec_per_gb for x in p.tiers])[jtier]
    wall = job_bytes / 1e9 * sec_per_gb * rng.lognormal(0.0, 0.35, J) * np.where(remote, 1.4, 1.0) + 60.0
    wall = np.rint(np.where(failed, wall * rng.uniform(0.02, 0.9, J), wall))
    start = t.t0[job_task] + rng.exponential(1800.0, J) + rng.random(J) * np.minimum(7200.0, 30.0 * nj[job_task])
    n0 = J - len(retry)
    start[n0:] = start[retry] + wall[retry] + rng.exponential(1200.0, len(retry)) + 120.0
    end = start + wall
    over = end - (DAY_S - 1.0 - rng.uniform(0.0, 1800.0, J))
    shift = np.where(over > 0, over, 0.0)
    start, end = start - shift, end - shift
    keep_job = np.ones(J, dtype=bool)
    keep_job[n0:] = start[n0:] < DAY_S - 600.0       # a retry that would run tomorrow is tomorrow's record
    ncores = np.where(prod[job_task], np.where(jtier % 2 == 0, 8, 4), 1)
    eff = np.clip(np.where(remote, rng.normal(0.55, 0.15, J), rng.normal(0.78, 0.1, J)), 0.05, 0.99)
    wrap_cpu = np.round(wall * ncores * eff * np.where(failed, rng.uniform(0.3, 1.0, J), 1.0), 1)
    exe_cpu = np.round(wrap_cpu * rng.uniform(0.9, 0.99, J), 1)
    kb = np.array([x.kb_per_event for x in p.tiers])[tier[rec_task]]
    events = np.add.reduceat(np.maximum(1, (size / (kb * 1000.0)).astype(np.int64)), job_rec0)
    nevproc = np.where(failed, (events * rng.uniform(0.0, 0.9, J)).astype(np.int64), events)
    w = EXIT_CODES[:, 1:] / EXIT_CODES[:, 1:].sum(axis=0)
    code_i = np.where(remote, rng.choice(len(w), J, p=w[:, 1]), rng.choice(len(w), J, p=w[:, 0]))
    exit_code = np.where(failed, EXIT_CODES[code_i, 0], 0).astype(np.int32)
    node = np.floor(rng.random(J) * sites.n_wn[gsite[job_task]]).astype(np.int64)
    rse = rng.integers(0, len(nm.REMOTE_SES), J)
    # task-level identities
    ident_idx = np.where(prod, ident.prod + rng.integers(0, len(nm.PRODUCTION_AGENTS), len(t)),
                         ident.offset[t.region] + np.maximum(t.user, 0))
    task_id = day * 1_000_000 + (np.arange(len(t), dtype=np.int64) if task_index is None else task_index)
    monitor, app_version = _task_strings(rng, day, t, ident_idx, ident, [ds_names[i] for i in ds_of_task],
                                         ds_year[ds_of_task])
    job_type = np.where(prod, 1 + rng.integers(0, 3, len(t)), 0)
    null_size = rng.random(len(rec_job)) < p.null_size_frac
    parent = rng.random(len(rec_job)) < p.parent_frac
    # keep the records of jobs that finish today; order by finish time
    keep = np.flatnonzero(keep_job[rec_job])
    day_ms = day * 86_400_000
    fin = day_ms + np.floor(end * 1000.0).astype(np.int64)
    order = keep[np.argsort(fin[rec_job[keep]], kind="stable")]
    rj, rt = rec_job[order], rec_task[order]
    job_id = day * 10_000_000 + job_base + np.arange(J, dtype=np.int64)
    lfn = pa.concat_arrays([f.lfn for f in fsets])
    block_name = pa.concat_arrays([f.block_name for f in fsets])
    block_id = np.concatenate([f.block_id for f in fsets])
    kind_i = prod.astype(np.int64)[rt]
    cols = {
        "JobId": pc.cast(pa.array(job_id[rj]), pa.string()),
        "FileName": _take(lfn, gfile[order]),
        "IsParentFile": pa.array(parent[order]),
        "ProtocolUsed": _take(_str(["Local", "Remote"]), remote[rj].astype(np.int64)),
        "SuccessFlag": pa.array((~failed[rj]).astype(np.int32)),
        "FileType": _const("EDM", len(order)),
        "BlockId": pa.array(block_id[gblock[order]]),
        "BlockName": _take(block_name, gblock[order]),
        "InputCollection": _take(_str(ds_names), ds_of_task[rt]),
        "Application": _const("CMSSW", len(order)),
        "ApplicationVersion": _take(app_version, rt),
        "Type": _take(_str(["analysis", "production"]), kind_i),
        "GenericType": _take(_str(["analysis", "production"]), kind_i),
        "SubmissionTool": _take(_str(["crab3", "wmagent"]), kind_i),
        "InputSE": _take(sites.se, np.where(remote, len(sites.remote) + rse, gsite[job_task])[rj]),
        "TargetCE": _take(sites.ce, gsite[rt]),
        "SiteName": _take(sites.name, gsite[rt]),
        "SchedulerName": _take(_str(["glideinWMS", "PYCONDOR"]), kind_i),
        "JobMonitorId": _const("unknown", len(order)),
        "TaskJobId": pc.cast(pa.array(job_rank[rj] + 1), pa.string()),
        "TaskId": pa.array(task_id[rt]),
        "TaskMonitorId": _take(monitor, rt),
        "NEventsPerJob": pa.array(events[rj]),
        "JobExecExitCode": pa.array(exit_code[rj]),
        "JobExecExitTimeStamp": pa.array(fin[rj]),
        "StartedRunningTimeStamp": pa.array(day_ms + np.floor(start * 1000.0).astype(np.int64)[rj]),
        "FinishedTimeStamp": pa.array(fin[rj]),
        "WrapWC": pa.array(wall[rj]),
        "WrapCPU": pa.array(wrap_cpu[rj]),
        "ExeCPU": pa.array(exe_cpu[rj]),
        "NCores": pa.array(ncores[rj].astype(np.int32)),
        "NEvProc": pa.array(nevproc[rj]),
        "WNHostName": _take(sites.wn, (sites.wn_offset[gsite[job_task]] + node)[rj]),
        "JobType": _take(_str(["Analysis", "Processing", "Production", "Merge"]), job_type[rt]),
        "UserId": pa.array(ident.ids[ident_idx[rt]]),
        "GridName": _take(ident.dn, ident_idx[rt]),
        "FileSize": pa.array(size[order], mask=null_size[order]),
    }
    return pa.Table.from_arrays([cols[f.name].cast(f.type) for f in RAW_ARROW_SCHEMA], schema=RAW_ARROW_SCHEMA), J
