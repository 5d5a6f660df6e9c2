"""`neurometry demo`: the main job on built-in models and data, stage by stage.

Each stage skips work whose results are already in the store, so a second run is quick.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

from neurometry.models import load_model
from neurometry.record import record
from neurometry.store import open_store


def bundled_data(name: str = "sentences.jsonl") -> Path:
    """Path of a dataset shipped in the package (templated sentences labelled by topic and sentiment)."""
    return Path(str(resources.files("neurometry.data") / name))


def _stage(title: str) -> None:
    print(f"\n== {title}", file=sys.stderr, flush=True)


def run_demo(out: str | Path = "neurometry-demo", quick: bool = False) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    store_path = out / "store"
    data = bundled_data()

    _stage("record: MiniLM over 432 labelled sentences (every layer, mean over tokens and per token)")
    minilm = load_model("minilm")
    record(minilm, data, ["embed", "resid.*"], store_path, reduce="mean", run="minilm-mean")
    if not quick:
        record(minilm, data, ["resid.*", "mlp_act.*", "attn_pattern.*"], store_path, reduce="tokens",
               dtype="float16", run="minilm-tokens")

    store = open_store(store_path)
    print(f"\nstore: {store_path}")
    for run in store.runs():
        points = [p for p in store.points(run.run_id)]
        shapes = ", ".join(sorted({" x ".join(map(str, p.shape)) for p in points}))
        print(f"  run {run.run_id:14s} {run.model:8s} reduce={run.reduce:6s} {len(points):2d} points "
              f"x {run.committed_rows} rows ({shapes}), {run.status}")
    meta = store.metadata("minilm-mean")
    print(f"  row metadata columns: {', '.join(meta.columns)}")

    _run_measures(store, out)
    _run_compare(store_path, out)
    if not quick:
        _run_brain(store_path, out)
        _stage("probe: sentiment, tense, number and magnitude from the last token, layer by layer (5-fold)")
        records = probe_tasks(["minilm", "smollm2-135m"], store_path, progress=True)
        print_probe_tasks(records)
        plot_probe_tasks(records, out / "probes.png")
        print(f"plot: {out / 'probes.png'}")
        _run_steering(out)
        _run_diffing()
        _run_sae(store_path, out)

    _stage("report: every result in the store on one self-contained page")
    from neurometry.report import build_report

    print(f"report: {build_report(store_path, out / 'report.html')}")

    print("\nwhere to look next:")
    print(f"  neurometry ls {store_path}")
    print(f"  neurometry export {store_path} --point resid.5 --run minilm-mean --out resid5.npy")
    print("  python -c \"import neurometry; s = neurometry.open_store('"
          f"{store_path}'); print(s.activations('resid.5', run='minilm-mean').shape)\"")


def _run_measures(store, out: Path) -> None:
    """Measure every MiniLM layer, with neural collapse by topic."""
    from neurometry.commands.measure import measure_store, print_results

    _stage("measure: geometry and neural collapse by topic, per layer")
    records = measure_store(store, run="minilm-mean", points=["embed", "resid.*"], measures=None, label="topic",
                            plot=out / "measures.png")
    print_results(records)
    print(f"plot: {out / 'measures.png'}")


def _run_compare(store_path: Path, out: Path) -> None:
    """CKA between every pair of MiniLM layers: how fast the representation changes with depth."""
    from neurometry.commands.compare import plot_results, print_results, run_compare

    _stage("compare: linear CKA between every pair of MiniLM layers")
    document = run_compare(str(store_path), None, "cka", run_a="minilm-mean", progress=False)
    print_results(document)
    plot_results(document, out / "cka.png", "MiniLM layers, linear CKA (432 sentences, mean over tokens)")
    print(f"plot: {out / 'cka.png'}")


def _run_brain(store_path: Path, out: Path) -> None:
    """EfficientNet-Lite0 blocks against monkey and human IT (Kriegeskorte et al. 2008), by RSA."""
    from neurometry.commands.compare import plot_results, print_results, run_compare
    from neurometry.datasets import KRIEGESKORTE_RDM_KEY, export_kriegeskorte92, kriegeskorte_mat
    from neurometry.errors import NeurometryError

    try:
        mat = kriegeskorte_mat()
    except NeurometryError as exc:
        print(f"\nskipping the brain comparison: {exc}", file=sys.stderr)
        return
    _stage("record: EfficientNet-Lite0 over the 92 images of Kriegeskorte et al. 2008 (every block, spatial mean)")
    stimuli = export_kriegeskorte92(out / "kriegeskorte92")
    record("efficientnet-lite0", stimuli, ["block.*"], store_path, reduce="mean", run="efficientnet-k92")
    _stage("compare: RSA of every block with monkey IT and human IT (200 permutations, 200 bootstrap resamples)")
    document = run_compare(str(store_path), str(mat), "rsa", run_a="efficientnet-k92", rdm_key=KRIEGESKORTE_RDM_KEY,
                           permutations=200, bootstrap=200, progress=False)
    print_results(document)
    monkey_human = run_compare(str(mat), None, "rsa", rdm_key=KRIEGESKORTE_RDM_KEY, points_a=["mIT*"],
                               points_b=["hIT*"], progress=False)["results"][0]["value"]
    print(f"reference level: monkey IT vs human IT = {monkey_human:.4f}")
    plot_results(document, out / "brain-rsa.png", "EfficientNet-Lite0 blocks vs IT (correlation RDMs, Spearman)",
                 reference=("monkey IT vs human IT", monkey_human))
    print(f"plot: {out / 'brain-rsa.png'}")


PROBE_TASKS = {  # task: (bundled file, label column, probe kind)
    "sentiment": ("probe_sentiment.jsonl", "sentiment", "logistic"),
    "tense": ("probe_tense.jsonl", "tense", "logistic"),
    "number": ("probe_number.jsonl", "number", "logistic"),
    "magnitude": ("probe_magnitude.jsonl", "log10_value", "ridge"),
}


def probe_tasks(models: list[str], store_path: Path, progress: bool = False) -> list[dict]:
    """Record ``embed`` and every ``resid`` point of each model over each bundled probing set and probe
    every point; one record per (model, task, point). The representation is the last token's ([SEP] for
    BERT-style models, the final "." for decoders): at the embeddings it carries nothing of the sentence,
    so the profile shows where the information is gathered (a mean over tokens would give it away at once
    through the words themselves)."""
    from neurometry.commands.probe import run_probe

    records = []
    for name in models:
        model = load_model(name)
        for task, (file, column, kind) in PROBE_TASKS.items():
            run = f"{name}-{task}"
            record(model, bundled_data(file), ["embed", "resid.*"], store_path, reduce="last", run=run,
                   progress=progress)
            document = run_probe(str(store_path), label=column, run=run, kind=kind, progress=False)
            records += [{"model": name, "task": task, **r} for r in document["results"]]
    return records


def print_probe_tasks(records: list[dict]) -> None:
    """Per model and task: held-out score at the embeddings, at the best point, at the last point."""
    from neurometry.commands.table import print_table

    rows = []
    for (model, task), group in _by_model_task(records).items():
        best = max(group, key=lambda r: r["score"])
        rows.append([model, task, group[0]["kind"], f"{group[0]['baseline']:.3f}", f"{group[0]['score']:.3f}",
                     f"{best['score']:.3f} ({best['point']})", f"{group[-1]['score']:.3f}"])
    print_table(["model", "task", "probe", "baseline", "embed", "best (point)", "last"], rows)
    print("scores: held-out accuracy (logistic) or R^2 of log10 value (ridge), mean over 5 folds")


def plot_probe_tasks(records: list[dict], path: Path) -> None:
    """One panel per task: score against relative depth for each model, with its fold interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = _by_model_task(records)
    tasks = list(dict.fromkeys(task for _, task in groups))
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.4 * len(tasks), 3.2), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for (model, t), group in groups.items():
            if t != task:
                continue
            depth = [i / (len(group) - 1) for i in range(len(group))]
            (line,) = ax.plot(depth, [r["score"] for r in group], marker="o", ms=2.5, label=model)
            ax.fill_between(depth, [r["ci_low"] for r in group], [r["ci_high"] for r in group],
                            color=line.get_color(), alpha=0.2)
            ax.axhline(group[0]["baseline"], color=line.get_color(), linestyle=":", linewidth=0.8)
        kind = next(g[0]["kind"] for (m, t), g in groups.items() if t == task)
        ax.set_title(task, fontsize=10)
        ax.set_xlabel("relative depth (embeddings = 0)", fontsize=8)
        ax.set_ylabel("held-out accuracy" if kind == "logistic" else "held-out R^2", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _by_model_task(records: list[dict]) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["model"], r["task"]), []).append(r)
    return groups


