"""`make gpu-check`: what hpclab does on a CUDA GPU, in one run of at most 8 minutes.

    python -m hpclab.gpu_check --out out/gpu-check            # on a GPU node
    python -m hpclab.gpu_check --device cpu --small           # the plumbing, on a laptop

Six steps, each in its own process with its own timeout (a CUDA error, an out-of-memory
or a hang in one step never stops the others), each reported PASS, FAIL or SKIP with
the reason and its wall time:

    gpu-tier   `pytest -m gpu`: CUDA optimizers against torch.optim, the loss scaler
               against torch.amp.GradScaler, pinned-memory prefetching, bf16 autocast
    optim      hpclab.bench.optim on the device: fused Adam/AdamW (torch.compile) against
               torch's fused=True and foreach=True. Adam moves 28 bytes per fp32
               parameter and step (read θ, g, m, v; write θ, m, v), so
                   bandwidth fraction = 28 Ψ / t_step / B_copy,
               B_copy the bandwidth of y.copy_(x) measured in the same run; targets on
               CUDA: ≥ 90% and a step no slower than torch fused. Results allclose to
               torch's after a few steps.
    memory     hpclab.memory's prediction against the bytes a GPT-2-small-size
               TinyTransformer (L = 12, h = 768, a = 12, v = 50257, s = 1024) holds
               under bf16 autocast with Adam, recomputation none and full: on CUDA
               torch.cuda.max_memory_allocated over a step (hpclab.memory.measure.
               cuda_step_peak), the rise above the model states against activations + W
               (as tests/memory/test_measured.py); on CPU the saved-tensor bytes against
               the activations. Within 10%.
    mfu        tokens/s of that model over 50 training steps, eager and torch.compile'd;
               MFU = 6 Ψ · tokens/s ÷ peak FLOP/s (PEAK_BF16, by device name)
    lecture    a lecture on CUDA engines, where a lecture can be told its device
    nccl       NCCL collectives and DDP on NCCL: needs two GPUs (two NCCL ranks)

It writes gpu-check.md (the table and every figure) and gpu-check.json under --out, and
prints the table. The exit status is 1 if any step failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

import hpclab
from hpclab.bench import optim as bench
from hpclab.comm import all_reduce
from hpclab.memory import Parallelism, Precision, Training, rank_memory, tiny_shape
from hpclab.memory.measure import SavedTensors, cuda_step_peak, held_states
from hpclab.optim import Adam, AdamW
from hpclab.optim.fused_adam import FusedAdam
from hpclab.problems.transformer import TinyTransformer, TransformerConfig, lm_loss

STEPS = ("gpu-tier", "optim", "memory", "mfu", "lecture", "nccl")
# Seconds per step on one GPU; with the driver's own few seconds, under 8 minutes.
TIMEOUT_S = {"gpu-tier": 110, "optim": 100, "memory": 70, "mfu": 140, "lecture": 15,
             "nccl": 40}
# Dense bf16 tensor-core peak FLOP/s from NVIDIA's data sheets, matched in this order
# against torch.cuda.get_device_name.
PEAK_BF16 = (("H100 PCIe", 756e12), ("H100", 989e12), ("H200", 989e12), ("A100", 312e12))
BANDWIDTH_TARGET = 0.90      # fused Adam's fraction of the copy bandwidth
MEMORY_TOLERANCE = 0.10
NEEDS_CUDA = "needs a CUDA GPU"
CUDA_ONLY = ("gpu-tier", "nccl")
LECTURE = Path(__file__).resolve().parents[1] / "notebooks" / "lectures" / "D1_data_parallel.ipynb"


@dataclass
class Options:
    device: str = "cuda"
    small: bool = False      # tiny sizes: the plumbing in seconds, on CPU
    compile: bool = True     # the torch.compile'd variants (fused Adam, compiled model)

    @property
    def cuda(self) -> bool:
        return torch.device(self.device).type == "cuda"


@dataclass
class Result:
    step: str
    status: str              # PASS, FAIL or SKIP
    reason: str
    seconds: float = 0.0
    figures: dict = field(default_factory=dict)


def skip(step: str, reason: str) -> Result:
    return Result(step, "SKIP", reason)


# -- the steps: each returns a Result -------------------------------------------------

def gpu_tier(opt: Options) -> Result:
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p",
                           "no:cacheprovider", str(root / "tests")], cwd=root, check=False,
                          capture_output=True, text=True, timeout=TIMEOUT_S["gpu-tier"] - 10)
    summary = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
    print(proc.stdout[-4000:], proc.stderr[-2000:])
    return Result("gpu-tier", "PASS" if proc.returncode == 0 else "FAIL",
                  f"pytest -m gpu: {summary}", figures={"summary": summary})


def optim(opt: Options) -> Result:
    cfg = bench.Config(sizes=[200_000] if opt.small else [10_000_000, 100_000_000],
                       repeats=2 if opt.small else 5, steps=1 if opt.small else 5,
                       optimizers=["Adam", "AdamW"], compiled=opt.compile, device=opt.device)
    rows = bench.run(cfg)
    print(bench.table(rows))
    ours = "ours compiled" if opt.compile else "ours foreach"
    figures, missed = {"copy_gbs": {}, "rows": rows}, []
    for r in rows:
        figures["copy_gbs"][r["params"]] = r["copy_gbs"]
        if r["variant"] != ours:
            continue
        fused = next(q for q in rows if q["optimizer"] == r["optimizer"]
                     and q["params"] == r["params"] and q["variant"] == "torch fused")
        vs_fused = r["min_ms"] / fused["min_ms"]
        key = f"{r['optimizer']} {r['params'] / 1e6:.1f}M"
        figures[key] = {"bandwidth_fraction": r["roofline"],
                        "torch_fused_fraction": fused["roofline"],
                        "torch_foreach_fraction": next(
                            q["roofline"] for q in rows if q["optimizer"] == r["optimizer"]
                            and q["params"] == r["params"] and q["variant"] == "torch foreach"),
                        "time_vs_torch_fused": vs_fused}
        if r["roofline"] < BANDWIDTH_TARGET or vs_fused > 1.0:
            missed.append(f"{key}: {100 * r['roofline']:.0f}% of copy bandwidth, "
                          f"{vs_fused:.2f}x torch fused's step time")
    differ = [d for name in ("Adam", "AdamW") if (d := differs_from_torch(name, opt))]
    figures["equal_to_torch"] = not differ
    if differ:
        return Result("optim", "FAIL", "; ".join(differ), figures=figures)
    if not opt.compile:
        return Result("optim", "PASS", "equal to torch; compiled variant not run "
                      "(--no-compile)", figures=figures)
    if opt.cuda and missed:
        return Result("optim", "FAIL", f"below the target (>= {BANDWIDTH_TARGET:.0%} of copy "
                      "bandwidth, at most torch fused's time): " + "; ".join(missed),
                      figures=figures)
    return Result("optim", "PASS", "equal to torch" + ("" if opt.cuda else
                  "; bandwidth targets are judged on CUDA only"), figures=figures)


def differs_from_torch(name: str, opt: Options, steps: int = 5) -> str | None:
    """ours (compiled, else foreach) against torch fused=True and foreach=True after
    `steps` steps on the same gradients; None when all agree."""
    gen = torch.Generator().manual_seed(0)
    shapes = [(256, 256), (256,), (1000,)]
    init = [torch.randn(s, generator=gen).to(opt.device) for s in shapes]
    grads = [[torch.randn(s, generator=gen).to(opt.device) for s in shapes]
             for _ in range(steps)]
    kw = {"lr": 1e-2, "weight_decay": 1e-2}
    ours = ((lambda ps: FusedAdam(ps, decoupled_weight_decay=name == "AdamW", **kw))
            if opt.compile else
            (lambda ps: (AdamW if name == "AdamW" else Adam)(ps, foreach=True, **kw)))
    torch_cls = getattr(torch.optim, name)
    makers = {"ours": ours, "torch fused": lambda ps: torch_cls(ps, fused=True, **kw),
              "torch foreach": lambda ps: torch_cls(ps, foreach=True, **kw)}
    final = {}
    for label, make in makers.items():
        params = [torch.nn.Parameter(t.clone()) for t in init]
        o = make(params)
        for gs in grads:
            for p, g in zip(params, gs):
                p.grad = g.clone()
            o.step()
        final[label] = params
    for label in ("torch fused", "torch foreach"):
        for i, (a, b) in enumerate(zip(final["ours"], final[label])):
            if not torch.allclose(a, b, rtol=1e-5, atol=1e-6):
                return (f"{name}: ours differs from {label} after {steps} steps in tensor {i}"
                        f" (max |Δ| {float((a - b).abs().max()):.2e})")
    return None


def model_config(opt: Options, recompute: str = "none"):
    """GPT-2-small-size TinyTransformer (untied head with bias: Ψ ≈ 163M), or a tiny one."""
    if opt.small:
        return TransformerConfig(vocab_size=65, block_size=64, d_model=64, n_layers=2,
                                 n_heads=4, recompute=recompute), 4
    return TransformerConfig(vocab_size=50257, block_size=1024, d_model=768, n_layers=12,
                             n_heads=12, recompute=recompute), 8


def model_and_batch(opt: Options, recompute: str = "none"):
    cfg, b = model_config(opt, recompute)
    torch.manual_seed(0)
    model = TinyTransformer(cfg).to(opt.device)
    gen = torch.Generator().manual_seed(1)
    x, y = (torch.randint(0, cfg.vocab_size, (b, cfg.block_size), generator=gen).to(opt.device)
            for _ in range(2))
    return model, x, y


def train_step(model, optimizer, x, y, saved: SavedTensors | None = None,
               on_backward=None) -> None:
    """One training step under bf16 autocast: forward (recording what autograd saves
    into `saved`, if given), backward, `on_backward()`, the optimizer's step."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16), \
            saved or contextlib.nullcontext():
        loss = lm_loss(model(x), y)
    loss.backward()
    if on_backward is not None:
        on_backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def memory(opt: Options) -> Result:
    """Predicted against measured bytes, bf16 autocast, Adam, recomputation none and full.

    Under autocast the weights, their gradients and Adam's m and v stay fp32 (4 + 4 + 8
    bytes per parameter) and the matmuls run in bf16: the calculator's precision is
    Precision(4, 4, 0, 4, 0, 2), activations 2 bytes each. The saved storages are listed
    by dtype in the figures, to show where the measurement and the 2-byte count part."""
    autocast_bf16 = Precision(4, 4, 0, 4, 0, 2, name="bf16 autocast, fp32 weights")
    figures, off = {}, []
    for recompute in ("none", "full"):
        model, x, y = model_and_batch(opt, recompute)
        adam = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)   # no temporaries
        cfg = model.cfg
        saved, held = SavedTensors(exclude=model.parameters()), []

        def step(model=model, adam=adam, x=x, y=y, saved=saved, held=held):
            train_step(model, adam, x, y, saved,
                       on_backward=lambda: held.append(held_states(model, adam)))

        train_step(model, adam, x, y)             # Adam's state exists from here on
        run = Training(seq=cfg.block_size, micro_batch=x.shape[0], precision=autocast_bf16,
                       optimizer="adam", recompute=recompute)
        predicted = rank_memory(tiny_shape(cfg), run, Parallelism())
        if opt.cuda:
            peak = cuda_step_peak(step, torch.device(opt.device))
            measured, expected = peak["peak"] - peak["before"], \
                predicted.activations + predicted.working
            what = "peak - before vs activations + W"
        else:
            step()
            measured, expected, what = saved.bytes, predicted.activations, \
                "saved-tensor bytes vs activations"
        by_dtype = {}
        for key, (_, dtype, _) in saved.records.items():    # key[3]: the storage's bytes
            by_dtype[str(dtype)] = by_dtype.get(str(dtype), 0) + key[3]
        states = held[0]
        figures[recompute] = {"psi": tiny_shape(cfg).parameters, "compared": what,
                              "measured_bytes": measured, "predicted_bytes": expected,
                              "ratio": measured / expected, "saved_bytes_by_dtype": by_dtype,
                              "states_held": asdict(states),
                              "states_predicted": {"parameters": predicted.parameters,
                                                   "gradients": predicted.gradients,
                                                   "optimizer": predicted.optimizer}}
        if abs(measured / expected - 1) > MEMORY_TOLERANCE:
            off.append(f"recompute={recompute}: measured {measured / 1e6:.1f} MB, predicted "
                       f"{expected / 1e6:.1f} MB ({measured / expected:.2f}x; {what})")
        del model, adam, x, y, step
        if opt.cuda:
            torch.cuda.empty_cache()
    if off:
        fp32 = {r: figures[r]["saved_bytes_by_dtype"].get("torch.float32", 0) / 1e6
                for r in figures}
        return Result("memory", "FAIL", f"off by more than {MEMORY_TOLERANCE:.0%}: "
                      + "; ".join(off) + "; the calculator counts every activation at 2 "
                      "bytes, autocast saved fp32 storages of " + ", ".join(
                          f"{mb:.1f} MB ({r})" for r, mb in fp32.items()), figures=figures)
    return Result("memory", "PASS", f"within {MEMORY_TOLERANCE:.0%} (none and full)",
                  figures=figures)


