"""parity.py — generated C against PyTorch, op by op and model by model.

For a model (a .lam text) it compiles the C that laminac writes together
with harness.c, gives it parameters, inputs and targets drawn here, and
compares what the C computes with irtorch.py's PyTorch evaluation of the
same IR: the eval-mode output, the loss, the input gradient, every
parameter gradient, the losses of STEPS optimizer steps and the
parameters after them (torch.optim.SGD / Adam), and finite differences of
the C's own loss. Tolerances are relative to the largest value of each
tensor and written next to each comparison.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "runtime"))
sys.path.insert(0, HERE)
import st  # noqa: E402
from irtorch import IR  # noqa: E402

LAMINAC = os.path.join(ROOT, "laminac")
CC = os.environ.get("CC", "cc")


def blas_libs():
    if os.environ.get("BLAS", "openblas") == "none":
        return []
    out = subprocess.run(["pkg-config", "--libs", "openblas"], capture_output=True, text=True)
    return out.stdout.split()


def build(lam_text, work, extra_flags=(), cflags=("-O0",)):
    """Compiles a model and the harness; returns (binary, IR). The runtime
    library is build/liblamina_rt.a, or $LAMINA_RT when set (the portable
    GEMM build, say); CFLAGS in the environment are added (sanitizers)."""
    path = os.path.join(work, "model.lam")
    with open(path, "w") as f:
        f.write(lam_text)
    # The reference runs the model as written (--no-rewrite); the C is
    # compiled with laminac's rewrites, so they are checked here too.
    ir_text = subprocess.run([LAMINAC, "--emit=ir", "--no-rewrite", path], capture_output=True, text=True)
    if ir_text.returncode != 0:
        raise RuntimeError("laminac rejected the model:\n" + ir_text.stderr + lam_text)
    ir = IR(ir_text.stdout)
    name = ir_text.stdout.split("model ")[1].split(",")[0]
    extra_flags = tuple(extra_flags) + tuple(os.environ.get("LAMINAC_FLAGS", "").split())
    r = subprocess.run([LAMINAC, *([] if grad_off(extra_flags) else ["--input-grad"]), *extra_flags,
                        path, "-o", work],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("laminac failed:\n" + r.stderr)
    exe = os.path.join(work, "harness")
    cflags = list(cflags) + os.environ.get("CFLAGS", "").split()
    grad = [] if "--inference-only" in extra_flags else ["-DINPUT_GRAD"]
    cmd = [CC, "-std=c99", *cflags, "-Wall", "-Wextra", "-Werror", "-pedantic",
           "-DMODEL=" + name, "-DMODELU=" + name.upper(), *grad,
           "-include", os.path.join(work, name + ".h"), "-I", work,
           "-I", os.path.join(ROOT, "runtime"), os.path.join(HERE, "harness.c"),
           os.path.join(work, name + ".c"), os.environ.get("LAMINA_RT", os.path.join(ROOT, "build", "liblamina_rt.a")),
           *blas_libs(), "-lz", "-lm", "-o", exe]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("cc failed:\n" + r.stderr)
    return exe, ir


def grad_off(flags):
    return "--inference-only" in flags


def draw_inputs(ir, n, gen):
    """Parameters like PyTorch's default init, an input batch and targets."""
    params = {}
    for name, shape in ir.params.items():
        wshape = ir.params[name.rsplit(".", 1)[0] + ".weight"]
        fan_in = int(np.prod(wshape[1:]))
        bound = 1.0 / np.sqrt(fan_in)
        params[name] = (torch.rand(shape, generator=gen) * 2 - 1) * bound
    xshape = [n] + ir.input[1][1:]
    x = torch.randn(xshape, generator=gen)
    target = None
    if ir.target is not None:
        tname, tshape, dt = ir.target
        loss_op = [nd for nd in ir.nodes if nd.out == ir.loss][0].op
        if dt == "i32":
            classes = 2 if loss_op == "perceptron" else ir.params_shape_of_logits(ir)
            target = torch.randint(0, classes, (n,), generator=gen).float()
        elif loss_op == "sigmoid_bce":
            target = torch.rand([n] + tshape[1:], generator=gen)
        else:
            target = torch.randn([n] + tshape[1:], generator=gen)
    return params, x, target


def logits_classes(ir):
    loss = [nd for nd in ir.nodes if nd.out == ir.loss][0]
    z = loss.args[0]
    for nd in ir.nodes:
        if nd.out == z:
            w = [a for a in nd.args if a.endswith(".weight")]
            return ir.params[w[0]][0]
    raise ValueError("no logits")


IR.params_shape_of_logits = staticmethod(logits_classes)


