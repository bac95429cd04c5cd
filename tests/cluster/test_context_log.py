"""DistContext.log: ranks that share one unbuffered stdout (torchrun's workers on a node,
`python -u` under Slurm) never interleave their lines."""

import re
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.unit_a]

LINES = 20000
WRITER = f"""
import sys
from hpclab.cluster.context import DistContext
ctx = DistContext(rank=int(sys.argv[1]), world_size=2, host="n1")
for i in range({LINES}):
    ctx.log("host n1 rank", ctx.rank, "of 2 line", i)
"""


def test_two_processes_logging_to_one_stdout_keep_their_lines_whole(tmp_path):
    out = tmp_path / "job.out"
    with open(out, "wb") as shared:          # one open file, as Slurm hands the job's steps
        writers = [subprocess.Popen([sys.executable, "-u", "-c", WRITER, str(r)],
                                    stdout=shared) for r in (0, 1)]
        for w in writers:
            assert w.wait(timeout=120) == 0
    lines = out.read_text().splitlines()
    whole = re.compile(r"\[rank (\d)/2 n1\] host n1 rank \1 of 2 line \d+")
    broken = [line for line in lines if not whole.fullmatch(line)]
    assert not broken, broken[:5]
    assert len(lines) == 2 * LINES


def test_log_takes_print_separators(capsys):
    from hpclab.cluster.context import DistContext
    DistContext(rank=1, world_size=4, host="n2").log("a", 2, sep="-", end="!\n")
    assert capsys.readouterr().out == "[rank 1/4 n2]-a-2!\n"
