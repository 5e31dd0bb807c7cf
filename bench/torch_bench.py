#!/usr/bin/python3
"""torch_bench.py — PyTorch's half of `make bench`: the bench models built
with torch.nn, timed the way bench/bench.c times lamina's generated code.

    torch_bench.py --model lenet5 --threads 2 --config omp2_blas1 \\
        --measure train,latency,throughput --seconds 2 --warmup 0.5 [--batch 64]

Prints one line of JSON per measurement, with the same fields as
bench.c's (impl, model, measure, threads, batch, value, unit, rep, phase)
plus the thread settings used ("config", "settings").

The models are those of examples/*.lam: mlp 784-256-128-10 (relu),
lenet5 (tanh, avgpool, C1 padded by 2), cnn (the Keras-style CNN; its
forward pass ends in softmax, its training loss takes the logits, as
lamina's does) and alexnet (one tower, 227x227x3, forward only). Training:
SGD(lr=0.01, momentum=0.9), cross-entropy, zero_grad(set_to_none=True).
Inference: model.eval() under torch.inference_mode().

Data: synthetic and identical to bench.c's: input value i of the batch is
the top 24 bits of the low 32 bits of i * 2654435761, over 2^24; the label
of sample s is (7 s + 3) mod 10.

Thread settings ("configs"). Environment variables are set here, before
torch is imported (libgomp and OpenBLAS read them when they load):
    t1                  1 thread: OMP_NUM_THREADS=1, OPENBLAS_NUM_THREADS=1,
                        MKL_NUM_THREADS=1, torch.set_num_threads(1)
    omp2_blas1          intra-op OpenMP 2 threads, OpenBLAS 1 thread
    omp2_blas2_passive  both 2 threads, OMP_WAIT_POLICY=PASSIVE (OpenMP's
                        idle threads sleep instead of spinning)
    omp1_blas2          intra-op 1 thread, OpenBLAS 2 threads
    omp2_blas2          both 2 threads with default (spinning) OpenMP: what
                        torch.set_num_threads(2) alone gives on this machine
PyTorch 1.13 alone would run 1 thread here (it takes the 2 vCPUs for
hyper-threads); bench/run.sh tries the 2-thread configs and keeps the
fastest for each measurement.
"""
import argparse
import json
import os
import sys
import time

CONFIGS = {
    "t1": {"omp": 1, "blas": 1, "intra": 1, "wait": None},
    "omp2_blas1": {"omp": 2, "blas": 1, "intra": 2, "wait": None},
    "omp2_blas2_passive": {"omp": 2, "blas": 2, "intra": 2, "wait": "PASSIVE"},
    "omp1_blas2": {"omp": 1, "blas": 2, "intra": 1, "wait": None},
    "omp2_blas2": {"omp": 2, "blas": 2, "intra": 2, "wait": None},
}
MODELS = ("mlp", "lenet5", "cnn", "alexnet")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, choices=MODELS)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--config", default=None, choices=sorted(CONFIGS),
                   help="thread settings (default: t1 for 1 thread)")
    p.add_argument("--measure", default="train,latency,throughput",
                   help="comma-separated: train, latency, throughput")
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--batch", type=int, default=64,
                   help="batch of train and throughput (latency is batch 1)")
    return p.parse_args()


args = parse_args()
config = args.config or ("t1" if args.threads == 1 else "omp2_blas1")
cfg = CONFIGS[config]
# Before importing torch: these are read when libgomp and OpenBLAS load.
os.environ["OMP_NUM_THREADS"] = str(cfg["omp"])
os.environ["OPENBLAS_NUM_THREADS"] = str(cfg["blas"])
os.environ["MKL_NUM_THREADS"] = str(cfg["omp"])
if cfg["wait"]:
    os.environ["OMP_WAIT_POLICY"] = cfg["wait"]
else:
    os.environ.pop("OMP_WAIT_POLICY", None)

# glibc's malloc hands a freed block of more than its thresholds back to
# the kernel (munmap, or trimming the heap's top) and takes fresh pages,
# zeroed on first touch, at the next step: PyTorch allocates its
# activations and gradients anew every step, and that churn measured as
# 20-50% of a training step here, varying from run to run (the CNN:
# 6,200-8,700 samples/s; kept, 10,000-11,000). PyTorch's tuning guides
# swap in another allocator; this keeps glibc's and stops the churn: no
# mmap below 32 MB (glibc's largest allowed threshold), no trimming.
import ctypes  # noqa: E402

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
_libc = ctypes.CDLL("libc.so.6")
MALLOC_KEPT = (_libc.mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 and
               _libc.mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(cfg["intra"])
try:
    torch.set_num_interop_threads(1)
except RuntimeError:
    pass
torch.manual_seed(42)


def build(name):
    """The model as examples/NAME.lam describes it; returns (net, input
    shape of one sample, softmax at the end of inference)."""
    if name == "mlp":
        net = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                            nn.Linear(128, 10))
        return net, (784,), False
    if name == "lenet5":
        net = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2),
            nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(),
            nn.Linear(400, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, 10))
        return net, (1, 28, 28), False
    if name == "cnn":
        net = nn.Sequential(
            nn.Conv2d(1, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(800, 10))
        return net, (1, 28, 28), True
    if name == "alexnet":
        net = nn.Sequential(
            nn.Conv2d(3, 96, 11, stride=4), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(96, 256, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2), nn.Flatten(),
            nn.Dropout(0.5), nn.Linear(9216, 4096), nn.ReLU(),
            nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1000))
        return net, (3, 227, 227), False
    raise ValueError(name)


