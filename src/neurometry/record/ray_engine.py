"""Recording on a Ray cluster (``record(..., engine="ray")``, ``neurometry record --ray [ADDRESS]``).

The driver (the process that called ``record``) plans the run as today: it tokenises the data, finds the
points' shapes, creates the run's arrays and owns the catalog. The rows are cut into *units*, chunk-aligned
row ranges, so no two writers ever touch one chunk file. Ray Data carries the units (with the inputs
they need) to a pool of actors (``map_batches`` with ``ActorPoolStrategy``), one model per actor; each
actor runs the model over the same file-order batches a single process would (so values are equal to
the last bit), writes its unit's chunk files straight into the store on the shared filesystem, and hands
back their sizes and checksums. The driver commits every unit that continues the committed prefix of
rows, so a unit finished after a gap waits, uncommitted, and nothing counts as committed that is not on
disk. A rerun resumes from the committed prefix, as a single-process run does.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neurometry import clusters

UNITS_PER_ACTOR = 32  # at most, so a slow or killed actor holds back or loses little of the run
MIN_UNIT_BATCHES = 16  # at least: a unit recomputes up to two batches that straddle its ends


def import_ray() -> Any:
    """``ray`` with Ray Data, or one line naming the extra that brings it."""
    return clusters.import_ray("data", without="record without --ray")


@dataclass(frozen=True)
class RecordJob:
    """What every actor needs to record units of one run (plain values: it travels to the actors)."""

    model: str
    points: list[str]
    reduce: str
    dtype: str
    max_tokens: int
    batch_size: int
    key_width: int
    store: str
    run_id: str
    chunk_rows: int
    device: str | None
    model_dtype: str | None
    column: str  # the data column the model reads: text or image
    threads: int = 1  # torch threads per actor (set from the cluster's CPUs)


def plan_units(row_ends: np.ndarray, chunk_rows: int, first_row: int, batch_size: int,
               n_units: int) -> list[dict[str, int]]:
    """Chunk-aligned row ranges ``[start, stop)`` from ``first_row`` (a chunk boundary) to the last row, about
    ``n_units`` of them, each with the file-order batches whose inputs it needs: inputs ``[first_input,
    last_input)``, ``first_input`` a multiple of ``batch_size`` so the actor's batches are the single
    process's. ``row_ends[i]`` is the number of rows of inputs 0..i."""
    n_rows = int(row_ends[-1])
    chunks = range(first_row // chunk_rows, -(-n_rows // chunk_rows))
    per_unit = max(1, -(-len(chunks) // max(1, n_units)))
    units = []
    for first_chunk in chunks[::per_unit]:
        start = first_chunk * chunk_rows
        stop = min(n_rows, start + per_unit * chunk_rows)
        first = int(np.searchsorted(row_ends, start, side="right"))  # the input holding row `start`
        last = int(np.searchsorted(row_ends, stop - 1, side="right")) + 1
        last = min(len(row_ends), -(-last // batch_size) * batch_size)  # whole batches: the same padding
        first_input = first - first % batch_size
        rows_before = int(row_ends[first_input - 1]) if first_input else 0
        units.append({"start": start, "stop": stop, "first_input": first_input, "last_input": last,
                      "rows_before": rows_before})
    return units


class ChunkRecorder:
    """A Ray actor: one model, recording units into the store's arrays (``__call__`` takes Ray Data batches
    of units and returns one row per unit: its range and the chunk files written, as JSON)."""

    def __init__(self, job: dict[str, Any]):
        import torch

        from neurometry.models import load_model
        from neurometry.store.writer import open_run_arrays

        self.job = RecordJob(**job)
        torch.set_num_threads(self.job.threads)
        self.loaded = load_model(self.job.model, device=self.job.device, dtype=self.job.model_dtype)
        self.hook_points = self.loaded.resolve(self.job.points)
        if any(p.kind == "attention" for p in self.hook_points) and hasattr(self.loaded, "enable_attention_probs"):
            self.loaded.enable_attention_probs()
        self.root = Path(self.job.store) / "arrays" / self.job.run_id
        self.arrays = open_run_arrays(Path(self.job.store), self.job.run_id, [p.name for p in self.hook_points])

    def __call__(self, units: dict[str, np.ndarray]) -> dict[str, list]:
        from neurometry.record.recorder import InputBatches, RowMaker
        from neurometry.store.writer import write_chunk_range

        job = self.job
        done: dict[str, list] = {"start": [], "stop": [], "written": [], "pid": []}
        for i in range(len(units["start"])):
            table = pd.DataFrame({job.column: list(units["inputs"][i])})
            batches = InputBatches(self.loaded, table, job.max_tokens, job.reduce)
            batches.key_width = job.key_width  # attention rows are padded to the whole data's longest input
            maker = RowMaker(self.loaded, self.hook_points, batches, job.reduce, job.dtype)
            start, stop, rows_before = int(units["start"][i]), int(units["stop"][i]), int(units["rows_before"][i])
            blocks: dict[str, list[np.ndarray]] = {}
            for lo in range(0, len(table), job.batch_size):
                for name, rows in maker.on_host(lo, min(lo + job.batch_size, len(table))).items():
                    blocks.setdefault(name, []).append(rows)
            local = slice(start - rows_before, stop - rows_before)
            rows = {name: np.concatenate(parts)[local] for name, parts in blocks.items()}
            written = write_chunk_range(self.root, self.arrays, job.chunk_rows, start, rows)
            done["start"].append(start)
            done["stop"].append(stop)
            done["written"].append(json.dumps(written))
            done["pid"].append(os.getpid())
        return done


def record_units(job: RecordJob, table: pd.DataFrame, row_ends: np.ndarray, first_row: int, writer: Any,
                 bar: Any, address: str | None, actors: int) -> None:
    """Record rows ``[first_row, n)`` of the run on Ray: ``actors`` actors (default: one per 2 CPUs of the
    cluster, at least 1), committing through ``writer.commit_written`` as units finish."""
    ray = import_ray()
    with clusters.ray_session(ray, address):
        gpus = 1 if job.device and str(job.device).startswith("cuda") else 0
        per_actor, threads = clusters.worker_share(ray, actors)
        job = replace(job, threads=threads)
        batches_left = -(-(len(row_ends) - int(np.searchsorted(row_ends, first_row, side="right"))) // job.batch_size)
        n_units = max(actors, min(actors * UNITS_PER_ACTOR, batches_left // MIN_UNIT_BATCHES))
        units = plan_units(row_ends, job.chunk_rows, first_row, job.batch_size, n_units)
        column = table[job.column].tolist()
        items = [{**u, "inputs": column[u["first_input"] : u["last_input"]]} for u in units]
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # its plan and timing notes: our bar says it
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # our bar counts committed inputs
        context.print_on_execution_start = False
        dataset = ray.data.from_items(items, override_num_blocks=len(items))
        results = dataset.map_batches(
            ChunkRecorder, fn_constructor_kwargs={"job": asdict(job)}, batch_size=1,
            # down to one actor when a node is lost: a fixed-size pool would wait for its place forever
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors, initial_size=actors),
            num_cpus=per_actor, num_gpus=gpus,
        )
        for result in results.iter_rows():
            start, stop = int(result["start"]), int(result["stop"])
            writer.commit_written(start, stop, [tuple(w) for w in json.loads(result["written"])])
            bar.update(int(np.searchsorted(row_ends, writer.committed_rows, side="right")) - bar.n)
