"""Character-level text for the tiny transformer: the shipped corpus, a tokenizer, batches.

    text = load_text()                                   # hpclab/data/tiny_corpus.txt
    tok = CharTokenizer.from_text(text)                  # one token per character
    train, val, tok = text_loaders(block_size=64, batch_size=32)
    x, y = next(iter(train))        # (32, 64) token ids; y is x shifted left by one

A batch is `batch_size` random windows of `block_size + 1` characters: the model reads
the first block_size and predicts each next one. Counting tokens = batch_size·block_size
per step (what `hpclab.train` reports as tokens/s).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import torch

CORPUS = "tiny_corpus.txt"


def load_text(name: str = CORPUS) -> str:
    """A text file shipped in hpclab/data/ (no download)."""
    path = resources.files("hpclab") / "data" / name
    if not path.is_file():
        raise FileNotFoundError(f"no text {name!r} in hpclab/data/; the package ships "
                                f"{CORPUS!r}")
    return path.read_text(encoding="utf-8")


@dataclass
class CharTokenizer:
    chars: list          # the vocabulary; token id = position in this list

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> torch.Tensor:
        index = {c: i for i, c in enumerate(self.chars)}
        try:
            return torch.tensor([index[c] for c in text], dtype=torch.long)
        except KeyError as e:
            raise ValueError(f"character {e.args[0]!r} is not in the vocabulary of "
                             f"{self.vocab_size} characters") from None

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)


class CharBatches:
    """An iterable of (x, y) batches of random windows from a 1-D tensor of token ids.

    Each pass yields `batches_per_epoch` batches. With fixed=False the windows keep
    changing from pass to pass (training); with fixed=True every pass yields the same
    windows (a validation set you can compare across evaluations). Both follow `seed`.
    """

    def __init__(self, data: torch.Tensor, block_size: int = 64, batch_size: int = 32,
                 batches_per_epoch: int = 50, seed: int = 0, fixed: bool = False):
        if block_size < 1 or batch_size < 1 or batches_per_epoch < 1:
            raise ValueError(f"block_size, batch_size and batches_per_epoch must be >= 1, "
                             f"got {block_size}, {batch_size}, {batches_per_epoch}")
        if len(data) < block_size + 2:
            raise ValueError(f"text of {len(data)} tokens is too short for "
                             f"block_size={block_size}")
        self.data, self.block_size, self.batch_size = data, block_size, batch_size
        self.batches_per_epoch, self.seed, self.fixed = batches_per_epoch, seed, fixed
        self._g = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed) if self.fixed else self._g
        T = self.block_size
        for _ in range(self.batches_per_epoch):
            start = torch.randint(len(self.data) - T - 1, (self.batch_size,), generator=g)
            windows = torch.stack([self.data[s:s + T + 1] for s in start.tolist()])
            yield windows[:, :-1], windows[:, 1:]


def text_loaders(block_size: int = 64, batch_size: int = 32, batches_per_epoch: int = 50,
                 val_batches: int = 4, val_fraction: float = 0.1, seed: int = 0,
                 name: str = CORPUS) -> tuple[CharBatches, CharBatches, CharTokenizer]:
    """(train, val, tokenizer): the last `val_fraction` of the text is held out."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    text = load_text(name)
    tok = CharTokenizer.from_text(text)
    ids = tok.encode(text)
    cut = int(len(ids) * (1 - val_fraction))
    train = CharBatches(ids[:cut], block_size, batch_size, batches_per_epoch, seed)
    val = CharBatches(ids[cut:], block_size, batch_size, val_batches, seed + 1, fixed=True)
    return train, val, tok
