"""Definitions every part of the flow shares, and nothing else of ``tasks/``: the raw CMS record
schema and partition layout (:mod:`.schema`), CMS names read from an LFN (:mod:`.cms`), the request
trace (:mod:`.trace`: ``timestamp, site, lfn, size`` in epoch seconds and bytes) and atomic file
writes (:mod:`.io`). Every other part may import this one; this one imports no other part.
"""
