"""The memory explorer: its state is the calculator's numbers, its bars are the state's."""

from __future__ import annotations

import pytest

from hpclab.memory import (
    GB,
    LLAMA3_70B,
    MIXED,
    Parallelism,
    Training,
    stage_memories,
)
from hpclab.memory.explorer import PARTS, ExplorerState, presets
from hpclab.widgets.memory_explorer import MemoryExplorer

pytestmark = [pytest.mark.unit_d]


def test_presets_run_from_the_tiny_transformer_to_405b():
    names = list(presets())
    assert names[0] == "tiny transformer" and names[-1] == "Llama 3 405B"
    sizes = [s.parameters for s in presets().values()]
    assert sizes[0] < 1e6 and sizes[-1] > 400e9 and sizes == sorted(sizes)


def test_state_is_the_calculator():
    st = ExplorerState(preset="Llama 3 70B", seq=8192, dp=8, tp=8, sp=True, pp=4,
                       microbatches=8, zero=1, recompute="selective")
    want = stage_memories(LLAMA3_70B, Training(seq=8192, precision=MIXED,
                                               recompute="selective"),
                          Parallelism(dp=8, tp=8, pp=4, sp=True, zero=1, microbatches=8))
    bars = st.bars_gb()
    assert set(bars) == set(PARTS)
    for i, r in enumerate(want):
        assert [bars[p][i] for p in PARTS] == pytest.approx([r.parts()[p] / GB for p in PARTS])
    assert st.peak_gb == pytest.approx(max(r.total for r in want) / GB)
    assert st.fits and "fits on a 80 GB GPU" in st.summary()


def test_7b_class_model_does_not_fit_on_one_gpu_and_zero3_on_8_does():
    st = ExplorerState(preset="Llama 3 8B", seq=4096)
    assert not st.fits and "does NOT fit" in st.summary()
    assert st.peak_gb > 16 * 8.03                      # 16 B per parameter alone
    st.update(dp=8, zero=3, recompute="selective")
    assert st.fits


def test_invalid_update_raises_and_keeps_the_state():
    st = ExplorerState(preset="Llama 3 8B", tp=2)
    with pytest.raises(ValueError, match="tp=3 must divide the 32 attention heads"):
        st.update(tp=3)
    assert st.tp == 2
    with pytest.raises(ValueError, match="unknown settings"):
        st.update(tensor_parallel=2)
    with pytest.raises(ValueError, match="preset must be one of"):
        ExplorerState(preset="GPT-5")
    with pytest.raises(ValueError, match="gpu_gb must be > 0"):
        ExplorerState(gpu_gb=0)


def test_widget_bars_follow_the_controls():
    ex = MemoryExplorer(preset="Llama 3 8B", seq=4096)
    assert "does NOT fit" in ex.message.value
    ex.set(dp=8, zero=3)
    assert ex.state.dp == 8 and ex.state.zero == 3 and "fits" in ex.message.value
    ex.set(pp=4, microbatches=8, precision="fp32")
    shown = ex.image.value
    ax = ex.figure().axes[0]
    heights = [p.get_height() for p in ax.patches]
    bars = ex.state.bars_gb()
    assert heights == pytest.approx([v for part in PARTS for v in bars[part]])
    assert len(ax.patches) == 4 * 4                    # 4 parts x 4 stages
    assert list(ax.get_lines()[0].get_ydata()) == [80.0, 80.0]
    assert shown[:8] == b"\x89PNG\r\n\x1a\n"
    ex.set(gpu_gb=40.0)
    assert ex.image.value != shown                     # the picture follows the control
    assert list(ex.figure().axes[0].get_lines()[0].get_ydata()) == [40.0, 40.0]


def test_widget_rejects_an_invalid_choice_and_puts_the_control_back():
    ex = MemoryExplorer(preset="Llama 3 8B")
    ex.set(tp=4)
    ex.controls["tp"].value = 64                       # a student's pick: 32 heads only
    assert ex.state.tp == 4 and ex.controls["tp"].value == 4
    assert "tp=64 must divide the 32 attention heads" in ex.message.value
    ex.set(seq=3000)                                   # a value not among the options
    assert ex.state.seq == 3000 and ex.state.tp == 4
    png = ex.snapshot().data
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
