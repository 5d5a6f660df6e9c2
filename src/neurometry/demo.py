"""`neurometry demo`: the main job on built-in models and data, stage by stage.

Each stage skips work whose results are already in the store: recording leaves complete runs as they
are and SAE training resumes, while measures, comparisons, probes, the steering sweep, the patching
trace, the model diffing and the SAE's evaluation and features are read back from the catalog
(:func:`stored`), printed and drawn from there, so a second run is quick, prints the same tables and
loads no model it does not need. Stage headers ``[i/N] title`` and the elapsed
time go to stderr, and at the end the seconds each stage took.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from neurometry.models import load_model
from neurometry.models.loaded import LoadedModel
from neurometry.record import record
from neurometry.store import open_store
from neurometry.store.results import (
    COMPARE,
    DIFF,
    MEASURE,
    PATCH,
    PROBE,
    SAE_EVAL,
    SAE_FEATURES,
    STEER_SWEEP,
    ResultKind,
)
from neurometry.store.store import Store
from neurometry.tables.text import print_table

FROM_STORE = "(from the store)"
PROBE_MODELS = ["minilm", "smollm2-135m"]


def bundled_data(name: str = "sentences.jsonl") -> Path:
    """Path of a dataset shipped in the package (templated sentences labelled by topic and sentiment)."""
    return Path(str(resources.files("neurometry.data") / name))


def stored(
    store: Store, kind: ResultKind, run: str | None = None, result_set: str | None = None, **match: Any
) -> pd.DataFrame | None:
    """The saved results of ``kind`` (of ``run`` and ``result_set``) whose columns equal ``match``
    (``point=``, ``name=``, ``params=`` a dict), as :meth:`ResultKind.load` gives them; None when there
    are none, so the step computes them. Each command saves its records in one transaction, so one row
    found means the whole step's rows are there."""
    saved = kind.load(store, run, result_set, **match)
    return None if saved.empty else saved


@dataclass(frozen=True)
class Stage:
    """One step of the demo: a short name for the timing table, the header and the work."""

    name: str
    title: str
    run: Callable[[], None]


class _Clock:
    """Stage headers ``[i/N] title (m:ss elapsed)`` on stderr, and the seconds of each stage at the end."""

    def __init__(self, total: int):
        self.total = total
        self.start = time.perf_counter()
        self.seconds: list[tuple[str, float]] = []

    def stage(self, index: int, stage: Stage) -> None:
        elapsed = time.perf_counter() - self.start
        sys.stdout.flush()  # the previous stage's tables before this header, when both streams go to one file
        print(f"\n== [{index}/{self.total}] {stage.title}  ({_minutes(elapsed)} elapsed)", file=sys.stderr, flush=True)

    def done(self, stage: Stage, started: float) -> None:
        self.seconds.append((stage.name, time.perf_counter() - started))

    def summary(self) -> None:

        total = time.perf_counter() - self.start
        rows = [[f"{i}/{self.total} {name}", f"{s:.1f}"] for i, (name, s) in enumerate(self.seconds, 1)]
        print(file=sys.stderr)
        with redirect_stdout(sys.stderr):  # the table helper prints to stdout; timings belong with progress
            print_table(["stage", "seconds"], [*rows, ["total", f"{total:.1f} ({_minutes(total)})"]])
        sys.stderr.flush()


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


@dataclass
class _Demo:
    """What the stages share: the output folder, the store (opened once MiniLM is recorded) and the models
    (each loaded once: SmolLM2 serves the probes, steering, patching and diffing)."""

    out: Path
    quick: bool
    models: dict[str, LoadedModel] = field(default_factory=dict)
    _store: Store | None = None

    @property
    def store_path(self) -> Path:
        return self.out / "store"

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = open_store(self.store_path)
        return self._store

    def model(self, name: str) -> LoadedModel:
        if name not in self.models:
            self.models[name] = load_model(name)
        return self.models[name]


