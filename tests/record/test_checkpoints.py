"""Recording a series of checkpoints (Python API): one run per checkpoint in step order whose rows equal a
plain forward of that checkpoint's weights; steps from names, a --steps file or a glob; identical weights
recorded once; reruns resume; bad checkpoint sets are refused with one line before anything is recorded."""

from __future__ import annotations

import shutil
import sqlite3

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from neurometry import NeurometryError, open_store, record
from neurometry.models.load import wrap_module
from neurometry.record import checkpoints as checkpoints_module
from neurometry.record.checkpoints import (
    Checkpoint,
    find_checkpoints,
    read_steps_file,
    record_checkpoints,
    run_name,
    weights_hash,
)
from neurometry.record.series_session import SeriesSession

VOCAB, WIDTH, POSITIONS = 13, 8, 4
POINTS = ["embed", "mix", "head"]
STEPS = [100, 200, 300]


class Toy(nn.Module):
    def __init__(self, seed: int = 0, width: int = WIDTH):
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Embedding(VOCAB, width)
        self.mix = nn.Linear(width, width)
        self.head = nn.Linear(width, 3)
        self.example_input = torch.zeros(1, POSITIONS, dtype=torch.long)

    def forward(self, ids):
        return self.head(torch.tanh(self.mix(self.embed(ids))).mean(1))


def save_state(module: nn.Module, path):
    save_file({k: v.detach().clone().contiguous() for k, v in module.state_dict().items()}, str(path))
    return path


def expected_rows(weights, ids: np.ndarray) -> dict[str, np.ndarray]:
    """Each point's rows in a plain forward of a fresh module with the state dict ``weights`` loaded."""
    module = Toy(seed=123)
    module.load_state_dict(load_file(str(weights)))
    module.eval()
    got = {}
    handles = [module.get_submodule(p).register_forward_hook(lambda _m, _i, o, p=p: got.__setitem__(p, o))
               for p in POINTS]
    with torch.no_grad():
        module(torch.from_numpy(ids).long())
    for handle in handles:
        handle.remove()
    return {"embed": got["embed"].numpy(), "mix": got["mix"].numpy(), "head": got["head"].numpy()}


@pytest.fixture
def setup(tmp_path):
    """ckpts/step_{100,200,300}.safetensors of three seeds, ids.npy (6 rows of 4 token ids), a base model."""
    folder = tmp_path / "ckpts"
    folder.mkdir()
    for i, step in enumerate(STEPS):
        save_state(Toy(seed=i + 1), folder / f"step_{step}.safetensors")
    ids = np.random.default_rng(0).integers(0, VOCAB, size=(6, POSITIONS))
    np.save(tmp_path / "ids.npy", ids)
    return folder, tmp_path / "ids.npy", ids


def base():
    return wrap_module(Toy(seed=99), "toy")


@pytest.fixture
def calls(monkeypatch):
    """The run names record_checkpoints asks to be recorded (by record() or its series session), in order."""
    seen: list[str] = []
    original, original_session = checkpoints_module.record, SeriesSession.record

    def counting(*args, **kwargs):
        seen.append(kwargs["run"])
        return original(*args, **kwargs)

    def counting_session(self, run_id, series_step):
        seen.append(run_id)
        return original_session(self, run_id, series_step)

    monkeypatch.setattr(checkpoints_module, "record", counting)
    monkeypatch.setattr(SeriesSession, "record", counting_session)
    return seen


def check_values(out, series, folder_files: dict[int, object], ids, reduce="none"):
    store = open_store(out)
    try:
        steps = store.series(series)
        assert [s.step for s in steps] == sorted(folder_files)
        for s in steps:
            want = expected_rows(folder_files[s.step], ids)
            for point in POINTS:
                rows = want[point][:, -1] if reduce == "last" and want[point].ndim == 3 else want[point]
                np.testing.assert_array_equal(store.activations(point, s.run_id), rows)
            assert store.run_info(s.run_id).reduce == reduce
    finally:
        store.close()