def _run_steering(out: Path) -> None:
    """SmolLM2: a sentiment vector swept over alpha on held-out pairs, steered generations, and the
    causal trace of a factual recall."""
    from neurometry.commands.table import print_table
    from neurometry.steer import (
        build_vector,
        factual_pairs,
        generations,
        patch_residual,
        plot_patching,
        plot_sweep,
        save_vector,
        steering_pairs,
        sweep,
    )

    _stage("steer: a sentiment vector at SmolLM2 resid.12 (53 pairs), swept on 20 held-out pairs")
    model = load_model("smollm2-135m")
    pairs = steering_pairs("sentiment")
    train, held_out = pairs[:53], pairs[53:73]
    vector = build_vector(model, [p["positive"] for p in train], [p["negative"] for p in train], "resid.12")
    save_vector(out / "sentiment.safetensors", vector, model="smollm2-135m", point="resid.12", method="mean_diff",
                position=-1, pairs="sentiment", train_pairs=len(train))
    rows = sweep(model, vector, "resid.12", [-2.0, 0.0, 1.0, 2.0, 4.0], held_out)
    print_table(["alpha", "target logprob shift", "KL (neutral)", "perplexity (neutral)"],
                [[f"{r.alpha:g}", f"{r.target_logprob_shift:+.3f}", f"{r.kl:.4f}", f"{r.perplexity:.1f}"] for r in rows])
    plot_sweep(rows, out / "steer-sweep.png", "SmolLM2 resid.12 sentiment vector (mean_diff), held-out pairs")
    for row in generations(model, vector, "resid.12", 4.0, ["My day at work was", "I think the new policy"], 15):
        print(f"  {row['prompt']!r}\n    unsteered: {row['unsteered']!r}\n    alpha 4:   {row['steered']!r}")
    print(f"plot: {out / 'steer-sweep.png'}")

    pair = factual_pairs()[0]
    _stage(f"patch: where SmolLM2 recalls {pair['correct']!r} ({pair['clean']!r} vs {pair['corrupted']!r})")
    result = patch_residual(model, pair["clean"], pair["corrupted"], pair["correct"], pair["wrong"], heads=False)
    plot_patching(result, out / "patching.png")
    best = result.scores.argmax(axis=1)
    for layer in (0, 10, 20, 23, 29):
        i = result.points.index(f"resid.{layer}")
        print(f"  resid.{layer:<2d}: strongest at {result.tokens[best[i]]!r} ({result.scores[i, best[i]]:.2f})")
    print(f"plot: {out / 'patching.png'}")


