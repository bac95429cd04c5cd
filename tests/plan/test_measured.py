"""The planner against the machine: a layer shard computes what the model's block does,
the bytes the 3-D trainer holds are the calculator's, and `hpclab plan` runs (predicted
only here; one small measured run in the slow tier)."""

import pytest
import torch

from hpclab.memory import FP32, Parallelism, rank_parameters, tiny_shape, zero_states
from hpclab.plan import Layout, plan, table, verdict
from hpclab.plan.cli import main
from hpclab.plan.layer_times import BlockShard, measure_layer_times
from hpclab.plan.measure import held_bytes
from hpclab.plan.predict import Workload, memory
from hpclab.plan.report import TINY
from hpclab.problems.transformer import Block, TransformerConfig

pytestmark = [pytest.mark.unit_d, pytest.mark.cluster]   # run_local: process groups


def test_block_shard_at_t1_computes_the_block():
    cfg = TransformerConfig(vocab_size=11, block_size=8, d_model=16, n_heads=4)
    torch.manual_seed(0)
    block, shard = Block(cfg).double(), BlockShard(16, 4, 1).double()
    pairs = [(shard.ln1, block.ln1), (shard.ln2, block.ln2), (shard.qkv, block.attn.qkv),
             (shard.proj, block.attn.proj), (shard.fc1, block.mlp[0]), (shard.fc2, block.mlp[2])]
    for mine, theirs in pairs:
        mine.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 8, 16, dtype=torch.float64)
    torch.testing.assert_close(shard(x), block(x), rtol=1e-12, atol=1e-12)


def test_layer_times_measured_at_each_shard():
    cfg = TransformerConfig(vocab_size=11, block_size=8, d_model=16, n_heads=4)
    times = measure_layer_times(cfg, {(2, 1), (2, 2), (4, 1)}, repeats=3)
    assert set(times.blocks) == {(2, 1), (2, 2), (4, 1)} and set(times.embed) == {2, 4}
    assert all(t > 0 for t in [*times.blocks.values(), *times.embed.values(),
                               *times.head_times.values(), times.optimizer_per_parameter])


@pytest.mark.parametrize("layout", [Layout(dp=2, pp=2, micro_batches=2, zero=1),
                                    Layout(dp=4)], ids=str)
def test_bytes_the_trainer_holds_are_the_calculators(layout):
    """fp32 Adam: parameters and gradients 4Ψ_rank, optimizer 8Ψ_rank (/d with ZeRO-1),
    within ZeRO's padding and the 4-byte step counters (1%)."""
    batch = 8
    shape = tiny_shape(TINY)
    par = Parallelism(dp=layout.dp, tp=layout.tp, pp=layout.pp, zero=layout.zero,
                      microbatches=layout.micro_batches)
    ranks = held_bytes(layout, TINY, batch)
    for stage, held in ranks:
        predicted = zero_states(rank_parameters(shape, par, stage), "adam", FP32, layout.dp,
                                layout.zero)
        for name, value in zip(("parameters", "gradients", "optimizer"), predicted):
            assert getattr(held, name) == pytest.approx(value, rel=0.01), (stage, name)
    fullest = memory(Workload(shape, batch, TINY.block_size), layout)
    most = max((h for _, h in ranks), key=lambda h: h.total)
    assert fullest.parameters + fullest.gradients + fullest.optimizer == \
        pytest.approx(most.total, rel=0.01)


def test_cli_predicted_only(capsys):
    assert main(["--world", "4", "--micro-batches", "1", "2"]) == 0
    out = capsys.readouterr().out
    assert "predicted best that fits: Layout(" in out
    assert "configurations, " in out and "measured ms" not in out


def test_cli_on_paper_writes_the_report(tmp_path, capsys):
    out = tmp_path / "plan.md"
    assert main(["--world", "64", "--model", "gpt3-175b", "--batch", "512", "--top", "5",
                 "--out", str(out)]) == 0
    text = out.read_text()
    assert text.count("\n| ") == 6 and "A100" in text       # header + 5 rows
    assert main(["--world", "5"]) == 2      # 5 splits no heads, layers or batch of 16


@pytest.mark.slow
def test_measure_three_configurations():
    def three(x):
        return x.zero == 0 and x.schedule == "1f1b" and x.micro_batches == (2 if x.pp > 1 else 1)
    rows = plan(world=2, model="tiny", measure=True, steps=2, select=three)
    assert sorted((r.layout.dp, r.layout.tp, r.layout.pp) for r in rows) == \
        [(1, 1, 2), (1, 2, 1), (2, 1, 1)]
    assert all(r.measured > 0 for r in rows)
    v = verdict(rows)
    assert v["measured"] == 3 and v["ratio"] >= 1
    assert "measured ms" in table(rows)