def test_one_run_per_checkpoint_in_step_order_with_its_own_weights(setup, tmp_path):
    folder, data, ids = setup
    result = record_checkpoints(base(), data, POINTS, tmp_path / "s", folder, progress=False, reduce="last")
    assert result.series == "toy"
    assert result.steps == STEPS
    assert result.runs == ["toy-step100", "toy-step200", "toy-step300"] == [run_name("toy", s) for s in STEPS]
    assert result.already_complete == [] and result.duplicates == []
    store = open_store(tmp_path / "s")
    try:
        steps = store.series("toy")
        assert [(s.step, s.run_id) for s in steps] == list(zip(STEPS, result.runs, strict=True))
        for s in steps:
            path = folder / f"step_{s.step}.safetensors"
            assert s.source == str(path.resolve())
            assert s.weights_hash == weights_hash(Checkpoint(s.step, path, "state_dict"))
            assert store.run_info(s.run_id).complete
    finally:
        store.close()
    check_values(tmp_path / "s", "toy", {s: folder / f"step_{s}.safetensors" for s in STEPS}, ids, "last")
    # the checkpoints really differ
    assert not np.array_equal(expected_rows(folder / "step_100.safetensors", ids)["head"],
                              expected_rows(folder / "step_200.safetensors", ids)["head"])


def test_a_steps_file_names_the_steps(setup, tmp_path):
    folder, data, ids = setup
    for step, name in zip(STEPS, ["late", "early", "middle"], strict=True):
        (folder / f"step_{step}.safetensors").rename(folder / f"{name}.safetensors")
    steps_file = tmp_path / "steps.txt"
    steps_file.write_text("# name step\nlate 3000\n\nearly.safetensors, 10  # the first\nmiddle\t500\n")
    assert read_steps_file(steps_file) == {"late": 3000, "early.safetensors": 10, "middle": 500}
    result = record_checkpoints(base(), data, POINTS, tmp_path / "s", folder, steps=steps_file, series="named",
                                progress=False)
    assert result.steps == [10, 500, 3000] and result.runs == ["named-step10", "named-step500", "named-step3000"]
    check_values(tmp_path / "s", "named", {10: folder / "early.safetensors", 500: folder / "middle.safetensors",
                                          3000: folder / "late.safetensors"}, ids)
    # a steps file overrides the numbers in names too
    found = find_checkpoints(folder, {"late": 1, "early": 2, "middle": 3})
    assert [(c.step, c.path.name) for c in found] == [(1, "late.safetensors"), (2, "early.safetensors"),
                                                       (3, "middle.safetensors")]


def test_a_glob_picks_the_checkpoints(setup, tmp_path):
    folder, data, ids = setup
    (folder / "notes.txt").write_text("not a checkpoint")
    result = record_checkpoints(base(), data, POINTS, tmp_path / "s", str(folder / "step_*.safetensors"),
                                progress=False)
    assert result.steps == STEPS
    check_values(tmp_path / "s", "toy", {s: folder / f"step_{s}.safetensors" for s in STEPS}, ids)


def test_identical_weights_are_recorded_once(setup, tmp_path, calls):
    folder, data, ids = setup
    shutil.copy(folder / "step_100.safetensors", folder / "step_400.safetensors")
    result = record_checkpoints(base(), data, POINTS, tmp_path / "s", folder, progress=False)
    assert result.duplicates == [(400, 100)]
    assert result.steps == STEPS and calls == ["toy-step100", "toy-step200", "toy-step300"]
    store = open_store(tmp_path / "s")
    try:
        assert [s.step for s in store.series("toy")] == STEPS
        assert len(store.runs()) == 3
    finally:
        store.close()


