"""Recording a series of checkpoints: one run per checkpoint, ordered by its training step.

Checkpoints are either Hugging Face Trainer folders (``checkpoint-500/`` with ``config.json`` and
safetensors weights), each loaded as a model, or ``*.safetensors`` state dicts applied to one base model.
Every checkpoint is checked before anything is recorded (readable, whole, one architecture, one step
each), so bad input stops the command with nothing written; recording then resumes per checkpoint.
Checkpoints with identical weights are recorded once and the repeats reported.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from neurometry.errors import NeurometryError
from neurometry.models import LoadedModel, load_model
from neurometry.models.load import state_difference
from neurometry.record.recorder import default_run_name, record
from neurometry.record.series_session import SeriesSession
from neurometry.store import open_store
from neurometry.store.store import SeriesStep
from neurometry.store.writer import check_series_name, delete_run

WEIGHT_SUFFIX = ".safetensors"
PICKLED_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl")
# any of these makes a folder's tokenizer loadable (fast, slow sentencepiece or WordPiece/BPE vocabularies)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "spiece.model", "vocab.txt",
                   "vocab.json")
# config keys that change from checkpoint to checkpoint of one architecture
_RUN_KEYS = ("_name_or_path", "transformers_version", "torch_dtype", "dtype", "architectures")


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint: its step, where it is, and whether it is a model folder or a state dict file."""

    step: int
    path: Path
    kind: str  # "folder" (a Hugging Face model folder) or "state_dict" (a .safetensors file)


@dataclass
class SeriesResult:
    """What :func:`record_checkpoints` left in the store."""

    store: Path
    series: str
    runs: list[str] = field(default_factory=list)  # one per recorded step, in step order
    steps: list[int] = field(default_factory=list)
    already_complete: list[int] = field(default_factory=list)  # steps found recorded before this call
    duplicates: list[tuple[int, int]] = field(default_factory=list)  # (step, step with the same weights)


def run_name(series: str, step: int) -> str:
    """The run that holds a series' checkpoint: ``grokking-step1500``."""
    return f"{series}-step{int(step)}"


def _last_number(name: str) -> int | None:
    numbers = re.findall(r"\d+", name)
    return int(numbers[-1]) if numbers else None


def read_steps_file(path: str | os.PathLike) -> dict[str, int]:
    """A ``--steps`` file: one ``NAME STEP`` line per checkpoint (NAME its file or folder name; blank lines and
    ``#`` comments skipped; comma or whitespace between)."""
    path = Path(path)
    if not path.is_file():
        raise NeurometryError(f"steps file {path} does not exist; give a file of 'NAME STEP' lines")
    steps: dict[str, int] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = re.split(r"[,\s]+", line)
        if len(parts) != 2 or not re.fullmatch(r"-?\d+", parts[1]):
            raise NeurometryError(f"{path}:{number}: {line!r} is not 'NAME STEP' with a whole-number step")
        steps[parts[0]] = int(parts[1])
    return steps


def find_checkpoints(spec: str | os.PathLike | list, steps: dict[str, int] | None = None) -> list[Checkpoint]:
    """The checkpoints named by ``spec``, in step order.

    ``spec``: a folder holding ``checkpoint-*`` folders (the Trainer layout) or ``*.safetensors`` files, a
    glob matching either, or a list of paths. Each step is the last number in the name, or the
    ``steps`` entry for that name (see :func:`read_steps_file`).
    """
    paths = _expand(spec)
    if not paths:
        raise NeurometryError("no checkpoints given; name a folder of checkpoints, a glob or a list of paths")
    folders = [p for p in paths if p.is_dir()]
    files = [p for p in paths if p.is_file()]
    if folders and files:
        raise NeurometryError(
            f"{spec} mixes model folders ({folders[0].name}) and files ({files[0].name}); give one kind"
        )
    others = [p for p in files if p.suffix != WEIGHT_SUFFIX]
    if others:
        raise NeurometryError(
            f"checkpoint {others[0]} is not a {WEIGHT_SUFFIX} file; save state dicts with safetensors "
            "(pickled .pt/.bin files are not read)"
        )
    found = []
    for path in folders or files:
        name = path.name
        step = steps.get(name, steps.get(path.stem)) if steps is not None else _last_number(path.stem)
        if step is None:
            why = "is not in the --steps file" if steps is not None else "has no number in its name"
            raise NeurometryError(f"checkpoint {path} {why}; give its step with --steps FILE ('NAME STEP' lines)")
        found.append(Checkpoint(int(step), path, "folder" if folders else "state_dict"))
    found.sort(key=lambda c: c.step)
    for before, after in zip(found, found[1:], strict=False):
        if before.step == after.step:
            raise NeurometryError(
                f"checkpoints {before.path.name} and {after.path.name} both have step {after.step}; "
                "give distinct steps with --steps FILE"
            )
    return found


