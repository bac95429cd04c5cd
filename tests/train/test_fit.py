"""fit() and train_step(): same trajectory as a hand-written loop, the after_backward
seam, early stopping, the NaN error, callbacks, schedulers, clipping, tokens."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from hpclab.metrics import StepRecord
from hpclab.train import EarlyStopping, NonFiniteLossError, StopTraining, evaluate, fit, train_step

pytestmark = [pytest.mark.unit_b]


def regression_data(n=64, seed=0, sign=1.0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 3, generator=g, dtype=torch.float64)
    y = sign * X @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    return TensorDataset(X, y[:, None])


def linear(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Linear(3, 1).double()


def test_fit_follows_the_hand_written_loop_exactly():
    ds = regression_data()
    model, ref = linear(), linear()
    history = fit(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                  DataLoader(ds, batch_size=16), F.mse_loss, epochs=3, progress=False)
    opt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    ref_losses = []
    for _ in range(3):
        for x, y in DataLoader(ds, batch_size=16):
            loss = F.mse_loss(ref(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            ref_losses.append(loss.item())
    assert history.losses() == ref_losses
    for p, q in zip(model.parameters(), ref.parameters()):
        assert torch.equal(p, q)
    assert history.steps() == list(range(12))
    assert [r.epoch for r in history.records] == [0] * 4 + [1] * 4 + [2] * 4


def test_step_record_times_and_samples():
    model = linear()
    rec = train_step(model, torch.optim.SGD(model.parameters(), lr=0.1),
                     next(iter(DataLoader(regression_data(), batch_size=8))), F.mse_loss,
                     step=5, epoch=2)
    assert isinstance(rec, StepRecord)
    assert (rec.step, rec.epoch, rec.samples, rec.rank, rec.world_size) == (5, 2, 8, 0, 1)
    assert rec.t_comm >= 0 and rec.t_forward > 0 and rec.t_backward > 0 and rec.t_optim > 0
    assert rec.t_forward + rec.t_backward + rec.t_comm + rec.t_optim <= rec.t_step
    assert rec.lr == 0.1 and rec.samples_per_s > 0


def test_after_backward_runs_between_backward_and_step():
    """The data-parallel seam: the hook sees fresh gradients and untouched weights, and
    what it does to the gradients is what the optimizer applies."""
    ds = regression_data()
    batch = next(iter(DataLoader(ds, batch_size=16)))
    model, ref = linear(), linear()
    before = [p.detach().clone() for p in model.parameters()]
    seen = {}

    def halve(m):
        seen["weights_unchanged"] = all(torch.equal(p, b) for p, b in
                                        zip(m.parameters(), before))
        seen["has_grads"] = all(p.grad is not None for p in m.parameters())
        for p in m.parameters():
            p.grad /= 2
        return {"bytes": 123}

    rec = train_step(model, torch.optim.SGD(model.parameters(), lr=0.2), batch, F.mse_loss,
                     after_backward=halve)
    train_step(ref, torch.optim.SGD(ref.parameters(), lr=0.1), batch, F.mse_loss)
    assert seen == {"weights_unchanged": True, "has_grads": True}
    assert rec.extra["bytes"] == 123 and rec.t_comm > 0
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-14, atol=1e-15)


def test_validation_each_epoch_lands_in_history_and_records():
    model = linear()
    h = fit(model, torch.optim.SGD(model.parameters(), lr=0.05),
            DataLoader(regression_data(), batch_size=16), F.mse_loss, epochs=3,
            val_loader=DataLoader(regression_data(seed=1), batch_size=32), progress=False)
    assert h.val_steps() == [3, 7, 11]
    assert [r.extra["val_loss"] for r in h.records if "val_loss" in r.extra] == h.val_losses()
    assert h.val_losses()[-1] < h.val_losses()[0]
    assert h.val_losses()[-1] == pytest.approx(
        evaluate(model, DataLoader(regression_data(seed=1), batch_size=7), F.mse_loss)
        ["val_loss"], rel=1e-12)


def test_early_stopping_stops_and_restores_the_best_weights():
    # Validation targets have the opposite sign: every step of training makes them worse,
    # so the best evaluation is the first one and training stops `patience` evals later.
    model = linear()
    saved = {}

    def remember(rec):
        if rec.step == 0:
            saved.update({k: v.clone() for k, v in model.state_dict().items()})

    stopper = EarlyStopping(patience=3)
    h = fit(model, torch.optim.SGD(model.parameters(), lr=0.05),
            DataLoader(regression_data(), batch_size=64), F.mse_loss, epochs=50,
            val_loader=DataLoader(regression_data(sign=-1.0), batch_size=64),
            early_stopping=stopper, callbacks=[remember], progress=False)
    assert h.stop_reason == "early_stopping"
    assert len(h.records) == 4 and h.best_step == 0
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved[k])
    with pytest.raises(ValueError, match="early_stopping needs a val_loader"):
        fit(model, torch.optim.SGD(model.parameters(), lr=0.1),
            DataLoader(regression_data(), batch_size=64), F.mse_loss, early_stopping=2)
    with pytest.raises(ValueError, match="patience must be >= 1"):
        EarlyStopping(patience=0)


def test_nan_loss_names_the_step_and_the_last_finite_loss():
    ds = regression_data(n=32)
    X, y = ds.tensors
    X = X.clone()
    X[24] = float("nan")                           # in the 4th batch of 8 → step 3
    model = linear()
    with torch.no_grad():
        expected_last = F.mse_loss(model(X[16:24]), y[16:24]).item()
    with pytest.raises(NonFiniteLossError) as err:
        fit(model, torch.optim.SGD(model.parameters(), lr=0.0),
            DataLoader(TensorDataset(X, y), batch_size=8), F.mse_loss, epochs=1,
            progress=False)
    assert isinstance(err.value, FloatingPointError)
    assert err.value.step == 3 and math.isnan(err.value.loss)
    assert err.value.last_finite == pytest.approx(expected_last, rel=1e-12)
    assert "step 3" in str(err.value) and f"{expected_last:.6g}" in str(err.value)


def test_accumulation_takes_the_step_of_the_whole_batch():
    """a equal micro-batches accumulate ∇(Σ_k J_k / a) = ∇J of the whole batch (float64,
    sums in another order: 1e-12), and the record reports the whole batch's loss."""
    batch = next(iter(DataLoader(regression_data(), batch_size=16)))
    results = []
    for accumulation in (1, 4):
        model = linear()
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        recs = [train_step(model, opt, batch, F.mse_loss, accumulation=accumulation)
                for _ in range(3)]
        results.append(([r.loss for r in recs], [p.detach().clone() for p in model.parameters()]))
    (losses_1, params_1), (losses_4, params_4) = results
    assert losses_4 == pytest.approx(losses_1, rel=1e-12)
    for a, b in zip(params_4, params_1):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    model = linear()
    with pytest.raises(ValueError, match="16 samples.*accumulation=3"):
        train_step(model, torch.optim.SGD(model.parameters(), lr=0.1), batch, F.mse_loss,
                   accumulation=3)


