"""Inference: load a trained model, preprocess, forward, postprocess.

    save_model(model, "digits.pt", factory="make_mlp", config=dict(hidden=128))
    model = load_model("digits.pt")                       # rebuilt and in eval mode
    labels, confidence = predict_digits(model, images)    # raw 8×8 images, values 0..16

The file holds the factory's name, its keyword arguments and the state_dict: the weights
alone cannot rebuild a model, the recipe alone has no knowledge.
"""

from __future__ import annotations

import torch

from hpclab.problems.digits import preprocess_digits
from hpclab.problems.models import make_mlp
from hpclab.problems.transformer import tiny_transformer

FACTORIES = {"make_mlp": make_mlp, "tiny_transformer": tiny_transformer}


def save_model(model: torch.nn.Module, path, factory: str, config: dict) -> None:
    """Write {factory, config, state_dict} so load_model can rebuild the model."""
    if factory not in FACTORIES:
        raise ValueError(f"factory must be one of {sorted(FACTORIES)}, got {factory!r}")
    torch.save({"factory": factory, "config": dict(config),
                "state_dict": model.state_dict()}, path)


def load_model(path, map_location="cpu") -> torch.nn.Module:
    """Rebuild with the saved factory and config, load the weights, switch to eval()."""
    saved = torch.load(path, map_location=map_location, weights_only=True)
    model = FACTORIES[saved["factory"]](**saved["config"])
    model.load_state_dict(saved["state_dict"])
    return model.eval()


def postprocess(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (n, C) → (predicted class, its softmax probability), one per row."""
    probs = torch.softmax(logits, dim=-1)
    confidence, labels = probs.max(dim=-1)
    return labels, confidence


@torch.no_grad()
def predict_digits(model: torch.nn.Module, images) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw digit images → (labels, confidence): preprocess, forward, postprocess."""
    device = next(model.parameters()).device
    return postprocess(model(preprocess_digits(images).to(device)).cpu())
