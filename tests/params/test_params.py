"""test_params.py — every example's parameters and shapes against PyTorch.

For each examples/X.lam (and tests/ir/all_ops.lam) this file builds the same network with torch.nn,
written out here by hand from the architecture (LeNet-5 is Conv2d(1, 6, 5,
padding=2), AvgPool2d(2), ...; AlexNet is 96@11x11/4, ...), not from
anything laminac prints. Modules are named as lamina names its layers, so
torch's own named_parameters() gives the names the IR must use. It then
checks, against `laminac --summary` and `laminac --emit=ir`:
  total     the total parameter count;
  layers    each layer's output shape (per sample) and parameter count,
            from a forward pass of one sample through the torch twin;
  params    each parameter tensor's name and shape ([out, in, kh, kw] for
            conv2d, [out, in] for dense, as PyTorch lays them out).
Run with Debian's python3-torch: /usr/bin/python3 tests/params/test_params.py
(from the repository root; LAMINAC=path overrides ./laminac).
"""
import collections
import os
import re
import subprocess
import sys

import torch
from torch import nn


class Step(nn.Module):
    """Rosenblatt's threshold unit: 1 where x > 0, else 0."""

    def forward(self, x):
        return (x > 0).to(x.dtype)


# One entry per layer, as lamina reports layers: (name, kind, modules).
# Modules that hold parameters are named after the layer, so that their
# parameters are "<layer>.weight" and "<layer>.bias".
def lenet5():
    return [1, 28, 28], [
        ("x", "input", []),
        ("c1", "conv2d+tanh", [nn.Conv2d(1, 6, 5, padding=2), nn.Tanh()]),
        ("s2", "avgpool", [nn.AvgPool2d(2)]),
        ("c3", "conv2d+tanh", [nn.Conv2d(6, 16, 5), nn.Tanh()]),
        ("s4", "avgpool", [nn.AvgPool2d(2)]),
        ("flatten_1", "flatten", [nn.Flatten()]),
        ("f5", "dense+tanh", [nn.Linear(400, 120), nn.Tanh()]),
        ("f6", "dense+tanh", [nn.Linear(120, 84), nn.Tanh()]),
        ("out", "dense", [nn.Linear(84, 10)]),
        ("loss", "softmax_cross_entropy", "loss"),
    ]


def alexnet():
    return [3, 227, 227], [
        ("x", "input", []),
        ("conv1", "conv2d+relu", [nn.Conv2d(3, 96, 11, stride=4), nn.ReLU()]),
        ("pool1", "maxpool", [nn.MaxPool2d(3, stride=2)]),
        ("conv2", "conv2d+relu", [nn.Conv2d(96, 256, 5, padding=2), nn.ReLU()]),
        ("pool2", "maxpool", [nn.MaxPool2d(3, stride=2)]),
        ("conv3", "conv2d+relu", [nn.Conv2d(256, 384, 3, padding=1), nn.ReLU()]),
        ("conv4", "conv2d+relu", [nn.Conv2d(384, 384, 3, padding=1), nn.ReLU()]),
        ("conv5", "conv2d+relu", [nn.Conv2d(384, 256, 3, padding=1), nn.ReLU()]),
        ("pool5", "maxpool", [nn.MaxPool2d(3, stride=2)]),
        ("flatten_1", "flatten", [nn.Flatten()]),
        ("drop6", "dropout", [nn.Dropout(0.5)]),
        ("fc6", "dense+relu", [nn.Linear(256 * 6 * 6, 4096), nn.ReLU()]),
        ("drop7", "dropout", [nn.Dropout(0.5)]),
        ("fc7", "dense+relu", [nn.Linear(4096, 4096), nn.ReLU()]),
        ("fc8", "dense", [nn.Linear(4096, 1000)]),
        ("loss", "softmax_cross_entropy", "loss"),
    ]


