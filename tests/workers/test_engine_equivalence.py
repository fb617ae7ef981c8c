"""The batched engine must end where a plain per-model torch.optim loop ends."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from torch.optim import lr_scheduler

from doodl.workers._batch_transforms import augment_images, input_noise
from doodl.workers.config import VariantConfig
from doodl.workers.datasets import BatchStream, dataset_split, variant_data
from doodl.workers.engine import EVAL_POINTS, train_unit
from doodl.workers.models import build_model, flatten_params, init_params
from doodl.workers.seeds import STREAM_AUGMENT, STREAM_INPUT_NOISE, torch_generator


def _reference_run(cfg: VariantConfig, schedule=None) -> np.ndarray:
    """One variant trained alone: nn.Module, torch.optim (+ ``schedule(opt)``, a
    ``torch.optim.lr_scheduler``), the same seeded data stream and batch corruption."""
    split = dataset_split(cfg)
    data = variant_data(split, cfg)
    model = build_model(cfg, split.shape)
    init = init_params(cfg, split.shape)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(init[name])
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                               weight_decay=cfg.weight_decay, foreach=False)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                                weight_decay=cfg.weight_decay, foreach=False)
    sched = schedule(opt) if schedule else None
    x = torch.from_numpy(split.x_train[data.indices]).view(-1, *split.shape.input_shape)
    y = torch.from_numpy(data.labels)
    aug = torch_generator(cfg.seed, STREAM_AUGMENT)
    noise = torch_generator(cfg.seed, STREAM_INPUT_NOISE)
    batches = BatchStream(len(data.indices), cfg.batch_size, cfg.seed).take(cfg.steps)
    for pos in batches:
        xb = x[pos]
        if cfg.augment:
            xb = augment_images(xb, aug)
        if cfg.input_noise:
            xb = input_noise(xb[None], torch.tensor([cfg.input_noise]), noise)[0]
        opt.zero_grad()
        F.cross_entropy(model(xb), y[pos]).backward()
        opt.step()
        if sched:
            sched.step()
    return flatten_params(dict(model.named_parameters())).detach().numpy()


def _unit(optimizer: str, lrs) -> list[VariantConfig]:
    noises = [0.0, 0.1, 0.3, 0.0, 0.2, 0.5, 0.05, 0.4]
    return [
        VariantConfig(dataset="digits", test_fraction=0.25, split_seed=3, label_noise=noises[i],
                      train_fraction=1.0 if i % 2 else 0.5, model="mlp", width=16, depth=2,
                      optimizer=optimizer, lr=lrs[i], batch_size=32, weight_decay=1e-4 * (i % 3),
                      steps=150, record_every=25, seed=100 + i)
        for i in range(8)
    ]


@pytest.mark.parametrize(
    "optimizer,lrs",
    [("sgd", [0.01, 0.02, 0.05, 0.03, 0.04, 0.015, 0.005, 0.025]),
     ("adam", [1e-3, 2e-3, 5e-4, 3e-3, 1e-3, 4e-3, 2e-4, 8e-4])],
)
def test_batched_unit_matches_per_model_loop(optimizer, lrs):
    # Learning rates stay below the edge of stability: there (e.g. lr 0.1 with momentum
    # 0.9 here) float32 rounding differences between bmm and addmm kernels grow
    # chaotically (1e-3 after 150 steps) although both follow the same arithmetic.
    torch.set_num_threads(1)
    cfgs = _unit(optimizer, lrs)
    result = train_unit(cfgs)
    assert result.status == ["ok"] * 8
    for v, cfg in enumerate(cfgs):
        ref = _reference_run(cfg)
        diff = np.abs(result.final_params[v] - ref).max()
        assert diff <= 1e-5, f"variant {v}: max abs diff {diff}"
    # the runs really differ from each other (different seeds, noise, lrs)
    assert np.abs(result.final_params[0] - result.final_params[1]).max() > 1e-2


def _step_decay(opt):  # milestones 0.5 and 0.75 of 150 steps (round(112.5) == 112)
    return lr_scheduler.MultiStepLR(opt, milestones=[75, 112], gamma=0.1)


def _warmup_cosine(opt):  # 10 steps of linear warm-up, then cosine over the other 140
    warm = lr_scheduler.LinearLR(opt, start_factor=0.1, end_factor=1.0, total_iters=10)
    return lr_scheduler.SequentialLR(opt, [warm, lr_scheduler.CosineAnnealingLR(opt, T_max=140)], milestones=[10])


def _warmup_only(opt):
    return lr_scheduler.LinearLR(opt, start_factor=1 / 30, end_factor=1.0, total_iters=30)


def test_schedules_and_decoupled_weight_decay_match_torch_optim_and_lr_scheduler():
    """Variants of one unit with different schedules, AdamW's decoupled decay and SGD's step
    decay each end where torch.optim + torch.optim.lr_scheduler end."""
    torch.set_num_threads(1)
    base = dict(dataset="digits", test_fraction=0.25, split_seed=3, label_noise=0.0, train_fraction=1.0,
                model="mlp", width=16, depth=2, batch_size=32, steps=150, record_every=25)
    cases = {
        "adamw": [(dict(schedule="cosine", warmup=10, weight_decay=0.5, lr=3e-3), _warmup_cosine),
                  (dict(schedule="constant", warmup=30, weight_decay=0.1, lr=2e-3), _warmup_only),
                  (dict(schedule="constant", warmup=0, weight_decay=1.0, lr=1e-3), None)],
        "sgd": [(dict(schedule="step", weight_decay=5e-4, lr=0.05), _step_decay),
                (dict(schedule="cosine", warmup=10, weight_decay=0.0, lr=0.03), _warmup_cosine)],
    }
    for optimizer, variants in cases.items():
        cfgs = [VariantConfig(**base, **kw, optimizer=optimizer, seed=7 + i) for i, (kw, _) in enumerate(variants)]
        result = train_unit(cfgs)
        for v, (cfg, (_, schedule)) in enumerate(zip(cfgs, variants)):
            diff = np.abs(result.final_params[v] - _reference_run(cfg, schedule)).max()
            assert diff <= 1e-5, f"{optimizer} variant {v}: max abs diff {diff}"


def test_cnn_under_data_quality_axes_matches_per_model_loop():
    """A CNN unit whose variants differ in augmentation, input noise, class imbalance and
    pair label noise trains as each variant alone would, with its own seeded draws."""
    torch.set_num_threads(1)
    base = dict(dataset="digits", test_fraction=0.25, split_seed=3, train_fraction=1.0, model="cnn", width=4,
                depth=2, optimizer="sgd", lr=0.05, weight_decay=0.0, batch_size=32, steps=40, record_every=10)
    kws = [dict(label_noise=0.0, augment=True, seed=1),
           dict(label_noise=0.2, label_noise_kind="pair", input_noise=0.5, seed=2),
           dict(label_noise=0.1, class_imbalance=0.2, augment=True, input_noise=0.3, seed=3),
           dict(label_noise=0.0, seed=4)]
    cfgs = [VariantConfig(**base, **kw) for kw in kws]
    result = train_unit(cfgs)
    for v, cfg in enumerate(cfgs):
        diff = np.abs(result.final_params[v] - _reference_run(cfg)).max()
        assert diff <= 1e-5, f"variant {v}: max abs diff {diff}"
    # a variant's draws are its own: trained alone it ends where it ended in the unit
    alone = train_unit([cfgs[2]])
    np.testing.assert_allclose(alone.final_params[0], result.final_params[2], atol=1e-5)


def test_recorded_lr_is_the_schedule_and_held_out_curves_are_the_snapshots_on_test_points():
    """The lr column is each step's scheduled rate; held-out loss and accuracy at a recorded
    step are the recorded parameters evaluated on the test points (all of digits' 180 test
    points here, so the last one equals the final test accuracy)."""
    torch.set_num_threads(1)
    base = dict(dataset="digits", test_fraction=0.1, split_seed=0, label_noise=0.0, train_fraction=1.0,
                model="mlp", width=8, depth=1, optimizer="sgd", batch_size=32, weight_decay=0.0, steps=40,
                record_every=10)
    cfgs = [VariantConfig(**base, lr=0.1, schedule="step", milestones=(0.5,), seed=1),
            VariantConfig(**base, lr=0.05, seed=2)]
    result = train_unit(cfgs)
    np.testing.assert_allclose(result.lr[0, :40], [0.1] * 20 + [0.01] * 20, rtol=1e-6)
    np.testing.assert_allclose(result.lr[1], 0.05, rtol=1e-6)
    split = dataset_split(cfgs[0])
    model = build_model(cfgs[0], split.shape)
    names = [n for n, _ in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]
    x, y = torch.from_numpy(split.x_test), torch.from_numpy(split.y_test)
    assert len(y) <= EVAL_POINTS
    for s in range(len(result.snapshot_steps)):
        for v in range(2):
            parts = torch.split(torch.from_numpy(result.snapshots[s, v]), sizes)
            model.load_state_dict({n: p.view_as(model.get_parameter(n)) for n, p in zip(names, parts)})
            with torch.no_grad():
                logits = model(x)
            assert result.test_loss[s, v] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
            assert result.test_acc[s, v] == pytest.approx((logits.argmax(-1) == y).float().mean().item())
    np.testing.assert_allclose(result.test_acc[-1], result.final_metrics["final_test_acc"], atol=1e-6)