def peak_flops(opt: Options) -> tuple[float | None, str]:
    if not opt.cuda:
        return None, "cpu"
    name = torch.cuda.get_device_name(torch.device(opt.device))
    return next((peak for key, peak in PEAK_BF16 if key in name), None), name


def mfu(opt: Options) -> Result:
    """tokens/s and MFU = 6 Ψ · tokens/s ÷ peak, bf16 autocast, fused AdamW."""
    steps, warmup = (3, 1) if opt.small else (50, 3)
    peak, name = peak_flops(opt)
    figures = {"device": name, "peak_flops": peak, "steps": steps}
    sync = torch.cuda.synchronize if opt.cuda else (lambda: None)
    for compiled in (False, True) if opt.compile else (False,):
        model, x, y = model_and_batch(opt)
        psi = sum(p.numel() for p in model.parameters())
        forward = torch.compile(model) if compiled else model
        adamw = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
        t0 = time.perf_counter()
        for _ in range(warmup):                   # compiles, if compiled
            train_step(forward, adamw, x, y)
        sync()
        t1 = time.perf_counter()
        for _ in range(steps):
            train_step(forward, adamw, x, y)
        sync()
        t2 = time.perf_counter()
        tokens_s = steps * x.numel() / (t2 - t1)
        figures["compiled" if compiled else "eager"] = {
            "psi": psi, "tokens_per_s": tokens_s, "step_ms": 1e3 * (t2 - t1) / steps,
            "warmup_s": t1 - t0, "mfu": 6 * psi * tokens_s / peak if peak else None}
        del model, forward, adamw
    if opt.cuda and peak is None:
        return Result("mfu", "PASS", f"tokens/s only: no peak FLOP/s known for {name!r} "
                      f"(PEAK_BF16 knows {[k for k, _ in PEAK_BF16]})", figures=figures)
    return Result("mfu", "PASS", "tokens/s" + (" and MFU" if peak else
                  " only: MFU needs a GPU's peak FLOP/s"), figures=figures)


