"""WRONG on purpose: two Adam updates that apply the bias correction twice (Unit B).

Kept only so that the lecture (notebooks/lectures/B2_optimizers.ipynb) and exercise B2b
can show the bugs numerically next to the right formula; never train with them.

Adam, as Kingma & Ba write it, in either of two equivalent forms:

    (a)  m̂ = m / (1 − β₁ᵗ),  v̂ = v / (1 − β₂ᵗ),   θ ← θ − η m̂ / (√v̂ + ε)
    (b)  η_t = η √(1 − β₂ᵗ) / (1 − β₁ᵗ),            θ ← θ − η_t m / (√v + ε̂)

Mistake 1, the formula of the seed article 002 the course started from: it computes m̂
and v̂ as in (a) and then divides by the corrections once more,

    θ ← θ − η / ((1 − β₁ᵗ) √(1 − β₂ᵗ)) · m̂ / √v̂,

so the right step η m̂ / √v̂ is multiplied by

    s(t) = 1 / ((1 − β₁ᵗ) √(1 − β₂ᵗ))   (≈ 316 at t = 1, ≈ 15 at t = 10, ≈ 3.2 at
                                          t = 100 for the default betas)

The first step is about 316 η instead of η: with η = 10⁻³ every coordinate jumps by
about 0.3 whatever its gradient's size, which is how a run "diverges at step 1".

Mistake 2, a different one, also seen in the wild: m̂ and v̂ as in (a) *and* the step
size η_t of (b). The step is multiplied by

    c(t) = √(1 − β₂ᵗ) / (1 − β₁ᵗ)       (≈ 0.32 at t = 1, ≈ 0.15 at t = 10, → 1 only
                                         after ~1/(1 − β₂) steps)

so the first thousand steps are several times too small: an accidental warm-up that
hides itself because training still "works", just slower.
"""

from __future__ import annotations

from hpclab.optim.adam import adam_step


def overcorrection_factor(t, beta1=0.9, beta2=0.999):
    """s(t) = 1 / ((1 − β₁ᵗ) √(1 − β₂ᵗ)): how much seed 002's step is too large at step t."""
    return 1 / ((1 - beta1 ** t) * (1 - beta2 ** t) ** 0.5)


def adam_step_overcorrected(θ, g, m, v, t, *, lr, beta1=0.9, beta2=0.999, eps=1e-8):
    r"""WRONG (seed article 002): an Adam step that divides by the corrections again.

        m ← β₁ m + (1 − β₁) g,   v ← β₂ v + (1 − β₂) g²        (as in Adam)
        m̂ = m / (1 − β₁ᵗ),       v̂ = v / (1 − β₂ᵗ)             (correction no. 1)
        θ ← θ − η / ((1 − β₁ᵗ) √(1 − β₂ᵗ)) · m̂ / (√v̂ + ε)      (no. 2: the bug)

    That is hpclab.optim.adam.adam_step with η s(t) in place of η.
    """
    adam_step(θ, g, m, v, t, lr=lr * overcorrection_factor(t, beta1, beta2), beta1=beta1,
              beta2=beta2, eps=eps)


def mixed_forms_factor(t, beta1=0.9, beta2=0.999):
    """c(t) = √(1 − β₂ᵗ) / (1 − β₁ᵗ): how much mistake 2's step is off at step t."""
    return (1 - beta2 ** t) ** 0.5 / (1 - beta1 ** t)


def adam_step_mixed_forms(θ, g, m, v, t, *, lr, beta1=0.9, beta2=0.999, eps=1e-8):
    r"""WRONG (mistake 2): m̂ and v̂ of form (a) with the step size η_t of form (b).

        m ← β₁ m + (1 − β₁) g,   v ← β₂ v + (1 − β₂) g²        (as in Adam)
        m̂ = m / (1 − β₁ᵗ),       v̂ = v / (1 − β₂ᵗ)             (correction no. 1)
        η_t = η √(1 − β₂ᵗ) / (1 − β₁ᵗ)                         (no. 2: the bug)
        θ ← θ − η_t m̂ / (√v̂ + ε)

    That is hpclab.optim.adam.adam_step with η_t = η c(t) in place of η.
    """
    adam_step(θ, g, m, v, t, lr=lr * mixed_forms_factor(t, beta1, beta2), beta1=beta1,
              beta2=beta2, eps=eps)
