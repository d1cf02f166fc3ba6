"""EVALUATE: replay held-out days per site through the heuristics, Belady and a model; promote it or not.

In: a catalog model and the raw logs (or a trace) of the held-out window. Out: ``metrics.parquet``,
``metrics.json``, ``byte_hit_ratio.png``, and the model's stage (:mod:`.gate`: ``production`` only if it
beats the baseline). ``python -m smartcache.tasks.evaluate``.
"""

from smartcache.tasks.evaluate.gate import promote_if_better, verdict
from smartcache.tasks.evaluate.task import Evaluation, evaluate, main, promotion_verdict
