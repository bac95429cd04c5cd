"""The sklearn digits set (1797 images of 8×8 pixels, classes 0-9) with a train/validation
split: the course's over-fitting, L2 and early-stopping playground. Bundled with
scikit-learn, so nothing is downloaded.

    train_loader, val_loader = digits_loaders(batch_size=64, train_size=300, seed=0)
    model = make_mlp(64, hidden=128, out_features=10)

A small `train_size` (say 200) and a wide network over-fit within a few dozen epochs: the
training loss keeps falling while the validation loss turns up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, TensorDataset

N_PIXELS = 64
N_CLASSES = 10
PIXEL_MAX = 16.0   # sklearn's digits store ink as integers 0..16


def preprocess_digits(images) -> torch.Tensor:
    """Raw digits (one 8×8 image, a batch (n, 8, 8) or flat (n, 64); values 0..16) →
    float32 tensor (n, 64) in [0, 1]. Training and inference both go through here."""
    x = torch.as_tensor(np.asarray(images), dtype=torch.float32)
    if x.shape[-2:] == (8, 8):
        x = x.reshape(*x.shape[:-2], N_PIXELS)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] != N_PIXELS:
        raise ValueError(f"expected 8x8 images or rows of 64 pixels, got shape "
                         f"{tuple(np.shape(images))}")
    return x / PIXEL_MAX


@dataclass
class DigitsSplit:
    X_train: torch.Tensor   # (n_train, 64) float32 in [0, 1]
    y_train: torch.Tensor   # (n_train,) int64
    X_val: torch.Tensor
    y_val: torch.Tensor


def load_digits_split(val_fraction: float = 0.25, train_size: int | None = None,
                      seed: int = 0) -> DigitsSplit:
    """Stratified split (same class mix on both sides), reproducible from `seed`.

    `train_size` keeps only that many training images (over-fitting on purpose); the
    validation set is unchanged by it, so runs with different sizes compare fairly.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    digits = load_digits()
    X_tr, X_va, y_tr, y_va = train_test_split(
        digits.data, digits.target, test_size=val_fraction, stratify=digits.target,
        random_state=seed)
    if train_size is not None:
        if not N_CLASSES <= train_size <= len(y_tr):
            raise ValueError(f"train_size must be in [{N_CLASSES}, {len(y_tr)}] for "
                             f"val_fraction={val_fraction}, got {train_size}")
        if train_size < len(y_tr):
            X_tr, _, y_tr, _ = train_test_split(X_tr, y_tr, train_size=train_size,
                                                stratify=y_tr, random_state=seed)
    return DigitsSplit(preprocess_digits(X_tr), torch.as_tensor(y_tr, dtype=torch.long),
                       preprocess_digits(X_va), torch.as_tensor(y_va, dtype=torch.long))


def digits_datasets(val_fraction: float = 0.25, train_size: int | None = None,
                    seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """(train, val) TensorDatasets of (x, label): for samplers of your own (e.g. sharded)."""
    s = load_digits_split(val_fraction, train_size, seed)
    return TensorDataset(s.X_train, s.y_train), TensorDataset(s.X_val, s.y_val)


def digits_loaders(batch_size: int = 64, val_fraction: float = 0.25,
                   train_size: int | None = None,
                   seed: int = 0) -> tuple[DataLoader, DataLoader]:
    """(train_loader, val_loader); the training order is shuffled reproducibly from seed."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    train, val = digits_datasets(val_fraction, train_size, seed)
    g = torch.Generator().manual_seed(seed)
    return (DataLoader(train, batch_size=batch_size, shuffle=True, generator=g),
            DataLoader(val, batch_size=512))
