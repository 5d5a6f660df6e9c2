"""Bad inputs to every command, as a table: each row is an argv (with placeholders for small files made once
per module) and a fragment of the message it must give. Every row must exit 2 with exactly one non-empty
line on stderr, starting with ``error:``, no traceback, and nothing new or changed where the command would
have written (no file or folder appears, no existing file changes, no result is saved in the store).

Rows fail before any long work, so commands that need big models are tried with inputs refused before one
loads; the models that do load are the tiny seeded ones. Then the fixes behind some rows, tested directly:
the output-path check, the figure writer, the SAE weights that must not be saved, BOM data files."""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

from neurometry.cli import main
from neurometry.cli.output import check_output_path, parse_numbers
from neurometry.errors import NeurometryError
from neurometry.probe.directions import save_direction
from tests.conftest import write_tense_sentences

TINY = "neurometry.models.tiny:tiny_llama"
TINY_BERT = "neurometry.models.tiny:tiny_bert"  # an encoder: no next token to steer, generate or patch


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """The files the rows name: a recorded store, a regular file, folders, broken safetensors, an HF folder
    whose pytorch_model.bin torch's safe loader refuses, SAE folders with broken parts, a .mat of two variables."""
    import scipy.io
    import transformers

    from neurometry.features.sae import SAEConfig

    root = tmp_path_factory.mktemp("bad_inputs")
    data = write_tense_sentences(root / "sentences.jsonl")
    code = main(["record", TINY, str(data), "--points", "resid.0", "resid.1", "--out", str(root / "store"), "--quiet"])
    assert code == 0
    (root / "afile.txt").write_text("keep me\n")
    (root / "empty.csv").write_text("")
    (root / "empty.npy").write_bytes(b"")
    np.save(root / "no_rows.npy", np.zeros((0, 8)))
    np.save(root / "one_per_class.npy", np.arange(20))
    np.save(root / "no_labels.npy", np.zeros(0))
    (root / "folder").mkdir()
    (root / "data_dir").mkdir()
    (root / "data_dir" / "sentences.jsonl").write_text(data.read_text())
    rng = np.random.default_rng(0)
    np.save(root / "x.npy", rng.normal(size=(20, 5)))
    sidecar = {"model": TINY, "point": "resid.1", "method": "mean_diff", "dim": 32, "position": -1,
               "kind": "steering_vector", "pairs": "sentiment", "train_pairs": 5}
    save_direction(root / "bert_vector.safetensors", np.ones(32), model=TINY_BERT, point="resid.1", method="mean_diff",
                   pairs="sentiment", train_pairs=5)
    (root / "one_byte.safetensors").write_bytes(b"x")
    (root / "garbage.safetensors").write_bytes(b"this is not a safetensors file at all")
    for stem in ("one_byte", "garbage"):  # the sidecars are fine: only the tensors are broken
        (root / f"{stem}.json").write_text(json.dumps(sidecar))
    hf = root / "hf_bin"
    transformers.BertConfig(
        vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16
    ).save_pretrained(hf)
    # a numpy array inside: torch.load(weights_only=True) refuses it (this test never unpickles it otherwise)
    torch.save({"embeddings.word_embeddings.weight": np.zeros((50, 8), dtype=np.float32)}, hf / "pytorch_model.bin")
    sae_weights = root / "sae_bad_weights"
    sae_weights.mkdir()
    cfg = SAEConfig(d_in=32, d_sae=16, k=4, point="resid.1")
    (sae_weights / "cfg.json").write_text(json.dumps({"neurometry": cfg.to_dict()}))
    (sae_weights / "sae_weights.safetensors").write_bytes(b"x")
    (root / "sae_bad_cfg").mkdir()
    (root / "sae_bad_cfg" / "cfg.json").write_text("[1, 2]")
    rdm = np.abs(rng.normal(size=6))
    scipy.io.savemat(root / "two.mat", {"rdms_a": rdm, "rdms_b": rdm})
    (root / "out").mkdir()  # the working folder while a row runs: whatever lands here is caught
    return root


def fill(template: str, world: dict[str, Path] | Path) -> list[str]:
    root = Path(world)
    places = {"root": root, "store": root / "store", "file": root / "afile.txt", "folder": root / "folder",
              "out": root / "out", "tiny": TINY, "bert": TINY_BERT}
    return [part.format(**{k: str(v) for k, v in places.items()}) for part in shlex.split(template)]


