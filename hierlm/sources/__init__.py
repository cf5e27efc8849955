"""Data larger than memory: DuckDB relations, Parquet files, polars LazyFrames, Dask DataFrames.

``hl.Model(formula, data=X)`` with such data learns the frozen spec and the
sufficient statistics of a Gaussian mixed model with aggregate queries run by
the engine that holds the rows (:mod:`hierlm.sources.learn`), and fits a
row-less design; quantities that need the rows again run a second pass there
(:mod:`hierlm.sources.passes`). The engines are optional (``pip install
hierlm[scale]``) and imported only when such data are given.
"""

from hierlm.sources.base import DataSource, Progress
from hierlm.sources.model import source_design
from hierlm.sources.registry import register_source, source_for

__all__ = ["DataSource", "Progress", "register_source", "source_for", "source_design"]
