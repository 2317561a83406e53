"""The digits data set: range, shapes, a stratified, seeded, disjoint split, the 16x16 variants."""
import pytest
import torch

pytest.importorskip("sklearn")

from images.data import NUM_CLASSES, load_digits_split, to_unit_range  # noqa: E402


@pytest.fixture(scope="module")
def split():
    return load_digits_split()


def test_shapes_range_and_sizes(split):
    assert split.train_x.shape[1:] == (1, 8, 8) and split.test_x.shape[1:] == (1, 8, 8)
    assert split.train_x.dtype == torch.float32 and split.train_y.dtype == torch.int64
    assert split.train_x.shape[0] + split.test_x.shape[0] == 1797
    assert split.train_x.shape[0] == split.train_y.shape[0] and split.test_x.shape[0] == split.test_y.shape[0]
    for x in (split.train_x, split.test_x):
        assert x.min() == -1.0 and x.max() == 1.0  # 0 -> -1, 16 -> 1
    # pixel values are k/16 for integers k: x = k/8 - 1
    k = (split.train_x + 1) * 8
    assert torch.allclose(k, k.round())
    assert split.size == 8 and len(split.train_set()) == split.train_x.shape[0]


def test_split_is_stratified_disjoint_and_seeded(split):
    counts_all = torch.bincount(torch.cat([split.train_y, split.test_y]), minlength=NUM_CLASSES)
    counts_test = torch.bincount(split.test_y, minlength=NUM_CLASSES)
    assert torch.all((counts_test - 0.2 * counts_all).abs() <= 0.5)
    # disjoint: no held-out image appears among the training images (the digits have no exact duplicates
    # across these halves for this split; checked on the flattened pixels)
    tr = {tuple(v.tolist()) for v in split.train_x.flatten(1)}
    assert sum(tuple(v.tolist()) in tr for v in split.test_x.flatten(1)) == 0
    again = load_digits_split(seed=0)
    assert torch.equal(again.test_x, split.test_x) and torch.equal(again.test_y, split.test_y)
    other = load_digits_split(seed=1)
    assert not torch.equal(other.test_x, split.test_x)
    assert load_digits_split(test_fraction=0.5).test_x.shape[0] == pytest.approx(1797 / 2, abs=6)


def test_resize_variants(split):
    pad = load_digits_split(resize="pad")
    up = load_digits_split(resize="upsample")
    assert pad.train_x.shape[1:] == (1, 16, 16) and up.train_x.shape[1:] == (1, 16, 16) and pad.size == 16
    assert torch.equal(pad.train_x[:, :, 4:12, 4:12], split.train_x)
    assert torch.all(pad.train_x[:, :, :4] == -1) and torch.all(pad.train_x[:, :, :, 12:] == -1)
    assert torch.equal(up.train_x[:, :, ::2, ::2], split.train_x) and torch.equal(up.train_x[:, :, 1::2, 1::2], split.train_x)


def test_bad_arguments():
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits_split(test_fraction=1.0)
    with pytest.raises(ValueError, match="resize"):
        load_digits_split(resize="crop")
    with pytest.raises(ValueError, match="seed"):
        load_digits_split(seed=0.5)


def test_to_unit_range():
    x = torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0])
    assert torch.equal(to_unit_range(x), torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]))