def snapshot(root: Path) -> dict[str, str]:
    """Every path under root with a hash of its bytes; SQLite's catalog and its -wal/-shm files by name only
    (opening a store may touch them; saved results are counted by :func:`saved_results` instead)."""
    seen = {}
    for path in sorted(root.rglob("*")):
        name = path.relative_to(root).as_posix()
        if path.name.endswith(("-wal", "-shm")):
            continue
        if path.is_dir() or path.suffix == ".sqlite":
            seen[name] = "dir" if path.is_dir() else "catalog"
        else:
            seen[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return seen


def saved_results(store: Path) -> int:
    from neurometry.store import open_store
    from neurometry.store.results import listing

    table = listing(open_store(store))
    return int(table["records"].sum()) if len(table) else 0


# (argv, a fragment of the one-line message); {store} {file} {folder} {out} {root} {tiny} are filled in
BAD_INPUTS = [
    # points (models has no input but its options: see USAGE_ERRORS)
    ("points no-such-model", "unknown model 'no-such-model'"),
    ("points {root}/hf_bin", "refused pytorch_model.bin"),
    ("points {root}/hf_bin", "convert it once to model.safetensors"),
    # record
    ("record {tiny} {root}/data_dir --points resid.1 --out {out}/new", "is a folder; give one .jsonl"),
    ("record {tiny} {root}/sentences.jsonl --points resid.1 --out {file}", "is a file"),
    ("record {tiny} {root}/sentences.jsonl --points resid.1 --out {out}/new --chunk-rows -5", "--chunk-rows"),
    ("record {tiny} {root}/sentences.jsonl --points resid.1 --out /proc/neurometry-store", "cannot write in /proc"),
    # ls
    ("ls {out}/no-store", "no store at"),
    ("ls {file}", "not a neurometry store"),
    # export
    ("export {store} --point resid.1 --out /proc/x.npy", "cannot write in /proc"),
    ("export {store} --point resid.1 --out {folder}", "is a folder"),
    ("export {store} --point resid.1 --out {file}/x.npy", "is a file, not a folder"),
    ("export {store} --point resid.9 --out {out}/x.npy", "no point 'resid.9'"),
    # import
    ("import {root}/x.npy --point p --out {file}", "--out " + "{file} is a file"),
    ("import {out}/missing.npy --point p --out {out}/new", "does not exist"),
    # dataset and demo
    ("dataset kriegeskorte92 --out {file}", "is a file; give a folder"),
    ("dataset no-such-set --out {out}/d", "unknown dataset"),
    ("demo --out {file}", "is a file; give a folder"),
    # report
    ("report {store} -o /proc/report.html", "choose another -o"),
    ("report {store} -o {folder}", "is a folder"),
    ("report {out}/no-store -o {out}/r.html", "no store at"),
    # serve
    ("serve {store} --port 99999", "--port must be between 1 and 65535 (or 0: any free port), got 99999"),
    ("serve {store} --port -1", "--port must be between 1 and 65535 (or 0: any free port), got -1"),
    ("serve {out}/no-store", "no store at"),
    # measure
    ("measure {store} --plot /proc/p.png", "cannot write in /proc"),
    ("measure {store} --label tense --measures nc3 --classifier {root}/one_byte.safetensors",
     "one_byte.safetensors is not a readable safetensors file"),
    ("measure {store} --label tense --measures nc3 --classifier {root}/garbage.safetensors",
     "garbage.safetensors is not a readable safetensors file"),
    ("measure {store} --measures no_such_measure", "unknown measure"),
    # compare
    ("compare {store} {root}/two.mat --metric rsa", "--rdm-key"),
    ("compare {store} --metric cka --plot /proc/p.png", "cannot write in /proc"),
    ("compare {store} --metric no_such_metric", "unknown metric"),
    # probe and encode
    ("probe {store} --label tense --kind sparse --k 1,abc", "--k takes comma-separated whole numbers"),
    ("probe {store} --label tense --kind sparse --k 0,2", "--k takes finite whole numbers of at least 1"),
    ("probe {store} --label tense --save-directions {file}", "--save-directions " + "{file} is a file"),
    ("probe {store} --label tense --plot /proc/p.png", "cannot write in /proc"),
    ("probe {store} --label no_such_column", "no column 'no_such_column'"),
    ("encode {root}/x.npy --targets {root}/x.npy --plot /proc/p.png", "cannot write in /proc"),
    ("encode {root}/x.npy --targets {out}/missing.npy", "no file"),
    ("encode {root}/x.npy --targets {root}/empty.csv", "empty.csv is empty; give targets as .npy"),
    ("measure {root}/empty.npy", "empty.npy as a .npy array (the file is empty)"),
    ("measure {root}/x.npy --measures nc1,cdnv --labels {root}/one_per_class.npy --json",
     "nc1: 20 of 20 classes have a single row (e.g. 0); within-class variability needs at least 2 rows per class"),
    ("measure {root}/x.npy --measures nc1 --json", "nc1 needs labels (one class label per row): --label COLUMN"),
    ("measure {root}/x.npy --max-rows 2 --json", "max_rows (--max-rows) must be at least 3, got 2"),
    ("demo --out ''", "--out is empty; give a folder name"),
    ("report {store} -o ''", "-o is empty; give a file name"),
    ("dataset truth-cities --limit 5 --out {out}/d", "--limit is for hallucination-cities"),
    ("serve {store} --host 999.1.1.1", "choose another --host, an address of this machine"),
    # an array of no rows
    ("probe {root}/no_rows.npy --labels {root}/no_labels.npy", "no_rows.npy has no rows (shape (0, 8))"),
    ("encode {root}/no_rows.npy --targets {root}/no_rows.npy", "no_rows.npy has no rows"),
    ("detect truth {root}/no_rows.npy --labels {root}/no_labels.npy", "no_rows.npy has no rows"),
    ("detect ood {root}/no_rows.npy --labels {root}/no_labels.npy --in 0", "no_rows.npy has no rows"),
    ("compare {root}/no_rows.npy --metric cka", "no_rows has 0 stimuli (rows)"),
    ("compare {root}/no_rows.npy --metric rsa", "no_rows has 0 stimuli (rows)"),
    ("compare {root}/x.npy {root}/empty.npy --metric rsa", "empty.npy as a .npy array (the file is empty)"),
    ("encode {root}/x.npy --targets {file}", "afile.txt is neither .npy, .csv nor .parquet"),
    ("surprisal {tiny} {root}/empty.csv --out {out}/s", "empty.csv is empty; give a TSV/CSV with one row per word"),
    ("encode {root}/x.npy --targets {root}/x.npy --reliability {out}/missing.npy",
     "missing.npy as a .npy array ([Errno 2]"),
    # steer build, eval, generate
    ("steer build {tiny} sentiment --point resid.1 --out /proc/v.safetensors", "cannot write in /proc"),
    ("steer build {tiny} sentiment --point resid.1 --out {folder}", "is a folder"),
    ("steer eval {tiny} {root}/one_byte.safetensors --alphas 1,abc", "--alphas takes comma-separated numbers"),
    ("steer eval {tiny} {root}/one_byte.safetensors --alphas 1,inf", "--alphas takes finite numbers"),
    ("steer eval {tiny} {root}/one_byte.safetensors --plot /proc/p.png", "cannot write in /proc"),
    ("steer eval {tiny} {root}/one_byte.safetensors", "one_byte.safetensors is not a readable safetensors file"),
    ("steer generate {tiny} {root}/one_byte.safetensors --alpha 1 --prompt hi --max-new-tokens 0",
     "--max-new-tokens must be at least 1, got 0"),
    ("steer generate {tiny} {root}/one_byte.safetensors --alpha 1 --prompt hi --max-new-tokens -3",
     "--max-new-tokens must be at least 1, got -3"),
    ("steer generate {tiny} {root}/one_byte.safetensors --alpha nan --prompt hi", "--alpha must be a finite number"),
    ("steer generate {tiny} {root}/garbage.safetensors --alpha 1 --prompt hi",
     "garbage.safetensors is not a readable safetensors file"),
    ("steer eval {bert} {root}/bert_vector.safetensors", "tiny-bert is not a causal language model"),
    ("steer generate {bert} {root}/bert_vector.safetensors --alpha 1 --prompt hi",
     "tiny-bert is not a causal language model"),
    # lens, patch, diff
    ("patch {bert} --example 0", "tiny-bert is not a causal language model"),
    ("patch {tiny} --example 9999", "--example must be"),
    ("patch {tiny} --example 0 --plot /proc/p.png", "cannot write in /proc"),
    ("diff {tiny} {root}/one_byte.safetensors", "one_byte.safetensors is not a readable safetensors file"),
    ("diff {tiny} {root}/garbage.safetensors", "garbage.safetensors is not a readable safetensors file"),
    ("diff {tiny} {out}/missing.safetensors", "no file"),
    # sae train: hyperparameters, then the output folder
    ("sae train {store} --point resid.1 --latents 16 --k 4 --steps 1 --lr nan --out {out}/sae",
     "(--lr) must be a finite number above 0, got nan"),
    ("sae train {store} --point resid.1 --latents 16 --k 4 --steps 1 --lr inf --out {out}/sae",
     "(--lr) must be a finite number above 0, got inf"),
    ("sae train {store} --point resid.1 --latents 16 --k 4 --steps 1 --lr -1 --out {out}/sae",
     "(--lr) must be a finite number above 0"),
    ("sae train {store} --point resid.1 --latents 16 --arch relu --l1 -1 --steps 1 --out {out}/sae",
     "(--l1) must be a finite number of at least 0, got -1.0"),
    ("sae train {store} --point resid.1 --latents 16 --arch jumprelu --l0 nan --steps 1 --out {out}/sae",
     "(--l0) must be a finite number of at least 0, got nan"),
    ("sae train {store} --point resid.1 --latents 16 --k -3 --steps 1 --out {out}/sae", "k must be between 1"),
    ("sae train {store} --point resid.1 --latents 0 --steps 1 --out {out}/sae", "(--latents) must be at least 1"),
    ("sae train {store} --point resid.1 --latents 16 --k 4 --epochs nan --out {out}/sae",
     "(--epochs) must be a finite number above 0, got nan"),
    ("sae train {store} --point resid.1 --latents 16 --k 4 --max-steps 0 --out {out}/sae", "(--max-steps) must be"),
    ("sae train {store} --point resid.1 --latents 16 --k 4 --steps 1 --out {file}", "is a file"),
    ("sae train {store} --point resid.1 --latents 16 --k 4 --steps 1 --held-out 0.99 --out {out}/sae",
     "--held-out 0.99 leaves 1 training row(s) of resid.1"),
    ("sae train {store} --point resid.1 --latents 16 --k 4 --steps 1 --out /proc/sae", "cannot write in /proc"),
    # sae eval, features, export
    ("sae eval {out}/no-sae {store}", "SAE folder"),
    ("sae eval {root}/sae_bad_weights {store}", "sae_weights.safetensors is not a readable safetensors file"),
    ("sae features {root}/sae_bad_cfg {store}", "must hold a JSON object"),
    ("sae export {root}/sae_bad_weights --latent 0 --out /proc/v.safetensors", "cannot write in /proc"),
    ("sae export {root}/sae_bad_weights --latent 0 --out {out}/v.safetensors", "is not a readable safetensors file"),
]


@pytest.mark.parametrize(("template", "fragment"), BAD_INPUTS, ids=[t for t, _ in BAD_INPUTS])
def test_bad_input_is_one_line_and_exit_2(template, fragment, world, capsys, monkeypatch):
    monkeypatch.chdir(world / "out")
    before, results_before = snapshot(world), saved_results(world / "store")
    code = main(fill(template, world))
    _, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert fragment.format(file=world / "afile.txt") in lines[0]
    assert snapshot(world) == before  # nothing new, nothing changed
    assert saved_results(world / "store") == results_before


# argparse's own errors (unknown option, missing argument, a value of the wrong type) exit 2 before any
# command runs, in one line like every other user error, pointing at the verb's --help
USAGE_ERRORS = [
    ("models --bogus", "unrecognized arguments: --bogus"),
    ("points", "the following arguments are required: model"),
    ("serve {store} --port abc", "argument --port: invalid int value: 'abc'"),
    ("lens {tiny} --prompt hi --top-k 0", "argument --top-k: must be at least 1, got 0"),
    ("diff {tiny} {root}/one_byte.safetensors --top-k 0", "argument --top-k: must be at least 1, got 0"),
    ("diff {tiny} {root}/one_byte.safetensors --first-k 0", "argument --first-k: must be at least 1, got 0"),
    ("diff {tiny} {root}/one_byte.safetensors --skip-first -1", "argument --skip-first: must be at least 0"),
    ("sae eval {out}/no-sae {store} --max-texts 0", "argument --max-texts: must be at least 1, got 0"),
    ("sae features {out}/no-sae {store} --top two", "argument --top: 'two' is not a whole number"),
    # --max-pairs 0 said "no held-out pairs"
    ("steer eval {tiny} {root}/one_byte.safetensors --max-pairs 0", "argument --max-pairs: must be at least 1, got 0"),
    ("steer eval {tiny} {root}/one_byte.safetensors --max-pairs -3", "argument --max-pairs: must be at least 1"),
    # every --seed seeds numpy's generators, which take no negative seed
    ("probe {store} --label tense --seed -1", "argument --seed: must be at least 0, got -1"),
    ("compare {store} --metric cka --permutations 5 --seed -1", "argument --seed: must be at least 0"),
    ("detect ood {store} --label tense --in past --seed -2", "argument --seed: must be at least 0"),
    ("fit {store} {file} --seed -1", "argument --seed: must be at least 0"),
]


@pytest.mark.parametrize(("template", "fragment"), USAGE_ERRORS, ids=[t for t, _ in USAGE_ERRORS])
def test_usage_errors_exit_2(template, fragment, world, capsys, monkeypatch):
    monkeypatch.chdir(world / "out")
    before = snapshot(world)
    with pytest.raises(SystemExit) as stopped:
        main(fill(template, world))
    _, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert stopped.value.code == 2
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], err
    assert "--help" in lines[0] and "Traceback" not in err
    assert snapshot(world) == before


