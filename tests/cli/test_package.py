"""The package surface: lazy attributes, the `hpclab` dispatcher, the benchmark list."""

import pytest

import hpclab
from hpclab import bench, cli

pytestmark = [pytest.mark.unit_a]


def test_every_public_name_resolves():
    assert sorted(hpclab.__all__) == sorted([*hpclab._LAZY, *hpclab._SUBMODULES])
    for name in ("optim", "problems", "metrics", "fit"):
        assert getattr(hpclab, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        hpclab.nope  # noqa: B018


def test_cli_lists_commands_and_rejects_unknown_ones(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in cli.COMMANDS)
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_bench_lists_every_benchmark(capsys):
    names = bench.available()
    assert {"optim", "comm", "dp", "compression", "inference", "data", "dashboard"} <= set(names)
    assert cli.main(["bench", "--help"]) == 0
    assert ", ".join(names) in capsys.readouterr().out
    assert cli.main(["bench", "nope"]) == 2