def rel_err(a, b):
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        return float("inf")
    scale = max(np.abs(b).max(initial=0.0), 1e-6)
    return float(np.abs(a - b).max(initial=0.0) / scale)


class Result:
    def __init__(self, label):
        self.label, self.failures, self.checks = label, [], 0

    def expect(self, what, err, tol):
        self.checks += 1
        if not err <= tol:
            self.failures.append("%s: relative error %.3g > %.3g" % (what, err, tol))


def check_model(lam_text, label, n, seed, steps=3, tol=1e-4, fd=True, work=None):
    """Runs one model through the harness and PyTorch; returns a Result."""
    res = Result(label)
    gen = torch.Generator().manual_seed(seed)
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        exe, ir = build(lam_text, tmp)
        n = min(n, ir.batch)
        params, x, target = draw_inputs(ir, n, gen)
        tensors = {k: v.numpy() for k, v in params.items()}
        tensors["x"] = x.reshape(n, -1).numpy()
        if target is not None and ir.target[0] != ir.input[0]:
            tensors["target"] = target.reshape(n, -1).numpy()
        inp, out = os.path.join(tmp, "in.st"), os.path.join(tmp, "out.st")
        st.save(inp, tensors)
        r = subprocess.run([exe, "check", inp, out, str(n), str(steps), "1" if fd else "0"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            res.failures.append("harness failed: " + r.stderr)
            return res
        c = st.load(out)

        # PyTorch at the same parameters.
        tp = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        xt = x.clone().requires_grad_(True)
        # A target that is the input is data, not a function of x: the input
        # gradient is the network's (generated code documents the same).
        tgt = x if ir.target is not None and ir.target[0] == ir.input[0] else target
        with torch.no_grad():
            y_eval, _ = ir.run(tp, x, None, training=False)
        res.expect("output", rel_err(c["output"], y_eval.numpy()), tol)
        _, loss = ir.run(tp, xt, tgt, training=True, step=0)
        loss.backward()
        res.expect("loss", rel_err(c["loss"], [loss.item()]), tol)
        gtol = 10 * tol if lam_has(lam_text, "avgpool", "maxpool") else tol
        for name, p in tp.items():
            g = p.grad if p.grad is not None else torch.zeros_like(p)
            res.expect("grad of " + name, rel_err(c["grad." + name], g.numpy()), gtol)
        if "input_grad" in c:
            gx = xt.grad if xt.grad is not None else torch.zeros_like(xt)
            res.expect("input gradient", rel_err(c["input_grad"], gx.numpy()), gtol)

        # Finite differences of the C loss (not where a step makes the loss
        # jump: there the gradient is 0 by definition and checked above).
        # A float32 loss L is known to about 1.2e-7 |L|, so a central
        # difference with step h carries noise up to ~1.2e-7 |L| / h: that
        # much is allowed on top of 5% of the largest gradient checked. Each
        # entry is checked with h = 5e-3 and h = 5e-4 and passes with either:
        # where relu, maxpool or the perceptron's hinge has a kink within h,
        # the larger step crosses it and only the smaller one sees the slope.
        if fd and "step" not in ir_ops(ir):
            fa = c["fd.analytic"]
            big = max(1.0, abs(float(c["loss"][0])))
            scale = max(np.abs(fa).max(initial=0), 1e-6)
            errs = [np.maximum(np.abs(fa - c[key]) - 1.2e-7 * big / h * 2, 0)
                    for key, h in (("fd.numeric", 5e-3), ("fd.numeric_small", 5e-4))]
            err = float(np.minimum(*errs).max(initial=0) / scale)
            res.expect("finite differences", err, 5e-2)

        # STEPS optimizer steps in PyTorch.
        tp = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        opt = ir.optimizer(list(tp.values()))
        losses = []
        for s in range(steps):
            opt.zero_grad()
            xs = x.clone().requires_grad_(False)
            tg = xs if ir.target is not None and ir.target[0] == ir.input[0] else target
            _, l = ir.run(tp, xs, tg, training=True, step=s)
            l.backward()
            for p in tp.values():  # step's derivative is 0, not "no gradient"
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            opt.step()
            losses.append(l.item())
        res.expect("losses of %d steps" % steps, rel_err(c["step_loss"], losses), 10 * tol)
        for name, p in tp.items():
            res.expect("%s after %d steps" % (name, steps),
                       rel_err(c["param." + name], p.detach().numpy()), 10 * tol)
    return res


def ir_ops(ir):
    return {nd.op for nd in ir.nodes}


def lam_has(text, *words):
    return any(w in text for w in words)
