#!/usr/bin/env python3
"""The same training as trainyard's, written lean in PyTorch: the data as one uint8 tensor,
no DataLoader, per-batch normalisation, SGD momentum 0.9, cross-entropy, evaluation every
epoch. The bar trainyard is measured against besides the tutorial's own code.

usage: lean_torch.py BIN_DIR [--model cnn|mlp|linear] [--layers JSON] [--batch-size 4] [--epochs 1] [--lr 0.001]
                     [--threads N] [--train-limit N] [--optimizer sgd|adam]
--layers builds a spec's list of layers (README, "Your own network") from PyTorch's own modules.
BIN_DIR holds cifar-10-batches-bin (data_batch_1..5.bin, test_batch.bin). One JSON line per epoch.
"""
import argparse, json, os, sys, time
import torch, torch.nn as nn, torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("bin_dir"); p.add_argument("--model", default="cnn")
p.add_argument("--batch-size", type=int, default=4); p.add_argument("--epochs", type=int, default=1)
p.add_argument("--lr", type=float, default=0.001); p.add_argument("--threads", type=int, default=0)
p.add_argument("--layers", default=None); p.add_argument("--train-limit", type=int, default=0)
p.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"], help="sgd (momentum 0.9) or adam (foreach=True)")
a = p.parse_args()
if a.threads:
    torch.set_num_threads(a.threads)


def load(files):
    raw = b"".join(open(os.path.join(a.bin_dir, f), "rb").read() for f in files)
    t = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(-1, 3073)
    return t[:, 1:].reshape(-1, 3, 32, 32).clone(), t[:, 0].long().clone()


xtr, ytr = load([f"data_batch_{i}.bin" for i in range(1, 6)])
if a.train_limit:
    xtr, ytr = xtr[:a.train_limit].clone(), ytr[:a.train_limit].clone()
xte, yte = load(["test_batch.bin"])


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5); self.pool = nn.MaxPool2d(2, 2); self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120); self.fc2 = nn.Linear(120, 84); self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x))); x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1); x = F.relu(self.fc1(x)); x = F.relu(self.fc2(x)); return self.fc3(x)


torch.manual_seed(0)
if a.layers:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from torch_layers import build
    net = build(json.loads(a.layers), torch.zeros(2, 3, 32, 32))
elif a.model == "cnn":
    net = Net()
elif a.model == "mlp":
    net = nn.Sequential(nn.Flatten(), nn.Linear(3072, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
else:
    net = nn.Sequential(nn.Flatten(), nn.Linear(3072, 10))
opt = (torch.optim.SGD(net.parameters(), lr=a.lr, momentum=0.9) if a.optimizer == "sgd"
       else torch.optim.Adam(net.parameters(), lr=a.lr, foreach=True))
crit = nn.CrossEntropyLoss()
norm = lambda x: x.float().mul_(2 / 255).sub_(1)
for epoch in range(a.epochs):
    t0 = time.time(); net.train()
    perm = torch.randperm(len(ytr)); loss_sum = torch.zeros((), dtype=torch.float64); correct = torch.zeros((), dtype=torch.long)
    for i in range(0, len(ytr), a.batch_size):
        idx = perm[i:i + a.batch_size]; x = norm(xtr[idx]); y = ytr[idx]
        opt.zero_grad(); out = net(x); loss = crit(out, y); loss.backward(); opt.step()
        with torch.no_grad():
            loss_sum += loss * len(y); correct += (out.argmax(1) == y).sum()
    train_s = time.time() - t0
    net.eval(); tc = 0
    with torch.no_grad():
        for i in range(0, len(yte), 1000):
            tc += (net(norm(xte[i:i + 1000])).argmax(1) == yte[i:i + 1000]).sum().item()
    print(json.dumps({"epoch": epoch + 1, "train_loss": loss_sum.item() / len(ytr), "train_acc": correct.item() / len(ytr),
                      "test_acc": tc / len(yte), "train_seconds": round(train_s, 2), "epoch_seconds": round(time.time() - t0, 2)}), flush=True)
