"""irtorch.py — the reference: lamina's IR text, run by PyTorch.

Reads `laminac --emit=ir` and evaluates each node with the PyTorch
operation of the same meaning (torch.nn.functional), so that generated C
can be compared with PyTorch on any model and any random configuration.
Nothing here comes from lamina's C: only the IR's names, shapes and
attributes, and PyTorch's own kernels, losses and optimizers.

Dropout is the one op whose randomness must match: its mask is drawn with
the same counter-based generator (Philox4x32-10, ported below) that the
generated code documents in its comments.
"""
import re

import numpy as np
import torch
import torch.nn.functional as F

# ---- Philox4x32-10, as runtime/rng.c documents it ---------------------------

M0, M1, W0, W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85
MASK32 = np.uint64(0xFFFFFFFF)


def philox_uniform(seed, stream, counters):
    """lm_rand_uniform(seed, stream, counter) for an array of counters."""
    c = np.asarray(counters, dtype=np.uint64)
    c0, c1 = c & MASK32, c >> np.uint64(32)
    c2 = np.full_like(c0, np.uint64(stream) & MASK32)
    c3 = np.full_like(c0, np.uint64(stream) >> np.uint64(32))
    k0, k1 = np.uint64(seed) & MASK32, np.uint64(seed) >> np.uint64(32)
    for _ in range(10):
        p0 = np.uint64(M0) * c0
        p1 = np.uint64(M1) * c2
        hi0, lo0 = p0 >> np.uint64(32), p0 & MASK32
        hi1, lo1 = p1 >> np.uint64(32), p1 & MASK32
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = (k0 + np.uint64(W0)) & MASK32
        k1 = (k1 + np.uint64(W1)) & MASK32
    u64 = (c0 << np.uint64(32)) | c1
    return (u64 >> np.uint64(40)).astype(np.float64) * 2.0 ** -24


# ---- the IR ----------------------------------------------------------------

LINE = re.compile(r"^%(?P<out>\S+) = (?P<op>\w+)\((?P<args>[^)]*)\)(?P<attrs>.*?) : (?P<type>\S+)  #")
DECL = re.compile(r"^(?P<kind>input|target|param)\s+[%@](?P<name>\S+) : (?P<dt>[fi]32)\[(?P<shape>[^\]]*)\]")


class Node:
    def __init__(self, nid, out, op, args, attrs):
        self.id, self.out, self.op, self.args, self.attrs = nid, out, op, args, attrs


