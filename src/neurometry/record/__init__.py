"""Recording hook points of a model over a dataset into a store.

``neurometry.record(...)`` is both this package and the verb: the package is callable and calls
:func:`neurometry.record.recorder.record`, so the DESIGN's layout (``neurometry/record/``) and API
(``neurometry.record(model, data, points, out)``) hold together.
"""

import sys
import types

from neurometry.record.recorder import RecordResult, record

__all__ = ["RecordResult", "record"]


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs) -> RecordResult:
        return record(*args, **kwargs)

    __call__.__doc__ = record.__doc__


sys.modules[__name__].__class__ = _CallableModule
