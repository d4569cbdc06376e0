"""A spec's list of layers (README, "Your own network") built from PyTorch's own modules, as
nn.Sequential names them (0.weight, 7.0.weight inside a residual block): for
bench/lean_torch.py and the fidelity tests (tests/it/layers.rs)."""
import torch
import torch.nn as nn


class Residual(nn.Sequential):
    """Layers whose output has their input's shape, added to it."""

    def forward(self, x):
        return super().forward(x) + x


ACTS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}


def build(layers, x, dropout=nn.Dropout):
    """The list as an nn.Sequential, for inputs shaped as x (each layer's size is read from
    the shape its input has); dropout makes a dropout layer from its p."""
    mods = []
    for l in layers:
        name, opt = (l, None) if isinstance(l, str) else next(iter(l.items()))
        if name == "conv2d":
            mod = nn.Conv2d(x.shape[1], opt["out"], opt["kernel"], stride=opt.get("stride", 1), padding=opt.get("padding", 0))
        elif name in ("maxpool2d", "avgpool2d"):
            k, s = (opt, opt) if isinstance(opt, int) else (opt["kernel"], opt.get("stride", opt["kernel"]))
            mod = (nn.MaxPool2d if name == "maxpool2d" else nn.AvgPool2d)(k, s)
        elif name == "global_avgpool":
            mod = nn.AdaptiveAvgPool2d(1)
        elif name == "batchnorm":
            mod = nn.BatchNorm2d(x.shape[1]) if x.dim() == 4 else nn.BatchNorm1d(x.shape[1])
        elif name == "dropout":
            mod = dropout(0.5 if opt is None else opt)
        elif name == "flatten":
            mod = nn.Flatten()
        elif name == "linear":
            mod = nn.Linear(x.shape[1], opt)
        elif name == "residual":
            mod = build(opt, x, dropout)
            mod.__class__ = Residual
        else:
            mod = ACTS[name]()
        mod.eval()
        with torch.no_grad():
            x = mod(x)
        mods.append(mod)
    return nn.Sequential(*mods)
