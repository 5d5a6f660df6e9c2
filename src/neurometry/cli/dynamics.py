"""`neurometry dynamics fixed-points|lyapunov MODEL --store STORE`: a recurrent model as a dynamical system,
over the (trials, time, features) inputs of a run recorded in the store."""

from __future__ import annotations

import argparse
from pathlib import Path

from neurometry.cli.output import check_output_path, finish, plots, whole_number
from neurometry.cli.record import base_model
from neurometry.errors import NeurometryError


def _model(args: argparse.Namespace):
    from neurometry.models import LoadedModel, load_model
    from neurometry.models.load import state_difference

    spec = base_model(args.model)
    loaded = spec if isinstance(spec, LoadedModel) else load_model(spec)
    if args.weights:
        from neurometry.files import read_safetensors

        path = Path(args.weights)
        if path.suffix != ".safetensors" or not path.is_file():
            raise NeurometryError(f"--weights {path} is not a .safetensors file; give a checkpoint's state dict")
        state = read_safetensors(path, f"; give --weights saved from {loaded.name}", as_torch=True)
        source = "the same lab model and size" if args.model.startswith("lab:") else "the same model"
        fix = f"; give --weights saved from {source} ({args.model})"
        mismatch = state_difference({k: tuple(v.shape) for k, v in loaded.module.state_dict().items()},
                                    {k: tuple(v.shape) for k, v in state.items()})
        if mismatch:
            raise NeurometryError(f"--weights {path} does not fit {args.model}: {mismatch}{fix}")
        try:
            loaded.module.load_state_dict(state, strict=True)
        except RuntimeError as error:  # what the names and shapes do not show; the first line of torch's message
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            raise NeurometryError(f"--weights {path} does not fit {args.model}: {' '.join(lines[:2])}{fix}") from None
    return loaded


def cmd_fixed_points(args: argparse.Namespace) -> None:
    from neurometry.store import open_store
    from neurometry.workflows.dynamics import fixed_points_of_run

    if args.plot:
        check_output_path(args.plot, "--plot")
    if args.noise < 0:
        raise NeurometryError(f"--noise {args.noise} must be zero or positive")
    store = open_store(args.store)
    analysis = fixed_points_of_run(
        _model(args), store, args.run, fixed_input=None if args.input == "zero" else args.input,
        initial_states=args.initial_states, noise=args.noise, seed=args.seed, module=args.module,
    )
    found = analysis.found
    saddles = found.stability == "saddle"
    document = {
        "run": analysis.run, "input": analysis.input_label, "initial_states": found.n_initial,
        "converged": bool(found.converged), "best_q": found.best_q,
        "fixed_points": int((found.kind == "fixed").sum()), "slow_points": int((found.kind == "slow").sum()),
        "stable": int((found.stability == "stable").sum()), "saddles": int(saddles.sum()),
        "unstable_directions_per_saddle": found.unstable_directions[saddles].tolist(),
        "results": [{"kind": str(found.kind[i]), "q": float(found.q[i]), "stability": str(found.stability[i]),
                     "unstable_directions": int(found.unstable_directions[i]), "outlier": bool(found.outlier[i]),
                     "top_eigenvalue_abs": float(abs(found.eigenvalues[i, 0]))} for i in range(len(found))],
    }

    def show() -> None:
        print(f"{len(found)} points from {found.n_initial} initial states of run {analysis.run} at input "
              f"{analysis.input_label}: {document['fixed_points']} fixed, {document['slow_points']} slow; "
              f"{document['stable']} stable, {document['saddles']} saddles")
        if not found.converged:
            print(f"warning: no state reached q < 1e-12 (best q {found.best_q:.3g}): these are slow points at best")
        print(f"{'#':>3}  {'kind':5}  {'q':>9}  {'stability':9}  {'unstable':>8}  {'|lambda| max':>12}  outlier")
        for i, row in enumerate(document["results"]):
            print(f"{i:>3}  {row['kind']:5}  {row['q']:9.2e}  {row['stability']:9}  {row['unstable_directions']:>8}"
                  f"  {row['top_eigenvalue_abs']:12.4f}  {'yes' if row['outlier'] else ''}")
        print(f"saved as fixed_point_search results on run {analysis.run} in {args.store}")

    finish(args, document, show, lambda: plots().plot_fixed_points(
        analysis.trajectories, found.states, list(found.stability), found.eigenvalues, found.continuous,
        f"{args.model}: fixed points at {analysis.input_label} input"))


def cmd_lyapunov(args: argparse.Namespace) -> None:
    from neurometry.store import open_store
    from neurometry.workflows.dynamics import lyapunov_of_run

    store = open_store(args.store)
    spectrum = lyapunov_of_run(_model(args), store, args.run, discard=args.discard, trials=args.trials,
                               module=args.module)
    document = {"exponents": spectrum.exponents.tolist(), "kaplan_yorke_dimension": spectrum.kaplan_yorke_dimension,
                "steps": spectrum.steps, "discarded": spectrum.discarded, "trials": len(spectrum.per_trial)}

    def show() -> None:
        shown = ", ".join(f"{v:.4f}" for v in spectrum.exponents[:8])
        more = f" ... ({len(spectrum.exponents)} in all)" if len(spectrum.exponents) > 8 else ""
        print(f"Lyapunov exponents (nats per step, {spectrum.steps} steps, {document['trials']} trials): {shown}{more}")
        print(f"Kaplan-Yorke dimension {spectrum.kaplan_yorke_dimension:.3f}; saved as lyapunov results in {args.store}")

    finish(args, document, show)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dynamics", help="a recurrent model as a dynamical system: fixed points, Lyapunov spectrum")
    verbs = p.add_subparsers(dest="analysis", required=True)
    for name, func, help_text in (
        ("fixed-points", cmd_fixed_points, "fixed and slow points with their stability (Sussillo & Barak 2013)"),
        ("lyapunov", cmd_lyapunov, "the Lyapunov spectrum along the run's trajectories (QR method)"),
    ):
        q = verbs.add_parser(name, help=help_text, description=help_text)
        q.add_argument("model", help="module:attribute, a local folder, or lab:NAME[:test] (with --weights)")
        q.add_argument("--store", required=True, help="a store with a run recorded on (trials, time, features) inputs")
        q.add_argument("--run", default=None, help="the run whose inputs drive the model (default: the only one)")
        q.add_argument("--weights", default=None, help="a .safetensors state dict to load into MODEL first")
        q.add_argument("--module", default=None, help="the recurrent module's path when the model holds several")
        q.add_argument("--json", action="store_true")
        q.set_defaults(func=func)
        if name == "fixed-points":
            q.add_argument("--input", default="zero", help="x*: zero, or a .npy vector of one input")
            q.add_argument("--initial-states", type=whole_number(1), default=1024,
                           help="states drawn from the trajectories to search from")
            q.add_argument("--noise", type=float, default=0.0, help="std of Gaussian noise added to them")
            q.add_argument("--seed", type=whole_number(0), default=0)
            q.add_argument("--plot", default=None, metavar="FILE.png",
                           help="trajectories in PC space with the points, and their eigenvalues")
        else:
            q.add_argument("--discard", type=whole_number(0), default=0, help="first steps left out (transient)")
            q.add_argument("--trials", type=whole_number(1), default=None, help="the first N trials only")