def cnn():
    return [1, 28, 28], [
        ("x", "input", []),
        ("conv1", "conv2d+relu", [nn.Conv2d(1, 16, 3), nn.ReLU()]),
        ("pool1", "maxpool", [nn.MaxPool2d(2)]),
        ("conv2", "conv2d+relu", [nn.Conv2d(16, 32, 3), nn.ReLU()]),
        ("pool2", "maxpool", [nn.MaxPool2d(2)]),
        ("flatten_1", "flatten", [nn.Flatten()]),
        ("out", "dense+softmax", [nn.Linear(32 * 5 * 5, 10), nn.Softmax(dim=1)]),
        ("loss", "softmax_cross_entropy", "loss"),
    ]


def mlp():
    return [784], [
        ("x", "input", []),
        ("h1", "dense+relu", [nn.Linear(784, 256), nn.ReLU()]),
        ("h2", "dense+relu", [nn.Linear(256, 128), nn.ReLU()]),
        ("out", "dense", [nn.Linear(128, 10)]),
        ("loss", "softmax_cross_entropy", "loss"),
    ]


def autoencoder():
    return [784], [
        ("x", "input", []),
        ("enc1", "dense+relu", [nn.Linear(784, 128), nn.ReLU()]),
        ("code", "dense+relu", [nn.Linear(128, 32), nn.ReLU()]),
        ("dec1", "dense+relu", [nn.Linear(32, 128), nn.ReLU()]),
        ("recon", "dense+sigmoid", [nn.Linear(128, 784), nn.Sigmoid()]),
        ("loss", "mse", "loss"),
    ]


def perceptron():
    return [2], [
        ("x", "input", []),
        ("unit", "dense+step", [nn.Linear(2, 1), Step()]),
        ("loss", "perceptron", "loss"),
    ]


def xor_mlp():
    return [2], [
        ("x", "input", []),
        ("hidden", "dense+sigmoid", [nn.Linear(2, 2), nn.Sigmoid()]),
        ("out", "dense+sigmoid", [nn.Linear(2, 1), nn.Sigmoid()]),
        ("loss", "sigmoid_bce", "loss"),
    ]


def all_ops():  # tests/ir/all_ops.lam: every attribute form, window sizes with padding
    return [3, 32, 32], [
        ("img", "input", []),
        ("c1", "conv2d+leaky_relu", [nn.Conv2d(3, 8, (3, 5), stride=(1, 2), padding=(1, 2)),
                                     nn.LeakyReLU(0.2)]),
        ("maxpool_1", "maxpool", [nn.MaxPool2d(2, padding=1)]),
        ("c2", "conv2d+elu+tanh", [nn.Conv2d(8, 8, 3, padding=1), nn.ELU(0.5), nn.Tanh()]),
        ("a2", "avgpool", [nn.AvgPool2d((2, 3), stride=(2, 1), padding=(1, 0))]),
        ("c3", "conv2d+sigmoid", [nn.Conv2d(8, 4, 1), nn.Sigmoid()]),
        ("flatten_1", "flatten", [nn.Flatten()]),
        ("dropout_1", "dropout", [nn.Dropout(0.25)]),
        ("h", "dense+relu", [nn.Linear(4 * 9 * 7, 16), nn.ReLU()]),
        ("step_1", "step", [Step()]),
        ("logits", "dense+softmax", [nn.Linear(16, 5), nn.Softmax(dim=1)]),
        ("loss", "softmax_cross_entropy", "loss"),
    ]


TWINS = {
    "alexnet": alexnet, "autoencoder": autoencoder, "cnn": cnn, "lenet5": lenet5,
    "mlp": mlp, "perceptron_and": perceptron, "perceptron_or": perceptron,
    "perceptron_xor": perceptron, "xor_mlp": xor_mlp, "all_ops": all_ops,
}

# a * after the shape: the layer computes part of it (rewrite.c), the shape is as written
ROW = re.compile(r"^(\S+) \((\S+)\)\s+(\[[\d,]*\]|\?)\*?\s+([\d,]+)\s+([\d,]+)\s*$")
PARAM = re.compile(r"^param\s+@(\S+) : f32\[([\d,]*)\]")


