"""CMS naming for the generator: primary datasets, eras, MC campaigns, users, GUIDs (vectorised).

Pure functions of their inputs (and of the RNG they are handed), so the world stays deterministic.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

EPOCH = dt.date(1970, 1, 1)
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

DATA_PRIMARIES = (
    "Muon0", "Muon1", "EGamma0", "EGamma1", "JetMET0", "JetMET1", "Tau", "BTagMu", "MuonEG",
    "DisplacedJet", "ZeroBias", "HLTPhysics", "NoBPTX", "ScoutingPFMonitor", "Commissioning",
    "ParkingDoubleMuonLowMass0", "ParkingDoubleMuonLowMass1", "ParkingDoubleMuonLowMass2",
    "ParkingVBF0", "ParkingVBF1", "ParkingHH", "ParkingSingleMuon0", "ParkingLLP", "SpecialZeroBias0",
)

_SM = (
    "TTto2L2Nu_TuneCP5_13p6TeV_powheg-pythia8", "TTtoLNu2Q_TuneCP5_13p6TeV_powheg-pythia8",
    "TTto4Q_TuneCP5_13p6TeV_powheg-pythia8", "DYto2L-2Jets_MLL-50_TuneCP5_13p6TeV_amcatnloFXFX-pythia8",
    "DYto2L-2Jets_MLL-10to50_TuneCP5_13p6TeV_amcatnloFXFX-pythia8", "WtoLNu-2Jets_TuneCP5_13p6TeV_amcatnloFXFX-pythia8",
    "WWto2L2Nu_TuneCP5_13p6TeV_powheg-pythia8", "WZto3LNu_TuneCP5_13p6TeV_powheg-pythia8",
    "ZZto4L_TuneCP5_13p6TeV_powheg-pythia8", "TbarWplusto2L2Nu_TuneCP5_13p6TeV_powheg-pythia8",
    "TWminusto2L2Nu_TuneCP5_13p6TeV_powheg-pythia8", "TTHto2B_M-125_TuneCP5_13p6TeV_powheg-pythia8",
    "GluGluHto2G_M-125_TuneCP5_13p6TeV_powheg-pythia8", "GluGluHtoZZto4L_M-125_TuneCP5_13p6TeV_powheg2-JHUGenV752-pythia8",
    "VBFHto2B_M-125_TuneCP5_13p6TeV_powheg-pythia8", "VBFHToTauTau_M125_TuneCP5_13p6TeV_powheg-pythia8",
    "GJ-4Jets_HT-400to600_TuneCP5_13p6TeV_madgraphMLM-pythia8", "TTZ-ZtoQQ-1Jets_TuneCP5_13p6TeV_amcatnloFXFX-pythia8",
    "MinBias_TuneCP5_13p6TeV-pythia8", "Neutrino_E-10_gun",
)
_QCD = tuple(f"QCD-4Jets_HT-{b}_TuneCP5_13p6TeV_madgraphMLM-pythia8" for b in (
    "100to200", "200to400", "400to600", "600to800", "800to1000", "1000to1200", "1200to1500", "1500to2000", "2000"))
_SIGNAL = (
    tuple(f"ZprimetoTT_M-{m}_Width-{w}_TuneCP5_13p6TeV_madgraph-pythia8"
          for m in (500, 1000, 1500, 2000, 3000, 4000, 5000, 6000) for w in (1, 10))
    + tuple(f"SMS-T1tttt_mGluino-{g}_mLSP-{l}_TuneCP5_13p6TeV-madgraphMLM-pythia8"
            for g in (1400, 1800, 2200, 2600) for l in (100, 800))
    + tuple(f"GluGlutoRadiontoHHto2B2Tau_M-{m}_TuneCP5_13p6TeV_madgraph-pythia8" for m in (300, 500, 800, 1200, 2000))
    + tuple(f"VBFHHto4B_CV-1_C2V-{c}_C3-1_TuneCP5_13p6TeV_madgraph-pythia8" for c in ("0", "1", "2", "1p5"))
)
MC_PRIMARIES = _SM + _QCD + _SIGNAL
N_SM = len(_SM) + len(_QCD)

FIRST = {
    "it": ("Marco", "Giulia", "Luca", "Francesca", "Andrea", "Chiara", "Matteo", "Sara", "Alessandro", "Elena",
           "Davide", "Martina", "Simone", "Federica", "Lorenzo", "Valentina", "Stefano", "Silvia", "Paolo", "Anna"),
    "us": ("James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David", "Elizabeth",
           "Wei", "Priya", "Carlos", "Ana", "Ahmed", "Olga", "Kenji", "Mei", "Raj", "Sofia", "Daniel", "Emily"),
}
LAST = {
    "it": ("Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci", "Marino", "Greco",
           "Bruno", "Gallo", "Conti", "Mancini", "Costa", "Giordano", "Rizzo", "Lombardi", "Moretti", "Fontana"),
    "us": ("Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Chen",
           "Wang", "Patel", "Kim", "Nguyen", "Lee", "Anderson", "Taylor", "Thomas", "Moore", "Jackson"),
}
# Storage elements remote (AAA) reads come from.
REMOTE_SES = ("eoscms.cern.ch", "cmsdcache-kit-disk.gridka.de", "srm.ciemat.es", "polgrid4.in2p3.fr",
              "dcache-cms-xrootd.desy.de", "eoscms-ns-ip563.cern.ch", "xrootd-cms.infn.it", "cmsxrootd.fnal.gov")
PRODUCTION_AGENTS = ("pdmvserv", "cmsunified", "amaltaro", "sagarwal")
_HEX_UP = np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)
_HEX_LO = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_GUID_POS = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])


def to_date(day: int) -> dt.date:
    return EPOCH + dt.timedelta(days=int(day))


def to_day(date: dt.date) -> int:
    return (date - EPOCH).days


def release_major(year: int) -> int:
    """CMSSW release cycle in use in a given year (12_4 in 2022, 13_0 in 2023, ...)."""
    return max(8, year - 2010)


def data_names(primary: str, tier: str, birth_day: int, week: int, dup: int) -> tuple[str, str]:
    """(dataset, LFN prefix up to the run directories) for a collision-data dataset born on ``birth_day``."""
    d = to_date(birth_day)
    week_of_month = week - to_day(d.replace(day=1)) // 7
    if 4 <= d.month <= 11:      # LHC running: prompt reconstruction of the current era
        era = f"Run{d.year}{'ABCDEFGH'[d.month - 4]}"
        version = f"PromptReco-v{week_of_month + 1 + 6 * dup}"
        if tier == "RAW":
            version = f"v{week_of_month + 1 + 6 * dup}"
    elif tier == "RAW":         # shutdown: cosmics and commissioning runs
        era = f"Commissioning{d.year + 1 if d.month == 12 else d.year}"
        version = f"v{(d.month % 12) * 6 + week_of_month + 1 + 24 * dup}"
    else:                       # shutdown: re-reconstruction of an older era, tagged with the date
        year = d.year - 1 if d.month <= 3 else d.year
        era = f"Run{year}{'CDEFG'[week % 5]}"
        version = f"{d.day:02d}{MONTHS[d.month - 1]}{d.year}-v{1 + dup}"
    dataset = f"/{primary}/{era}-{version}/{tier}"
    return dataset, f"/store/data/{era}/{primary}/{tier}/{version}/000/"


def mc_names(primary: str, tier: str, birth_day: int, week: int, dup: int) -> tuple[str, str]:
    """(dataset, LFN prefix up to the counter directory) for a Monte Carlo dataset."""
    d = to_date(birth_day)
    yy = d.year % 100
    season = "Winter" if d.month in (12, 1, 2) else "Summer"
    step = {"MINIAODSIM": f"MiniAODv{max(1, d.year - 2019)}", "NANOAODSIM": f"NanoAODv{max(9, d.year - 2011)}",
            "AODSIM": "DRPremix", "GEN-SIM": "wmLHEGS"}.get(tier, "DR")
    campaign = f"Run3{season}{yy:02d}{step}"
    gt_version = week - to_day(d.replace(month=1, day=1)) // 7 + 1
    procstring = f"{release_major(d.year)}0X_mcRun3_{d.year}_realistic_v{gt_version}"
    version = f"v{1 + dup}"
    dataset = f"/{primary}/{campaign}-{procstring}-{version}/{tier}"
    return dataset, f"/store/mc/{campaign}/{primary}/{tier}/{procstring}-{version}/"


def guids(rng: np.random.Generator, n: int, upper: bool = True) -> pa.Array:
    """``n`` random GUIDs (8-4-4-4-12 hex) as an Arrow string array, built without a Python loop."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    nib = np.empty((n, 32), dtype=np.uint8)
    nib[:, 0::2] = raw >> 4
    nib[:, 1::2] = raw & 15
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    out[:, _GUID_POS] = (_HEX_UP if upper else _HEX_LO)[nib]
    return fixed_width_strings(out)


