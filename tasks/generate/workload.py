"""Who reads what, and when: analysts, their multi-day campaigns, one-off reads, production tasks.

Users and campaigns derive from the seed (campaigns in weekly buckets per region); a day's tasks
derive from ``(seed, region, day)`` plus the campaigns that are running that day. Everything is a
struct of numpy arrays; nothing loops per record.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from smartcache.tasks.generate import names as nm
from smartcache.tasks.generate.world import DatasetWorld, popularity

TAG_USERS, TAG_CAMPAIGNS, TAG_DAY = 201, 202, 203
KIND_CAMPAIGN, KIND_ONEOFF, KIND_PRODUCTION = 0, 1, 2


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([int(k) & 0xFFFFFFFFFFFF for k in key])


@dataclass(frozen=True)
class Users:
    login: tuple[str, ...]
    dn: tuple[str, ...]
    user_id: np.ndarray
    weight: np.ndarray        # normalised activity (heavy-tailed)
    home: np.ndarray          # site index within the region
    habit: np.ndarray         # multiplier of the site's re-run rate (mean 1)


@dataclass(frozen=True)
class Tasks:
    """Struct of arrays, one entry per task (a CRAB task or a WMAgent task)."""

    kind: np.ndarray
    region: np.ndarray
    site: np.ndarray          # index within the region
    user: np.ndarray          # index within the region's users; -1 for production
    uid: np.ndarray           # dataset uid
    off: np.ndarray           # first file (index in the dataset)
    n: np.ndarray             # files read
    t0: np.ndarray            # submission, seconds into the day

    def __len__(self) -> int:
        return len(self.kind)

    def take(self, idx: np.ndarray) -> "Tasks":
        return Tasks(**{f.name: getattr(self, f.name)[idx] for f in fields(Tasks)})

    @staticmethod
    def concat(parts: list["Tasks"]) -> "Tasks":
        return Tasks(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]).astype(np.int64)
                        if f.name != "t0" else np.concatenate([p.t0 for p in parts]) for f in fields(Tasks)})


def make_users(seed: int, scale: float, world: DatasetWorld, r: int) -> Users:
    region = world.params.regions[r]
    rng = _rng(seed, TAG_USERS, r)
    n = max(3, int(round(region.users * scale)))
    login, dn, ids = nm.user_identity(rng, region.nationality, n, 100_000 + 400_000 * r)
    weight = rng.lognormal(0.0, 0.9, n)
    site_w = np.array([s.weight for s in region.sites])
    home = rng.choice(len(site_w), size=n, p=site_w / site_w.sum())
    habit = rng.lognormal(-0.06, 0.35, n)
    return Users(tuple(login), tuple(dn), ids, weight / weight.sum(), home, habit)


class RegionWorkload:
    """The analysis and production activity of one region."""

    def __init__(self, world: DatasetWorld, r: int):
        self.world, self.r = world, r
        self.params = world.params
        self.region = world.params.regions[r]
        self.users = make_users(world.seed, world.scale, world, r)
        w = np.array([s.weight for s in self.region.sites])
        self.site_w = w / w.sum()
        self.rerun = np.array([s.rerun for s in self.region.sites])
        self._campaigns: dict[int, dict[str, np.ndarray]] = {}

    def _dataset_weights(self, week: int, day: int, flatten: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        pool = self.world.pool(week)
        pop = popularity(pool, day, self.params.max_dataset_age_days) ** flatten
        tier_w = np.array([t.analysis for t in self.params.tiers])[pool.tier]
        w = pop * tier_w
        return pool.uid, w / w.sum()

    def campaigns(self, week: int) -> dict[str, np.ndarray]:
        """Analysis campaigns that start during ``week``: a user, a site, a slice of one dataset, a duration."""
        if week in self._campaigns:
            return self._campaigns[week]
        p, u = self.params, self.users
        rng = _rng(self.world.seed, TAG_CAMPAIGNS, self.r, week)
        n = int(rng.poisson(self.region.campaigns_per_week * self.world.scale))
        user = rng.choice(len(u.weight), size=n, p=u.weight)
        away = rng.choice(len(self.site_w), size=n, p=self.site_w)
        site = np.where(rng.random(n) < p.home_site_frac, u.home[user], away)
        start = 7 * week + rng.integers(0, 7, n)
        multi = 1 + rng.geometric(1.0 / max(1.0, p.campaign_days - 1.0), n)
        dur = np.minimum(np.where(rng.random(n) < p.oneday_frac, 1, multi), p.campaign_max_days)
        uids, w = self._dataset_weights(week, 7 * week + 3)
        pick = rng.choice(len(uids), size=n, p=w)
        pool = self.world.pool(week)
        n_ds = pool.n_files[pick]
        nsub = np.clip(np.rint(rng.lognormal(np.log(p.campaign_files_median), p.campaign_files_sigma, n)), 1, n_ds)
        off = np.floor(rng.random(n) * (n_ds - nsub + 1))
        camp = {"user": user, "site": site, "start": start, "dur": dur, "uid": uids[pick],
                "off": off.astype(np.int64), "nsub": nsub.astype(np.int64), "rerun": self.rerun[site] * u.habit[user]}
        self._campaigns[week] = camp
        for old in [w for w in self._campaigns if w < week - p.campaign_max_days // 7 - 4]:
            del self._campaigns[old]
        return camp

    def running(self, day: int) -> dict[str, np.ndarray]:
        first = (day - self.params.campaign_max_days) // 7 - 1
        parts = [self.campaigns(w) for w in range(first, day // 7 + 1)]
        c = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        on = (c["start"] <= day) & (day < c["start"] + c["dur"])
        return {k: v[on] for k, v in c.items()}

    def day_tasks(self, day: int) -> Tasks:
        rng = _rng(self.world.seed, TAG_DAY, self.r, day)
        parts = [self._campaign_tasks(rng, day), self._oneoff_tasks(rng, day), self._production_tasks(rng, day)]
        return Tasks.concat([t for t in parts if t is not None])

    def _submit_times(self, rng: np.random.Generator, n: int) -> np.ndarray:
        hours = rng.normal(self.region.peak_hour_utc, 4.5, n) % 24.0
        return hours * 3600.0

    def _campaign_tasks(self, rng: np.random.Generator, day: int) -> Tasks:
        """Each running campaign submits 0..k tasks today: the full slice, then re-runs (full or partial)."""
        p, c = self.params, self.running(day)
        n = len(c["start"])
        weekend = nm.to_date(day).weekday() >= 5
        active = (c["start"] == day) | (rng.random(n) < (p.active_weekend if weekend else p.active_weekday))
        ntask = np.where(active, 1 + rng.poisson(c["rerun"]), 0)
        ci = np.repeat(np.arange(n), ntask)
        rank = np.arange(len(ci)) - np.repeat(np.cumsum(ntask) - ntask, ntask)
        full = (rank == 0) | (rng.random(len(ci)) < p.rerun_full_frac)
        nsub = c["nsub"][ci]
        part = np.maximum(1, np.rint(rng.uniform(0.1, 0.6, len(ci)) * nsub)).astype(np.int64)
        nt = np.where(full, nsub, part)
        off = c["off"][ci] + np.floor(rng.random(len(ci)) * (nsub - nt + 1)).astype(np.int64)
        return Tasks(kind=np.full(len(ci), KIND_CAMPAIGN), region=np.full(len(ci), self.r), site=c["site"][ci],
                     user=c["user"][ci], uid=c["uid"][ci], off=off, n=nt, t0=self._submit_times(rng, len(ci)))

    def _oneoff_tasks(self, rng: np.random.Generator, day: int) -> Tasks:
        """A user peeks at a few files of some (often unpopular) dataset, once."""
        p, u = self.params, self.users
        n = int(rng.poisson(self.region.oneoff_per_day * self.world.scale))
        uids, w = self._dataset_weights(day // 7, day, flatten=0.3)
        pick = rng.choice(len(uids), size=n, p=w)
        n_ds = self.world.pool(day // 7).n_files[pick]
        nt = np.minimum(rng.integers(1, p.oneoff_files_max + 1, n), n_ds)
        off = np.floor(rng.random(n) * (n_ds - nt + 1)).astype(np.int64)
        user = rng.choice(len(u.weight), size=n, p=u.weight)
        return Tasks(kind=np.full(n, KIND_ONEOFF), region=np.full(n, self.r), site=u.home[user], user=user,
                     uid=uids[pick], off=off, n=nt, t0=self._submit_times(rng, n))

    def _production_tasks(self, rng: np.random.Generator, day: int) -> Tasks | None:
        """WMAgent reprocessing/merging of recent RAW, GEN-SIM, AOD(SIM) datasets at the big sites."""
        p = self.params
        site_w = np.array([s.production for s in self.region.sites])
        n = int(rng.poisson(self.region.production_per_day * self.world.scale))
        if site_w.sum() <= 0 or n == 0:
            return None
        pool = self.world.pool(day // 7)
        age = day - pool.birth
        w = np.array([t.production for t in p.tiers])[pool.tier] * np.where((age >= 0) & (age <= 60), 1.0, 0.0)
        if w.sum() <= 0:
            return None
        pick = rng.choice(len(pool), size=n, p=w / w.sum())
        n_ds = pool.n_files[pick]
        nt = np.clip(np.rint(rng.lognormal(np.log(p.production_files_median), 0.8, n)), 1, n_ds).astype(np.int64)
        off = np.floor(rng.random(n) * (n_ds - nt + 1)).astype(np.int64)
        site = rng.choice(len(site_w), size=n, p=site_w / site_w.sum())
        return Tasks(kind=np.full(n, KIND_PRODUCTION), region=np.full(n, self.r), site=site, user=np.full(n, -1),
                     uid=pool.uid[pick], off=off, n=nt, t0=rng.uniform(0, 86400.0, n))