def data(n, shape):
    count = n * int(np.prod(shape))
    h = (np.arange(count, dtype=np.uint64) * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)
    x = (h >> np.uint64(8)).astype(np.float32) * np.float32(1.0 / 16777216.0)
    y = (np.arange(n, dtype=np.int64) * 7 + 3) % 10
    return torch.from_numpy(x.reshape((n,) + shape)), torch.from_numpy(y)


def timed(fn, seconds, warmup, per_call):
    """Warm-up for `warmup` s (at least 3 calls), then calls for `seconds`
    (at least 3). Returns (calls, elapsed, per-call durations or None)."""
    t0 = time.perf_counter()
    i = 0
    while i < 3 or time.perf_counter() - t0 < warmup:
        fn()
        i += 1
    times = [] if per_call else None
    calls = 0
    start = now = time.perf_counter()
    while True:
        before = now
        fn()
        now = time.perf_counter()
        if per_call:
            times.append(now - before)
        calls += 1
        if calls >= 3 and now - start >= seconds:
            break
    return calls, now - start, times


def g6(x):
    """x to 6 significant digits, as bench.c prints it."""
    return float("%.6g" % x)


def emit(measure, batch, value, unit, **extra):
    line = {"impl": "pytorch", "model": args.model, "measure": measure,
            "threads": args.threads, "batch": batch}
    if os.environ.get("BENCH_REP"):
        line["rep"] = int(os.environ["BENCH_REP"])
    if os.environ.get("BENCH_PHASE"):
        line["phase"] = os.environ["BENCH_PHASE"]
    line.update({"value": g6(value), "unit": unit, "config": config, "settings": settings})
    line.update(extra)
    print(json.dumps(line), flush=True)


settings = ("torch %s: set_num_threads(%d), OMP_NUM_THREADS=%d, OPENBLAS_NUM_THREADS=%d%s%s"
            % (torch.__version__, cfg["intra"], cfg["omp"], cfg["blas"],
               ", OMP_WAIT_POLICY=" + cfg["wait"] if cfg["wait"] else "",
               ", mallopt(M_MMAP_THRESHOLD=32 MB, M_TRIM_THRESHOLD=1 GB)" if MALLOC_KEPT
               else ", glibc malloc defaults (mallopt failed)"))


def bench_train(net, shape):
    n = args.batch
    x, y = data(n, shape)
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    last = [None]

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        last[0] = loss

    step()
    first = float(last[0])
    calls, elapsed, _ = timed(step, args.seconds, args.warmup, False)
    emit("train", n, calls * n / elapsed, "samples/s", steps=calls, seconds=round(elapsed, 4),
         first_loss=first, last_loss=float(last[0]))


def bench_forward(net, shape, softmax, latency):
    n = 1 if latency else args.batch
    x, _ = data(n, shape)
    net.eval()
    out = [None]

    def fwd():
        with torch.inference_mode():
            z = net(x)
            out[0] = torch.softmax(z, dim=1) if softmax else z

    calls, elapsed, times = timed(fwd, args.seconds, args.warmup, latency)
    check = float(out[0].sum())
    if latency:
        times.sort()
        k = len(times)
        med = times[k // 2] if k % 2 else 0.5 * (times[k // 2 - 1] + times[k // 2])
        emit("latency", 1, med * 1e6, "us", min_us=g6(times[0] * 1e6),
             p90_us=g6(times[int(0.9 * (k - 1))] * 1e6), mean_us=g6(elapsed / calls * 1e6),
             calls=calls, seconds=round(elapsed, 4), output_sum=check)
    else:
        emit("throughput", n, calls * n / elapsed, "samples/s", calls=calls,
             seconds=round(elapsed, 4), output_sum=check)


def main():
    net, shape, softmax = build(args.model)
    for m in args.measure.split(","):
        if m == "train":
            bench_train(net, shape)
        elif m == "latency":
            bench_forward(net, shape, softmax, True)
        elif m == "throughput":
            bench_forward(net, shape, softmax, False)
        else:
            print("torch_bench.py: unknown measure %r" % m, file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
