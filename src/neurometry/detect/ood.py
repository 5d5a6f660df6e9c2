"""Out-of-distribution (OOD) scores from a classifier's penultimate features and logits.

Each score is an estimator: ``fit`` on in-distribution (ID) training data, then ``score`` rows to a
(n,) float64 array. **Higher always means more out-of-distribution**: scores that the papers define
with the opposite sign (confidences) are negated, once, here.

| name          | paper                          | value returned (higher = more OOD)          | needs                    |
|---------------|--------------------------------|---------------------------------------------|--------------------------|
| msp           | Hendrycks & Gimpel 2017 (ICLR) | -max_c softmax(f/T)_c                       | logits                   |
| energy        | Liu et al. 2020 (NeurIPS)      | -T logsumexp(f/T), the free energy E(x)     | logits                   |
| mahalanobis   | Lee et al. 2018 (NeurIPS)      | min_c (h - mu_c)^T S^+ (h - mu_c)           | features; labels at fit  |
| knn           | Sun et al. 2022 (ICML)         | distance from h/|h| to its k-th nearest     | features                 |
|               |                                | normalised training row                     |                          |
| vim           | Wang et al. 2022 (CVPR)        | alpha |(h - o) R| - logsumexp(f) (= -ViM)   | features; (W, b) at fit  |
| neco          | Ammar et al. 2024 (ICLR)       | -(|P s(h)| / |s(h)|) max_c f_c (= -NECO)    | features, logits         |

h: a feature row (d,), f = h W^T + b its logits (C,), T the temperature (1 by default, as in both
papers). In the papers MSP, the negative energy -E(x), the Mahalanobis confidence -min_c D_c, ViM's
softmax-of-virtual-logit complement and NECO are all "higher = more ID"; the kNN distance is already
"higher = more OOD". The sign conventions here equal pytorch-ood's detectors (``MaxSoftmax``,
``EnergyBased``, ``ViM``, ``KNN``; ``Mahalanobis`` there returns half the squared distance with a
covariance divided by n - 1 plus 1e-6 I: (n - 1) / (2n) times this one, up to that 1e-6).

Details, with what was read to fix them (pytorch-ood at commit d0476736, ``src/pytorch_ood/detector/``;
the NECO authors' ``neco(...)`` function, the ViM authors' ``vim(...)`` and Lee et al.'s Mahalanobis as
re-implemented in the NECO authors' evaluation code):

- Mahalanobis: class means mu_c and one covariance S of the class-centred training rows divided by n
  (scikit-learn's ``EmpiricalCovariance(assume_centered=True)`` on those rows, as in Lee et al.'s code),
  or its Ledoit-Wolf shrinkage (``covariance="ledoit_wolf"``, scikit-learn's ``LedoitWolf``). S^+ is the
  pseudo-inverse with scikit-learn's rule (``scipy.linalg.pinvh``: eigenvalues at or below
  d * eps * the largest are dropped), so constant features are ignored rather than dividing by zero.
- kNN: features are L2-normalised (the paper's key step; ``normalize=False`` gives pytorch-ood's plain
  distance), and the score is the distance to the k-th nearest normalised training row. k = 50 by
  default: the paper's choice for CIFAR-10 (50,000 training rows); it uses k = 1000 for ImageNet, i.e.
  k grows with the fit set. Rows scored that are themselves in the fit set find themselves at distance 0.
- ViM: origin o = -pinv(W) b, principal subspace = the top ``dim`` eigenvectors of the uncentred
  covariance of h - o over the training rows, R its orthogonal complement (the residual), and
  alpha = mean over training rows of max_c f_c / mean of |(h - o) R|. Default ``dim``: 1000 for
  d >= 2048 and 512 for d >= 768 (the ViM authors' choices for 2048- and 768-wide features), else
  d // 2 (pytorch-ood's fallback for narrow features).
- NECO: s(h) = (h - m) / sd standardised with the training mean and (population) standard deviation,
  as the authors' code does with ``StandardScaler`` (``standardize=False`` skips it, their advice when
  classes are already well separated), P the projection on the top ``dim`` principal components of
  the standardised training rows (the PCA centre is their mean, zero up to rounding, as in the authors'
  code, which divides by the norm of s(h) itself). The ratio is multiplied by the max logit
  (``times_max_logit=True``), as the paper and code do for its ViT/DeiT/Swin results (not for ResNets).
  The paper picks ``dim`` per model; the default here is C - 1, the dimension of the simplex equiangular
  tight frame that neural collapse (NC2) puts the class means on. A row with s(h) = 0 has ratio 1.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from neurometry.errors import NeurometryError, did_you_mean
from neurometry.linalg import as_tensor, cross_product
from neurometry.models.devices import resolve_device
from neurometry.probe.directions import ledoit_wolf_shrinkage
from neurometry.threads import map_blocks

# ---------------------------------------------------------------------------------------------------
# input checks


def _matrix(x: Any, name: str, min_rows: int = 1) -> np.ndarray:
    """``x`` as a C-contiguous float64 (n, d) array; a NeurometryError for anything else."""
    if x is None:
        raise NeurometryError(f"{name} is missing; pass it as an array (rows, columns)")
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.dtype.kind not in "fiub":
        raise NeurometryError(f"{name} must be real numbers, got dtype {a.dtype}")
    if a.ndim != 2:
        raise NeurometryError(f"{name} must be 2-D (rows, columns), got shape {a.shape}")
    if a.shape[1] == 0:
        raise NeurometryError(f"{name} has no columns (shape {a.shape})")
    if len(a) < min_rows:
        raise NeurometryError(f"{name} has {len(a)} rows; this needs at least {min_rows}")
    a = np.ascontiguousarray(a, dtype=np.float64)
    finite = np.isfinite(a).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise NeurometryError(f"{name} row {row} contains NaN or Inf; remove or fix that row")
    return a


def _labels(labels: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(classes (C,), class index of each row (n,)) from ``labels`` (n,)."""
    if labels is None:
        raise NeurometryError("labels are missing; pass the class of each training row, shape (rows,)")
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != n:
        raise NeurometryError(f"labels must have shape ({n},), one class per feature row; got {y.shape}")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise NeurometryError("labels contain NaN or Inf; give every training row its class")
    classes, index = np.unique(y, return_inverse=True)
    return classes, index.reshape(-1)


