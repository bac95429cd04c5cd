"""Digits split, loaders, the MLP factory and inference (save → load → predict)."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from hpclab.problems import (
    digits_loaders,
    load_digits_split,
    load_model,
    make_mlp,
    postprocess,
    predict_digits,
    preprocess_digits,
    save_model,
)

pytestmark = [pytest.mark.unit_b]


def test_split_is_reproducible_and_stratified():
    a, b, c = load_digits_split(seed=0), load_digits_split(seed=0), load_digits_split(seed=1)
    assert torch.equal(a.X_train, b.X_train) and torch.equal(a.y_val, b.y_val)
    assert not torch.equal(a.y_val, c.y_val)
    assert len(a.y_train) + len(a.y_val) == 1797
    assert len(a.y_val) == pytest.approx(0.25 * 1797, abs=1)
    frac_train = torch.bincount(a.y_train) / len(a.y_train)
    frac_val = torch.bincount(a.y_val) / len(a.y_val)
    assert torch.allclose(frac_train, frac_val, atol=0.01)
    assert a.X_train.dtype == torch.float32 and 0.0 <= a.X_train.min() <= a.X_train.max() <= 1


def test_train_size_shrinks_training_only():
    full, small = load_digits_split(seed=0), load_digits_split(train_size=100, seed=0)
    assert len(small.y_train) == 100 and set(small.y_train.tolist()) == set(range(10))
    assert torch.equal(full.X_val, small.X_val)
    with pytest.raises(ValueError, match="train_size must be in"):
        load_digits_split(train_size=5)
    with pytest.raises(ValueError, match="val_fraction must be in"):
        load_digits_split(val_fraction=1.5)


def test_loaders_shuffle_reproducibly():
    def first_labels(seed):
        train, _ = digits_loaders(batch_size=16, seed=seed)
        return next(iter(train))[1]
    assert torch.equal(first_labels(3), first_labels(3))
    train, val = digits_loaders(batch_size=16, train_size=64)
    assert sum(len(x) for x, _ in train) == 64
    assert sum(len(x) for x, _ in val) == len(load_digits_split().y_val)


def test_preprocess_accepts_images_batches_and_rows():
    raw = load_digits().images[:3]                     # (3, 8, 8), values 0..16
    assert preprocess_digits(raw).shape == (3, 64)
    assert preprocess_digits(raw[0]).shape == (1, 64)
    assert torch.equal(preprocess_digits(raw.reshape(3, 64)), preprocess_digits(raw))
    assert preprocess_digits(raw).max() <= 1.0
    with pytest.raises(ValueError, match="expected 8x8 images or rows of 64"):
        preprocess_digits(np.zeros((2, 10)))


def test_make_mlp_is_seeded_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, b = make_mlp(64, (32, 16), 10, seed=7), make_mlp(64, (32, 16), 10, seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert [m.out_features for m in a if isinstance(m, torch.nn.Linear)] == [32, 16, 10]
    with pytest.raises(ValueError, match="activation must be one of"):
        make_mlp(activation="swish")
    with pytest.raises(ValueError, match="layer widths must be >= 1"):
        make_mlp(hidden=0)


def test_inference_round_trip(tmp_path):
    config = {"in_features": 64, "hidden": (32,), "out_features": 10, "seed": 3}
    model = make_mlp(**config)
    save_model(model, tmp_path / "m.pt", "make_mlp", config)
    loaded = load_model(tmp_path / "m.pt")
    assert not loaded.training
    raw = load_digits().images[:20]
    labels, conf = predict_digits(loaded, raw)
    with torch.no_grad():
        ref = model(preprocess_digits(raw))
    assert torch.equal(labels, ref.argmax(1))
    torch.testing.assert_close(conf, torch.softmax(ref, 1).max(1).values)
    assert torch.all((conf > 0) & (conf <= 1))
    with pytest.raises(ValueError, match="factory must be one of"):
        save_model(model, tmp_path / "x.pt", "resnet", {})


def test_postprocess():
    labels, conf = postprocess(torch.tensor([[0.0, 5.0, 0.0], [9.0, 0.0, 0.0]]))
    assert labels.tolist() == [1, 0] and torch.all(conf > 0.9)
