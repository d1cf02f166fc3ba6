"""SCORE: a model and a feature table -> per-site placement lists.

In: a catalog model (its TFLite form, run by :mod:`.scorer` -- also what the simulator and evaluation
use) and the latest day of a feature table. Out: per site a ranked list cut to the site's cache size
(``<site>.parquet`` and ``<site>.txt``) and catalog placement rows. ``python -m smartcache.tasks.score``.
"""

from smartcache.tasks.score.scorer import Scorer, load_scorer, parse_ref
from smartcache.tasks.score.task import main, score_sites

__all__ = [
    "Scorer", "load_scorer", "main", "parse_ref", "score_sites"
]