def _classifier(classifier: Any, d: int) -> tuple[np.ndarray, np.ndarray]:
    """(W (C, d), b (C,)) in float64 from ``classifier`` = (W, b), the last linear layer."""
    if classifier is None:
        raise NeurometryError(
            "the classifier's last layer is missing; pass classifier=(W, b) with W (classes, features) "
            "and b (classes,)"
        )
    if not isinstance(classifier, (tuple, list)) or len(classifier) != 2:
        raise NeurometryError("classifier must be a pair (W, b): W (classes, features), b (classes,)")
    weight = _matrix(classifier[0], "classifier weight W")
    bias = classifier[1].detach().cpu().numpy() if isinstance(classifier[1], torch.Tensor) else classifier[1]
    bias = np.asarray(bias, dtype=np.float64)
    if weight.shape[1] != d:
        raise NeurometryError(f"classifier weight W is {weight.shape}; it must be (classes, {d}) for these features")
    if bias.shape != (len(weight),) or not np.isfinite(bias).all():
        raise NeurometryError(f"classifier bias b must be {len(weight)} finite numbers, got shape {bias.shape}")
    return weight, bias


def _columns(x: np.ndarray, d: int, name: str, fitted_on: str) -> None:
    if x.shape[1] != d:
        raise NeurometryError(f"{name} have {x.shape[1]} columns but the score was fitted on {d} {fitted_on}")


def _logsumexp(f: np.ndarray) -> np.ndarray:
    """logsumexp over rows of (n, C), stable for any finite logits."""
    top = f.max(axis=1)
    return top + np.log(np.exp(f - top[:, None]).sum(axis=1))


def _eigh(symmetric: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending) and eigenvectors (columns) of a symmetric (d, d) matrix, via torch."""
    values, vectors = torch.linalg.eigh(as_tensor(np.ascontiguousarray(symmetric)))
    return values.numpy(), vectors.numpy()


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b in float64 through torch (numpy's bundled OpenBLAS can crash on large products here)."""
    return (as_tensor(np.ascontiguousarray(a)) @ as_tensor(np.ascontiguousarray(b))).numpy()


# ---------------------------------------------------------------------------------------------------
# the estimators