def lecture(opt: Options) -> Result:
    """Lectures read their settings from the environment in their first code cell; one
    that can be put on CUDA engines would read a device from there."""
    cells = json.loads(LECTURE.read_text())["cells"]        # .ipynb: JSON, source as lines
    cell = "".join(next(c["source"] for c in cells if c["cell_type"] == "code"))
    read = sorted(set(re.findall(r"HPCLAB_[A-Z_]+", cell)))
    return skip("lecture", f"{LECTURE.name} reads only {', '.join(read)} and keeps its "
                "models and tensors on the CPU; lectures have no device setting, and "
                "hpclab.connect() gives NCCL engines one GPU each (D1 needs 2)")


def nccl(opt: Options) -> Result:
    if torch.cuda.device_count() < 2:
        return skip("nccl", f"one GPU cannot host two NCCL ranks "
                    f"({torch.cuda.device_count()} GPU here)")
    with hpclab.connect(n=2, timeout=TIMEOUT_S["nccl"] - 5) as cluster:
        out = cluster.run(_nccl_on_rank)
    bad = [msg for msg in out if msg]
    return Result("nccl", "FAIL" if bad else "PASS", "; ".join(bad) or
                  "all-reduce (torch and hpclab ring) and DDP on NCCL match", figures={})


def _nccl_on_rank(ctx) -> str:
    """torch.distributed and hpclab.comm all-reduce on NCCL, and DDP's gradient against
    the single-process one, on this rank's GPU; '' when all agree."""
    t = torch.full((1 << 20,), float(ctx.rank + 1), device=ctx.device)
    expected = torch.full_like(t, 3.0)
    mine = t.clone()
    dist.all_reduce(t)
    all_reduce(mine, algorithm="ring")
    if not (torch.equal(t, expected) and torch.equal(mine, expected)):
        return f"rank {ctx.rank}: all-reduce sums differ from 3"
    torch.manual_seed(0)
    net = torch.nn.Linear(64, 8).to(ctx.device)
    ddp = torch.nn.parallel.DistributedDataParallel(net, device_ids=[ctx.device.index])
    x = torch.randn(8, 64, generator=torch.Generator().manual_seed(1)).to(ctx.device)
    ddp(x[ctx.rank * 4:(ctx.rank + 1) * 4]).square().mean().backward()
    single = torch.nn.Linear(64, 8).to(ctx.device)
    single.load_state_dict(net.state_dict())
    single(x).square().mean().backward()
    if not torch.allclose(net.weight.grad, single.weight.grad, rtol=1e-4, atol=1e-6):
        return f"rank {ctx.rank}: DDP gradient differs from single-process"
    return ""


