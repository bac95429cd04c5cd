"""The graders catch wrong work and accept right work in another form (real nbgrader).

For b1, b2_momentum, b2_adam and d2_loss_scaling, each WRONG submission below is a
student copy (release/) whose solution cell holds a known mistake; autograding must give
it less than full marks, and the test that catches it must be among the failures. Each
EQUIVALENT submission writes the solution differently but correctly and must keep full
marks. A submission is made from the instructor's solution cell by text replacements, so
a change of the solution that breaks one fails loudly here rather than testing nothing.

All submissions are graded in one `grading.autograde` call, in nbgrader's submitted/
layout (one folder per student), which is also how an instructor grades a class.
"""

import json
import re

import pytest

from hpclab import grading

pytestmark = [pytest.mark.notebooks, pytest.mark.cluster, pytest.mark.slow,
              pytest.mark.timeout(1500)]

# assignment -> {name: (replacements in the solution cell, failing test or None if right)}
SUBMISSIONS = {
    "b1_gd_step": {
        "autograd_gradient": ([(
            "    return X.T @ (X @ theta - y) / X.shape[0]",
            ("    theta = theta.detach().clone().requires_grad_(True)\n"
            "    r = X @ theta - y\n"
            "    ((r @ r) / (2 * len(y))).backward()\n"
            "    return theta.grad"))], "test_gradient_and_step"),
        "autograd_functional": ([(
            "    return X.T @ (X @ theta - y) / X.shape[0]",
            "    return torch.func.grad(lambda t: ((X @ t - y) ** 2).sum() / (2 * len(y)))(theta)")],
            "test_gradient_and_step"),
        "gradient_ascent": ([("    return theta - lr * grad", "    return theta + lr * grad")],
                            "test_fit"),
        "sum_not_mean": ([("    return X.T @ (X @ theta - y) / X.shape[0]",
                           "    return X.T @ (X @ theta - y)")], "test_gradient_and_step"),
        "equivalent": ([("    return X.T @ (X @ theta - y) / X.shape[0]",
                         ("    residual = X.mv(theta) - y\n"
                         "    return torch.mean(X * residual[:, None], dim=0)")),
                        ("    return theta - lr * grad", "    return theta.sub(grad, alpha=lr)")],
                       None),
    },
    "b2_momentum": {
        "averaged_buffer": ([("momentum * buf + grad", "momentum * buf + (1 - momentum) * grad")],
                            "test_momentum"),
        "nesterov_ignored": ([("    direction = grad + momentum * buf if nesterov else buf",
                               "    direction = buf")], "test_momentum"),
        "equivalent": ([(("    buf = grad.clone() if buf is None else momentum * buf + grad\n"
                         "    direction = grad + momentum * buf if nesterov else buf\n"
                         "    return param - lr * direction, buf"),
                         ("    if buf is None:\n"
                         "        buf = torch.clone(grad)\n"
                         "    else:\n"
                         "        buf = torch.add(grad, buf, alpha=momentum)\n"
                         "    step = torch.add(grad, buf, alpha=momentum) if nesterov else buf\n"
                         "    return torch.sub(param, step, alpha=lr), buf"))], None),
    },
    "b2_adam": {
        # seed article 002: the bias corrections divided out a second time (316x at t = 1)
        "seed_002_double_correction": ([(
            "    return param - lr * m_hat / (v_hat.sqrt() + eps), m, v",
            ("    lr_t = lr / ((1 - beta1 ** t) * math.sqrt(1 - beta2 ** t))\n"
            "    return param - lr_t * m_hat / (v_hat.sqrt() + eps), m, v"))], "test_adam"),
        "no_bias_correction": ([("    m_hat = m / (1 - beta1 ** t)\n    v_hat = v / (1 - beta2 ** t)",
                                 "    m_hat, v_hat = m, v")], "test_adam"),
        "eps_inside_sqrt": ([("(v_hat.sqrt() + eps)", "(v_hat + eps).sqrt()")], "test_adam"),
        # the paper's second form: eta_t = eta sqrt(1 - beta2^t) / (1 - beta1^t), eps scaled
        "equivalent": ([(("    m_hat = m / (1 - beta1 ** t)\n    v_hat = v / (1 - beta2 ** t)\n"
                         "    return param - lr * m_hat / (v_hat.sqrt() + eps), m, v"),
                         ("    c2 = math.sqrt(1 - beta2 ** t)\n"
                         "    lr_t = lr * c2 / (1 - beta1 ** t)\n"
                         "    return param - lr_t * m / (v.sqrt() + eps * c2), m, v"))], None),
    },
    "d2_loss_scaling": {
        "good_steps_kept_on_overflow": ([(("            self.scale *= self.backoff_factor\n"
                                          "            self.good_steps = 0\n"),
                                          "            self.scale *= self.backoff_factor\n")],
                                        "test_rule"),
        "nan_not_detected": ([("not bool(torch.isfinite(g).all())", "bool(torch.isinf(g).any())")],
                             "test_rule"),
        "grows_one_step_late": ([("if self.good_steps == self.growth_interval:",
                                  "if self.good_steps > self.growth_interval:")], "test_rule"),
        "equivalent": ([(("    found_inf = False\n"
                         "    for g in grads:\n"
                         "        g /= scale\n"
                         "        found_inf = found_inf or not bool(torch.isfinite(g).all())\n"
                         "    return found_inf"),
                         ("    for g in grads:\n"
                         "        g.div_(scale)\n"
                         "    return any(not torch.isfinite(g).all().item() for g in grads)"))],
                       None),
    },
}
CASES = [(a, name) for a, subs in SUBMISSIONS.items() for name in subs]
MARKERS = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n", re.MULTILINE)


