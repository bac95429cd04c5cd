"""Submissions of b1_gd_step: name -> (replacements in the solution cell, the test
that must fail, or None for a correct submission in another form)."""

SUBMISSIONS = {
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
}
