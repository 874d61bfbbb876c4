"""Bounded replay of topic ranges into Polars/pandas/DuckDB/Parquet, and back-tests over them.

``kstream_lab.replay`` is both this package and the public call ``kstream_lab.replay(topic, ...)``:
the name is the product's verb and the package's name, and Python binds a subpackage onto its parent
as soon as any of its modules is imported, which would shadow a plain function of the same name. So
the package module itself is made callable and forwards to :func:`kstream_lab.replay.reader.replay`.
"""

from __future__ import annotations

import sys
import types


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        from kstream_lab.replay.reader import replay

        return replay(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
