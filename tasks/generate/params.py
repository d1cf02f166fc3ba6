"""Knobs of the raw access-log generator: sites, regions, tiers and the workload parameters.

Everything here is a frozen dataclass so that one :class:`GeneratorParams` value fully describes a
synthetic CMS world (together with the seed and the scale). See :mod:`smartcache.tasks.generate.task` for
what each knob does to the generated records.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from smartcache.catalog.errors import SmartcacheError


class GeneratorError(SmartcacheError):
    """Invalid generator input (dates, counts, format)."""


@dataclass(frozen=True)
class SiteSpec:
    """One computing site and its habits."""

    name: str                 # T<tier>_<CC>_<Name>
    weight: float             # share of the region's analysis users / work
    remote_frac: float        # fraction of jobs that read through AAA (ProtocolUsed = Remote)
    fail_rate: float          # probability that a job fails (x2 for remote reads)
    rerun: float              # mean extra same-day re-runs of an analysis campaign (the reuse knob)
    ce: str                   # TargetCE
    se: str                   # InputSE of local reads
    wn: str                   # worker-node host pattern, ``{}`` = node number
    n_wn: int                 # number of worker nodes
    production: float = 0.0   # share of the region's production (wmagent) work


@dataclass(frozen=True)
class RegionSpec:
    """A cache region: the sites one XCache would serve and its population of analysts."""

    name: str
    sites: tuple[SiteSpec, ...]
    users: int                    # analysts (x scale)
    campaigns_per_week: float     # new analysis campaigns per week (x scale)
    oneoff_per_day: float         # one-off tasks per day, a few files each (x scale)
    production_per_day: float     # wmagent tasks per day (x scale)
    peak_hour_utc: float          # centre of the submission day
    nationality: str              # name pool for GridName


@dataclass(frozen=True)
class TierSpec:
    """A CMS data tier: file sizes, how analysis and production use it."""

    name: str
    mc: bool                  # *SIM tiers live under /store/mc
    size_gb: float            # median file size (GB = 1e9 bytes)
    birth: float              # weight among newly created datasets
    analysis: float           # preference of analysis campaigns for this tier
    production: float         # preference of production tasks for this tier
    files_per_job: int        # files an analysis job reads
    sec_per_gb: float         # wall seconds to process one GB
    kb_per_event: float       # event size, gives NEvProc


def _it_sites() -> tuple[SiteSpec, ...]:
    return (
        SiteSpec("T1_IT_CNAF", 0.30, 0.04, 0.05, 0.56, "ce04-htc.cr.cnaf.infn.it", "storm-fe-cms.cr.cnaf.infn.it",
                 "wn-{}.cr.cnaf.infn.it", 900, production=0.7),
        SiteSpec("T2_IT_Pisa", 0.22, 0.10, 0.07, 0.72, "ce01-htc.pi.infn.it", "stormfe1.pi.infn.it",
                 "wn{}.pi.infn.it", 260, production=0.1),
        SiteSpec("T2_IT_Legnaro", 0.20, 0.08, 0.06, 0.68, "t2-cce-02.lnl.infn.it", "t2-xrdcms.lnl.infn.it",
                 "t2-wn-{}.lnl.infn.it", 240, production=0.1),
        SiteSpec("T2_IT_Bari", 0.16, 0.14, 0.09, 0.48, "ce-02.recas.ba.infn.it", "storm-se-01.ba.infn.it",
                 "wn-{}.recas.ba.infn.it", 200, production=0.1),
        SiteSpec("T2_IT_Rome", 0.12, 0.20, 0.10, 0.44, "cmsrm-cream02.roma1.infn.it", "cmsrm-xrootd01.roma1.infn.it",
                 "cmsrm-wn{}.roma1.infn.it", 120),
    )


def _us_sites() -> tuple[SiteSpec, ...]:
    return (
        SiteSpec("T1_US_FNAL", 0.26, 0.03, 0.04, 1.08, "cmsosgce.fnal.gov", "cmsdcadisk.fnal.gov",
                 "cmswn{}.fnal.gov", 2400, production=0.6),
        SiteSpec("T2_US_Caltech", 0.08, 0.14, 0.08, 0.87, "cit-gatekeeper.ultralight.org", "transfer-1.ultralight.org",
                 "compute-{}.ultralight.org", 300),
        SiteSpec("T2_US_UCSD", 0.11, 0.10, 0.07, 1.01, "osg-gw-1.t2.ucsd.edu", "redirector.t2.ucsd.edu",
                 "cabinet-{}.t2.ucsd.edu", 420),
        SiteSpec("T2_US_Wisconsin", 0.12, 0.05, 0.05, 1.16, "cmsgrid01.hep.wisc.edu", "cmsxrootd.hep.wisc.edu",
                 "e{}.chtc.wisc.edu", 500, production=0.1),
        SiteSpec("T2_US_Nebraska", 0.12, 0.06, 0.05, 1.23, "red-gw1.unl.edu", "xrootd-local.unl.edu",
                 "red-c{}.unl.edu", 480, production=0.1),
        SiteSpec("T2_US_Purdue", 0.10, 0.08, 0.07, 1.01, "hammer-osg.rcac.purdue.edu", "eos.cms.rcac.purdue.edu",
                 "hammer-a{}.rcac.purdue.edu", 380, production=0.1),
        SiteSpec("T2_US_MIT", 0.07, 0.12, 0.08, 0.87, "ce03.cmsaf.mit.edu", "se01.cmsaf.mit.edu",
                 "t3btch{}.mit.edu", 260, production=0.1),
        SiteSpec("T2_US_Florida", 0.07, 0.18, 0.10, 0.73, "cms.rc.ufl.edu", "cmsio.rc.ufl.edu",
                 "c{}a-s1.ufhpc", 220),
        SiteSpec("T2_US_Vanderbilt", 0.07, 0.15, 0.09, 0.79, "ce5.accre.vanderbilt.edu", "xrootd.accre.vanderbilt.edu",
                 "vmp{}.accre.vanderbilt.edu", 200),
    )


def default_regions() -> tuple[RegionSpec, ...]:
    return (
        RegionSpec("IT", _it_sites(), users=105, campaigns_per_week=95.0, oneoff_per_day=28.0,
                   production_per_day=5.0, peak_hour_utc=10.0, nationality="it"),
        RegionSpec("US", _us_sites(), users=265, campaigns_per_week=160.0, oneoff_per_day=38.0,
                   production_per_day=8.5, peak_hour_utc=17.0, nationality="us"),
    )


def default_tiers() -> tuple[TierSpec, ...]:
    return (
        TierSpec("RAW", False, 3.6, 0.06, 0.01, 0.30, 1, 450.0, 1000.0),
        TierSpec("AOD", False, 3.1, 0.08, 0.05, 0.08, 1, 380.0, 380.0),
        TierSpec("MINIAOD", False, 2.5, 0.14, 0.25, 0.05, 2, 260.0, 45.0),
        TierSpec("NANOAOD", False, 0.9, 0.13, 0.19, 0.00, 6, 90.0, 1.6),
        TierSpec("GEN-SIM", True, 1.2, 0.07, 0.01, 0.30, 1, 500.0, 900.0),
        TierSpec("AODSIM", True, 3.0, 0.09, 0.05, 0.17, 1, 380.0, 420.0),
        TierSpec("MINIAODSIM", True, 2.3, 0.24, 0.26, 0.10, 2, 260.0, 55.0),
        TierSpec("NANOAODSIM", True, 1.0, 0.19, 0.18, 0.00, 6, 90.0, 2.0),
    )


@dataclass(frozen=True)
class GeneratorParams:
    """Every knob of the synthetic CMS world. Counts marked (x scale) grow with ``--scale``."""

    regions: tuple[RegionSpec, ...] = field(default_factory=default_regions)
    tiers: tuple[TierSpec, ...] = field(default_factory=default_tiers)
    # datasets
    datasets_per_week: float = 28.0         # new datasets per week (x scale)
    evergreen_datasets: int = 12            # always-popular datasets, flat popularity (x scale)
    max_dataset_age_days: int = 420         # older datasets are no longer read
    rise_days: float = 4.0                  # mean time to popularity peak after a dataset appears
    decay_days: float = 40.0                # median e-folding time of the popularity decay
    popularity_sigma: float = 1.1           # lognormal spread of dataset popularity (hot vs cold) ...
    popularity_cap: float = 30.0            # ... capped, so that no single dataset takes over a region
    evergreen_popularity: float = 3.0       # popularity of an evergreen dataset (median dataset = 1)
    files_median: float = 220.0             # files per dataset, lognormal median ...
    files_sigma: float = 1.0                # ... and spread; capped at files_max
    files_max: int = 6000
    files_per_block: float = 45.0           # median files per block
    size_sigma: float = 0.30                # per-file lognormal spread around the tier median
    size_tail_frac: float = 0.03            # files with a Pareto-tail size (big merges)
    # analysis campaigns: a user working on part of one dataset for some days
    oneday_frac: float = 0.35               # campaigns that last a single day
    campaign_days: float = 7.0              # mean length of multi-day campaigns
    campaign_max_days: int = 35
    campaign_files_median: float = 45.0     # files of the dataset the campaign reads (lognormal)
    campaign_files_sigma: float = 0.9
    active_weekday: float = 0.65            # probability a campaign runs on a weekday ...
    active_weekend: float = 0.30            # ... and on a weekend day
    rerun_full_frac: float = 0.5            # re-runs over the whole subset (else over a slice)
    oneoff_files_max: int = 12              # one-off tasks read 1..this many files once
    home_site_frac: float = 0.85            # campaigns run at the user's home site
    # jobs
    retry_frac: float = 0.7                 # failed jobs resubmitted (and succeeding) the same day
    null_size_frac: float = 0.004           # records whose FileSize DBS did not know
    parent_frac: float = 0.01               # records of parent-file reads (IsParentFile)
    production_files_median: float = 120.0  # files read by one production task

    def region_of(self, site: str) -> str | None:
        for region in self.regions:
            if any(s.name == site for s in region.sites):
                return region.name
        return None
