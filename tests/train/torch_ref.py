#!/usr/bin/python3
"""torch_ref.py — the PyTorch reference for tests/train/long.sh.

Trains the same network as examples/NAME.lam on Fashion-MNIST with the
recipe of its train block, which long.sh reads from laminac and passes on:
SGD (learning rate, momentum, Nesterov, weight decay), batch size, the
initialiser family (lamina's "default" is PyTorch's default; the others
draw weights as torch.nn.init does and set biases to zero, as lamina
does), input scaling x = byte * scale + shift, and a new shuffle every
epoch. The random numbers and so the data order are PyTorch's own: only
the recipe is the same. Writes a metrics CSV in the lamina program's
format: epoch,train_loss,test_loss,test_accuracy,seconds.

usage: torch_ref.py mlp|lenet5|cnn OUT.csv [--epochs N] [--threads N] [--seed N]
           [--lr X] [--momentum X] [--nesterov] [--weight-decay X] [--batch N]
           [--init NAME] [--scale X] [--shift X] [--data DIR]
"""
import argparse
import gzip
import time

import numpy as np
import torch
from torch import nn


def images(path, scale, shift):
    raw = gzip.open(path).read()
    x = np.frombuffer(raw[16:], dtype=np.uint8).reshape(-1, 1, 28, 28).astype(np.float32)
    return torch.from_numpy(x * np.float32(scale) + np.float32(shift))


def labels(path):
    raw = gzip.open(path).read()
    return torch.from_numpy(np.frombuffer(raw[8:], dtype=np.uint8).astype(np.int64))


def network(name):
    if name == "mlp":  # examples/mlp.lam
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128),
                             nn.ReLU(), nn.Linear(128, 10))
    if name == "lenet5":  # examples/lenet5.lam
        return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2),
                             nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(),
                             nn.Linear(400, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh(),
                             nn.Linear(84, 10))
    if name == "cnn":  # examples/cnn.lam: the softmax is in the loss
        return nn.Sequential(nn.Conv2d(1, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(16, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(800, 10))
    raise SystemExit("torch_ref.py: unknown model '%s'" % name)


def initialise(model, init):
    """lamina's init families: weights as torch.nn.init draws them, biases 0."""
    if init == "default":
        return
    draw = {"xavier_uniform": nn.init.xavier_uniform_, "xavier_normal": nn.init.xavier_normal_,
            "he_uniform": lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu"),
            "he_normal": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
            "zeros": nn.init.zeros_}[init]
    for layer in model.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            draw(layer.weight)
            nn.init.zeros_(layer.bias)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("out")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--nesterov", action="store_true")
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--init", default="default")
    ap.add_argument("--scale", type=float, default=1 / 255)
    ap.add_argument("--shift", type=float, default=0.0)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    a = ap.parse_args()
    name, epochs, out, data, bs = a.name, a.epochs, a.out, a.data, a.batch
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    xtr = images(data + "/train-images-idx3-ubyte.gz", a.scale, a.shift)
    xte = images(data + "/t10k-images-idx3-ubyte.gz", a.scale, a.shift)
    ytr, yte = labels(data + "/train-labels-idx1-ubyte.gz"), labels(data + "/t10k-labels-idx1-ubyte.gz")
    model = network(name)
    initialise(model, a.init)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum, nesterov=a.nesterov,
                          weight_decay=a.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    with open(out, "w") as f:
        f.write("epoch,train_loss,test_loss,test_accuracy,seconds\n")
        for epoch in range(1, epochs + 1):
            begin = time.time()
            model.train()
            order = torch.randperm(len(xtr))
            total = 0.0
            for i in range(0, len(xtr), bs):
                idx = order[i:i + bs]
                opt.zero_grad()
                loss = loss_fn(model(xtr[idx]), ytr[idx])
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            model.eval()
            with torch.no_grad():
                z = torch.cat([model(xte[i:i + 1000]) for i in range(0, len(xte), 1000)])
                test_loss = loss_fn(z, yte).item()
                acc = (z.argmax(1) == yte).float().mean().item()
            seconds = time.time() - begin
            f.write("%d,%.6f,%.6f,%.6f,%.3f\n" % (epoch, total / len(xtr), test_loss, acc, seconds))
            f.flush()
            print("torch %s epoch %d/%d loss %.4f test loss %.4f accuracy %.2f%% %.1f s"
                  % (name, epoch, epochs, total / len(xtr), test_loss, 100 * acc, seconds), flush=True)


if __name__ == "__main__":
    main()
