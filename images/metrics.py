"""Download-free image metrics: toy-scale counterparts of FID and IS on the digits.

- **FD-digits**: the Frechet distance (Dowson & Landau 1982; FID's formula, Heusel et al. 2017)
  ``|mu_1 - mu_2|^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))`` between Gaussians fitted to the penultimate
  features of the small digits classifier (``images.classifier``) on generated and held-out images.
- **Digits score**: the Inception-score formula (Salimans et al. 2016) with that classifier,
  ``exp(E_x KL(p(y|x) || p(y)))``, between 1 and 10.
- **Accuracy**: how often the classifier assigns a guided sample to the class it was asked for.

These are NOT comparable to ImageNet FID/IS numbers: different feature network (64 features of a
classifier trained on 1,438 8x8 digits, not Inception-v3's 2048), a different data set and a few hundred
samples (the Frechet distance is biased upwards at small sample sizes). They rank methods against
each other at this scale, with the sampling noise measured over seeds.
"""
from __future__ import annotations

import math
import warnings
from typing import NamedTuple, Optional

import numpy as np
import scipy.linalg
import torch

__all__ = [
    "FeatureStats",
    "feature_stats",
    "frechet_distance",
    "inception_score",
    "class_accuracy",
    "Scores",
    "DigitsEvaluator",
]


class FeatureStats(NamedTuple):
    mu: np.ndarray  # [F]
    cov: np.ndarray  # [F, F]
    n: int


def feature_stats(features) -> FeatureStats:
    """Mean and (unbiased) covariance of features [N, F], N >= 2, in float64."""
    f = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must be [N, F] with N >= 2, got shape {f.shape}")
    if not np.all(np.isfinite(f)):
        raise ValueError("features contain non-finite values")
    return FeatureStats(f.mean(0), np.atleast_2d(np.cov(f, rowvar=False)), f.shape[0])


def frechet_distance(mu1, cov1, mu2, cov2, eps: float = 1e-6) -> float:
    """``|mu1 - mu2|^2 + tr(cov1) + tr(cov2) - 2 tr((cov1 cov2)^(1/2))`` (squared 2-Wasserstein distance
    between the Gaussians), via ``scipy.linalg.sqrtm``. When the product is numerically singular, ``eps``
    is added to both diagonals (as in FID's reference code); imaginary rounding parts are dropped."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    cov1, cov2 = np.atleast_2d(np.asarray(cov1, np.float64)), np.atleast_2d(np.asarray(cov2, np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or cov1.shape != (d, d) or cov2.shape != (d, d):
        raise ValueError(f"shapes do not match: mu1 {mu1.shape}, cov1 {cov1.shape}, mu2 {mu2.shape}, cov2 {cov2.shape}")
    for name, a in (("mu1", mu1), ("mu2", mu2), ("cov1", cov1), ("cov2", cov2)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} has non-finite entries")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(cov1 @ cov2)
    if caught or not np.all(np.isfinite(covmean)):
        offset = np.eye(d) * eps
        covmean = scipy.linalg.sqrtm((cov1 + offset) @ (cov2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * np.trace(covmean))


def _probs(p) -> torch.Tensor:
    p = torch.as_tensor(p, dtype=torch.float64)
    if p.ndim != 2 or p.shape[0] < 1:
        raise ValueError(f"probabilities must be [N, K], got shape {tuple(p.shape)}")
    if torch.any(p < 0) or not torch.allclose(p.sum(1), torch.ones(p.shape[0], dtype=p.dtype), atol=1e-4):
        raise ValueError("rows of probabilities must be non-negative and sum to 1")
    return p


def inception_score(probs) -> float:
    """``exp(mean_n KL(p_n || mean_m p_m))`` for class probabilities [N, K] (one split)."""
    p = _probs(probs)
    marginal = p.mean(0, keepdim=True)
    kl = torch.where(p > 0, p * (torch.log(p.clamp_min(1e-300)) - torch.log(marginal.clamp_min(1e-300))), 0.0).sum(1)
    return float(torch.exp(kl.mean()))


def class_accuracy(probs, labels) -> float:
    """Fraction of rows whose argmax equals the requested label [N]."""
    p = _probs(probs)
    y = torch.as_tensor(labels).reshape(-1)
    if y.shape[0] != p.shape[0]:
        raise ValueError(f"need one label per row, got {y.shape[0]} labels for {p.shape[0]} rows")
    return float((p.argmax(1) == y.to(p.device)).double().mean())


class Scores(NamedTuple):
    fd: float  # FD-digits against the held-out images (lower is better)
    score: float  # Inception-style score (higher: confident and diverse)
    accuracy: float  # requested class recognised (nan without labels)


class DigitsEvaluator:
    """Scores generated digits against a reference set with a trained classifier.

    ``evaluate(images [N, 1, H, W], labels [N] | None)``; images are clamped to [-1, 1] first, as they
    would be when saved."""

    def __init__(self, classifier: torch.nn.Module, reference: torch.Tensor, batch_size: int = 512):
        if not hasattr(classifier, "features") or not callable(classifier):
            raise ValueError("classifier must be a module with features(x) and forward(x) -> logits")
        self.classifier, self.batch_size = classifier, int(batch_size)
        self.reference = feature_stats(self._features(reference)[0])

    def _features(self, x: torch.Tensor):
        dev = next(self.classifier.parameters()).device
        feats, probs = [], []
        with torch.no_grad():
            for chunk in torch.split(x, self.batch_size):
                f = self.classifier.features(chunk.to(dev).clamp(-1, 1))
                feats.append(f.double().cpu())
                probs.append(torch.softmax(self.classifier.head(f).double(), 1).cpu())
        return torch.cat(feats), torch.cat(probs)

    def evaluate(self, images: torch.Tensor, labels: Optional[torch.Tensor] = None) -> Scores:
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[0] < 2:
            raise ValueError(f"images must be a tensor [N >= 2, C, H, W], got {getattr(images, 'shape', images)!r}")
        if not torch.all(torch.isfinite(images)):
            raise ValueError("images contain non-finite values")
        f, p = self._features(images)
        s = feature_stats(f)
        fd = frechet_distance(s.mu, s.cov, self.reference.mu, self.reference.cov)
        acc = class_accuracy(p, labels) if labels is not None else math.nan
        return Scores(fd, inception_score(p), acc)
