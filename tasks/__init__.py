"""What runs on a worker node: one sub-package per part of the flow, in the order data moves through it.

    generate -> reduce -> features -> train -> simulate/evaluate -> score -> push -> site
                                                    common (schema, CMS names, the trace, file writes)

Each DAG node kind starts as ``python -m smartcache.tasks.<kind>`` (the part's ``__main__``), with a
pure core and ``main(argv) -> int`` in the part's ``task`` module. A part imports only the parts before
it in the flow and :mod:`.common`; nothing here imports htcondor.
"""
