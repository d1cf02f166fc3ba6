"""SITE: what runs at a site -- XRootD origin and XCache (:mod:`.xcache`, configs in ``templates/``;
a demo site on one machine in :mod:`.demo`),
the C++ decision plugin (``cpp/``, built by :mod:`.plugin`), the agent that pre-places the pushed list
(:mod:`.agent`) and the reader of what the cache holds (:mod:`.contents`).

In: a pushed placement list (and the inference service's ``/decide``). Out: files in the cache, and the
cache's contents back in the catalog.
"""
