"""test_models.py — every example against PyTorch, and checkpoints both ways.

1. Every example (AlexNet at batch 2): loss, every gradient, the input
   gradient and the parameters after 3 optimizer steps against irtorch's
   PyTorch evaluation; built with -fsanitize=address,undefined when
   $CFLAGS asks for it (run.sh does).
2. Every example compiled with --inference-only: its forward pass against
   PyTorch.
3. Checkpoint interchange with torch.nn modules written here by hand
   (LeNet-5, the MLP, the CNN): a state_dict saved as safetensors loads into
   the generated code and gives PyTorch's outputs; a checkpoint saved by
   the generated code loads into the module by name (strict) and gives the
   generated code's outputs.
4. Damaged checkpoints (truncated, corrupt header, a wrong shape, a missing
   tensor, a wrong dtype, another model's) are rejected with a message
   naming the file, and leave the model untouched.
Usage: test_models.py [EXAMPLE ...]
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import parity  # noqa: E402
from parity import st  # noqa: E402

EXAMPLES = os.path.join(parity.ROOT, "examples")
results = []


def record(label, failures):
    results.append((label, failures))
    print(("FAIL " if failures else "ok   ") + label)
    for f in failures:
        print("     " + f)


class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, 5, padding=2)
        self.c3 = nn.Conv2d(6, 16, 5)
        self.f5, self.f6, self.out = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        x = nn.functional.avg_pool2d(torch.tanh(self.c1(x)), 2)
        x = nn.functional.avg_pool2d(torch.tanh(self.c3(x)), 2).flatten(1)
        return self.out(torch.tanh(self.f6(torch.tanh(self.f5(x)))))


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.h1, self.h2, self.out = nn.Linear(784, 256), nn.Linear(256, 128), nn.Linear(128, 10)

    def forward(self, x):
        return self.out(torch.relu(self.h2(torch.relu(self.h1(x.flatten(1))))))


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 16, 3), nn.Conv2d(16, 32, 3)
        self.out = nn.Linear(800, 10)

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2).flatten(1)
        return torch.softmax(self.out(x), dim=1)


MODULES = {"lenet5": (LeNet5, [1, 28, 28]), "mlp": (MLP, [784]), "cnn": (CNN, [1, 28, 28])}


def examples():
    return sorted(f[:-4] for f in os.listdir(EXAMPLES) if f.endswith(".lam"))


def example_text(name):
    with open(os.path.join(EXAMPLES, name + ".lam")) as f:
        return f.read()


def parity_examples(names):
    for name in names:
        big = name == "alexnet"
        res = parity.check_model(example_text(name), name, n=2 if big else 6, seed=3,
                                 tol=1e-3 if big else 1e-4, fd=not big)
        record("%s: PyTorch parity (%d checks)" % (name, res.checks), res.failures)


def inference_only(names):
    for name in names:
        if name == "alexnet":
            continue
        with tempfile.TemporaryDirectory() as tmp:
            exe, ir = parity.build(example_text(name), tmp, extra_flags=("--inference-only",))
            gen = torch.Generator().manual_seed(5)
            n = min(5, ir.batch)
            params, x, _ = parity.draw_inputs(ir, n, gen)
            tensors = {k: v.numpy() for k, v in params.items()}
            tensors["x"] = x.reshape(n, -1).numpy()
            inp, out = os.path.join(tmp, "in.st"), os.path.join(tmp, "out.st")
            st.save(inp, tensors)
            r = subprocess.run([exe, "forward", inp, out, str(n)], capture_output=True, text=True)
            fails = []
            if r.returncode != 0:
                fails.append("harness: " + r.stderr)
            else:
                with torch.no_grad():
                    y, _ = ir.run(params, x, None, training=False)
                err = parity.rel_err(st.load(out)["output"], y.numpy())
                if err > 1e-4:
                    fails.append("output: relative error %.3g" % err)
            record("%s --inference-only: forward pass against PyTorch" % name, fails)


def run_harness(exe, args):
    return subprocess.run([exe, *args], capture_output=True, text=True)


def interchange(name):
    cls, shape = MODULES[name]
    torch.manual_seed(11)
    module = cls().eval()
    n = 4
    x = torch.rand([n] + shape)
    fails = []
    with tempfile.TemporaryDirectory() as tmp:
        exe, ir = parity.build(example_text(name), tmp)
        # PyTorch -> C: the module's state_dict as safetensors.
        sd = {k: v.detach().numpy() for k, v in module.state_dict().items()}
        inp, out = os.path.join(tmp, "in.st"), os.path.join(tmp, "out.st")
        labels = torch.randint(0, 10, (n,)).float()
        st.save(inp, dict(sd, x=x.reshape(n, -1).numpy(), target=labels.reshape(n, 1).numpy()))
        r = run_harness(exe, ["check", inp, out, str(n), "3", "0"])
        if r.returncode != 0:
            record("%s: checkpoint interchange" % name, ["harness: " + r.stderr])
            return
        with torch.no_grad():
            want = module(x).numpy()
        err = parity.rel_err(st.load(out)["output"], want)
        if err > 1e-4:
            fails.append("PyTorch state_dict -> C: outputs differ, relative error %.3g" % err)

        # C -> PyTorch: the checkpoint saved after 3 steps, into a new module.
        ckpt = out + ".ckpt"
        saved = st.load(ckpt)
        params = {k: torch.tensor(v) for k, v in saved.items() if k in sd}
        other = [k for k in saved if k not in sd]
        if any(not k.endswith((".momentum_buffer", ".exp_avg", ".exp_avg_sq")) for k in other):
            fails.append("checkpoint has unexpected tensors: %s" % other)
        fresh = cls().eval()
        fresh.load_state_dict(params, strict=True)
        st.save(os.path.join(tmp, "in2.st"), dict(saved, x=x.reshape(n, -1).numpy()))
        r = run_harness(exe, ["forward", os.path.join(tmp, "in2.st"), os.path.join(tmp, "o2.st"), str(n)])
        if r.returncode != 0:
            fails.append("harness forward: " + r.stderr)
        else:
            with torch.no_grad():
                want = fresh(x).numpy()
            err = parity.rel_err(st.load(os.path.join(tmp, "o2.st"))["output"], want)
            if err > 1e-4:
                fails.append("C checkpoint -> torch.nn: outputs differ, relative error %.3g" % err)
        record("%s: checkpoints between PyTorch and C, both ways" % name, fails)
        damaged(name, exe, ckpt, inp, tmp)


def damaged(name, exe, ckpt, good_in, tmp):
    with open(ckpt, "rb") as f:
        raw = f.read()
    hlen = int.from_bytes(raw[:8], "little")
    tensors = st.load(ckpt)
    first = next(k for k in tensors if k.endswith(".weight"))
    cases = {
        "truncated": raw[: len(raw) // 2],
        "corrupt header": raw[:8] + raw[8:8 + hlen].replace(b'"shape"', b'"shap\x00"') + raw[8 + hlen:],
        "header longer than the file": (len(raw) * 2).to_bytes(8, "little") + raw[8:],
        "empty file": b"",
    }
    wrong = dict(tensors)
    wrong[first] = np.zeros(np.asarray(tensors[first].shape) + 1, dtype=np.float32)
    missing = {k: v for k, v in tensors.items() if k != first}
    paths = {}
    for label, data in cases.items():
        paths[label] = os.path.join(tmp, label.replace(" ", "_") + ".st")
        with open(paths[label], "wb") as f:
            f.write(data)
    paths["a wrong shape"] = os.path.join(tmp, "wrong_shape.st")
    st.save(paths["a wrong shape"], wrong)
    paths["a missing tensor"] = os.path.join(tmp, "missing.st")
    st.save(paths["a missing tensor"], missing)
    # A wrong dtype: the same file with F16 claimed for the first tensor.
    f16 = raw[:8] + raw[8:8 + hlen].replace(b'"F32"', b'"F16"', 1) + raw[8 + hlen:]
    paths["a wrong dtype"] = os.path.join(tmp, "f16.st")
    with open(paths["a wrong dtype"], "wb") as f:
        f.write(f16)
    other = "mlp" if name != "mlp" else "lenet5"
    paths["another model's checkpoint"] = os.path.join(tmp, "other.st")
    osd = {k: v.detach().numpy() for k, v in MODULES[other][0]().state_dict().items()}
    st.save(paths["another model's checkpoint"], osd)
    for label, path in paths.items():
        r = run_harness(exe, ["load", path, good_in])
        fails = []
        if r.returncode != 3:
            fails.append("exit %d, not 3 (rejected, model untouched): %s" % (r.returncode, r.stdout.strip()))
        elif os.path.basename(path) not in r.stdout:
            fails.append("the message does not name the file: " + r.stdout.strip())
        record("%s: a checkpoint with %s is rejected, model unchanged" % (name, label), fails)


def main():
    names = sys.argv[1:] or examples()
    parity_examples(names)
    inference_only(names)
    for name in names:
        if name in MODULES:
            interchange(name)
    failed = sum(1 for _, f in results if f)
    print("models: %d passed, %d failed" % (len(results) - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