RUN = {"gpu-tier": gpu_tier, "optim": optim, "memory": memory, "mfu": mfu,
       "lecture": lecture, "nccl": nccl}


# -- the driver: one process per step ----------------------------------------------------

def run_step(name: str, opt: Options, out: Path) -> Result:
    """`name` in a child process, under its timeout; its output goes to out/<name>.log."""
    if name in CUDA_ONLY and not opt.cuda:
        return skip(name, NEEDS_CUDA)
    result_file = out / f"{name}.json"
    result_file.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "hpclab.gpu_check", "--step", name, "--device", opt.device,
           "--out", str(out)] + (["--small"] if opt.small else []) \
        + ([] if opt.compile else ["--no-compile"])
    t0 = time.perf_counter()
    with open(out / f"{name}.log", "w") as log:
        # its own session: on a timeout the step goes with whatever it started
        # (pytest, engines, compile workers)
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            proc.wait(timeout=TIMEOUT_S[name])
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return Result(name, "FAIL", f"ran past its timeout of {TIMEOUT_S[name]} s "
                          f"(see {name}.log)", time.perf_counter() - t0)
    seconds = time.perf_counter() - t0
    if not result_file.exists():
        tail = (out / f"{name}.log").read_text().strip().splitlines()[-1:] or ["no output"]
        return Result(name, "FAIL", f"the step's process died: {tail[0]}", seconds)
    result = Result(**json.loads(result_file.read_text()))
    result.seconds = seconds
    return result


