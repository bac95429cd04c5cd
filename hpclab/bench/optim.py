"""`hpclab bench optim`: step time of hpclab.optim against torch.optim, in one run.

    hpclab bench optim                       # 1M and 10M parameters, 7 repeats
    hpclab bench optim --quick               # 1M only, fewer repeats (a minute)
    hpclab bench optim --sizes 1e6 --repeats 9 --threads 2
    hpclab bench optim --device cuda --sizes 1e7,1e8   # on a GPU (wall clock, synchronized)

For SGD (momentum 0.9), Adam and AdamW it times one `opt.step()` of our loop and foreach
implementations and of torch.optim with foreach=False, foreach=True and fused=True, on
the same gradients, interleaving the variants repeat by repeat so that a busy machine
slows all of them alike. It prints the min (and median) step time of each and the ratios

    ours loop / torch foreach=False,   ours foreach / torch foreach=True

(targets: <= 1.5 and <= 1.3), plus a roofline column: the bytes an optimizer must move
per step (Adam: read θ, g, m, v and write θ, m, v = 7 × 4 = 28 bytes per fp32 parameter;
SGD with momentum: 5 × 4 = 20) divided by the step time, as a fraction of the bandwidth
of a plain tensor copy (or in-place add, whichever is faster) measured in the same run.
"ours compiled" is hpclab.optim.fused_adam (torch.compile), compared with torch's fused.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field

import torch

import hpclab.optim as ours

# Bytes that must cross the memory bus per fp32 parameter and step (reads + writes).
BYTES_PER_PARAM = {"SGD": 5 * 4, "Adam": 7 * 4, "AdamW": 7 * 4}
HYPER = {"SGD": {"lr": 1e-3, "momentum": 0.9}, "Adam": {"lr": 1e-3},
         "AdamW": {"lr": 1e-3, "weight_decay": 1e-2}}


@dataclass
class Config:
    sizes: list[int] = field(default_factory=lambda: [1_000_000, 10_000_000])
    repeats: int = 7
    steps: int = 5           # steps per timed block (a block is one repeat of one variant)
    layers: int = 16         # a model of `layers` weight matrices, each with a bias
    threads: int = 1
    optimizers: list[str] = field(default_factory=lambda: ["SGD", "Adam", "AdamW"])
    compiled: bool = True    # also time hpclab.optim.fused_adam (torch.compile)
    device: str = "cpu"      # "cuda": tensors on the GPU, timed by the synchronized wall clock


def model_shapes(n: int, layers: int) -> list[tuple[int, ...]]:
    """Shapes of `layers` square-ish (d × d) weights plus biases totalling about n."""
    d = max(1, int((n / layers) ** 0.5))
    return [s for _ in range(layers) for s in ((d, d), (d,))]


def variants(name: str, compiled: bool) -> dict:
    torch_cls, our_cls, kw = getattr(torch.optim, name), getattr(ours, name), HYPER[name]
    out = {
        "ours loop": lambda ps: our_cls(ps, foreach=False, **kw),
        "ours foreach": lambda ps: our_cls(ps, foreach=True, **kw),
        "torch loop": lambda ps: torch_cls(ps, foreach=False, **kw),
        "torch foreach": lambda ps: torch_cls(ps, foreach=True, **kw),
        "torch fused": lambda ps: torch_cls(ps, fused=True, **kw),
    }
    if compiled and name in ("Adam", "AdamW"):
        from hpclab.optim.fused_adam import FusedAdam
        decoupled = name == "AdamW"
        out["ours compiled"] = lambda ps: FusedAdam(ps, decoupled_weight_decay=decoupled, **kw)
    return out


def cpu_clock(threads: int):
    """The clock to time with: with one thread, this thread's CPU time.

    On a shared machine the wall clock also counts the time this process waits while
    others run; the CPU time of the (single) computing thread does not. With several
    threads their CPU times add up, so only the wall clock is meaningful.
    """
    return time.thread_time if threads == 1 else time.perf_counter


def device_clock(device: str, threads: int):
    """cpu_clock on the CPU. A GPU runs kernels asynchronously, and the CPU thread that
    launches them is idle meanwhile: there the clock is the wall clock, read after
    torch.cuda.synchronize() so that it counts the kernels, not their launches."""
    if torch.device(device).type != "cuda":
        return cpu_clock(threads)

    def synchronized() -> float:
        torch.cuda.synchronize(device)
        return time.perf_counter()
    return synchronized


def stream_bandwidth(n: int, repeats: int, threads: int,
                     device: str = "cpu") -> dict[str, float]:
    """Bytes per second of the simplest memory-bound ops on n fp32 numbers.

    "copy" is dst.copy_(src) counted as 8 bytes per number (read src, write dst);
    "add" is a.add_(b), 12 bytes (read a and b, write a). The copy also pays a hidden
    read of dst (write-allocate) that in-place updates, like an optimizer's, do not pay,
    so the faster of the two is the fairer roofline.
    """
    a, b = torch.randn(n, device=device), torch.randn(n, device=device)
    ops = {"copy": (lambda: a.copy_(b), 8), "add": (lambda: a.add_(b), 12)}
    out, clock = {}, device_clock(device, threads)
    for name, (op, nbytes) in ops.items():
        op()
        times = []
        for _ in range(max(10, repeats)):
            t0 = clock()
            op()
            times.append(clock() - t0)
        out[name] = nbytes * n / min(times)
    return out


def time_optimizer(name: str, n: int, cfg: Config) -> dict[str, list[float]]:
    """Per-step seconds of every variant, `cfg.repeats` samples each, interleaved."""
    shapes = model_shapes(n, cfg.layers)
    gen = torch.Generator().manual_seed(0)
    init = [torch.randn(s, generator=gen).to(cfg.device) for s in shapes]
    grads = [(torch.randn(s, generator=gen) * 1e-3).to(cfg.device) for s in shapes]
    runs = {}
    for label, make in variants(name, cfg.compiled).items():
        params = [torch.nn.Parameter(t.clone()) for t in init]
        for p, g in zip(params, grads):
            p.grad = g       # shared, read-only for every variant timed here
        opt = make(params)
        opt.step()           # warm-up: allocates state (and compiles, if compiled)
        runs[label] = opt
    samples = {label: [] for label in runs}
    clock = device_clock(cfg.device, cfg.threads)
    for _ in range(cfg.repeats):
        for label, opt in runs.items():
            t0 = clock()
            for _ in range(cfg.steps):
                opt.step()
            samples[label].append((clock() - t0) / cfg.steps)
    return samples


def run(cfg: Config) -> list[dict]:
    """Measure everything; one row per (optimizer, size, variant)."""
    torch.set_num_threads(cfg.threads)
    rows = []
    for n in cfg.sizes:
        streams = stream_bandwidth(n, cfg.repeats, cfg.threads, cfg.device)
        bandwidth = max(streams.values())
        for name in cfg.optimizers:
            samples = time_optimizer(name, n, cfg)
            n_real = sum(t.numel() for t in map(torch.empty, model_shapes(n, cfg.layers)))
            best = {label: min(ts) for label, ts in samples.items()}
            for label, ts in samples.items():
                reference = {"ours loop": "torch loop", "ours foreach": "torch foreach",
                             "ours compiled": "torch fused"}.get(label)
                rows.append({
                    "optimizer": name, "params": n_real, "variant": label,
                    "min_ms": 1e3 * best[label],
                    "median_ms": 1e3 * statistics.median(ts),
                    "ratio": best[label] / best[reference] if reference else None,
                    "reference": reference,
                    "roofline": BYTES_PER_PARAM[name] * n_real / best[label] / bandwidth,
                    "copy_gbs": streams["copy"] / 1e9, "add_gbs": streams["add"] / 1e9})
    return rows


def table(rows: list[dict]) -> str:
    lines = [("| optimizer | params | variant | min ms | median ms | ours/torch | "
             "of stream bandwidth |"),
             "|---|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        ratio = f"{r['ratio']:.2f} (vs {r['reference']})" if r["ratio"] is not None else ""
        lines.append(f"| {r['optimizer']} | {r['params'] / 1e6:.1f}M | {r['variant']} | "
                     f"{r['min_ms']:.2f} | {r['median_ms']:.2f} | {ratio} | "
                     f"{100 * r['roofline']:.0f}% |")
    streams = sorted({(r["params"], r["copy_gbs"], r["add_gbs"]) for r in rows})
    lines.append("")
    lines += [f"stream bandwidth at {p / 1e6:.1f}M floats: copy {c:.1f} GB/s, in-place add "
              f"{a:.1f} GB/s (the roofline column uses the larger)" for p, c, a in streams]
    return "\n".join(lines)


def parse(argv: list[str]) -> Config:
    ap = argparse.ArgumentParser(prog="hpclab bench optim", description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=lambda s: [int(float(x)) for x in s.split(",")],
                    help="comma-separated parameter counts (default 1e6,1e7)")
    ap.add_argument("--repeats", type=int, help="timed blocks per variant (default 7)")
    ap.add_argument("--steps", type=int, help="steps per timed block (default 5)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--optimizers", type=lambda s: s.split(","),
                    help="comma-separated subset of SGD,Adam,AdamW")
    ap.add_argument("--no-compiled", dest="compiled", action="store_false",
                    help="skip hpclab.optim.fused_adam (it compiles on first use: ~1 min)")
    ap.add_argument("--quick", action="store_true", help="1M parameters, 3 repeats")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda[:i]")
    args = ap.parse_args(argv)
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: torch {torch.__version__} sees no CUDA "
                         "GPU; use --device cpu, or the CUDA build of torch on a GPU node")
    cfg = Config(threads=args.threads, compiled=args.compiled, device=args.device)
    if args.quick:
        cfg.sizes, cfg.repeats = [1_000_000], 3
    for key in ("sizes", "repeats", "steps", "optimizers"):
        if getattr(args, key) is not None:
            setattr(cfg, key, getattr(args, key))
    for key in ("repeats", "steps"):
        if getattr(cfg, key) < 1:
            raise SystemExit(f"--{key} must be >= 1, got {getattr(cfg, key)}")
    unknown = set(cfg.optimizers) - set(HYPER)
    if unknown:
        raise SystemExit(f"--optimizers: unknown {sorted(unknown)}; choose from {list(HYPER)}")
    return cfg


def main(argv: list[str] | None = None) -> int:
    cfg = parse(list(argv or []))
    print(f"hpclab bench optim: sizes={cfg.sizes} repeats={cfg.repeats} steps={cfg.steps} "
          f"threads={cfg.threads} device={cfg.device} "
          f"clock={device_clock(cfg.device, cfg.threads).__name__} "
          f"torch={torch.__version__}", flush=True)
    print(table(run(cfg)))
    return 0
