"""Submissions of b2_adam: name -> (replacements in the solution cell, the test
that must fail, or None for a correct submission in another form)."""

SUBMISSIONS = {
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
}