def child(name: str, opt: Options, out: Path) -> None:
    try:
        result = RUN[name](opt)
    except Exception as exc:  # noqa: BLE001 -- whatever breaks is the step's FAIL
        traceback.print_exc()
        result = Result(name, "FAIL", f"{type(exc).__name__}: {exc}")
    (out / f"{name}.json").write_text(json.dumps(asdict(result), default=str))


def report(results: list[Result], opt: Options) -> str:
    lines = [(f"# gpu-check on {peak_flops(opt)[1]} (torch {torch.__version__}, "
              f"{'small' if opt.small else 'full'} sizes)"), "",
             "| step | status | seconds | reason |", "|---|---|---:|---|"]
    lines += [f"| {r.step} | {r.status} | {r.seconds:.1f} | {r.reason} |" for r in results]
    for r in results:
        if r.figures:
            figures = {k: v for k, v in r.figures.items() if k != "rows"}
            lines += ["", f"## {r.step}", "", "```",
                      json.dumps(figures, indent=1, default=str), "```"]
    return "\n".join(lines) + "\n"


def parse(argv: list[str]) -> tuple[Options, Path, list[str], str | None]:
    ap = argparse.ArgumentParser(prog="python -m hpclab.gpu_check",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--small", action="store_true", help="tiny sizes (the plumbing)")
    ap.add_argument("--no-compile", dest="compile", action="store_false",
                    help="leave out the torch.compile'd variants")
    ap.add_argument("--out", default="out/gpu-check", help="folder for the report")
    ap.add_argument("--steps", type=lambda s: s.split(","), default=list(STEPS),
                    help=f"comma-separated subset of {','.join(STEPS)}")
    ap.add_argument("--step", help=argparse.SUPPRESS)     # one step, in a child process
    args = ap.parse_args(argv)
    unknown = set(args.steps) - set(STEPS)
    if unknown:
        ap.error(f"--steps: unknown {sorted(unknown)}; choose from {list(STEPS)}")
    opt = Options(device=args.device, small=args.small, compile=args.compile)
    if opt.cuda and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: torch {torch.__version__} sees no CUDA GPU; "
                 "use --device cpu (CUDA steps then SKIP)")
    return opt, Path(args.out), args.steps, args.step


def main(argv: list[str] | None = None) -> int:
    opt, out, steps, one = parse(sys.argv[1:] if argv is None else argv)
    out.mkdir(parents=True, exist_ok=True)
    if one:
        child(one, opt, out)
        return 0
    results = []
    for name in steps:
        results.append(run_step(name, opt, out))
        r = results[-1]
        print(f"{r.status:4}  {r.step:8}  {r.seconds:6.1f} s  {r.reason}", flush=True)
    text = report(results, opt)
    (out / "gpu-check.md").write_text(text)
    (out / "gpu-check.json").write_text(json.dumps([asdict(r) for r in results], indent=1,
                                                   default=str))
    print(text)
    return 1 if any(r.status == "FAIL" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