class IR:
    """The forward part of `laminac --emit=ir` output."""

    def __init__(self, text):
        self.params, self.nodes, self.train = {}, [], {}
        self.input = self.target = self.output = self.loss = None
        self.batch = int(re.search(r"batch (\d+)", text).group(1))
        m = re.search(r"; train: (\w+)\(([^)]*)\)", text)
        self.train["opt"] = m.group(1)
        for kv in m.group(2).split(", "):
            k, v = kv.split("=")
            self.train[k] = v == "true" if v in ("true", "false") else float(v)
        self.train["seed"] = int(re.search(r"seed=(\d+)", text).group(1))
        for line in text.splitlines():
            d = DECL.match(line)
            if d:
                shape = [int(s) for s in d.group("shape").split(",") if s]
                if d.group("kind") == "param":
                    self.params[d.group("name")] = shape
                elif d.group("kind") == "input":
                    self.input = (d.group("name"), shape)
                else:
                    self.target = (d.group("name"), shape, d.group("dt"))
                continue
            n = LINE.match(line)
            if n:
                args = [a.strip()[1:] for a in n.group("args").split(",") if a.strip()]
                attrs = {}
                for k, v in re.findall(r"(\w+)=(\[[^\]]*\]|\S+)", n.group("attrs")):
                    attrs[k] = [int(s) for s in v[1:-1].split(",")] if v.startswith("[") else v
                self.nodes.append(Node(len(self.nodes), n.group("out"), n.group("op"), args, attrs))
            elif line.startswith("output "):
                self.output = line.split("%")[1].strip()
            elif line.startswith("loss "):
                self.loss = line.split("%")[1].strip()
        for nd in self.nodes:  # loss mse(target=x): the target is the input
            if nd.out == self.loss and self.target is None and nd.args[1] == self.input[0]:
                self.target = (self.input[0], self.input[1], "f32")

    def run(self, params, x, target, training, step=0, seed=None):
        """Evaluates the graph; returns (output, loss or None). params: name -> tensor."""
        env = {self.input[0]: x}
        if self.target is not None and target is not None and self.target[0] != self.input[0]:
            env[self.target[0]] = target
        seed = self.train["seed"] if seed is None else seed
        loss = None
        for nd in self.nodes:
            a = [params[s] if s in params else env.get(s) for s in nd.args]
            op, at = nd.op, nd.attrs
            if nd.out == self.loss:  # the target as given, even when it is the input
                a[1] = target
            if op == "dense":
                y = F.linear(a[0], a[1], a[2])
            elif op == "conv2d":
                y = F.conv2d(a[0], a[1], a[2], stride=at["stride"], padding=at["pad"])
            elif op == "maxpool":
                y = F.max_pool2d(a[0], at["kernel"], at["stride"], at["pad"])
            elif op == "avgpool":
                y = F.avg_pool2d(a[0], at["kernel"], at["stride"], at["pad"])
            elif op == "flatten":
                y = a[0].flatten(1)
            elif op == "dropout":
                p = float(at["p"])
                if training and p > 0:
                    n, k = a[0].shape[0], a[0][0].numel()
                    s = np.arange(n, dtype=np.uint64)[:, None]
                    kk = np.arange(k, dtype=np.uint64)[None, :]
                    ctr = (np.uint64(step) * np.uint64(self.batch) + s) * np.uint64(k) + kk
                    keep = philox_uniform(seed, (1 << 31) + nd.id, ctr) >= np.float32(p)
                    mask = torch.tensor(keep.reshape(a[0].shape), dtype=a[0].dtype)
                    y = a[0] * mask * np.float32(1.0 / (1.0 - p))
                else:
                    y = a[0]
            elif op == "step":
                y = (a[0] > 0).to(a[0].dtype)
            elif op == "sigmoid":
                y = torch.sigmoid(a[0])
            elif op == "tanh":
                y = torch.tanh(a[0])
            elif op == "relu":
                y = torch.relu(a[0])
            elif op == "leaky_relu":
                y = F.leaky_relu(a[0], float(at["alpha"]))
            elif op == "elu":
                y = F.elu(a[0], float(at["alpha"]))
            elif op == "softmax":
                y = torch.softmax(a[0], dim=1)
            elif op == "softmax_cross_entropy":
                y = F.cross_entropy(a[0], a[1].long()) if a[1] is not None else None
            elif op == "sigmoid_bce":
                y = F.binary_cross_entropy_with_logits(a[0], a[1]) if a[1] is not None else None
            elif op == "mse":
                y = F.mse_loss(a[0], a[1]) if a[1] is not None else None
            elif op == "perceptron":
                if a[1] is not None:
                    sign = (2 * a[1].to(a[0].dtype) - 1).reshape(-1, 1)
                    y = torch.relu(-sign * a[0]).mean()
                else:
                    y = None
            else:
                raise ValueError("irtorch: unknown op " + op)
            env[nd.out] = y
            if nd.out == self.loss:
                loss = y
        return env[self.output], loss

    def optimizer(self, params):
        t = self.train
        if t["opt"] == "sgd":
            return torch.optim.SGD(params, lr=t["lr"], momentum=t["momentum"],
                                   nesterov=t["nesterov"], weight_decay=t["weight_decay"])
        return torch.optim.Adam(params, lr=t["lr"], betas=(t["beta1"], t["beta2"]),
                                eps=t["eps"], weight_decay=t["weight_decay"])