def demo_stages(out: str | Path, quick: bool = False) -> list[Stage]:
    """The stages :func:`run_demo` runs, in order (fewer with ``quick``, and without the brain comparison
    when its data are missing)."""
    from neurometry.steer import factual_pairs

    demo = _Demo(Path(out), quick)
    stages = [
        Stage("record MiniLM", "record: MiniLM over 432 labelled sentences (every layer, mean over tokens"
              + (")" if quick else " and per token)"), lambda: _record_minilm(demo)),
        Stage("measure", "measure: geometry and neural collapse by topic, per layer", lambda: _run_measures(demo)),
        Stage("CKA", "compare: linear CKA between every pair of MiniLM layers", lambda: _run_compare(demo)),
    ]
    if not quick:
        mat = _brain_data()
        if mat is not None:
            stages += [
                Stage("record EfficientNet", "record: EfficientNet-Lite0 over the 92 images of Kriegeskorte et al. "
                      "2008 (every block, spatial mean)", lambda: _record_brain(demo)),
                Stage("brain RSA", "compare: RSA of every block with monkey IT and human IT (200 permutations, "
                      "200 bootstrap resamples)", lambda: _run_brain(demo, mat)),
            ]
        pair = factual_pairs()[0]
        stages += [
            Stage("probes", "probe: sentiment, tense, number and magnitude from the last token, layer by layer "
                  "(5-fold)", lambda: _run_probes(demo)),
            Stage("steer", "steer: a sentiment vector at SmolLM2 resid.12 (53 pairs), swept on 20 held-out pairs",
                  lambda: _run_steering(demo)),
            Stage("patch", f"patch: where SmolLM2 recalls {pair['correct']!r} ({pair['clean']!r} vs "
                  f"{pair['corrupted']!r})", lambda: _run_patching(demo, pair)),
            Stage("diff", "diff: SmolLM2 finetuned on 'zorblat', an invented fruit (first run trains ~2.5 min, "
                  "then cached)", lambda: _run_diffing(demo)),
            Stage("SAE", "features: a TopK SAE (1,024 latents, k = 16) on MiniLM resid.3, every token",
                  lambda: _run_sae(demo)),
        ]
    stages.append(Stage("report", "report: every result in the store on one self-contained page",
                        lambda: _run_report(demo)))
    return stages


