"""Where a live :class:`~neurometry.record.live.Recorder` records while training goes on: a thread, or a forked
process.

Both take each recorded step's weights (a copy made in the training thread), load them into a model of their
own and record it; training waits only for that copy. They differ in what they share with training:

* :class:`ThreadWorker` records in a thread of the training process, from a deep copy of the model. It works
  for any model on any device, but its Python work (hooks, store bookkeeping) holds the interpreter lock, so
  for small models trained in small steps it slows training by about what it costs.
* :class:`ProcessWorker` records in a child forked from the training process at the first recorded step: the
  child's copy of the model is the fork's own, the weights reach it through a pipe as safetensors bytes, and
  nothing it does holds the training process's interpreter lock. It needs ``os.fork`` and a model on the CPU
  (CUDA does not survive a fork). Its torch runs on one thread, so training keeps its cores.

Either keeps at most a bounded number of copies queued (``max_queued``), so memory stays bounded when
recording is slower than training; the training thread then waits. The first error a recording meets is
kept, later steps are dropped, and the error is raised in the training thread (by ``Recorder.record`` or
``Recorder.wait``); the runs stored before it stay whole.
"""

from __future__ import annotations

import copy
import multiprocessing
import os
import queue
import threading
import traceback
from collections.abc import Callable

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from neurometry.errors import NeurometryError
from neurometry.models import LoadedModel

RecordStep = Callable[[LoadedModel, int], None]  # records the given model (weights loaded) as step N
QUEUED_BYTES = 256 * 2**20  # a process worker queues copies up to this much (at least two)


def shadow_of(model: LoadedModel) -> LoadedModel:
    """A copy of ``model`` in eval mode without gradients, to load each step's weights into."""
    shadow = copy.deepcopy(model)
    shadow.module.eval()
    shadow.module.requires_grad_(False)
    return shadow


def weights_copy(model: LoadedModel) -> dict[str, torch.Tensor]:
    """The model's state dict, copied (contiguous, no storage shared with training or between entries)."""
    return {k: v.detach().clone(memory_format=torch.contiguous_format) for k, v in model.module.state_dict().items()}


class ThreadWorker:
    """Record each submitted step on a daemon thread, into a deep copy of ``model``.

    ``on_exit`` runs on the thread as it ends (the recorder's store connection belongs to that thread)."""

    def __init__(self, model: LoadedModel, record_step: RecordStep, on_exit: Callable[[], None], name: str):
        self._shadow = shadow_of(model)
        self._record_step = record_step
        self._on_exit = on_exit
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def submit(self, step: int, state: dict[str, torch.Tensor]) -> None:
        self._queue.put((step, state))  # waits while two copies are queued

    def take_failure(self) -> BaseException | None:
        failure, self._failure = self._failure, None
        return failure

    def wait(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _work(self) -> None:
        try:
            while (item := self._queue.get()) is not None:
                if self._failure is None:  # after an error, later steps are dropped
                    step, state = item
                    try:
                        self._shadow.module.load_state_dict(state)
                        with torch.no_grad():
                            self._record_step(self._shadow, step)
                    except BaseException as error:
                        self._failure = error
        finally:
            self._on_exit()


def can_fork(model: LoadedModel) -> bool:
    """Whether a :class:`ProcessWorker` can record ``model``: the OS forks and no weight is on an accelerator."""
    return hasattr(os, "fork") and all(p.device.type == "cpu" for p in model.module.parameters())


class ProcessWorker:
    """Record each submitted step in a child process forked from this one.

    The fork happens here, so the child holds the model (and the recorder) as they are now; this process must
    hold no open store connection then (SQLite connections do not survive a fork), and :func:`can_fork` must
    hold. Each step's weights go to
    the child as safetensors bytes; the child reports each step stored, or the first error, back."""

    def __init__(self, model: LoadedModel, record_step: RecordStep, on_exit: Callable[[], None], name: str):
        context = multiprocessing.get_context("fork")
        state_bytes = sum(v.numel() * v.element_size() for v in model.module.state_dict().values())
        self._slots = context.BoundedSemaphore(max(2, min(1024, QUEUED_BYTES // max(state_bytes, 1))))
        self._tasks = context.Queue()
        self._results = context.Queue()
        self._failure: BaseException | None = None
        self._stored: list[int] = []
        self._process = context.Process(target=_child, name=name, daemon=True,
                                        args=(model, record_step, on_exit, self._tasks, self._results, self._slots))
        self._process.start()

    def submit(self, step: int, state: dict[str, torch.Tensor]) -> None:
        blob = save_tensors(state)
        self._slots.acquire()  # released by the child once it has taken the copy off the pipe
        self._tasks.put((step, blob))

    def take_failure(self) -> BaseException | None:
        self._drain(block=False)
        failure, self._failure = self._failure, None
        return failure

    def wait(self) -> None:
        self._tasks.put(None)
        self._drain(block=True)
        self._process.join()

    def _drain(self, block: bool) -> None:
        """Read the child's reports; with ``block`` until it says it is done (or it died)."""
        while True:
            try:
                report = self._results.get(timeout=0.5) if block else self._results.get_nowait()
            except queue.Empty:
                if not block:
                    return
                if not self._process.is_alive():  # killed (out of memory, a signal) before it said goodbye
                    self._process.join()
                    if self._failure is None:
                        last = f" after step {self._stored[-1]}" if self._stored else ""
                        self._failure = NeurometryError(
                            f"the recorder process ended with exit code {self._process.exitcode}{last}; "
                            "the steps stored before are whole, later ones were not recorded"
                        )
                    return
                continue
            kind, step, detail = report
            if kind == "done":
                return
            if kind == "stored":
                self._stored.append(step)
            elif self._failure is None:
                self._failure = (NeurometryError(detail) if kind == "error" else
                                 RuntimeError(f"recording step {step} in the recorder process failed:\n{detail}"))


def _child(model: LoadedModel, record_step: RecordStep, on_exit: Callable[[], None], tasks, results, slots) -> None:
    """The forked recorder: load each step's weights into this process's copy of the model and record it."""
    parent = os.getppid()
    torch.set_num_threads(1)  # training keeps its cores
    model.module.eval()
    model.module.requires_grad_(False)
    failed = False
    try:
        while (item := _next_task(tasks, parent)) is not None:
            step, blob = item
            state = load_tensors(blob)
            del blob, item
            slots.release()
            if failed:  # after an error, later steps are dropped
                continue
            try:
                model.module.load_state_dict(state)
                with torch.no_grad():
                    record_step(model, step)
                results.put(("stored", step, None))
            except NeurometryError as error:
                failed = True
                results.put(("error", step, str(error)))
            except BaseException:
                failed = True
                results.put(("crash", step, traceback.format_exc()))
    finally:
        on_exit()
        results.put(("done", None, None))


def _next_task(tasks, parent: int) -> tuple[int, bytes] | None:
    """The next step to record, or None at the end: also once the training process is gone (the child holds
    the pipe's write end too, so no end-of-file would come), so an orphaned recorder ends rather than waits."""
    while True:
        try:
            return tasks.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent:
                return None