def test_unreadable_tables_are_one_line(world):
    """The per-word tables of `surprisal` and `fit` and the targets of `encode`: empty, or not text."""
    from neurometry.language.words import read_words
    from neurometry.workflows.language import read_behaviour

    (world / "out" / "binary.tsv").write_bytes(b"item\tzone\n\xff\xfe\x00\n")
    for read in (read_words, read_behaviour):
        with pytest.raises(NeurometryError, match="empty.csv is empty; give a TSV/CSV with one row per word"):
            read(world / "empty.csv")
        with pytest.raises(NeurometryError, match="cannot read .*binary.tsv as a table \\('utf-8' codec"):
            read(world / "out" / "binary.tsv")
    (world / "out" / "binary.tsv").unlink()


def test_sae_train_refuses_to_save_weights_an_update_overflowed(world, capsys, monkeypatch):
    """A finite learning rate so large that one Adam step overflows float32: the loss of that step was still
    finite, so only a check of the weights catches it (before the fix: exit 0 and Inf weights on disk)."""
    monkeypatch.chdir(world / "out")
    out = world / "out" / "sae_overflow"
    code = main(["sae", "train", str(world / "store"), "--point", "resid.1", "--latents", "16", "--k", "4",
                 "--steps", "1", "--lr", "1e37", "--out", str(out), "--json"])
    _, err = capsys.readouterr()
    assert code == 2 and err.startswith("error: SAE training diverged by step 1") and "lower --lr" in err, err
    assert not out.exists()