def _expand(spec: str | os.PathLike | list) -> list[Path]:
    if isinstance(spec, list | tuple):
        paths = [Path(p) for p in spec]
        missing = [p for p in paths if not p.exists()]
        if missing:
            raise NeurometryError(f"checkpoint {missing[0]} does not exist; check the path")
        return paths
    text = str(spec)
    if any(c in text for c in "*?["):
        paths = [Path(p) for p in sorted(glob.glob(text))]
        if not paths:
            raise NeurometryError(f"--checkpoints {text!r} matches nothing; check the pattern")
        return paths
    root = Path(text)
    if not root.is_dir():
        raise NeurometryError(
            f"--checkpoints {root} is not a folder or a glob; give the folder of checkpoint-* folders or "
            f"*{WEIGHT_SUFFIX} files"
        )
    if (root / "config.json").is_file():
        raise NeurometryError(
            f"{root} is one model folder, not a series; give the folder that holds its checkpoint-* folders"
        )
    folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("checkpoint-"))
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix == WEIGHT_SUFFIX)
    if not folders and not files:
        pickled = sorted(p.name for p in root.iterdir() if p.suffix in PICKLED_SUFFIXES)
        also = (f" (only pickled checkpoints such as {pickled[0]}, which are not read: save state dicts with "
                "safetensors)") if pickled else ""
        raise NeurometryError(f"{root} holds no checkpoint-* folders and no *{WEIGHT_SUFFIX} files{also}")
    return folders or files


