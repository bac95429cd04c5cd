"""What activation recomputation costs in time, on the tiny transformer.

    from hpclab.memory.recompute_cost import time_recompute
    rows = time_recompute(steps=20)          # prints ms per step and the ratio to "none"

    python -m hpclab.memory.recompute_cost [--steps 20] [--repeats 3] [--batch 16]
                                           [--math-attention]

Each repeat trains the three models (none, selective, full; the same weights) for
`steps` steps in turn, so a busy machine slows all of them alike; the median over the
repeats is reported with the saved-activation bytes of one forward. Expect selective to
cost little (the attention core is a small share of the work) and full about one more
forward per step (≈ 1.3× on a GPU; the exact ratio depends on the machine).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from hpclab.problems import lm_loss, text_loaders, tiny_transformer
from hpclab.problems.transformer import RECOMPUTE

from .measure import SavedTensors


def _step_time(model, opt, x, y, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = lm_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / steps


def time_recompute(steps: int = 20, repeats: int = 3, batch: int = 16, block: int = 64,
                   math_attention: bool = False, verbose: bool = True,
                   **config) -> list[dict]:
    """Median seconds per training step and saved bytes for each recomputation mode,
    with the ratio to no recomputation measured in the same run. math_attention=True
    runs torch's math attention, which keeps the softmax (the flash kernel torch picks
    on CPU already recomputes it, so there "selective" saves next to nothing)."""
    if steps < 1 or repeats < 1:
        raise ValueError(f"steps and repeats must be >= 1, got {steps}, {repeats}")
    with sdpa_kernel(SDPBackend.MATH) if math_attention else contextlib.nullcontext():
        return _time_recompute(steps, repeats, batch, block, verbose, config)


def _time_recompute(steps, repeats, batch, block, verbose, config):
    train, _, tok = text_loaders(block_size=block, batch_size=batch)
    x, y = (t.clone() for t in next(iter(train)))
    models = {mode: tiny_transformer(tok.vocab_size, block_size=block, recompute=mode,
                                     **config) for mode in RECOMPUTE}
    opts = {mode: torch.optim.Adam(m.parameters(), lr=1e-3) for mode, m in models.items()}
    saved = {}
    for mode, model in models.items():
        with SavedTensors(exclude=model.parameters()) as rec:
            loss = lm_loss(model(x), y)
        loss.backward()                          # frees the graph
        saved[mode] = rec.bytes
        _step_time(model, opts[mode], x, y, 2)   # warm-up
    times = {mode: [] for mode in models}
    for _ in range(repeats):
        for mode, model in models.items():
            times[mode].append(_step_time(model, opts[mode], x, y, steps))
    base = statistics.median(times["none"])
    rows = [{"recompute": mode, "ms_per_step": 1e3 * statistics.median(ts),
             "time_ratio": statistics.median(ts) / base, "saved_bytes": saved[mode],
             "bytes_ratio": saved[mode] / saved["none"]} for mode, ts in times.items()]
    if verbose:
        print(f"{'recompute':>10} {'ms/step':>9} {'× none':>7} {'saved MB':>9} {'× none':>7}")
        for r in rows:
            print(f"{r['recompute']:>10} {r['ms_per_step']:9.2f} {r['time_ratio']:7.2f} "
                  f"{r['saved_bytes'] / 1e6:9.2f} {r['bytes_ratio']:7.2f}")
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--math-attention", action="store_true",
                    help="torch's math attention (keeps the softmax) instead of flash")
    args = ap.parse_args(argv)
    time_recompute(steps=args.steps, repeats=args.repeats, batch=args.batch,
                   math_attention=args.math_attention)


if __name__ == "__main__":
    main()