def test_rerunning_records_nothing_again(setup, tmp_path, calls):
    folder, data, _ = setup
    record_checkpoints(base(), data, POINTS, tmp_path / "s", folder, progress=False)
    calls.clear()
    again = record_checkpoints(base(), data, POINTS, tmp_path / "s", folder, progress=False)
    assert calls == []
    assert again.already_complete == STEPS and again.steps == STEPS and again.runs == [f"toy-step{s}" for s in STEPS]
    data.unlink()  # nothing left to record: the data file is not read
    assert record_checkpoints(base(), data, POINTS, tmp_path / "s", folder, progress=False).already_complete == STEPS


def test_an_interrupted_series_records_only_what_is_missing(setup, tmp_path, calls):
    folder, data, ids = setup
    paths = [folder / f"step_{s}.safetensors" for s in STEPS]
    first = record_checkpoints(base(), data, POINTS, tmp_path / "s", paths[:2], progress=False)  # killed after two
    assert first.steps == [100, 200]
    calls.clear()
    rest = record_checkpoints(base(), data, POINTS, tmp_path / "s", folder, progress=False)
    assert calls == ["toy-step300"]
    assert rest.already_complete == [100, 200] and rest.steps == STEPS
    # killed after the last run was recorded but before it joined the series: it is taken as it is
    conn = sqlite3.connect(tmp_path / "s" / "catalog.sqlite")
    conn.execute("DELETE FROM series WHERE step = 300")
    conn.commit()
    conn.close()
    calls.clear()
    resumed = record_checkpoints(base(), data, POINTS, tmp_path / "s", folder, progress=False)
    assert calls == ["toy-step300"] and resumed.already_complete == [100, 200]
    check_values(tmp_path / "s", "toy", {s: folder / f"step_{s}.safetensors" for s in STEPS}, ids)


def test_a_checkpoint_whose_weights_changed_is_recorded_again(setup, tmp_path, calls):
    folder, data, ids = setup
    record_checkpoints(base(), data, POINTS, tmp_path / "s", folder, progress=False)
    save_state(Toy(seed=7), folder / "step_300.safetensors")  # step 300 saved again by another training run
    calls.clear()
    again = record_checkpoints(base(), data, POINTS, tmp_path / "s", folder, progress=False)
    assert calls == ["toy-step300"] and again.already_complete == [100, 200]
    check_values(tmp_path / "s", "toy", {s: folder / f"step_{s}.safetensors" for s in STEPS}, ids)


def _truncate(folder):
    path = folder / "step_200.safetensors"
    path.write_bytes(path.read_bytes()[:-40])


def _wider(folder):
    save_state(Toy(seed=1, width=WIDTH + 2), folder / "step_200.safetensors")


def _missing_key(folder):
    state = load_file(str(folder / "step_200.safetensors"))
    del state["mix.bias"]
    save_file(state, str(folder / "step_200.safetensors"))


def _extra_key(folder):
    state = load_file(str(folder / "step_200.safetensors"))
    state["extra.weight"] = torch.zeros(2)
    save_file(state, str(folder / "step_200.safetensors"))


def _no_number(folder):
    (folder / "step_200.safetensors").rename(folder / "final.safetensors")


def _same_step(folder):
    shutil.copy(folder / "step_100.safetensors", folder / "run2_step100.safetensors")


def _config_json(folder):
    (folder / "config.json").write_text("{}")


def _pickled(folder):
    for path in folder.glob("*.safetensors"):
        torch.save(load_file(str(path)), path.with_suffix(".pt"))
        path.unlink()


