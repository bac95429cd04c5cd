"""WRONG on purpose: the widely copied Adam update that bias-corrects twice (Unit B).

Kept only so that the lecture (notebooks/lectures/B2_optimizers.ipynb) can show the bug
numerically next to the right formula; never train with it.

Kingma & Ba give two equivalent ways to write Adam's step:

    (a)  m̂ = m / (1 − β₁ᵗ),  v̂ = v / (1 − β₂ᵗ),   θ ← θ − η m̂ / (√v̂ + ε)
    (b)  η_t = η √(1 − β₂ᵗ) / (1 − β₁ᵗ),            θ ← θ − η_t m / (√v + ε̂)

Many blog posts and a few codebases mix them: they compute m̂ and v̂ as in (a) and then
also use the step size η_t of (b). The corrections are applied twice, and the step is
η m̂ / √v̂ multiplied by the spurious factor

    c(t) = √(1 − β₂ᵗ) / (1 − β₁ᵗ)      (≈ 0.32 at t = 1, ≈ 0.15 at t = 10 for the
                                        default betas, → 1 only after ~1/(1 − β₂) steps)

so the first thousand steps are several times too small — an accidental warm-up that
hides itself because training still "works", just slower.
"""

from __future__ import annotations


def double_correction_factor(t, beta1=0.9, beta2=0.999):
    """c(t) = √(1 − β₂ᵗ) / (1 − β₁ᵗ): how much the double-corrected step is off at step t."""
    return (1 - beta2 ** t) ** 0.5 / (1 - beta1 ** t)


def adam_step_double_corrected(θ, g, m, v, t, *, lr, beta1=0.9, beta2=0.999, eps=1e-8):
    r"""WRONG: an Adam step that divides by the bias corrections a second time.

        m ← β₁ m + (1 − β₁) g,   v ← β₂ v + (1 − β₂) g²        (as in Adam)
        m̂ = m / (1 − β₁ᵗ),       v̂ = v / (1 − β₂ᵗ)             (correction no. 1)
        η_t = η √(1 − β₂ᵗ) / (1 − β₁ᵗ)                         (correction no. 2: the bug)
        θ ← θ − η_t m̂ / (√v̂ + ε)

    Compare hpclab.optim.adam.adam_step, which uses η, not η_t, here.
    """
    m.lerp_(g, 1 - beta1)
    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    m_hat = m / (1 - beta1 ** t)
    v_hat = v / (1 - beta2 ** t)
    lr_t = lr * double_correction_factor(t, beta1, beta2)
    θ.addcdiv_(m_hat, v_hat.sqrt().add_(eps), value=-lr_t)
