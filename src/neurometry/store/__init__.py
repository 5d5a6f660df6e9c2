"""The on-disk store: chunked Zarr arrays plus an SQLite catalog."""

from neurometry.store.store import PointInfo, RunInfo, Store, open_store

__all__ = ["PointInfo", "RunInfo", "Store", "open_store"]
