"""EVALUATE: replay held-out days per site through the heuristics, Belady and a model; promote it or not.

In: a catalog model and the raw logs (or a trace) of the held-out window. Out: ``metrics.parquet``,
``metrics.json`` (:mod:`.summary`), ``byte_hit_ratio.png``, and the model's stage (:mod:`.gate`:
``production`` only if it beats LRU and the best other heuristic evaluated). ``python -m smartcache.tasks.evaluate``.
"""

from importlib import import_module

_EXPORTS = {"promote_if_better": "gate", "verdict": "gate", "Evaluation": "task", "evaluate": "task",
            "main": "task", "promotion_verdict": "task", "summarize": "summary", "format_summary": "summary"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """Imported on first use, so that ``python -m smartcache.tasks.evaluate.gate`` (or ``.summary``) runs
    its module once, not after the package has already imported it."""
    if name in _EXPORTS:
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
