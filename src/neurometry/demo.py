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