class OODScore:
    """Base of every OOD score: ``fit`` on in-distribution training rows, ``score`` any rows.

    ``fit(features, labels, *, logits=None, classifier=None)`` takes features (n, d), labels (n,),
    logits (n, C) and ``classifier=(W, b)`` (W (C, d), b (C,)) and uses what the score needs;
    ``score(features, logits=None)`` returns (n,) float64, higher = more out-of-distribution. A score
    that is not given what it needs raises NeurometryError naming the missing input.
    """

    name: ClassVar[str] = ""

    def fit(
        self,
        features: Any = None,
        labels: Any = None,
        *,
        logits: Any = None,
        classifier: Any = None,
    ) -> OODScore:
        raise NotImplementedError

    def score(self, features: Any = None, logits: Any = None) -> np.ndarray:
        raise NotImplementedError

    def _fitted(self, attribute: str) -> None:
        if getattr(self, attribute, None) is None:
            raise NeurometryError(f"{self.name}: call fit(...) on in-distribution training rows before score(...)")

    def _needs_logits(self, logits: Any) -> np.ndarray:
        if logits is None:
            raise NeurometryError(f"{self.name} needs logits (rows, classes); pass logits=...")
        return _matrix(logits, "logits")


def _positive_temperature(temperature: float, name: str) -> None:
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise NeurometryError(f"{name}: temperature must be a positive number, got {temperature!r}")


@dataclass(eq=False)
class _LogitScore(OODScore):
    """A score of the logits alone at a temperature T > 0: nothing to fit."""

    temperature: float = 1.0

    def __post_init__(self) -> None:
        _positive_temperature(self.temperature, self.name)

    def fit(self, features: Any = None, labels: Any = None, *, logits: Any = None, classifier: Any = None):
        return self


@dataclass(eq=False)
class MaxSoftmaxScore(_LogitScore):
    """Maximum softmax probability, negated: -max_c softmax(f / T)_c (Hendrycks & Gimpel 2017).

    Needs logits (n, C) at ``score``; ``fit`` needs nothing. Values lie in [-1, -1/C].
    """

    name: ClassVar[str] = "msp"

    def score(self, features: Any = None, logits: Any = None) -> np.ndarray:
        f = self._needs_logits(logits) / self.temperature
        # max softmax = 1 / sum_c exp(f_c - max f): no overflow, and no cancellation of large logits
        return -1.0 / np.exp(f - f.max(axis=1, keepdims=True)).sum(axis=1)


@dataclass(eq=False)
class EnergyScore(_LogitScore):
    """The free energy E(x) = -T logsumexp(f / T) of the logits (Liu et al. 2020); ID rows have lower
    energy, so E itself is the OOD score. Needs logits (n, C) at ``score``."""

    name: ClassVar[str] = "energy"

    def score(self, features: Any = None, logits: Any = None) -> np.ndarray:
        f = self._needs_logits(logits)
        return -self.temperature * _logsumexp(f / self.temperature)


