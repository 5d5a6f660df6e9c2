"""Ray, the optional engine for work across machines: importing it with a one-line hint when it is missing,
and joining or starting a cluster for one call."""

from __future__ import annotations

import importlib
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from neurometry.errors import NeurometryError


def import_ray(*parts: str, without: str = "run without --ray") -> Any:
    """``ray`` with its ``parts`` imported (``"data"``, ``"train.torch"``), or one line naming the extra
    that brings them (``without`` says what to do instead)."""
    try:
        import ray

        for part in parts:
            importlib.import_module(f"ray.{part}")
    except ImportError:
        raise NeurometryError(f"--ray needs Ray, an optional extra: pip install 'neurometry[ray]' (or {without})") from None
    return ray


def check_address(address: str | None) -> None:
    """Fail in one line, within seconds, when a cluster ``address`` (``HOST:PORT``, ``ray://HOST:PORT``) takes
    no connection: Ray itself retries for minutes. None and ``auto`` are left to Ray."""
    if not address or address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except (OSError, ValueError):
        raise NeurometryError(
            f"cannot reach the Ray cluster at {address!r}; start it with `ray start --head` there, or give "
            "its HOST:PORT (or --ray alone for a local Ray)"
        ) from None


@contextmanager
def ray_session(ray: Any, address: str | None) -> Iterator[Any]:
    """The Ray this process is connected to, else the cluster at ``address``, else a local Ray on this
    machine (object store bounded to 256 MiB); a connection made here is closed again at the end."""
    if ray.is_initialized():
        yield ray
        return
    try:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(include_dashboard=False, log_to_driver=False, object_store_memory=256 * 2**20,
                     configure_logging=False)
    except ConnectionError as exc:
        raise NeurometryError(f"cannot reach the Ray cluster at {address!r} ({exc}); start it with "
                              "`ray start --head` or give its address") from None
    resources = ray.cluster_resources()
    print(f"ray: {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs", file=sys.stderr)
    try:
        yield ray
    finally:
        ray.shutdown()


def worker_share(ray: Any, workers: int) -> tuple[float, int]:
    """(CPUs to ask for each of ``workers`` workers, torch threads each): shares of the cluster's CPUs that
    leave half a CPU to Ray's own tasks (a pool that takes every CPU can wait for one of them forever)."""
    cpus = float(ray.cluster_resources().get("CPU", 1))
    return max(0.1, min(1.0, (cpus - 0.5) / workers)), max(1, int(cpus // workers))
