"""The planner: predicted step time and memory per rank of every (DP, TP, PP,
micro-batches, ZeRO stage, schedule) configuration, ranked — and measured.

    from hpclab.plan import plan, table, verdict
    rows = plan(world=4, model="tiny", measure=True)
    print(table(rows)); print(verdict(rows))

    hpclab plan --world 4 [--model tiny|gpt3-175b|llama3-8b|…] [--batch B]
                [--memory-gb X] [--measure] [--out file.md]

One idea per file:
    configs.py      the configurations of a world size (Layout, configurations)
    layer_times.py  each layer's forward + backward time at its shard size, measured
    datasheet.py    compute and links of a data-sheet GPU cluster (A100, H100)
    predict.py      the model: T_step by term, memory per rank (the equations)
    measure.py      step time of a configuration on local ranks
    report.py       plan(), table(), verdict()
    cli.py          `hpclab plan`
"""

from .configs import Layout, configurations, factorizations
from .predict import Machine, Prediction, Workload, predict_layout
from .report import MODELS, Row, plan, table, tiny_machine, verdict

__all__ = ["MODELS", "Layout", "Machine", "Prediction", "Row", "Workload", "configurations",
           "factorizations", "plan", "predict_layout", "table", "tiny_machine", "verdict"]
