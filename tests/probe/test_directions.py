"""Directions: mean difference, shrinkage LDA and probe weights against closed forms, planted
discriminants and scikit-learn; the safetensors + JSON file format."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import save_file
from sklearn.covariance import ledoit_wolf_shrinkage as sklearn_ledoit_wolf
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from neurometry.errors import NeurometryError
from neurometry.probe.directions import direction, ledoit_wolf_shrinkage, load_direction, save_direction


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def two_classes(n: int, d: int, seed: int, shift: float = 1.0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(["negative", "positive"], n // 2)
    x = rng.normal(size=(n, d)) * rng.uniform(0.5, 2.0, size=d) + rng.normal(size=d)
    x[labels == "positive"] += shift * rng.normal(size=d) / np.sqrt(d)
    return x, labels


def correlated_noise_classes(n: int, seed: int):
    """Noise with a strong shared component along v; the optimal discriminant w = Sigma^-1 delta leans
    on e1 while the class means differ mostly along v."""
    rng = np.random.default_rng(seed)
    d = 20
    v = np.zeros(d)
    v[1] = 1.0
    sigma = np.eye(d) + 20.0 * np.outer(v, v)
    w = np.zeros(d)
    w[[0, 1]] = 1.0 / np.sqrt(2.0)
    delta = sigma @ w  # (e1 + 21 v) / sqrt(2): cos(delta, w) = 0.74
    labels = rng.integers(0, 2, size=n)
    noise = rng.multivariate_normal(np.zeros(d), sigma, size=n)
    return noise + np.outer(labels, delta), labels, w


def test_mean_difference_is_the_normalised_class_mean_difference():
    x, labels = two_classes(200, 12, 0)
    expected = x[labels == "positive"].mean(axis=0) - x[labels == "negative"].mean(axis=0)
    ours = direction(x, labels)  # default positive: the larger label, "positive"
    np.testing.assert_allclose(ours, expected / np.linalg.norm(expected), rtol=0, atol=1e-12)
    assert np.linalg.norm(ours) == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(direction(x, labels, positive="negative"), -ours, atol=1e-12)
    projection = x @ ours
    assert projection[labels == "positive"].mean() > projection[labels == "negative"].mean()


def test_lda_recovers_the_planted_discriminant_where_mean_difference_does_not():
    x, labels, w = correlated_noise_classes(4000, 1)
    mean_difference = direction(x, labels, "mean_difference")
    assert cosine(mean_difference, w) < 0.8
    for shrinkage in ("auto", 0.0, 0.01):
        lda = direction(x, labels, "lda", shrinkage=shrinkage)
        assert cosine(lda, w) > 0.95
        projection = x @ lda
        assert projection[labels == 1].mean() > projection[labels == 0].mean()  # larger label positive
    # full shrinkage makes the covariance a multiple of the identity: back to the mean difference
    np.testing.assert_allclose(direction(x, labels, "lda", shrinkage=1.0), mean_difference, atol=1e-12)


@pytest.mark.parametrize("n,d", [(300, 10), (40, 60)])
def test_lda_with_fixed_shrinkage_equals_sklearn(n, d):
    x, labels = two_classes(n, d, 2, shift=3.0)
    for shrinkage in (0.2, 0.7) if n < d else (0.0, 0.2, 0.7):
        reference = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=shrinkage or None).fit(x, labels)
        expected = reference.coef_[0] / np.linalg.norm(reference.coef_[0])
        np.testing.assert_allclose(direction(x, labels, "lda", shrinkage=shrinkage), expected, atol=1e-8)


@pytest.mark.parametrize("n,d", [(500, 30), (50, 200)])
def test_ledoit_wolf_shrinkage_equals_sklearn(n, d):
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) * 0.3 + rng.normal(size=(n, d))
    rows -= rows.mean(axis=0)
    assert ledoit_wolf_shrinkage(rows) == pytest.approx(
        sklearn_ledoit_wolf(rows, assume_centered=True), rel=1e-10
    )


def test_lda_works_with_fewer_rows_than_features():
    rng = np.random.default_rng(4)
    n, d = 60, 300
    w = rng.normal(size=d)
    labels = np.repeat([0, 1], n // 2)
    x = rng.normal(size=(n, d)) + np.outer(labels, w) * 0.5
    lda = direction(x, labels, "lda")
    assert np.all(np.isfinite(lda)) and np.linalg.norm(lda) == pytest.approx(1.0)
    assert cosine(lda, w) > 0.5
    with pytest.raises(NeurometryError, match="singular"):
        direction(x, labels, "lda", shrinkage=0.0)


def test_probe_direction_agrees_with_sklearn_and_points_to_the_positive_class():
    rng = np.random.default_rng(5)
    n, d = 2000, 8
    scale = rng.uniform(0.5, 4.0, size=d)
    x = rng.normal(size=(n, d)) * scale
    w = rng.normal(size=d)
    labels = np.where(rng.random(n) < 1 / (1 + np.exp(-2 * (x / scale) @ w)), "yes", "no")
    ours = direction(x, labels, "probe")
    scaler = StandardScaler().fit(x)
    model = LogisticRegression(max_iter=1000).fit(scaler.transform(x), labels)
    assert list(model.classes_) == ["no", "yes"]
    expected = model.coef_[0] / scaler.scale_
    np.testing.assert_allclose(ours, expected / np.linalg.norm(expected), atol=1e-6)
    # the planted logit direction in activation units is w / scale
    assert cosine(ours, w / scale) > 0.95
    projection = x @ ours
    assert projection[labels == "yes"].mean() > projection[labels == "no"].mean()
    np.testing.assert_allclose(direction(x, labels, "probe", positive="no"), -ours, atol=1e-6)


def test_save_and_load_round_trip(tmp_path):
    x, labels = two_classes(100, 16, 6)
    vector = direction(x, labels, "lda")
    path = save_direction(
        tmp_path / "dirs" / "sentiment.safetensors",
        vector,
        model="minilm",
        point="encoder.layer.3",
        method="lda",
        label="sentiment",
        classes=np.unique(labels),
        positive="positive",
        n_rows=np.int64(100),
    )
    assert path == tmp_path / "dirs" / "sentiment.safetensors" and path.is_file()
    loaded, meta = load_direction(path)
    assert loaded.dtype == np.float32 and loaded.shape == (16,)
    np.testing.assert_array_equal(loaded, vector.astype(np.float32))
    np.testing.assert_allclose(loaded, vector, rtol=1e-6)
    sidecar = json.loads((tmp_path / "dirs" / "sentiment.json").read_text())
    assert meta == sidecar
    assert meta["model"] == "minilm" and meta["point"] == "encoder.layer.3" and meta["method"] == "lda"
    assert meta["dim"] == 16 and meta["norm"] == pytest.approx(1.0, abs=1e-6)
    assert meta["classes"] == ["negative", "positive"] and meta["n_rows"] == 100
    assert meta["format"] == "neurometry.direction" and meta["version"] == 1 and meta["created"]
    # the sidecar path names the same pair
    again, _ = load_direction(tmp_path / "dirs" / "sentiment.json")
    np.testing.assert_array_equal(again, loaded)


def test_file_errors(tmp_path):
    vector = np.ones(4)
    good = save_direction(tmp_path / "d.safetensors", vector, model="m", point="p", method="mean_difference")
    with pytest.raises(NeurometryError, match="does not exist"):
        load_direction(tmp_path / "missing.safetensors")
    (tmp_path / "lonely.safetensors").write_bytes(good.read_bytes())
    with pytest.raises(NeurometryError, match="lonely.json does not exist"):
        load_direction(tmp_path / "lonely.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    (tmp_path / "junk.json").write_text("{}")
    with pytest.raises(NeurometryError, match="not a readable safetensors"):
        load_direction(tmp_path / "junk.safetensors")
    save_file({"W": np.ones((2, 4), dtype=np.float32)}, str(tmp_path / "other.safetensors"))
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(NeurometryError, match="no tensor 'direction'"):
        load_direction(tmp_path / "other.safetensors")
    (tmp_path / "d.json").write_text("{not json")
    with pytest.raises(NeurometryError, match="not valid JSON"):
        load_direction(good)
    (tmp_path / "d.json").write_text(json.dumps({"model": "m", "point": "p", "method": "x"}))
    with pytest.raises(NeurometryError, match="lacks dim"):
        load_direction(good)
    (tmp_path / "d.json").write_text(json.dumps({"model": "m", "point": "p", "method": "x", "dim": 5}))
    with pytest.raises(NeurometryError, match="dim 5"):
        load_direction(good)
    with pytest.raises(NeurometryError, match="standard keys dim"):
        save_direction(tmp_path / "e.safetensors", vector, model="m", point="p", method="x", dim=3)
    with pytest.raises(NeurometryError, match="1-D"):
        save_direction(tmp_path / "e.safetensors", np.ones((2, 2)), model="m", point="p", method="x")
    with pytest.raises(NeurometryError, match="NaN"):
        save_direction(tmp_path / "e.safetensors", np.array([1.0, np.nan]), model="m", point="p", method="x")
    with pytest.raises(NeurometryError, match="not JSON"):
        save_direction(tmp_path / "e.safetensors", vector, model="m", point="p", method="x", when=object())
    with pytest.raises(NeurometryError, match=r"\.json"):
        save_direction(tmp_path / "e.json", vector, model="m", point="p", method="x")
    assert not (tmp_path / "e.safetensors").exists()


def test_direction_errors():
    x, labels = two_classes(40, 5, 7)
    with pytest.raises(NeurometryError, match="did you mean lda"):
        direction(x, labels, "ldaa")
    with pytest.raises(NeurometryError, match="exactly two classes, but the labels have 3"):
        direction(x, np.arange(40) % 3)
    with pytest.raises(NeurometryError, match="have 1"):
        direction(x, np.zeros(40))
    with pytest.raises(NeurometryError, match="positive='maybe'"):
        direction(x, labels, positive="maybe")
    with pytest.raises(NeurometryError, match="40 and 39"):
        direction(x, labels[:39])
    nan_labels = np.where(np.arange(40) % 2 == 0, 0.0, 1.0)
    nan_labels[[3, 8]] = np.nan
    with pytest.raises(NeurometryError, match="2 labels are NaN"):
        direction(x, nan_labels)
    with pytest.raises(NeurometryError, match="shrinkage"):
        direction(x, labels, "lda", shrinkage="oas")
    with pytest.raises(NeurometryError, match="shrinkage"):
        direction(x, labels, "lda", shrinkage=1.5)
    with pytest.raises(NeurometryError, match="singular"):  # a repeated feature, no shrinkage
        direction(np.column_stack([x, 2 * x[:, :1]]), labels, "lda", shrinkage=0.0)
    assert direction(np.column_stack([x, 2 * x[:, :1]]), labels, "lda").shape == (6,)
    with pytest.raises(NeurometryError, match="c must be"):
        direction(x, labels, "probe", c=0.0)
    same = np.vstack([x[:20], x[:20]])
    with pytest.raises(NeurometryError, match="same mean"):
        direction(same, np.repeat([0, 1], 20))
    bad = x.copy()
    bad[2, 1] = np.inf
    with pytest.raises(NeurometryError, match="row 2"):
        direction(bad, labels)