def _src(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _solution_cell(cells):
    found = [i for i, c in enumerate(cells) if c["metadata"].get("nbgrader", {}).get("solution")
             and c["cell_type"] == "code"]
    assert len(found) == 1, f"expected one solution code cell, found {found}"
    return found[0]


def _submission(assignment, replacements):
    """The release notebook with the solution cell filled by the edited solution."""
    source = grading.EXERCISES / "source" / assignment / f"{assignment}.ipynb"
    release = grading.EXERCISES / "release" / assignment / f"{assignment}.ipynb"
    code = MARKERS.sub("", _src(json.loads(source.read_text())["cells"][
        _solution_cell(json.loads(source.read_text())["cells"])]))
    for old, new in replacements:
        assert old in code, f"{assignment}: the solution no longer contains {old!r}"
        code = code.replace(old, new)
    nb = json.loads(release.read_text())
    nb["cells"][_solution_cell(nb["cells"])]["source"] = code
    return nb


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("class")
    for assignment, name in CASES:
        folder = root / f"{assignment}-{name}" / assignment
        folder.mkdir(parents=True)
        nb = _submission(assignment, SUBMISSIONS[assignment][name][0])
        (folder / f"{assignment}.ipynb").write_text(json.dumps(nb, indent=1))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HPCLAB_SMALL", "1")
        mp.setenv("OMP_NUM_THREADS", "1")
        mp.setenv("MPLCONFIGDIR", str(root / "mpl"))
        mp.setenv("IPYTHONDIR", str(root / "ipython"))
        scores = grading.autograde(root)
    return {(s.assignment, s.student.removeprefix(f"{s.assignment}-")): s for s in scores}


def test_every_assignment_has_two_wrong_and_one_equivalent_submission():
    for assignment, subs in SUBMISSIONS.items():
        wrong = [n for n, (_, test) in subs.items() if test is not None]
        assert len(wrong) >= 2 and any(test is None for _, test in subs.values()), assignment


@pytest.mark.parametrize(("assignment", "name"), CASES, ids=[f"{a}-{n}" for a, n in CASES])
def test_submission_scores_what_it_deserves(assignment, name, graded):
    score = graded[(assignment, name)]
    failing = {f.test for f in score.failures}
    expected = SUBMISSIONS[assignment][name][1]
    if expected is None:
        assert score.score == score.max_score and not score.failures, \
            f"a correct {name} form loses points: {score}"
    else:
        assert score.score < score.max_score, f"wrong work scores full marks: {score}"
        assert expected in failing, f"{expected} should fail for {name}; failing: {failing}"
        assert all(f.message for f in score.failures), score.failures


def test_autograd_submission_is_told_why(graded):
    """The b1 autograd submission's failure message says what to do."""
    (failure,) = [f for f in graded[("b1_gd_step", "autograd_gradient")].failures
                  if f.test == "test_gradient_and_step"]
    assert "automatic differentiation" in failure.message and "matrix products" in failure.message