def test_sae_train_with_a_sane_learning_rate_saves_finite_weights(world, capsys, monkeypatch):
    """The same command with the default learning rate saves an SAE (so the refusal above is about the weights)."""
    from neurometry.features.io import load_sae

    out = world / "out_ok" / "sae"
    out.parent.mkdir(exist_ok=True)
    code = main(["sae", "train", str(world / "store"), "--point", "resid.1", "--latents", "16", "--k", "4",
                 "--steps", "2", "--out", str(out), "--json"])
    assert code == 0, capsys.readouterr().err
    sae = load_sae(out)
    assert all(bool(torch.isfinite(p).all()) for p in sae.parameters())


def test_save_sae_refuses_non_finite_weights(tmp_path):
    from neurometry.features.io import save_sae
    from neurometry.features.sae import SAEConfig, SparseAutoencoder

    sae = SparseAutoencoder(SAEConfig(d_in=4, d_sae=8, k=2))
    with torch.no_grad():
        sae.W_dec[3, 1] = float("nan")
    with pytest.raises(NeurometryError, match="W_dec hold NaN or Inf"):
        save_sae(tmp_path / "sae", sae)
    assert not (tmp_path / "sae").exists()


# check_output_path: (path relative to tmp_path, folder?, fragment); "afile" is a regular file, "adir" a folder
OUTPUT_PATHS = [
    ("afile", True, "--out {tmp}/afile is a file; give a folder"),
    ("afile/inside", True, "afile is a file, not a folder"),
    ("afile/x.npy", False, "afile is a file, not a folder"),
    ("adir", False, "--out {tmp}/adir is a folder"),
    ("missing/x.npy", False, "folder {tmp}/missing does not exist"),
    ("/proc/x.npy", False, "cannot write in /proc"),
    ("/proc/new/deeper", True, "cannot write in /proc"),
]