BAD_SETS = {
    "truncated": (_truncate, None, "step_200.safetensors is not a whole safetensors file"),
    "wider": (_wider, None, "step_200.safetensors is another architecture than the base model toy \\(shapes differ: "
                            "embed.weight is 13x10 \\(the model's 13x8\\), mix.weight is 10x10 \\(the model's 8x8\\) and 2 more\\)"),
    "missing key": (_missing_key, None, "another architecture than the base model toy \\(missing mix.bias\\)"),
    "extra key": (_extra_key, None, "\\(unexpected extra.weight\\)"),
    "no number": (_no_number, None, "final.safetensors has no number in its name; give its step with --steps"),
    "same step": (_same_step, None, "both have step 100"),
    "one model folder": (_config_json, None, "is one model folder, not a series"),
    "pickled folder": (_pickled, None, "no checkpoint-\\* folders and no \\*.safetensors files \\(only pickled"),
    "pickled list": (_pickled, lambda f: sorted(f.glob("*.pt")), "step_100.pt is not a .safetensors file"),
    "pickled glob": (_pickled, lambda f: str(f / "step_*"), "is not a .safetensors file"),
    "empty list": (lambda f: None, lambda f: [], "no checkpoints given"),
    "nothing matches": (lambda f: None, lambda f: str(f / "nope_*"), "matches nothing"),
    "missing path": (lambda f: None, lambda f: [f / "step_100.safetensors", f / "gone.safetensors"],
                     "gone.safetensors does not exist"),
}


@pytest.mark.parametrize("case", sorted(BAD_SETS))
def test_bad_checkpoints_are_refused_before_anything_is_recorded(case, setup, tmp_path, calls):
    folder, data, _ = setup
    spoil, spec, message = BAD_SETS[case]
    spoil(folder)
    with pytest.raises(NeurometryError, match=message) as caught:
        record_checkpoints(base(), data, POINTS, tmp_path / "s", spec(folder) if spec else folder, progress=False)
    assert "\n" not in str(caught.value)
    assert calls == [] and not (tmp_path / "s").exists()


def test_architecture_is_checked_against_the_first_file_without_a_base(setup):
    folder, _, _ = setup
    _wider(folder)
    found = find_checkpoints(folder)
    with pytest.raises(NeurometryError, match="step_200.safetensors is another architecture than step_100"):
        checkpoints_module.check_checkpoints(found, None)


def test_state_dicts_need_a_base_model(setup, tmp_path):
    folder, data, _ = setup
    with pytest.raises(NeurometryError, match="is a state dict: name the base model"):
        record_checkpoints(None, data, POINTS, tmp_path / "s", folder, progress=False)
    assert not (tmp_path / "s").exists()


def test_bad_steps_files_are_refused(tmp_path):
    with pytest.raises(NeurometryError, match="does not exist"):
        read_steps_file(tmp_path / "none.txt")
    bad = tmp_path / "steps.txt"
    bad.write_text("a 1\nb one\n")
    with pytest.raises(NeurometryError, match="steps.txt:2: 'b one' is not 'NAME STEP'"):
        read_steps_file(bad)


def test_a_steps_file_must_name_every_checkpoint(setup, tmp_path):
    folder, data, _ = setup
    steps_file = tmp_path / "steps.txt"
    steps_file.write_text("step_100 1\nstep_200 2\n")
    with pytest.raises(NeurometryError, match="step_300.safetensors is not in the --steps file"):
        record_checkpoints(base(), data, POINTS, tmp_path / "s", folder, steps=steps_file, progress=False)
    assert not (tmp_path / "s").exists()


# -- Hugging Face Trainer folders --------------------------------------------------------------------------

HF_POINTS = ["embed", "resid.0", "resid.1"]