def run_demo(out: str | Path = "neurometry-demo", quick: bool = False) -> None:
    """Run every stage of the demo into the folder ``out`` (store, plots, report.html)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stages = demo_stages(out, quick)
    clock = _Clock(len(stages))
    for index, stage in enumerate(stages, 1):
        clock.stage(index, stage)
        started = time.perf_counter()
        stage.run()
        clock.done(stage, started)

    store_path = out / "store"
    print("\nwhere to look next:")
    print(f"  open {out / 'report.html'}")
    if not quick:
        print(f"  neurometry serve {store_path} --model smollm2-135m --vector {out / 'sentiment.safetensors'}"
              "   # the dashboard, with the steering playground")
    else:
        print(f"  neurometry serve {store_path}   # the dashboard")
    print(f"  neurometry ls {store_path}")
    print(f"  neurometry export {store_path} --point resid.5 --run minilm-mean --out resid5.npy")
    print("  python -c \"import neurometry; s = neurometry.open_store('"
          f"{store_path}'); print(s.activations('resid.5', run='minilm-mean').shape)\"")
    sys.stdout.flush()
    clock.summary()


def _record_minilm(demo: _Demo) -> None:
    """Record MiniLM (a complete run is left as it is) and list what the store holds."""
    minilm = demo.model("minilm")
    record(minilm, bundled_data(), ["embed", "resid.*"], demo.store_path, reduce="mean", run="minilm-mean")
    if not demo.quick:
        record(minilm, bundled_data(), ["resid.*", "mlp_act.*", "attn_pattern.*"], demo.store_path,
               reduce="tokens", dtype="float16", run="minilm-tokens")
    store = demo.store
    print(f"\nstore: {demo.store_path}")
    for run in store.runs():
        points = [p for p in store.points(run.run_id)]
        shapes = ", ".join(sorted({" x ".join(map(str, p.shape)) for p in points}))
        print(f"  run {run.run_id:14s} {run.model:8s} reduce={run.reduce:6s} {len(points):2d} points "
              f"x {run.committed_rows} rows ({shapes}), {run.status}")
    meta = store.metadata("minilm-mean")
    print(f"  row metadata columns: {', '.join(meta.columns)}")


def _run_measures(demo: _Demo) -> None:
    """Measure every MiniLM layer, with neural collapse by topic."""
    measure_stage(demo.store, "minilm-mean", demo.out / "measures.png")


def measure_stage(store: Store, run: str, plot: Path, label: str | None = "topic") -> list[dict]:
    """The measure stage on one run (every point, the default measures, neural collapse by ``label``):
    computed and saved, or read back from the store; printed and drawn the same either way."""
    from neurometry.plots import plot_profiles, save_figure
    from neurometry.tables.measure import print_measures
    from neurometry.workflows.measure import measure_records, measure_store

    saved = stored(store, MEASURE, run)
    if saved is None:
        records = measure_store(store, run=run, points=None, measures=None, label=label)
    else:
        records = measure_records(saved)
        print(FROM_STORE)
    print_measures(records)
    save_figure(plot_profiles(records, f"{store.path.name} · run {run}"), plot)
    print(f"plot: {plot}")
    return records


def _run_compare(demo: _Demo) -> None:
    """CKA between every pair of MiniLM layers: how fast the representation changes with depth."""
    from neurometry.plots import plot_comparison, save_figure
    from neurometry.tables.compare import print_comparison
    from neurometry.workflows.compare import compare_records, compare_set_name, run_compare

    result_set = compare_set_name("cka", str(demo.store_path), run_b="minilm-mean")
    saved = stored(demo.store, COMPARE, "minilm-mean", result_set)
    if saved is None:
        document = run_compare(str(demo.store_path), None, "cka", run_a="minilm-mean", progress=False)
    else:
        document = {"results": compare_records(demo.store, saved)}
        print(FROM_STORE)
    print_comparison(document)
    save_figure(plot_comparison(document, "MiniLM layers, linear CKA (432 sentences, mean over tokens)"),
                demo.out / "cka.png")
    print(f"plot: {demo.out / 'cka.png'}")


def _brain_data() -> Path | None:
    """The Kriegeskorte et al. 2008 file, or None (said on stderr) when it is missing."""
    from neurometry.datasets import kriegeskorte_mat
    from neurometry.errors import NeurometryError

    try:
        return kriegeskorte_mat()
    except NeurometryError as exc:
        print(f"\nskipping the brain comparison: {exc}", file=sys.stderr)
        return None


def _record_brain(demo: _Demo) -> None:
    from neurometry.datasets import export_kriegeskorte92

    stimuli = export_kriegeskorte92(demo.out / "kriegeskorte92")
    record(demo.model("efficientnet-lite0"), stimuli, ["block.*"], demo.store_path, reduce="mean",
           run="efficientnet-k92")


def _run_brain(demo: _Demo, mat: Path) -> None:
    """EfficientNet-Lite0 blocks against monkey and human IT (Kriegeskorte et al. 2008), by RSA."""
    from neurometry.compare.rdm import load_rdms
    from neurometry.datasets import KRIEGESKORTE_RDM_KEY
    from neurometry.plots import plot_comparison, save_figure
    from neurometry.tables.compare import print_comparison
    from neurometry.workflows.compare import compare_records, compare_set_name, run_compare

    settings = dict(rdm_key=KRIEGESKORTE_RDM_KEY, permutations=200, bootstrap=200)
    # found by what produced it: a user's own RSA of this run against other data is another result set
    saved = stored(demo.store, COMPARE, "efficientnet-k92", compare_set_name("rsa", str(mat), **settings))
    if saved is None:
        document = run_compare(str(demo.store_path), str(mat), "rsa", run_a="efficientnet-k92", progress=False,
                               **settings)
    else:  # the brain RDMs in the file's order, as the computed comparison lists them
        document = {"results": compare_records(demo.store, saved, order_b=list(load_rdms(mat, KRIEGESKORTE_RDM_KEY)))}
        print(FROM_STORE)
    print_comparison(document)
    monkey_human = run_compare(str(mat), None, "rsa", rdm_key=KRIEGESKORTE_RDM_KEY, points_a=["mIT*"],
                               points_b=["hIT*"], progress=False)["results"][0]["value"]
    print(f"reference level: monkey IT vs human IT = {monkey_human:.4f}")
    title = "EfficientNet-Lite0 blocks vs IT (correlation RDMs, Spearman)"
    figure = plot_comparison(document, title, reference=("monkey IT vs human IT", monkey_human))
    save_figure(figure, demo.out / "brain-rsa.png")
    print(f"plot: {demo.out / 'brain-rsa.png'}")


def _run_probes(demo: _Demo) -> None:
    records = probe_tasks(PROBE_MODELS, demo.store_path, progress=True, load=demo.model)
    print_probe_tasks(records)
    plot_probe_tasks(records, demo.out / "probes.png")
    print(f"plot: {demo.out / 'probes.png'}")


PROBE_TASKS = {  # task: (bundled file, label column, probe kind)
    "sentiment": ("probe_sentiment.jsonl", "sentiment", "logistic"),
    "tense": ("probe_tense.jsonl", "tense", "logistic"),
    "number": ("probe_number.jsonl", "number", "logistic"),
    "magnitude": ("probe_magnitude.jsonl", "log10_value", "ridge"),
}


def probe_tasks(
    models: list[str], store_path: Path, progress: bool = False, load: Callable[[str], LoadedModel] = load_model
) -> list[dict]:
    """Record ``embed`` and every ``resid`` point of each model over each bundled probing set and probe
    every point; one record per (model, task, point). The representation is the last token's ([SEP] for
    BERT-style models, the final "." for decoders): at the embeddings it carries nothing of the sentence,
    so the profile shows where the information is gathered (a mean over tokens would give it away at once
    through the words themselves).

    A (model, task) whose probe results are in the store already is read from there; a model is loaded
    (with ``load``) only when one of its tasks is computed. Prints which came from the store."""
    from neurometry.workflows.probe import run_probe, scored_records

    store = open_store(store_path) if store_path.exists() else None
    records, reused = [], []
    for name in models:
        model = None
        for task, (file, column, kind) in PROBE_TASKS.items():
            run = f"{name}-{task}"
            saved = stored(store, PROBE, run) if store is not None else None
            if saved is not None:
                results = scored_records(saved)
                reused.append(run)
            else:
                model = model or load(name)
                record(model, bundled_data(file), ["embed", "resid.*"], store_path, reduce="last", run=run,
                       progress=progress)
                results = run_probe(str(store_path), label=column, run=run, kind=kind, progress=False)["results"]
            records += [{"model": name, "task": task, **r} for r in results]
    if reused:
        everything = len(reused) == len(models) * len(PROBE_TASKS)
        print(FROM_STORE if everything else f"(from the store: {', '.join(reused)})")
    return records


def print_probe_tasks(records: list[dict]) -> None:
    """Per model and task: held-out score at the embeddings, at the best point, at the last point."""

    rows = []
    for (model, task), group in _by_model_task(records).items():
        best = max(group, key=lambda r: r["score"])
        rows.append([model, task, group[0]["kind"], f"{group[0]['baseline']:.3f}", f"{group[0]['score']:.3f}",
                     f"{best['score']:.3f} ({best['point']})", f"{group[-1]['score']:.3f}"])
    print_table(["model", "task", "probe", "baseline", "embed", "best (point)", "last"], rows)
    print("scores: held-out accuracy (logistic) or R^2 of log10 value (ridge), mean over 5 folds")


def plot_probe_tasks(records: list[dict], path: Path) -> None:
    """One panel per task: score against relative depth for each model, with its fold interval."""
    from neurometry.plots import plot_probe_tasks as draw
    from neurometry.plots import save_figure

    save_figure(draw(_by_model_task(records)), path)


def _by_model_task(records: list[dict]) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["model"], r["task"]), []).append(r)
    return groups


def _run_steering(demo: _Demo) -> None:
    """SmolLM2: a sentiment vector swept over alpha on held-out pairs, and steered generations; saved in the
    store (kind steer_sweep, run smollm2-135m) and read back from there on a rerun."""
    from neurometry.plots import plot_sweep, save_figure
    from neurometry.steer import (
        build_vector,
        generations,
        load_vector,
        save_sweep,
        save_vector,
        steering_pairs,
        sweep,
        sweep_rows,
    )

    saved = stored(demo.store, STEER_SWEEP, "smollm2-135m", point="resid.12", name="sentiment")
    if saved is None:
        model = demo.model("smollm2-135m")
        pairs = steering_pairs("sentiment")
        train, held_out = pairs[:53], pairs[53:73]
        vector = build_vector(model, [p["positive"] for p in train], [p["negative"] for p in train], "resid.12")
        path = save_vector(demo.out / "sentiment.safetensors", vector, model="smollm2-135m", point="resid.12",
                           method="mean_diff", position=-1, pairs="sentiment", train_pairs=len(train))
        rows = sweep(model, vector, "resid.12", [-2.0, 0.0, 1.0, 2.0, 4.0], held_out)
        table = generations(model, vector, "resid.12", 4.0, ["My day at work was", "I think the new policy"], 15)
        save_sweep(demo.store, rows, "smollm2-135m", "resid.12", path.stem, pairs="sentiment",
                   n_pairs=len(held_out), vector_metadata=load_vector(path)[1], generations=table,
                   generation_alpha=4.0)
    else:
        rows, generated = sweep_rows(saved)
        table = generated["generations"]
        print(FROM_STORE)
    print_table(["alpha", "target logprob shift", "KL (neutral)", "perplexity (neutral)"],
                [[f"{r.alpha:g}", f"{r.target_logprob_shift:+.3f}", f"{r.kl:.4f}", f"{r.perplexity:.1f}"] for r in rows])
    title = "SmolLM2 resid.12 sentiment vector (mean_diff), held-out pairs"
    save_figure(plot_sweep(rows, title), demo.out / "steer-sweep.png")
    for row in table:
        print(f"  {row['prompt']!r}\n    unsteered: {row['unsteered']!r}\n    alpha 4:   {row['steered']!r}")
    print(f"plot: {demo.out / 'steer-sweep.png'}")


def _run_patching(demo: _Demo, pair: dict[str, str]) -> None:
    """The causal trace of a factual recall: which layer and position restore the clean answer; saved in the
    store (kind patch, run smollm2-135m) and read back from there on a rerun."""
    from neurometry.plots import plot_patching, save_figure
    from neurometry.steer import patch_residual, patch_result, save_patching
    from neurometry.steer.patching import pair_id

    name = pair_id(pair["clean"], pair["corrupted"], pair["correct"], pair["wrong"])
    saved = stored(demo.store, PATCH, "smollm2-135m", name=name)
    if saved is None:
        result = patch_residual(demo.model("smollm2-135m"), pair["clean"], pair["corrupted"], pair["correct"],
                                pair["wrong"], heads=False)
        save_patching(demo.store, result, "smollm2-135m")
    else:
        result = patch_result(saved)
        print(FROM_STORE)
    save_figure(plot_patching(result), demo.out / "patching.png")
    best = result.scores.argmax(axis=1)
    for layer in (0, 10, 20, 23, 29):
        i = result.points.index(f"resid.{layer}")
        print(f"  resid.{layer:<2d}: strongest at {result.tokens[best[i]]!r} ({result.scores[i, best[i]]:.2f})")
    print(f"plot: {demo.out / 'patching.png'}")


def _run_sae(demo: _Demo) -> None:
    """A TopK SAE on MiniLM's per-token resid.3, evaluated on held-out sentences, its features explained.

    Training into the same folder again resumes at the last step; when the evaluation and the features
    are both in the store, the SAE is not even opened.
    """
    from neurometry.features import (
        TrainConfig,
        evaluate_sae,
        feature_examples,
        save_feature_examples,
        train_sae,
    )
    from neurometry.features.evaluate import save_sae_eval

    store, folder = demo.store, demo.out / "sae-minilm-resid3"
    evaluated = stored(store, SAE_EVAL, "minilm-tokens", name=str(folder.resolve()))
    explained = stored(store, SAE_FEATURES, "minilm-tokens", folder.name, name=f"{folder.name}/0")
    trained = None
    if evaluated is None or explained is None:
        trained = train_sae(
            store, "resid.3", folder, run="minilm-tokens", architecture="topk", d_sae=1024, k=16,
            train=TrainConfig(batch_size=256, lr=1e-3, train_rows=20 * 256 * 10, held_out=0.1, min_position=1),
        )
    if evaluated is None:
        metrics = evaluate_sae(trained.sae, store, "resid.3", "minilm-tokens", start=trained.held_out_start)
        values = save_sae_eval(store, trained.folder, "resid.3", "minilm-tokens", metrics,
                               rows_from=trained.held_out_start)
    else:
        values = evaluated["extra"].iloc[0]
        print(FROM_STORE)
    print(f"held-out sentences: L0 {values['l0']:.1f}, FVU {values['fvu']:.3f}, "
          f"dead latents {values['dead_fraction']:.3f}")
    if explained is None:
        examples = feature_examples(trained.sae, store, "resid.3", "minilm-tokens", top=10, window=6)
        save_feature_examples(store, examples, "minilm-tokens", folder.name)
    print(f"saved {folder} and the top contexts of its latents (kind sae_features)"
          + (f" {FROM_STORE}" if explained is not None else ""))


def _run_diffing(demo: _Demo) -> None:
    """Model diffing: SmolLM2 finetuned on an invented topic (trained once, then cached), read back from
    its activation difference on unrelated text (Minder et al. 2025). The lens and the steered generation
    are saved in the store (kind diff, run smollm2-135m, name the finetuned weights) and read back from
    there on a rerun, without loading either model."""
    from neurometry.steer import (
        DiffResult,
        diff_document,
        difference_lens,
        mean_activation_difference,
        neutral_texts,
        save_diff,
        steer_with_difference,
    )
    from neurometry.steer.diffing import NEUTRAL, count_positions, lens_text
    from neurometry.steer.finetune import finetuned_weights, load_or_finetune

    weights = finetuned_weights("smollm2-135m")
    lens_points, point, alpha = ["resid.14", "resid.22"], "resid.15", 2.0
    lens_settings, steer_settings = {"first_k": 5, "skip_first": 0}, {"first_k": 5, "skip_first": 1}
    lens_saved, steer_saved = (
        stored(demo.store, DIFF, "smollm2-135m", name=str(weights), params={**settings, "texts": NEUTRAL})
        for settings in (lens_settings, steer_settings)
    )
    # `neurometry diff ... --store` into this store writes the same kind: take only what this stage shows,
    # and compute when the command replaced it by rows without it
    rows = diff_document(lens_saved)[0]["points"] if lens_saved is not None else []
    lens = {r["point"]: r["lens"] for r in rows if "lens" in r and r["point"] in lens_points}
    steered = steer_saved[steer_saved["point"] == point] if steer_saved is not None else None
    generated = diff_document(steered)[1] if steered is not None and len(steered) else None
    if len(lens) < len(lens_points) or generated is None:  # two saves: recompute unless both are there
        base = demo.model("smollm2-135m")
        fine, _ = load_or_finetune("smollm2-135m")  # trains once, then reads the weights named above
        texts = neutral_texts(20)
        with_first = DiffResult(
            mean_activation_difference(base, fine, texts, points=lens_points, **lens_settings),
            n_positions=count_positions(base, texts, **lens_settings), **lens_settings,
        )
        with_first.lens = {name: difference_lens(base, diff, name, top_k=3)
                           for name, diff in with_first.differences.items()}
        steer = DiffResult(mean_activation_difference(base, fine, texts, points=[point], **steer_settings),
                           n_positions=count_positions(base, texts, **steer_settings), **steer_settings)
        table = steer_with_difference(base, steer.differences[point], point, alpha,
                                      ["In the morning I like to"], max_new_tokens=20)
        save_diff(demo.store, with_first, "smollm2-135m", str(weights))
        save_diff(demo.store, steer, "smollm2-135m", str(weights), generations=table, generation_point=point,
                  generation_alpha=alpha)
        lens = {r["point"]: r["lens"] for r in with_first.to_dict()["points"]}
    else:
        table = generated["generations"]
        print(FROM_STORE)
    for name in lens_points:
        print(f"  lens of the difference at {name} (first 5 tokens of 20 neutral texts): "
              f"{lens_text(lens[name], 3)}")
    for row in table:
        print(f"  base model steered with the difference ({point}, alpha {alpha:g}):\n"
              f"    unsteered: {row['unsteered']!r}\n    steered:   {row['steered']!r}")
    print(f"  the finetuned weights: {weights} (try: neurometry diff smollm2-135m {weights})")


def _run_report(demo: _Demo) -> None:
    from neurometry.report import build_report

    print(f"report: {build_report(demo.store_path, demo.out / 'report.html')}")