def fixed_width_strings(chars: np.ndarray) -> pa.Array:
    """An (n, w) uint8 matrix of ASCII as an Arrow string array of n strings of width w."""
    n, w = chars.shape
    offsets = (np.arange(n + 1, dtype=np.int64) * w).astype(np.int32)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(chars))])


def user_identity(rng: np.random.Generator, nationality: str, n: int, id_base: int) -> tuple[list[str], list[str], np.ndarray]:
    """(logins, GridName DNs, UserIds) of ``n`` analysts."""
    first, last = FIRST[nationality], LAST[nationality]
    fi = rng.integers(0, len(first), n)
    la = rng.integers(0, len(last), n)
    ids = id_base + rng.choice(400_000, size=n, replace=False).astype(np.int64)
    logins, dns, seen = [], [], {}
    for f, l, uid in zip(fi, la, ids):
        base = (first[f][0] + last[l]).lower()[:8]
        seen[base] = seen.get(base, 0) + 1
        login = base if seen[base] == 1 else f"{base}{seen[base]}"
        logins.append(login)
        dns.append(f"/DC=ch/DC=cern/OU=Organic Units/OU=Users/CN={login}/CN={uid % 900_000 + 100_000}"
                   f"/CN={first[f]} {last[l]}")
    return logins, dns, ids