def laminac(*args):
    exe = os.environ.get("LAMINAC", "./laminac")
    p = subprocess.run([exe] + list(args), capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError("%s %s failed:\n%s" % (exe, " ".join(args), p.stderr))
    return p.stdout


def shape_text(shape):
    return "[" + ",".join(str(d) for d in shape) + "]"


class Report:
    def __init__(self):
        self.passed = self.failed = 0

    def check(self, ok, what, detail=""):
        if ok:
            self.passed += 1
            print("ok   " + what)
        else:
            self.failed += 1
            print("FAIL " + what + (": " + detail if detail else ""))


def check_example(r, name, path):
    input_shape, layers = TWINS[name]()
    # The torch twin: a Sequential whose parameter-holding modules are
    # named after their layers (activations get "<layer>_<i>").
    modules = collections.OrderedDict()
    for lname, _, mods in layers:
        if mods == "loss":
            continue
        for i, m in enumerate(mods):
            has_params = any(True for _ in m.parameters(recurse=False))
            modules[lname if has_params else "%s_%d" % (lname, i)] = m
    twin = nn.Sequential(modules).eval()

    # Expected per-layer output shapes and parameter counts, by running
    # one sample through the twin a layer at a time.
    expect = []
    with torch.no_grad():
        x = torch.zeros([1] + input_shape)
        for lname, kind, mods in layers:
            if mods == "loss":
                expect.append((lname, kind, "[]", 0))
                continue
            for m in mods:
                x = m(x)
            n = sum(p.numel() for m in mods for p in m.parameters())
            expect.append((lname, kind, shape_text(x.shape[1:]), n))

    summary = laminac("--summary", path)
    rows = [ROW.match(line) for line in summary.splitlines()]
    got = [(m[1], m[2], m[3], int(m[4].replace(",", ""))) for m in rows if m]
    total = sum(p.numel() for p in twin.parameters())
    m = re.search(r"^Total params:\s+([\d,]+)", summary, re.M)
    got_total = int(m[1].replace(",", "")) if m else None
    r.check(got_total == total, "%s total params %d" % (name, total),
            "laminac --summary says %s" % got_total)
    r.check(len(got) == len(expect), "%s has %d layers" % (name, len(expect)),
            "laminac --summary lists %d: %s" % (len(got), [g[0] for g in got]))
    for e, g in zip(expect, got):
        r.check(e == g, "%s layer %s (%s) %s, %d params" % (name, e[0], e[1], e[2], e[3]),
                "laminac --summary: %s (%s) %s, %d params" % g)

    want = [(n, shape_text(p.shape)) for n, p in twin.named_parameters()]
    ir = laminac("--emit=ir", path)
    have = [(m[1], "[" + m[2] + "]") for m in map(PARAM.match, ir.splitlines()) if m]
    r.check(len(have) == len(want), "%s has %d parameter tensors" % (name, len(want)),
            "laminac --emit=ir declares %d" % len(have))
    for w, h in zip(want, have):
        r.check(w == h, "%s param %s %s" % (name, w[0], w[1]),
                "laminac --emit=ir: %s %s" % h)


def main():
    r = Report()
    models = [(f[:-4], os.path.join("examples", f)) for f in sorted(os.listdir("examples"))
              if f.endswith(".lam")]
    models.append(("all_ops", "tests/ir/all_ops.lam"))
    for name, path in models:
        if name not in TWINS:
            r.check(False, "%s has a torch twin in tests/params/test_params.py" % name)
            continue
        try:
            check_example(r, name, path)
        except RuntimeError as e:
            r.check(False, name, str(e))
    print("params: %d passed, %d failed" % (r.passed, r.failed))
    sys.exit(1 if r.failed else 0)


if __name__ == "__main__":
    main()
