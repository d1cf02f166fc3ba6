"""GENERATE: synthetic CMS access logs, for trials and tests.

In: a seed, a scale, a month window and :class:`GeneratorParams`. Out: raw partitions
``year=YYYY/month=M/day=D/part-00000.avro`` (or ``.json.gz``) in the CMS JobMonitoring schema, with a
``_manifest.json``. :mod:`.world` holds the datasets and their popularity, :mod:`.workload` who reads
what and when, :mod:`.records` the records, :mod:`.encode` the Avro/JSON writers, :mod:`.corrupt`
realistic damage. ``python -m smartcache.tasks.generate`` (or ``smartcache generate logs``).
"""

from smartcache.tasks.generate.params import GeneratorError, GeneratorParams, RegionSpec, SiteSpec, TierSpec
from smartcache.tasks.generate.task import (
    GenerateResult,
    generate_day,
    generate_logs,
    main,
    month_window,
    reuse_ceiling,
)

__all__ = [
    "GenerateResult", "GeneratorError", "GeneratorParams", "RegionSpec", "SiteSpec", "TierSpec", "generate_day",
    "generate_logs", "main", "month_window", "reuse_ceiling"
]
