"""Shipped text, char tokenizer, batches, and the tiny transformer."""

import pytest
import torch

from hpclab.problems import (
    CharBatches,
    CharTokenizer,
    generate,
    lm_loss,
    load_text,
    text_loaders,
    tiny_transformer,
)
from hpclab.problems.transformer import TransformerConfig

pytestmark = [pytest.mark.unit_b]


def test_corpus_ships_with_the_package():
    text = load_text()
    assert 50_000 <= len(text.encode()) <= 200_000
    tok = CharTokenizer.from_text(text)
    assert 30 <= tok.vocab_size <= 100
    assert tok.decode(tok.encode(text[:500])) == text[:500]
    with pytest.raises(ValueError, match="is not in the vocabulary"):
        tok.encode("€")
    with pytest.raises(FileNotFoundError, match="no text"):
        load_text("missing.txt")


def test_batches_are_shifted_windows_and_reproducible():
    data = torch.arange(1000)
    b = CharBatches(data, block_size=16, batch_size=4, batches_per_epoch=3, seed=0)
    batches = list(b)
    assert len(batches) == 3 == len(b)
    x, y = batches[0]
    assert x.shape == y.shape == (4, 16) and torch.equal(y, x + 1)
    again = list(CharBatches(data, 16, 4, 3, seed=0))
    assert all(torch.equal(p[0], q[0]) for p, q in zip(batches, again))
    assert not torch.equal(next(iter(b))[0], batches[0][0])           # training: new windows
    fixed = CharBatches(data, 16, 4, 3, seed=0, fixed=True)
    assert torch.equal(next(iter(fixed))[0], next(iter(fixed))[0])        # validation: the same
    with pytest.raises(ValueError, match="too short"):
        CharBatches(torch.arange(10), block_size=16)


def test_transformer_shapes_and_causality():
    model = tiny_transformer(vocab_size=20, block_size=16, seed=0)
    x = torch.randint(20, (3, 16))
    logits = model(x)
    assert logits.shape == (3, 16, 20)
    x2 = x.clone()
    x2[:, 10:] = (x2[:, 10:] + 1) % 20        # change only the future
    torch.testing.assert_close(model(x2)[:, :10], logits[:, :10])
    assert not torch.allclose(model(x2)[:, 10:], logits[:, 10:])
    with pytest.raises(ValueError, match="exceeds block_size=16"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="divisible by n_heads"):
        TransformerConfig(vocab_size=10, d_model=30, n_heads=4)


def test_factory_is_seeded():
    torch.manual_seed(0)
    state = torch.get_rng_state()
    a, b = tiny_transformer(30, seed=5), tiny_transformer(30, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_loss_starts_near_log_vocab_and_decreases():
    train, _, tok = text_loaders(block_size=32, batch_size=16, batches_per_epoch=40)
    model = tiny_transformer(tok.vocab_size, block_size=32, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for x, y in train:
        loss = lm_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(torch.log(torch.tensor(tok.vocab_size)).item(), rel=0.2)
    assert sum(losses[-5:]) / 5 < 0.75 * losses[0]
    text = generate(model, tok, "The ", n_new=20)
    assert text.startswith("The ") and len(text) == 24