@pytest.mark.parametrize(("relative", "folder", "fragment"), OUTPUT_PATHS)
def test_check_output_path_refuses(relative, folder, fragment, tmp_path):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(NeurometryError) as refused:
        check_output_path(tmp_path / relative, "--out", folder=folder)
    assert fragment.format(tmp=tmp_path) in str(refused.value)
    assert sorted(tmp_path.rglob("*")) == before


def test_check_output_path_accepts_and_leaves_nothing(tmp_path):
    (tmp_path / "adir").mkdir()
    (tmp_path / "old.npy").write_text("replace me")
    assert check_output_path(tmp_path / "new.npy") == tmp_path / "new.npy"
    assert check_output_path(tmp_path / "old.npy") == tmp_path / "old.npy"  # a file is replaced, not refused
    assert check_output_path(tmp_path / "adir", folder=True) == tmp_path / "adir"
    assert check_output_path(tmp_path / "a" / "b" / "c", folder=True) == tmp_path / "a" / "b" / "c"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["adir", "old.npy"]
    assert (tmp_path / "old.npy").read_text() == "replace me"


def test_parse_numbers():
    assert parse_numbers("1,2, 4", "--k", int, minimum=1) == [1, 2, 4]
    assert parse_numbers("-2,0,1.5", "--alphas") == [-2.0, 0.0, 1.5]
    for text, kind in (("1,abc", int), ("1,,2", int), ("1.5", int), ("1,nan", float), ("-inf", float)):
        with pytest.raises(NeurometryError, match="--x takes"):
            parse_numbers(text, "--x", kind)
    with pytest.raises(NeurometryError, match="of at least 1; '0,2' holds 0"):
        parse_numbers("0,2", "--x", int, minimum=1)


