"""Frechet distance against closed forms for Gaussians; the Inception-style score and accuracy on
known distributions; the evaluator with the shipped classifier."""
import math

import numpy as np
import pytest
import scipy.linalg
import torch

from images.metrics import DigitsEvaluator, class_accuracy, feature_stats, frechet_distance, inception_score


def _spd(rng, d):
    a = rng.standard_normal((d, d))
    return a @ a.T + 0.1 * np.eye(d)


def test_frechet_1d_and_diagonal_closed_form():
    # 1-D: W2^2 between N(m1, s1^2) and N(m2, s2^2) is (m1 - m2)^2 + (s1 - s2)^2
    assert frechet_distance([0.3], [[0.25]], [-1.2], [[4.0]]) == pytest.approx(1.5**2 + (0.5 - 2.0) ** 2, rel=1e-10)
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    m1, m2 = rng.standard_normal(6), rng.standard_normal(6)
    want = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(m1, np.diag(a), m2, np.diag(b)) == pytest.approx(want, rel=1e-9)


def test_frechet_general_covariances_closed_form():
    rng = np.random.default_rng(1)
    d = 5
    s1 = _spd(rng, d)
    m1, m2 = rng.standard_normal(d), rng.standard_normal(d)
    # against the identity: tr(S1) + d - 2 tr(S1^(1/2)), with the square root from the eigenvalues
    want = np.sum((m1 - m2) ** 2) + np.trace(s1) + d - 2 * np.sum(np.sqrt(np.linalg.eigvalsh(s1)))
    assert frechet_distance(m1, s1, m2, np.eye(d)) == pytest.approx(want, rel=1e-9)
    # commuting pair S2 = S1^2 + S1 (same eigenvectors): sum over eigenvalues (sqrt(l) - sqrt(l^2 + l))^2
    lam = np.linalg.eigvalsh(s1)
    want = np.sum((np.sqrt(lam) - np.sqrt(lam**2 + lam)) ** 2)
    assert frechet_distance(m1, s1, m1, s1 @ s1 + s1) == pytest.approx(want, rel=1e-8)
    # general pair: symmetric, zero on itself, and the W2 formula tr(S1 + S2 - 2 (S1^(1/2) S2 S1^(1/2))^(1/2))
    s2 = _spd(rng, d)
    r = scipy.linalg.sqrtm(s1).real
    want = np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(r @ s2 @ r).real)
    assert frechet_distance(m1, s1, m1, s2) == pytest.approx(want, rel=1e-8)
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(frechet_distance(m2, s2, m1, s1), rel=1e-8)
    assert abs(frechet_distance(m1, s1, m1, s1)) < 1e-8


def test_frechet_from_samples_converges_to_closed_form():
    rng = np.random.default_rng(2)
    d, n = 3, 200_000
    s1, s2 = _spd(rng, d), _spd(rng, d)
    m1, m2 = np.zeros(d), np.ones(d)
    x1 = rng.multivariate_normal(m1, s1, n)
    x2 = rng.multivariate_normal(m2, s2, n)
    f1, f2 = feature_stats(torch.from_numpy(x1)), feature_stats(x2)
    assert f1.n == n and f1.cov.shape == (d, d)
    exact = frechet_distance(m1, s1, m2, s2)
    assert frechet_distance(f1.mu, f1.cov, f2.mu, f2.cov) == pytest.approx(exact, rel=0.03)


def test_frechet_singular_covariances_and_bad_input():
    # rank-deficient covariances still give the closed form (eps regularisation only if needed)
    c = np.diag([1.0, 0.0])
    assert frechet_distance([0, 0], c, [0, 0], c) == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(ValueError, match="shapes"):
        frechet_distance([0, 0], np.eye(2), [0, 0, 0], np.eye(3))
    with pytest.raises(ValueError, match="non-finite"):
        frechet_distance([0, np.nan], np.eye(2), [0, 0], np.eye(2))
    with pytest.raises(ValueError, match="N >= 2"):
        feature_stats(np.zeros((1, 3)))


def test_inception_score_and_accuracy():
    k = 10
    onehot = torch.eye(k).repeat(3, 1)  # confident and uniform over classes: exp(log k) = k
    assert inception_score(onehot) == pytest.approx(k, rel=1e-9)
    same = torch.full((20, k), 1.0 / k)  # no information: 1
    assert inception_score(same) == pytest.approx(1.0)
    one_class = torch.zeros(20, k)
    one_class[:, 3] = 1
    assert inception_score(one_class) == pytest.approx(1.0)
    # two equiprobable classes, confident: 2
    p = torch.zeros(4, k)
    p[:2, 0] = 1
    p[2:, 1] = 1
    assert inception_score(p) == pytest.approx(2.0)
    assert class_accuracy(p, torch.tensor([0, 1, 1, 1])) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="sum to 1"):
        inception_score(torch.ones(3, k))
    with pytest.raises(ValueError, match="one label per row"):
        class_accuracy(p, torch.tensor([0, 1]))


def test_evaluator_with_shipped_classifier():
    pytest.importorskip("sklearn")
    from images.classifier import load_classifier
    from images.data import load_digits_split

    data = load_digits_split()
    ev = DigitsEvaluator(load_classifier(), data.test_x)
    s = ev.evaluate(data.test_x, data.test_y)
    assert abs(s.fd) < 1e-6  # the reference against itself
    assert s.accuracy > 0.95 and 8.0 < s.score <= 10.0
    noise = ev.evaluate(torch.rand(100, 1, 8, 8) * 2 - 1)
    assert noise.fd > 10 * ev.evaluate(data.train_x[:300]).fd and math.isnan(noise.accuracy)
    with pytest.raises(ValueError, match="images must be"):
        ev.evaluate(torch.zeros(8, 8))
    with pytest.raises(ValueError, match="expected images"):
        ev.evaluate(torch.zeros(4, 1, 16, 16))
