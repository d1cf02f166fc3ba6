"""FEATURES (the fan-in node): reduced days -> the feature tables the model learns from.

In: reduced daily partitions (or any request trace). Out: a daily table (one row per decision day,
site and file: past-only popularity features, forward labels; :mod:`.daily`) and the request-level
training rows (one row per read, features as of that read; :mod:`.requests`, :mod:`.request_table`),
as catalog datasets. :mod:`.table` reads a feature table back. ``python -m smartcache.tasks.features``.
"""

from smartcache.tasks.features.daily import EXTRA_COLUMNS, FEATURE_COLUMNS, LABEL_COLUMNS, compute_features
from smartcache.tasks.features.requests import request_features, trace_feature_matrix
from smartcache.tasks.features.task import FeaturesResult, build_features, main

__all__ = [
    "EXTRA_COLUMNS", "FEATURE_COLUMNS", "FeaturesResult", "LABEL_COLUMNS", "build_features", "compute_features",
    "main", "request_features", "trace_feature_matrix"
]
