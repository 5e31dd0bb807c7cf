#!/usr/bin/python3
"""torch_ref.py — the PyTorch reference for tests/train/long.sh.

Trains the same network as examples/NAME.lam on Fashion-MNIST with the
hyperparameters the lamina program uses: SGD lr 0.01, momentum 0.9, batch
64, PyTorch's default initialisation (which lamina's "default" init
mirrors), inputs scaled to [0, 1] (x = byte / 255), a new shuffle every
epoch. The data order is not lamina's: only the recipe is the same.
Writes a metrics CSV in the lamina program's format:
epoch,train_loss,test_loss,test_accuracy,seconds.

usage: torch_ref.py mlp|lenet5|cnn EPOCHS THREADS OUT.csv [DATA_DIR]
"""
import gzip
import sys
import time

import numpy as np
import torch
from torch import nn


def images(path):
    raw = gzip.open(path).read()
    return torch.from_numpy(np.frombuffer(raw[16:], dtype=np.uint8).reshape(-1, 1, 28, 28)
                            .astype(np.float32) / 255.0)


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


def main():
    name, epochs, threads, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    data = sys.argv[5] if len(sys.argv) > 5 else "/usr/share/datasets/fashion-mnist"
    torch.set_num_threads(threads)
    torch.manual_seed(42)
    xtr, ytr = images(data + "/train-images-idx3-ubyte.gz"), labels(data + "/train-labels-idx1-ubyte.gz")
    xte, yte = images(data + "/t10k-images-idx3-ubyte.gz"), labels(data + "/t10k-labels-idx1-ubyte.gz")
    model = network(name)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    with open(out, "w") as f:
        f.write("epoch,train_loss,test_loss,test_accuracy,seconds\n")
        for epoch in range(1, epochs + 1):
            begin = time.time()
            model.train()
            order = torch.randperm(len(xtr))
            total = 0.0
            for i in range(0, len(xtr), 64):
                idx = order[i:i + 64]
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