def tensor_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor of a safetensors file, from its header; a truncated or unreadable file
    is refused with one line."""
    from safetensors import SafetensorError, safe_open

    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            header_length = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(header_length)) if 0 < header_length < size else None
        if header is None:
            raise ValueError("no header")
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        if 8 + header_length + end != size:
            raise ValueError(f"{size} bytes where its header says {8 + header_length + end}")
        with safe_open(str(path), framework="pt") as opened:
            return {key: tuple(opened.get_slice(key).get_shape()) for key in opened.keys()}
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as error:
        raise NeurometryError(
            f"checkpoint {path} is not a whole safetensors file ({error}); copy it again or leave it out"
        ) from None


def weights_hash(checkpoint: Checkpoint) -> str:
    """SHA-256 over the checkpoint's weight files (a folder's ``*.safetensors`` in name order)."""
    files = [checkpoint.path] if checkpoint.kind == "state_dict" else _weight_files(checkpoint.path)
    digest = hashlib.sha256()
    for path in files:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()


def _weight_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob(f"*{WEIGHT_SUFFIX}"))
    if not files:
        raise NeurometryError(
            f"checkpoint folder {folder} has no {WEIGHT_SUFFIX} weights; save checkpoints with safetensors "
            "(the Trainer's default)"
        )
    return files


def check_checkpoints(checkpoints: list[Checkpoint], base: LoadedModel | None) -> None:
    """Refuse, before anything is recorded, checkpoints that are not whole or not all of one architecture
    (the base model's, for state dicts)."""
    if not checkpoints:
        raise NeurometryError("no checkpoints to record")
    if checkpoints[0].kind == "state_dict":
        expected = {k: tuple(v.shape) for k, v in base.module.state_dict().items()} if base is not None else None
        first = None
        for checkpoint in checkpoints:
            shapes = tensor_shapes(checkpoint.path)
            reference, against = (expected, f"the base model {base.name}") if expected else (first, None)
            if reference is None:
                first, against = shapes, None
                continue
            against = against or checkpoints[0].path.name
            difference = state_difference(reference, shapes)
            if difference:
                raise NeurometryError(
                    f"checkpoint {checkpoint.path.name} is another architecture than {against} ({difference}); "
                    "record each architecture as its own series"
                )
        return
    first_config = None
    for checkpoint in checkpoints:
        config_path = checkpoint.path / "config.json"
        if not config_path.is_file():
            raise NeurometryError(f"checkpoint folder {checkpoint.path} has no config.json; it is not a model folder")
        for weights in _weight_files(checkpoint.path):
            tensor_shapes(weights)
        if not any((checkpoint.path / name).is_file() for name in TOKENIZER_FILES):
            raise NeurometryError(
                f"checkpoint folder {checkpoint.path} has no tokenizer; save it with the checkpoints "
                "(Trainer(processing_class=tokenizer)) or copy the tokenizer's files into each checkpoint folder"
            )
        config = {k: v for k, v in json.loads(config_path.read_text()).items() if k not in _RUN_KEYS}
        if first_config is None:
            first_config = config
            continue
        changed = sorted(k for k in set(config) | set(first_config) if config.get(k) != first_config.get(k))
        if changed:
            raise NeurometryError(
                f"checkpoint {checkpoint.path.name} is another architecture than {checkpoints[0].path.name} (its "
                f"config differs in {', '.join(changed[:3])}); record each architecture as its own series"
            )


def record_checkpoints(
    model: str | LoadedModel | None,
    data: str | os.PathLike,
    points: list[str],
    out: str | os.PathLike,
    checkpoints: str | os.PathLike | list,
    *,
    series: str | None = None,
    steps: dict[str, int] | str | os.PathLike | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
    model_dtype: str | None = None,
    **options,
) -> SeriesResult:
    """Record ``points`` of every checkpoint over ``data`` into ``out``, one run per checkpoint in series
    ``series`` (default: the model's name, or the checkpoints' folder's).

    ``model``: for state dict checkpoints, the base model they are loaded into (a name, folder,
    ``module:attribute`` or ``LoadedModel``); for checkpoint folders None (each folder is the model) or a
    name used only for the series. ``steps``: a ``--steps`` file or a name -> step mapping. ``options`` go
    to :func:`neurometry.record.record` (``reduce``, ``dtype``, ``batch_size``, ...). Rerunning resumes: a
    checkpoint recorded complete before is left as it is, one half recorded is resumed.
    """
    if steps is not None and not isinstance(steps, dict):
        steps = read_steps_file(steps)
    found = find_checkpoints(checkpoints, steps)
    base = None
    if found[0].kind == "state_dict":
        if model is None:
            raise NeurometryError(
                f"{found[0].path.name} is a state dict: name the base model it is loaded into (zoo name, folder "
                "or module:attribute)"
            )
        base = load_model(model, device=device, dtype=model_dtype) if isinstance(model, str) else model
    check_checkpoints(found, base)
    if series is None:
        named = base.name if base is not None else (model if isinstance(model, str) else None)
        series = default_run_name(named) if named else default_run_name(str(found[0].path.parent.resolve()))
    check_series_name(series)
    out = Path(out)
    result = SeriesResult(out, series)
    recorded = _recorded_steps(out, series)
    # a base model the caller passed in gets its own weights back at the end (one CPU copy meanwhile)
    original = ({k: v.detach().to("cpu", copy=True) for k, v in base.module.state_dict().items()}
                if isinstance(model, LoadedModel) else None)
    try:
        _record_each(found, base, data, points, out, series, recorded, result, progress, device, model_dtype,
                     options)
    finally:
        if original is not None:
            base.module.load_state_dict(original, strict=True)
    return result


def _record_each(found: list[Checkpoint], base: LoadedModel | None, data, points: list[str], out: Path,
                 series: str, recorded: dict, result: SeriesResult, progress: bool, device, model_dtype,
                 options: dict) -> None:
    hashes: dict[str, int] = {}
    # one catalog connection held open throughout (from the first checkpoint recorded, which may create the
    # store): SQLite checkpoints its log (and syncs) each time the last connection closes, ~7 ms a checkpoint
    store = open_store(out) if out.exists() else None
    # state dicts loaded into one model: its store, data, hooks and writer set up once, writes overlapped
    session = (SeriesSession(base, data, points, out, device=device, model_dtype=model_dtype, **options)
               if base is not None and set(options) <= set(SeriesSession.OPTIONS) else None)
    try:
        for checkpoint in tqdm(found, desc=f"record {series}", unit="checkpoint", file=sys.stderr,
                               disable=not progress, dynamic_ncols=True):
            digest = weights_hash(checkpoint)
            if digest in hashes:
                result.duplicates.append((checkpoint.step, hashes[digest]))
                print(f"note: checkpoint {checkpoint.path.name} (step {checkpoint.step}) has the same weights as step "
                      f"{hashes[digest]}; not recorded again", file=sys.stderr)
                continue
            hashes[digest] = checkpoint.step
            run_id = run_name(series, checkpoint.step)
            previous = recorded.get(checkpoint.step)
            if previous == (run_id, digest):
                result.already_complete.append(checkpoint.step)
            else:
                if previous is not None:  # recorded from other weights (the file was replaced, or its step moved)
                    delete_run(store, previous[0])  # previous is only known from an existing store
                if base is not None:
                    _load_state_dict(base, checkpoint.path)
                    spec: str | LoadedModel = base
                else:
                    spec = str(checkpoint.path)
                step = SeriesStep(series, checkpoint.step, run_id, str(checkpoint.path.resolve()), digest)
                if session is not None:
                    session.record(run_id, step)
                else:
                    record(spec, data, points, out, run=run_id, progress=False, device=device,
                           model_dtype=model_dtype, series_step=step, **options)
                store = store or (open_store(out) if out.exists() else None)
            result.runs.append(run_id)
            result.steps.append(checkpoint.step)
    except BaseException:
        if session is not None:
            session.close(quiet=True)  # the runs handed over are still committed; this error is the one to see
        raise
    else:
        if session is not None:
            session.close()
    finally:
        if store is not None:
            store.close()


def _load_state_dict(base: LoadedModel, path: Path) -> None:
    from safetensors.torch import load_file

    tensors = load_file(str(path), device=str(base.device) if not base.device_map else "cpu")
    base.module.load_state_dict(tensors, strict=True)


def _recorded_steps(out: Path, series: str) -> dict[int, tuple[str, str | None]]:
    """step -> (run, weights hash) of the series' checkpoints already recorded in ``out`` (none for a new store)."""
    if not out.exists():
        return {}
    store = open_store(out)
    try:
        if series not in store.series_names():
            return {}
        complete = {r.run_id for r in store.runs() if r.complete}
        return {s.step: (s.run_id, s.weights_hash) for s in store.series(series) if s.run_id in complete}
    finally:
        store.close()
