#!/usr/bin/env python3
"""Forward and backward of the tutorial CNN's convolutions alone (BENCHMARKS.md, "Convolution
paths"), µs per call, one thread: NCHW or channels-last input, oneDNN on or off (off: libtorch's
own thnn_conv2d). `g8` also times 8 members' convolutions fused as one grouped convolution.
usage: .venv/bin/python bench/conv_paths.py [g8]
"""
import time, torch, torch.nn.functional as F, sys
torch.set_num_threads(1)
shapes = [("conv1", 3, 6, 32), ("conv2", 6, 16, 14)]
if len(sys.argv) > 1: shapes += [("g8conv1", 24, 48, 32), ("g8conv2", 48, 128, 14)]
def run(b, cin, cout, hw, cl, mk, groups=1, n=3000):
    x = torch.randn(b, cin, hw, hw, requires_grad=True); w = torch.randn(cout, cin // groups, 5, 5, requires_grad=True); bias = torch.randn(cout, requires_grad=True)
    if cl: x = x.detach().to(memory_format=torch.channels_last).requires_grad_()
    with torch.backends.mkldnn.flags(enabled=mk):
        for i in range(n // 10): y = F.conv2d(x, w, bias, groups=groups); y.backward(torch.ones_like(y))
        t = time.perf_counter()
        for i in range(n): y = F.conv2d(x, w, bias, groups=groups); y.backward(torch.ones_like(y))
        return (time.perf_counter() - t) / n * 1e6
for b in (1, 4):
    for name, cin, cout, hw in shapes:
        g = 8 if name.startswith("g8") else 1
        r = {f"{'cl' if cl else 'nchw'}-{'dnnl' if mk else 'slow'}": run(b, cin, cout, hw, cl, mk, g) for cl in (False, True) for mk in (True, False)}
        print(b, name, {k: round(v, 1) for k, v in r.items()}, flush=True)
