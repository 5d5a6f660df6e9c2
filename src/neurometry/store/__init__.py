"""The on-disk store: chunked Zarr arrays plus an SQLite catalog."""

from neurometry.store.store import PointInfo, RunInfo, Store, open_store
from neurometry.store.writer import import_array, import_rows

__all__ = ["PointInfo", "RunInfo", "Store", "import_array", "import_rows", "open_store"]
