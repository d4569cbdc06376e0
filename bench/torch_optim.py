"""A spec's optimiser and learning-rate schedule built from torch.optim's own classes, as the
spec's fields name their arguments (README, "Optimisers and schedules"): for the fidelity
tests (tests/it/optim.rs) and bench/lean_torch.py.

    python bench/torch_optim.py DIR   runs DIR/manifest.json's members (the test's export)
"""
import json
import sys

import torch


def optimizer(spec, params):
    """torch.optim's optimiser of the spec's name, with the spec's settings."""
    o, lr, wd = spec.get("optimizer", "sgd"), spec["lr"], spec.get("weight_decay", 0.0)
    if o == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=spec["momentum"], weight_decay=wd, nesterov=spec["nesterov"])
    if o in ("adam", "adamw"):
        cls = torch.optim.Adam if o == "adam" else torch.optim.AdamW
        return cls(params, lr=lr, betas=tuple(spec["betas"]), eps=spec["eps"], weight_decay=wd, amsgrad=spec["amsgrad"])
    if o == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=spec["alpha"], eps=spec["eps"], weight_decay=wd, momentum=spec["momentum"])
    if o == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, eps=spec["eps"], weight_decay=wd)
    if o == "adadelta":
        return torch.optim.Adadelta(params, lr=lr, rho=spec["rho"], eps=spec["eps"], weight_decay=wd)
    raise ValueError(f"unknown optimizer {o}")


def scheduler(spec, opt):
    """torch's scheduler for the spec's lr_schedule and warmup_epochs, stepped once per epoch;
    None for a constant rate without warm-up."""
    s, epochs, warmup = spec.get("lr_schedule", "constant"), spec["epochs"], spec.get("warmup_epochs", 0)
    kind, o = (s, {}) if isinstance(s, str) else next(iter(s.items()))
    S = torch.optim.lr_scheduler
    if kind == "constant":
        main = None
    elif kind == "step":
        main = S.StepLR(opt, step_size=o["every"], gamma=o["gamma"])
    elif kind == "multistep":
        main = S.MultiStepLR(opt, milestones=o["at"], gamma=o["gamma"])
    elif kind == "exponential":
        main = S.ExponentialLR(opt, gamma=o["gamma"])
    elif kind == "cosine":
        main = S.CosineAnnealingLR(opt, T_max=epochs - warmup, eta_min=o["min_lr"])
    else:
        raise ValueError(f"unknown schedule {kind}")
    if warmup == 0:
        return main
    warm = S.LinearLR(opt, start_factor=1 / (warmup + 1), end_factor=1.0, total_iters=warmup)
    main = main or S.LambdaLR(opt, lambda e: 1.0)
    return S.SequentialLR(opt, [warm, main], milestones=[warmup])


def run(d):
    """Each member: its weights after each epoch and each epoch's rate, from the exported
    initial weights and gradients."""
    m = json.load(open(f"{d}/manifest.json"))

    def load(name, shape):
        raw = bytearray(open(f"{d}/{name}.bin", "rb").read())
        return torch.frombuffer(raw, dtype=torch.float32).reshape(shape).clone()

    out = []
    numel = sum(torch.Size(s).numel() for s in m["shapes"])
    for i, spec in enumerate(m["members"]):
        flat = load(f"w.{i}", [numel])
        grads = load(f"g.{i}", [m["steps_per_epoch"] * spec["epochs"], numel])
        params, at = [], 0
        for s in m["shapes"]:
            n = torch.Size(s).numel()
            params.append(flat[at:at + n].view(s).clone().requires_grad_(True))
            at += n
        opt = optimizer(spec, params)
        sched = scheduler(spec, opt)
        lrs, after = [], []
        for e in range(spec["epochs"]):
            lrs.append(opt.param_groups[0]["lr"])
            for k in range(m["steps_per_epoch"]):
                g = grads[e * m["steps_per_epoch"] + k]
                at = 0
                for p in params:
                    n = p.numel()
                    p.grad = g[at:at + n].view(p.shape).clone()
                    at += n
                opt.step()
            if sched is not None:
                sched.step()
            after.append(torch.cat([p.detach().flatten() for p in params]).tolist())
        out.append({"lrs": lrs, "after": after})
    print(json.dumps(out))


if __name__ == "__main__":
    run(sys.argv[1])
