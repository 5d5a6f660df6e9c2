"""Bad inputs whose one-line message once named the wrong fix (an empty pairs file blamed --train, a 2-D
reliability file blamed a "ceiling", an empty target column blamed the groups, ...): each row must exit 2 with
exactly one stderr line, starting with ``error:``, that holds the fragment naming the fix in the CLI's terms.

The inputs are tiny files made once per module; the models that load are the seeded tiny ones (a tiny
surprisal store for ``fit``, a freshly built lab model's weights for ``dynamics``)."""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from neurometry.cli import main

TINY = "neurometry.models.tiny:tiny_llama"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from safetensors.torch import save_file

    from neurometry.record.live import Recorder
    from neurometry.workflows.lab import lab_model

    root = tmp_path_factory.mktemp("bad_input_messages")
    (root / "empty.jsonl").write_text("")
    (root / "one.jsonl").write_text('{"positive": "good", "negative": "bad"}\n')
    rng = np.random.default_rng(0)
    np.save(root / "x.npy", rng.normal(size=(20, 5)))
    np.save(root / "targets.npy", rng.normal(size=(20, 8)))
    np.save(root / "repeats_2d.npy", rng.normal(size=(4, 20)))  # read as one target's repeats
    np.save(root / "repeats_1d.npy", rng.normal(size=20))
    # two texts of words, and a behaviour table whose target column is empty for every word
    texts = {1: "the cat sat on the mat and then it slept well", 2: "a dog ran in the park while birds sang loud"}
    rows = [(item, zone, word) for item, text in texts.items() for zone, word in enumerate(text.split(), 1)]
    (root / "words.tsv").write_text("item\tzone\tword\n" + "".join(f"{i}\t{z}\t{w}\n" for i, z, w in rows))
    (root / "no_rt.tsv").write_text(
        "item\tzone\tword\tmeanItemRT\n" + "".join(f"{i}\t{z}\t{w}\t\n" for i, z, w in rows)
    )
    (root / "twice.tsv").write_text("item\tzone\tword\n1\t1\tthe\n1\t1\tcat\n1\t2\tsat\n")
    assert main(["surprisal", TINY, str(root / "words.tsv"), "--out", str(root / "words_store"), "--json"]) == 0
    # a series of three steps with two points
    model = nn.Sequential()
    model.add_module("proj", nn.Linear(4, 4))
    model.add_module("act", nn.ReLU())
    inputs = torch.from_numpy(rng.normal(size=(12, 4)).astype(np.float32))
    with Recorder(model, {"proj": "proj", "act": "act"}, inputs, root / "series", every=1, series="s") as recorder:
        for step in range(3):
            recorder.record(step)
    # weights of other lab models than lab:flipflop:test
    for name in ("integrator", "superposition"):
        state = lab_model(name, size="test").module.state_dict()
        save_file({k: v.contiguous() for k, v in state.items()}, root / f"{name}.safetensors")
    (root / "out").mkdir()
    return root


def fill(template: str, root: Path) -> list[str]:
    places = {"root": root, "out": root / "out", "tiny": TINY}
    return [part.format(**{k: str(v) for k, v in places.items()}) for part in shlex.split(template)]


# (argv, a fragment of the one-line message)
BAD_INPUTS = [
    # 1: an empty pairs file said "--train must be between 2 and 0 pairs, got 2"
    ("steer build {tiny} {root}/empty.jsonl --point resid.1 --out {out}/v.safetensors",
     "empty.jsonl holds no pairs; give one JSON object per line with 'positive' and 'negative' prompts"),
    ("steer build {tiny} {root}/one.jsonl --point resid.1 --out {out}/v.safetensors",
     "one.jsonl holds 1 pair; a steering vector needs at least 2 pairs"),
    # 3: a 2-D reliability file said "ceiling has 1 values for 8 targets"
    ("encode {root}/x.npy --targets {root}/targets.npy --reliability {root}/repeats_2d.npy",
     "--reliability {root}/repeats_2d.npy has shape (4, 20): repeats of 1 target, but there are 8 targets; "
     "give repeats x rows x targets, shape (n_repeats, 20, 8)"),
    ("encode {root}/x.npy --targets {root}/targets.npy --reliability {root}/repeats_1d.npy",
     "--reliability {root}/repeats_1d.npy: repeats has shape (20,)"),
    # 4: an empty target column said "the 0 kept words fall in 0 'item' group"
    ("fit {root}/words_store {root}/no_rt.tsv --target meanItemRT --permutations 0",
     "no word has a value in the target column 'meanItemRT'"),
    ("fit {root}/words_store {root}/no_rt.tsv --target meanItemRT --permutations 0", "check --target"),
    # 5: a (text, position) given twice printed np.int64(1)
    ("surprisal {tiny} {root}/twice.tsv --out {out}/s", "twice.tsv gives text 1 position 1 twice"),
    # 6: --pairwise said "with --points", but compare's option is --points-a
    ("compare {root}/series --series s --metric cka --pairwise",
     "--pairwise compares steps at one point; choose one of proj, act with --points-a"),
    # 7: the known datasets left out hallucination-cities
    ("dataset nosuch --out {out}/d", "truth-smaller_than, hallucination-cities"),
    ("dataset halucination-cities --out {out}/d", "did you mean hallucination-cities"),
    ("dataset nosuch --model x --out {out}/d", "unknown dataset 'nosuch'"),
    # 8: weights of another architecture were cut at "Error(s) in loading state_dict for RecurrentReadout:"
    ("dynamics fixed-points lab:flipflop:test --store {root}/series --weights {root}/integrator.safetensors",
     "shapes differ: rnn.weight_ih_l0 is 32x1 (the model's 24x3), rnn.weight_hh_l0 is 32x32 (the model's 24x24) "
     "and 4 more; give --weights saved from the same lab model and size (lab:flipflop:test)"),
    ("dynamics lyapunov lab:flipflop:test --store {root}/series --weights {root}/superposition.safetensors",
     "missing rnn.weight_ih_l0, rnn.weight_hh_l0 and 4 more; unexpected hidden.weight, output.bias; "
     "give --weights saved from the same lab model and size"),
]


@pytest.mark.parametrize(("template", "fragment"), BAD_INPUTS, ids=[t for t, _ in BAD_INPUTS])
def test_bad_input_names_the_fix(template, fragment, world, capsys, monkeypatch):
    monkeypatch.chdir(world / "out")
    code = main(fill(template, world))
    _, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert fragment.format(root=world) in lines[0], err
    assert "np.int64" not in err and "np.float64" not in err
    assert not any((world / "out").iterdir())


def test_words_table_positions_print_as_plain_numbers():
    """A table in memory with float positions: the message shows 1.5, not np.float64(1.5)."""
    import pandas as pd

    from neurometry.errors import NeurometryError
    from neurometry.language.words import words_table

    with pytest.raises(NeurometryError, match=r"row 1: position 1\.5 is not a whole number$"):
        words_table(pd.DataFrame({"item": [1, 1], "zone": [1.5, 2.0], "word": ["a", "b"]}))
    with pytest.raises(NeurometryError, match=r"gives text 'a' position 1 twice"):
        words_table(pd.DataFrame({"item": ["a", "a"], "zone": [1, 1], "word": ["a", "b"]}))
