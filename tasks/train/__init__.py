"""TRAIN: a feature table -> a model in the catalog (a new ``staging`` version).

In: the request-level training rows of a feature table. Out: the Keras model as a TFaaS SavedModel
bundle and as a TFLite flatbuffer (the fast form), with params, metrics and lineage, in the catalog.
:mod:`.data` reads and splits the rows by time, :mod:`.model` builds, fits and exports the network.
``python -m smartcache.tasks.train``.
"""

from smartcache.tasks.train.task import TrainResult, main, train

__all__ = [
    "TrainResult", "main", "train"
]