def test_save_figure_refuses_unwritable_paths_and_leaves_no_partial_file(tmp_path):
    from neurometry.plots.figure import new_figure, save_figure

    figure = new_figure(2, 2)
    with pytest.raises(NeurometryError, match=r"cannot write the figure /proc/p.png \(.*\); choose another --plot"):
        save_figure(figure, "/proc/p.png")
    with pytest.raises(NeurometryError, match="is a folder"):
        save_figure(figure, tmp_path)
    with pytest.raises(NeurometryError, match="choose another --plot"):
        save_figure(figure, tmp_path / "p.no-such-format")
    assert list(tmp_path.iterdir()) == []
    written = save_figure(figure, tmp_path / "p.png")
    assert written.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["p.png"]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_data_file_with_a_utf8_byte_order_mark_is_read(suffix, tmp_path):
    """Windows editors start UTF-8 files with a byte-order mark; the rows read the same as without one."""
    from neurometry.record.data import load_table

    rows = [{"text": "héllo there", "label": "a"}, {"text": "second row", "label": "b"}]
    if suffix == ".jsonl":
        body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    else:
        body = "text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in rows)
    plain, marked = tmp_path / f"plain{suffix}", tmp_path / f"marked{suffix}"
    plain.write_text(body, encoding="utf-8")
    marked.write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
    table = load_table(marked, "text")
    assert list(table.columns) == ["text", "label"]
    assert table["text"].tolist() == ["héllo there", "second row"]
    assert table.equals(load_table(plain, "text"))