@dataclass(eq=False)
class MahalanobisScore(OODScore):
    """Squared Mahalanobis distance to the nearest class mean, min_c (h - mu_c)^T S^+ (h - mu_c), with one
    covariance S shared by all classes (Lee et al. 2018, without their input perturbation and layer
    ensemble: the score on one layer's features).

    ``fit(features (n, d), labels (n,))``: at least two classes and more rows than classes.
    ``covariance``: ``"empirical"`` (S = class-centred X^T X / n, the paper's) or ``"ledoit_wolf"``
    (S shrunk towards tr(S)/d I by the Ledoit-Wolf coefficient, ``shrinkage_`` after fit).
    Computation: S = V diag(w) V^T; the rows are whitened once, z = h V_+ diag(w_+)^(-1/2) over the kept
    eigenvalues w_+ (above d * eps * max w, the pinvh rule), so the score is the squared Euclidean distance
    of z to the whitened class means: one (n, d) x (d, d) product instead of one per class.
    """

    name: ClassVar[str] = "mahalanobis"
    covariance: Literal["empirical", "ledoit_wolf"] = "empirical"
    classes_: np.ndarray | None = field(default=None, init=False, repr=False)
    means_: np.ndarray | None = field(default=None, init=False, repr=False)
    shrinkage_: float = field(default=0.0, init=False, repr=False)
    _whiten: np.ndarray | None = field(default=None, init=False, repr=False)
    _whitened_means: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.covariance not in ("empirical", "ledoit_wolf"):
            raise NeurometryError(
                f"mahalanobis: covariance must be 'empirical' or 'ledoit_wolf', got {self.covariance!r}"
            )

    def fit(self, features: Any = None, labels: Any = None, *, logits: Any = None, classifier: Any = None):
        x = _matrix(features, "features", min_rows=2)
        classes, y = _labels(labels, len(x))
        n, d = x.shape
        if len(classes) < 2:
            raise NeurometryError(
                f"mahalanobis needs at least 2 classes in labels, got 1 ({str(classes[0])!r}); it models each class"
            )
        if n <= len(classes):
            raise NeurometryError(
                f"mahalanobis: {n} rows for {len(classes)} classes leave no within-class spread; give more rows"
            )
        counts = np.bincount(y, minlength=len(classes)).astype(np.float64)
        sums = torch.zeros(len(classes), d, dtype=torch.float64).index_add_(0, torch.from_numpy(y), as_tensor(x))
        means = sums.numpy() / counts[:, None]
        centred = x - means[y]
        cov = cross_product(centred, centred) / n
        if self.covariance == "ledoit_wolf":
            self.shrinkage_ = ledoit_wolf_shrinkage(centred)
            mu = float(np.trace(cov)) / d
            cov = (1.0 - self.shrinkage_) * cov
            cov[np.diag_indices(d)] += self.shrinkage_ * mu
        w, v = _eigh(cov)
        keep = w > d * np.finfo(np.float64).eps * np.abs(w).max()
        if not keep.any():
            raise NeurometryError(
                "mahalanobis: every feature is constant within its class (zero covariance); "
                "use features that vary"
            )
        self._whiten = np.ascontiguousarray(v[:, keep] / np.sqrt(w[keep]))
        self._whitened_means = _matmul(means, self._whiten)
        self.classes_, self.means_ = classes, means
        return self

    def class_distances(self, features: Any) -> np.ndarray:
        """Squared Mahalanobis distances (n, C) of every row to every class mean (columns: ``classes_``)."""
        self._fitted("_whiten")
        x = _matrix(features, "features")
        _columns(x, len(self._whiten), "features", "features")
        z = as_tensor(_matmul(x, self._whiten))
        # distances from differences (no |z|^2 - 2 z.m + |m|^2 cancellation): C is small
        dist = torch.cdist(z, as_tensor(self._whitened_means), compute_mode="donot_use_mm_for_euclid_dist")
        return (dist * dist).numpy()

    def score(self, features: Any = None, logits: Any = None) -> np.ndarray:
        return self.class_distances(features).min(axis=1)


@dataclass(eq=False)
class KNNScore(OODScore):
    """Distance from the L2-normalised feature to its k-th nearest L2-normalised training feature
    (Sun et al. 2022, "Out-of-Distribution Detection with Deep Nearest Neighbors").

    ``fit(features (n, d))`` stores the (normalised) rows; labels are not used. ``k`` = 50 by default
    (the paper's CIFAR-10 value); ``normalize=False`` uses raw features (pytorch-ood's ``KNN``, k = 1).
    The search is exact: :func:`kth_neighbour_distances`, on ``device`` (a ``torch.device`` or its name;
    None: the CPU) when given. A zero feature row cannot be normalised and raises NeurometryError.
    """

    name: ClassVar[str] = "knn"
    k: int = 50
    normalize: bool = True
    device: torch.device | str | None = None
    reference_: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)) or self.k < 1:
            raise NeurometryError(f"knn: k must be a whole number >= 1, got {self.k!r}")

    def _prepare(self, x: np.ndarray, name: str) -> np.ndarray:
        if not self.normalize:
            return x
        norms = np.sqrt((x * x).sum(axis=1))
        if (norms == 0).any():
            row = int(np.flatnonzero(norms == 0)[0])
            raise NeurometryError(f"knn: {name} row {row} is all zeros and cannot be L2-normalised; drop it")
        return x / norms[:, None]

    def fit(self, features: Any = None, labels: Any = None, *, logits: Any = None, classifier: Any = None):
        x = _matrix(features, "features")
        if len(x) < self.k:
            raise NeurometryError(
                f"knn: k = {self.k} neighbours need at least {self.k} training rows, got {len(x)}; lower k (--k)"
            )
        self.reference_ = self._prepare(x, "features")
        return self

    def score(self, features: Any = None, logits: Any = None) -> np.ndarray:
        self._fitted("reference_")
        x = _matrix(features, "features")
        _columns(x, self.reference_.shape[1], "features", "features")
        return kth_neighbour_distances(self._prepare(x, "features"), self.reference_, self.k, device=self.device)