def test_divergence_to_infinity_is_caught():
    model = linear()
    with pytest.raises(NonFiniteLossError, match="last finite loss"):
        fit(model, torch.optim.SGD(model.parameters(), lr=1e6),
            DataLoader(regression_data(), batch_size=64), F.mse_loss, steps=500,
            progress=False)


def test_callbacks_steps_and_stop_training():
    seen = []

    def stop_at_5(rec):
        seen.append(rec.step)
        if rec.step == 5:
            raise StopTraining

    model = linear()
    h = fit(model, torch.optim.SGD(model.parameters(), lr=0.01),
            DataLoader(regression_data(), batch_size=8), F.mse_loss, epochs=10,
            callbacks=[stop_at_5], progress=False)
    assert seen == list(range(6)) and len(h.records) == 6 and h.stop_reason == "callback"
    h = fit(model, torch.optim.SGD(model.parameters(), lr=0.01),
            DataLoader(regression_data(), batch_size=8), F.mse_loss, steps=19, progress=False)
    assert len(h.records) == 19 and h.records[-1].epoch == 2 and h.stop_reason == ""


def test_a_callback_with_on_step_is_called_through_it():
    """A Dashboard passes as `callbacks=[dash]`; fit calls its plain `on_step` object."""
    class Widgetish:
        def __init__(self):
            self.seen = []
            self.on_step = self.seen.append

        def __call__(self, rec):
            raise AssertionError("fit called the object, not its on_step")

    cb = Widgetish()
    model = linear()
    fit(model, torch.optim.SGD(model.parameters(), lr=0.01),
        DataLoader(regression_data(), batch_size=8), F.mse_loss, steps=4, callbacks=[cb],
        progress=False)
    assert [r.step for r in cb.seen] == list(range(4))


def test_scheduler_steps_once_per_step_and_lr_is_recorded():
    model = linear()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 ** t)
    h = fit(model, opt, DataLoader(regression_data(), batch_size=16), F.mse_loss, steps=4,
            scheduler=sched, progress=False)
    assert [r.lr for r in h.records] == [1.0, 0.5, 0.25, 0.125]


def test_clip_grad_norm_matches_torch():
    ds = regression_data()
    batch = next(iter(DataLoader(ds, batch_size=64)))
    model, ref = linear(), linear()
    rec = train_step(model, torch.optim.SGD(model.parameters(), lr=0.1), batch, F.mse_loss,
                     clip_grad_norm=0.01)
    opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    F.mse_loss(ref(batch[0]), batch[1]).backward()
    norm = torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.01)
    opt.step()
    assert rec.extra["grad_norm"] == pytest.approx(norm.item()) and norm > 0.01
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q)


def test_token_batches_report_tokens_and_accuracy():
    vocab, T = 7, 5
    model = torch.nn.Sequential(torch.nn.Embedding(vocab, 8), torch.nn.Linear(8, vocab))
    x = torch.randint(vocab, (12, T))
    loader = DataLoader(TensorDataset(x, (x + 1) % vocab), batch_size=4)

    def loss(logits, y):
        return F.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))

    h = fit(model, torch.optim.Adam(model.parameters(), lr=0.05), loader, loss, epochs=30,
            val_loader=loader, progress=False)
    assert all(r.extra["tokens"] == 4 * T for r in h.records)
    assert h.tokens_per_s() == pytest.approx(T * h.samples_per_s())
    assert h.evals[-1]["val_accuracy"] == 1.0            # x → x+1 is learnable exactly
    assert "tokens_per_s" in h.summary()


def test_bad_arguments_are_named():
    model = linear()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(regression_data(), batch_size=8)
    with pytest.raises(ValueError, match="epochs must be >= 1, got 0"):
        fit(model, opt, loader, F.mse_loss, epochs=0)
    with pytest.raises(ValueError, match="clip_grad_norm must be > 0"):
        fit(model, opt, loader, F.mse_loss, clip_grad_norm=-1.0)
    with pytest.raises(ValueError, match="yielded no batches"):
        fit(model, opt, [], F.mse_loss, progress=False)