def _trainer_folder(folder, model, tokenizer, seed):
    """``model``'s architecture initialised with ``seed`` (as ``tiny_llama(seed)`` does), saved as the Trainer
    saves a checkpoint: weights, config and tokenizer."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = type(model)(model.config)
    fresh.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny():
    from neurometry.models.tiny import tiny_llama

    return tiny_llama()


@pytest.fixture(scope="module")
def trainer_run(tmp_path_factory, tiny):
    """run/checkpoint-{50,500,5} of the tiny Llama with seeds 0, 1, 2."""
    root = tmp_path_factory.mktemp("hf") / "run"
    root.mkdir()
    for seed, step in enumerate([50, 500, 5]):
        _trainer_folder(root / f"checkpoint-{step}", tiny.module, tiny.tokenizer, seed)
    return root


def test_trainer_folders_record_as_each_folder_does(trainer_run, sentences_file, tmp_path):
    result = record_checkpoints(None, sentences_file, HF_POINTS, tmp_path / "s", trainer_run, progress=False)
    assert result.series == "run" and result.steps == [5, 50, 500]
    store = open_store(tmp_path / "s")
    try:
        steps = store.series("run")
        assert [s.source for s in steps] == [str((trainer_run / f"checkpoint-{n}").resolve()) for n in (5, 50, 500)]
        for s in steps:
            alone = record(str(trainer_run / f"checkpoint-{s.step}"), sentences_file, HF_POINTS,
                           tmp_path / f"alone{s.step}", progress=False)
            single = open_store(alone.store)
            try:
                for point in HF_POINTS:
                    np.testing.assert_array_equal(store.activations(point, s.run_id), single.activations(point))
            finally:
                single.close()
        assert not np.array_equal(store.activations("resid.1", "run-step5"), store.activations("resid.1", "run-step50"))
    finally:
        store.close()


def test_a_trainer_folder_of_another_config_is_refused(trainer_run, tiny, sentences_file, tmp_path):
    import transformers

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in ("checkpoint-5", "checkpoint-50"):
        shutil.copytree(trainer_run / name, mixed / name)
    config = tiny.module.config.to_dict()
    config.update(hidden_size=16, num_attention_heads=2, num_key_value_heads=1, head_dim=8)
    other = transformers.LlamaForCausalLM(transformers.LlamaConfig(**config))
    _trainer_folder(mixed / "checkpoint-70", other, tiny.tokenizer, 3)
    with pytest.raises(NeurometryError, match="checkpoint-70 is another architecture than checkpoint-5 \\(its config "
                                              "differs in .*hidden_size"):
        record_checkpoints(None, sentences_file, HF_POINTS, tmp_path / "s", mixed, progress=False)
    assert not (tmp_path / "s").exists()


def test_a_trainer_folder_without_weights_is_refused(trainer_run, sentences_file, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copytree(trainer_run / "checkpoint-5", bare / "checkpoint-5")
    shutil.copytree(trainer_run / "checkpoint-50", bare / "checkpoint-50")
    for weights in (bare / "checkpoint-50").glob("*.safetensors"):
        weights.unlink()
    with pytest.raises(NeurometryError, match="checkpoint-50 has no .safetensors weights"):
        record_checkpoints(None, sentences_file, HF_POINTS, tmp_path / "s", bare, progress=False)
    assert not (tmp_path / "s").exists()


def test_a_trainer_folder_without_a_tokenizer_is_refused(trainer_run, sentences_file, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("checkpoint-5", "checkpoint-50"):
        shutil.copytree(trainer_run / name, bare / name, ignore=shutil.ignore_patterns("tokenizer*", "vocab*",
                                                                                      "special_tokens*"))
    with pytest.raises(NeurometryError, match="checkpoint-5 has no tokenizer; save it with the checkpoints"):
        record_checkpoints(None, sentences_file, HF_POINTS, tmp_path / "s", bare, progress=False)
    assert not (tmp_path / "s").exists()


def test_folders_and_files_do_not_mix(setup, trainer_run):
    folder, _, _ = setup
    with pytest.raises(NeurometryError, match="mixes model folders"):
        find_checkpoints([trainer_run / "checkpoint-5", folder / "step_100.safetensors"])



def test_a_base_model_passed_in_gets_its_weights_back(setup, tmp_path):
    folder, ids_path, _ = setup
    model = base()
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    record_checkpoints(model, ids_path, POINTS, tmp_path / "store", folder, progress=False)
    after = model.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