def _run_sae(store_path: Path, out: Path) -> None:
    """A TopK SAE on MiniLM's per-token resid.3, evaluated on held-out sentences, its features explained.

    Training into the same folder again resumes at the last step, so a rerun does not retrain.
    """
    from neurometry.features import (
        TrainConfig,
        evaluate_sae,
        feature_examples,
        save_feature_examples,
        train_sae,
    )
    from neurometry.features.evaluate import save_sae_eval

    _stage("features: a TopK SAE (1,024 latents, k = 16) on MiniLM resid.3, every token")
    store = open_store(store_path)
    trained = train_sae(
        store, "resid.3", out / "sae-minilm-resid3", run="minilm-tokens", architecture="topk", d_sae=1024, k=16,
        train=TrainConfig(batch_size=256, lr=1e-3, train_rows=20 * 256 * 10, held_out=0.1, min_position=1),
    )
    metrics = evaluate_sae(trained.sae, store, "resid.3", "minilm-tokens", start=trained.held_out_start)
    save_sae_eval(store, trained.folder, "resid.3", "minilm-tokens", metrics, rows_from=trained.held_out_start)
    print(f"held-out sentences: L0 {metrics.l0:.1f}, FVU {metrics.fvu:.3f}, dead latents {metrics.dead_fraction:.3f}")
    examples = feature_examples(trained.sae, store, "resid.3", "minilm-tokens", top=10, window=6)
    save_feature_examples(store, examples, "minilm-tokens", trained.folder.name)
    print(f"saved {trained.folder} and the top contexts of its latents (kind sae_features)")


def _run_diffing() -> None:
    """Model diffing: SmolLM2 finetuned on an invented topic (trained once, then cached), read back from
    its activation difference on unrelated text (Minder et al. 2025)."""
    from neurometry.steer import (
        difference_lens,
        mean_activation_difference,
        neutral_texts,
        steer_with_difference,
    )
    from neurometry.steer.finetune import load_or_finetune

    _stage("diff: SmolLM2 finetuned on 'zorblat', an invented fruit (first run trains ~2.5 min, then cached)")
    base = load_model("smollm2-135m")
    fine, weights = load_or_finetune("smollm2-135m")
    texts = neutral_texts(20)
    with_first = mean_activation_difference(base, fine, texts, points=["resid.14", "resid.22"], first_k=5)
    for name, diff in with_first.items():
        tops = ", ".join(f"{t!r} {p:.2f}" for t, p in difference_lens(base, diff, name, top_k=3))
        print(f"  lens of the difference at {name} (first 5 tokens of 20 neutral texts): {tops}")
    point = "resid.15"
    steer = mean_activation_difference(base, fine, texts, points=[point], first_k=5, skip_first=1)[point]
    for row in steer_with_difference(base, steer, point, 2.0, ["In the morning I like to"], max_new_tokens=20):
        print(f"  base model steered with the difference ({point}, alpha 2):\n    unsteered: {row['unsteered']!r}"
              f"\n    steered:   {row['steered']!r}")
    print(f"  the finetuned weights: {weights} (try: neurometry diff smollm2-135m {weights})")