def vim_principal_dim(d: int) -> int:
    """ViM's default principal dimension D for d-wide features: 1000 for d >= 2048, 512 for d >= 768
    (the ViM authors' settings), else d // 2 (pytorch-ood's fallback for narrow features)."""
    return 1000 if d >= 2048 else 512 if d >= 768 else max(1, d // 2)


def _dim(dim: Any, name: str) -> None:
    if dim is not None and (isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1):
        raise NeurometryError(f"{name}: dim must be a whole number >= 1 or None (the default rule), got {dim!r}")


@dataclass(eq=False)
class ViMScore(OODScore):
    """Virtual-logit matching, negated: alpha |(h - o) R| - logsumexp(f) (Wang et al. 2022, "ViM:
    Out-Of-Distribution with Virtual-logit Matching").

    ``fit(features (n, d), classifier=(W, b))``: o = -pinv(W) b, R the (d, d - D) eigenvectors of
    (h - o)^T (h - o) / n beyond the top D = ``dim`` (default :func:`vim_principal_dim`), and
    alpha = mean max_c f_c / mean |(h - o) R| over the training rows, f = h W^T + b. ``score(features)``
    computes the logits from W and b (a ``logits`` argument is not used). ``residual_dims_`` is d - D.
    """

    name: ClassVar[str] = "vim"
    dim: int | None = None
    alpha_: float | None = field(default=None, init=False, repr=False)
    origin_: np.ndarray | None = field(default=None, init=False, repr=False)
    residual_: np.ndarray | None = field(default=None, init=False, repr=False)
    _weight: np.ndarray | None = field(default=None, init=False, repr=False)
    _bias: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        _dim(self.dim, self.name)

    @property
    def residual_dims_(self) -> int:
        self._fitted("residual_")
        return self.residual_.shape[1]

    def fit(self, features: Any = None, labels: Any = None, *, logits: Any = None, classifier: Any = None):
        x = _matrix(features, "features", min_rows=2)
        n, d = x.shape
        if classifier is None:
            raise NeurometryError(
                "vim needs the classifier's last layer at fit: pass classifier=(W, b), W (classes, features)"
            )
        weight, bias = _classifier(classifier, d)
        dim = vim_principal_dim(d) if self.dim is None else int(self.dim)
        if not 1 <= dim < d:
            raise NeurometryError(f"vim: the principal dimension must be between 1 and {d - 1} for {d} features, got {dim}")
        origin = -np.linalg.pinv(weight) @ bias
        centred = x - origin
        w, v = _eigh(cross_product(centred, centred) / n)
        residual = np.ascontiguousarray(v[:, : d - dim])  # eigh sorts ascending: all but the top `dim`
        residual_norm = np.sqrt((_matmul(centred, residual) ** 2).sum(axis=1))
        if residual_norm.mean() == 0:
            raise NeurometryError("vim: the training features have no residual beyond the principal space; lower dim")
        train_logits = _matmul(x, weight.T) + bias
        self.alpha_ = float(train_logits.max(axis=1).mean() / residual_norm.mean())
        self.origin_, self.residual_, self._weight, self._bias = origin, residual, weight, bias
        return self

    def score(self, features: Any = None, logits: Any = None) -> np.ndarray:
        self._fitted("residual_")
        x = _matrix(features, "features")
        _columns(x, len(self.residual_), "features", "features")
        virtual_logit = self.alpha_ * np.sqrt((_matmul(x - self.origin_, self.residual_) ** 2).sum(axis=1))
        return virtual_logit - _logsumexp(_matmul(x, self._weight.T) + self._bias)


@dataclass(eq=False)
class NECOScore(OODScore):
    """NECO, negated: -(|P s(h)| / |s(h)|) x max_c f_c (Ammar et al. 2024, "NECO: NEural Collapse Based
    Out-of-distribution detection"), s the standardisation and P the projection on the top ``dim``
    principal components of the standardised training features.

    ``fit(features (n, d), labels=None, logits=None)``: ``dim`` defaults to C - 1 with C the number of
    classes, read from the logits' columns (or the labels); ``score(features, logits)`` needs the logits
    when ``times_max_logit`` (the default). ``standardize=False`` uses raw features.
    """

    name: ClassVar[str] = "neco"
    dim: int | None = None
    standardize: bool = True
    times_max_logit: bool = True
    dim_: int | None = field(default=None, init=False, repr=False)
    _centre: np.ndarray | None = field(default=None, init=False, repr=False)
    _scale: np.ndarray | None = field(default=None, init=False, repr=False)
    _pca_centre: np.ndarray | None = field(default=None, init=False, repr=False)
    _components: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        _dim(self.dim, self.name)

    def fit(self, features: Any = None, labels: Any = None, *, logits: Any = None, classifier: Any = None):
        x = _matrix(features, "features", min_rows=2)
        n, d = x.shape
        dim = self.dim
        if dim is None:
            if logits is not None:
                classes = _matrix(logits, "logits").shape[1]
            elif labels is not None:
                classes = len(_labels(labels, n)[0])
            else:
                raise NeurometryError("neco needs dim=..., or logits or labels at fit to default it to classes - 1")
            dim = max(1, classes - 1)
        if not 1 <= dim <= d:
            raise NeurometryError(f"neco: dim must be between 1 and {d} for {d} features, got {dim}")
        if self.standardize:
            centre = x.mean(axis=0)
            scale = x.std(axis=0)
            scale[scale == 0] = 1.0  # a constant feature stays 0 after centring (StandardScaler's rule)
        else:
            centre, scale = np.zeros(d), np.ones(d)
        s = (x - centre) / scale
        pca_centre = s.mean(axis=0)
        sc = s - pca_centre
        _, v = _eigh(cross_product(sc, sc) / n)
        self._components = v[:, d - dim :][:, ::-1].copy()  # top `dim` directions, largest first, (d, dim)
        self._centre, self._scale, self._pca_centre, self.dim_ = centre, scale, pca_centre, dim
        return self

    def ratio(self, features: Any) -> np.ndarray:
        """|P s(h)| / |s(h)| (n,) in [0, 1]: the share of the standardised feature's norm in the principal
        subspace (1 for a row at the training mean)."""
        self._fitted("_components")
        x = _matrix(features, "features")
        _columns(x, len(self._components), "features", "features")
        s = (x - self._centre) / self._scale
        projected = np.sqrt((_matmul(s - self._pca_centre, self._components) ** 2).sum(axis=1))
        full = np.sqrt((s * s).sum(axis=1))
        safe = np.where(full > 0, full, 1.0)
        return np.where(full > 0, projected / safe, 1.0)

    def score(self, features: Any = None, logits: Any = None) -> np.ndarray:
        ratio = self.ratio(features)
        if not self.times_max_logit:
            return -ratio
        f = self._needs_logits(logits)
        if len(f) != len(ratio):
            raise NeurometryError(f"neco: {len(ratio)} feature rows but {len(f)} logit rows; give both for the same rows")
        return -ratio * f.max(axis=1)


OOD_SCORES: dict[str, type[OODScore]] = {
    cls.name: cls for cls in (MaxSoftmaxScore, EnergyScore, MahalanobisScore, KNNScore, ViMScore, NECOScore)
}
"""Every OOD score by its public name: ``msp``, ``energy``, ``mahalanobis``, ``knn``, ``vim``, ``neco``."""


FEATURE_SCORES = ("mahalanobis", "knn")
"""The scores that read the features alone (no logits, no classifier)."""


def get_ood_score(name: str, **params: Any) -> OODScore:
    """A new, unfitted score by name with its parameters, e.g. ``get_ood_score("knn", k=10)``."""
    if name not in OOD_SCORES:
        raise NeurometryError(f"unknown OOD score {name!r}{did_you_mean(name, OOD_SCORES)}; choose from {', '.join(OOD_SCORES)}")
    try:
        return OOD_SCORES[name](**params)
    except TypeError as exc:
        raise NeurometryError(f"{name}: {exc}") from None


# ---------------------------------------------------------------------------------------------------
# exact k-th neighbour distance between two sets

BRUTE_MAX_ROWS = 1024
"""Up to this many reference rows (or too few for a screen) the search is a plain float64 one."""

SCREEN_ROWS = 1024
"""Query rows per screening GEMM (a (SCREEN_ROWS, n) float32 block)."""

BLOCK_BYTES = 64 << 20
"""Memory for one block of float64 distances in the plain search."""

KTH_NEIGHBOUR_STATS: dict[str, Any] = {}
"""How the last :func:`kth_neighbour_distances` call went: rows screened, rows that failed, rows searched
plainly."""

_U32 = 2.0**-24  # unit roundoff of float32
_SCREEN_OK: dict[str, bool] = {}
_SCREEN_LOCK = threading.Lock()


def _float32_gemm_bound_holds(device: torch.device) -> bool:
    """Whether torch's float32 GEMM on ``device`` stays within the bound the screen assumes,
    gamma_(d+2) sum |a_k b_k| (float32 accumulation in any order), checked once per process and device on a
    random product; False also when the user lowered torch's float32 matmul precision (bf16 or TF32
    internally, which cuBLAS would otherwise use on a GPU)."""
    if torch.get_float32_matmul_precision() != "highest":
        return False
    with _SCREEN_LOCK:
        if str(device) not in _SCREEN_OK:
            g = torch.Generator().manual_seed(0)
            a = torch.randn(64, 576, generator=g)
            b = torch.randn(576, 256, generator=g)
            exact = a.double() @ b.double()
            gamma = 578 * _U32 / (1 - 578 * _U32)
            low = (a.to(device) @ b.to(device)).cpu()
            _SCREEN_OK[str(device)] = bool((low.double() - exact).abs().le(gamma * (a.double().abs() @ b.double().abs())).all())
        return _SCREEN_OK[str(device)]


def _plain_kth(queries: torch.Tensor, reference: torch.Tensor, k: int) -> torch.Tensor:
    """Exact float64 k-th smallest distance of each query row to the reference rows, in blocks, where the
    reference rows are."""
    out = torch.empty(len(queries), dtype=torch.float64, device=reference.device)
    step = max(1, BLOCK_BYTES // (8 * len(reference)))
    for lo in range(0, len(queries), step):
        dist = torch.cdist(queries[lo : lo + step], reference, compute_mode="donot_use_mm_for_euclid_dist")
        out[lo : lo + step] = torch.kthvalue(dist, k, dim=1).values
    return out


def kth_neighbour_distances(
    queries: np.ndarray, reference: np.ndarray, k: int, device: torch.device | None = None
) -> np.ndarray:
    """Exact Euclidean distance (m,) from each query row (m, d) to its k-th nearest reference row (n, d).

    The value is the k-th smallest of the float64 distances computed from differences, as the intrinsic-
    dimension kNN (:func:`neurometry.measures.knn`) computes them; that engine finds one set's neighbours
    among its own rows, this one searches a second set, with the same screen-and-certify scheme. Small
    reference sets take the plain float64 search; larger ones:

    1. Screen. Both sets are centred on the reference mean (z) and rounded to float32 (z~). One float32
       GEMM (``addmm``) per ``SCREEN_ROWS`` queries gives v~_ij ~ v_ij = |z_j|^2 - 2 z_i . z_j
       (= |z_i - z_j|^2 - |z_i|^2, the same order as the distance), and ``topk`` keeps the
       kc = k + max(6, k // 2) smallest per query.
    2. Bound. |v~_ij - v_ij| <= E_i = 2 (e_i N + |z_i| e) + gamma (max |z_j|^2 + 2 |z~_i| N)
       + u max |z_j|^2, inflated by 1e-6 relative: the rounding of the inputs (e_i = |z~_i - z_i| per row,
       N = max |z~_j|, e = max |z~_j - z_j|), the GEMM's float32 sum of d + 1 terms in any order
       (gamma = (d+2) u / (1 - (d+2) u), u = 2^-24; checked once per process on a test product) and the
       float32 rounding of |z_j|^2.
    3. Certify. With v~_(k) the k-th smallest screened value, every point with v~ < v~_(k) - 2E is
       strictly nearer than the k-th neighbour and every point with v~ > v~_(k) + 2E strictly farther
       (order statistics move by at most E). If the kc-th (largest kept) value is above v~_(k) + 2E, the
       band in between lies among the kept candidates: their distances are computed exactly (float64,
       from differences) and the k-th nearest is the (k - #below)-th smallest of the band. Other queries
       (ties or near-ties of more than kc - k points at the k-th distance) take the plain search.
       ``KTH_NEIGHBOUR_STATS`` counts the rows at each stage.

    With ``device`` (a ``torch.device``, e.g. a GPU) both sets go there once and every step above runs
    there, block after block (the float32 bound is checked on that device, so TF32 or a lowered matmul
    precision sends every row to the plain float64 search); only the (m,) distances come back. The values
    are the same float64 distances from differences, up to the order in which each one's squares are
    summed.

    Only the k-th distance is returned, so ties among neighbours need no rule. A bfloat16 screen (twice
    the GEMM throughput with AVX512-BF16) was tried and left out: its rounding bound (about 1% of |z|^2)
    certified only 1 query in 10 on 576-wide class-clustered features, whose 50th and 75th neighbours
    lie closer than that.
    """
    q64 = np.ascontiguousarray(queries, dtype=np.float64)
    x64 = np.ascontiguousarray(reference, dtype=np.float64)
    m, n, d = len(q64), len(x64), x64.shape[1]
    if not 1 <= k <= n:
        raise NeurometryError(f"{k} neighbours need at least {k} reference rows, got {n}; use fewer neighbours")
    if q64.ndim != 2 or q64.shape[1] != d:
        raise NeurometryError(f"queries must be (rows, {d}) like the reference rows, got {q64.shape}")
    if not (np.isfinite(q64).all() and np.isfinite(x64).all()):
        raise NeurometryError("kth_neighbour_distances: the data contain NaN or Inf; remove those rows")
    device = resolve_device(device, announce=False)  # a device this machine lacks is one line here
    tq, tx = torch.from_numpy(q64).to(device), torch.from_numpy(x64).to(device)
    kc = k + max(6, k // 2)
    KTH_NEIGHBOUR_STATS.clear()
    KTH_NEIGHBOUR_STATS.update({"queries": m, "reference": n, "k": k, "candidates": kc, "device": str(device)})
    if m == 0:
        return np.empty(0)
    if n <= max(BRUTE_MAX_ROWS, 4 * kc) or not _float32_gemm_bound_holds(device):
        KTH_NEIGHBOUR_STATS["plain"] = m
        return _plain_kth(tq, tx, k).cpu().numpy()
    out = torch.empty(m, dtype=torch.float64, device=device)
    centre = tx.mean(0)
    zq = tq - centre
    screen = _Screen(tx - centre)

    def run(rows: torch.Tensor) -> torch.Tensor:
        ok, distance = screen.block(zq[rows], k, kc, lambda r, j: tq[rows[r]] - tx[j])
        out[rows[ok]] = distance[ok]  # blocks write disjoint rows
        return rows[~ok]

    blocks = list(torch.split(torch.arange(m, device=device), SCREEN_ROWS))
    # CPU blocks run on threads (see map_blocks); an accelerator's queue takes them one after another
    todo = torch.cat(map_blocks(run, blocks) if device.type == "cpu" else [run(b) for b in blocks])
    KTH_NEIGHBOUR_STATS.update({"screened": m, "failed": len(todo)})
    if len(todo):
        out[todo] = _plain_kth(tq[todo], tx, k)
        KTH_NEIGHBOUR_STATS["plain"] = len(todo)
    return out.cpu().numpy()


class _Screen:
    """The float32 screen of the centred reference rows zx (n, d): :func:`kth_neighbour_distances`, 1-3."""

    def __init__(self, zx: torch.Tensor):
        d = zx.shape[1]
        low = zx.float()
        self.x_err = float(torch.linalg.vector_norm(low.double() - zx, dim=1).max())
        self.x_size = float(torch.linalg.vector_norm(low.double(), dim=1).max())
        self.low_t = low.T.contiguous()
        norm2 = (zx * zx).sum(1)
        self.norm2_max = float(norm2.max())
        self.norm2 = norm2.float()
        self.gamma = (d + 2) * _U32 / (1 - (d + 2) * _U32)

    def block(self, zq: torch.Tensor, k: int, kc: int, differences: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(certified (b,) bool, k-th neighbour distance (b,) where certified) for query rows zq (b, d);
        ``differences(r, j)`` gives the float64 rows query[r] - reference[j] of the original data."""
        low = zq.float()
        q_err = torch.linalg.vector_norm(low.double() - zq, dim=1)
        product = torch.linalg.vector_norm(low.double(), dim=1) * self.x_size  # >= |z~_i . z~_j|
        input_err = 2 * (q_err * self.x_size + torch.linalg.vector_norm(zq, dim=1) * self.x_err)
        sum_err = self.gamma * ((1 + _U32) * self.norm2_max + 2 * product) + _U32 * self.norm2_max
        bound = (input_err + sum_err) * (1 + 1e-6) + 1e-12 * (self.norm2_max + 2 * product)
        values, index = torch.topk(torch.addmm(self.norm2, low, self.low_t, alpha=-2.0), kc, dim=1, largest=False)
        v = values.double()
        kth = v[:, k - 1]
        ok = v[:, -1] > kth + 2 * bound
        band = (v >= (kth - 2 * bound)[:, None]) & (v <= (kth + 2 * bound)[:, None]) & ok[:, None]
        below = (v < (kth - 2 * bound)[:, None]).sum(1)
        r, j = torch.nonzero(band, as_tuple=True)
        diff = differences(r, index[r, j])
        exact = torch.full(v.shape, float("inf"), dtype=torch.float64, device=zq.device)
        exact[r, j] = (diff * diff).sum(1)
        exact = torch.sort(exact, dim=1).values
        picked = exact[torch.arange(len(zq), device=zq.device), (k - 1 - below).clamp(min=0)]
        return ok, picked.sqrt()
