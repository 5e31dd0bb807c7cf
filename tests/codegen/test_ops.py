"""test_ops.py — every op of the table against PyTorch, on random configurations.

`laminac --list-ops` lists the op table; every forward op and loss in it
must have a generator below, or this test fails: no op can be added
without its parity and gradient checks. Each generator makes a small
model around the op (the op right on the input where it can be, so that
its input gradient is compared directly), with random shapes, strides,
paddings and coefficients drawn from a seeded generator. Every
configuration runs twice: with SGD (momentum, sometimes Nesterov and
weight decay) and with Adam.
Usage: test_ops.py [CONFIGS_PER_OP] [OP ...]
"""
import os
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import parity  # noqa: E402


def sgd(r):
    m = r.choice([0.5, 0.9, 0.95])
    nest = r.random() < 0.4
    wd = r.choice([0, 0, 0.001, 0.01])
    return "sgd(lr=%s, momentum=%s, nesterov=%s, weight_decay=%s)" % (
        r.choice([0.01, 0.05, 0.1]), m, "true" if nest else "false", wd)


def adam(r):
    return "adam(lr=%s, beta1=%s, beta2=%s, eps=%s, weight_decay=%s)" % (
        r.choice([0.001, 0.01]), r.choice([0.8, 0.9]), r.choice([0.99, 0.999]),
        r.choice(["1e-8", "1e-6"]), r.choice([0, 0.01]))


def model(layers, loss, batch, opt, seed=7):
    return "model opmodel {\n%s\n  loss %s;\n}\ntrain { batch %d; seed %d; optimizer %s; }\n" % (
        "\n".join("  " + l + ";" for l in layers), loss, batch, seed, opt)


def image(r):
    return r.randint(1, 3), r.randint(4, 11), r.randint(4, 11)


def pair(r, lo, hi):
    a, b = r.randint(lo, hi), r.randint(lo, hi)
    return (str(a), (a, a)) if r.random() < 0.5 else ("[%d, %d]" % (a, b), (a, b))


def gen_conv2d(r):
    c, h, w = image(r)
    if r.random() < 0.35:  # windows of 64 or more: the weight gradient's im2row path
        c, h, w = r.randint(8, 10), r.randint(5, 9), r.randint(5, 9)
    ktxt, (kh, kw) = pair(r, 1, min(4, h, w))
    stxt, _ = pair(r, 1, 3)
    if r.random() < 0.2 and kh % 2 and kw % 2:
        ptxt, stxt = "same", "1"
    else:
        ptxt, _ = pair(r, 0, 2)
    layers = ["input x[%d, %d, %d]" % (c, h, w),
              "conv2d c(%d, kernel=%s, stride=%s, pad=%s)" % (r.randint(1, 4), ktxt, stxt, ptxt),
              "flatten", "dense out(%d)" % r.randint(2, 5)]
    return layers, "softmax_cross_entropy"


def gen_conv_maxpool(r, force=None):
    """A convolution whose gradients come through the pooling's maxima
    (grad.c, grad_conv_maxpool: C x KW >= 16, the pooling passing on at
    most half of its output), after a first convolution so that its input
    gradient is computed too. Windows square or not, side by side,
    overlapping or with gaps between them; sometimes window rows of 48
    floats or more (the runtime's widest block), more windows than one
    chunk of the weight gradient's list holds (1024, emit_c.c), a dropout
    after the pooling (gradients of 0, skipped), or a global pooling of
    many filters, whose lists would not fit the stack (not fused). force
    ("global", "big" or "wide") asks for one of those (PINNED, below)."""
    if force == "global" or (not force and r.random() < 0.06):
        c, h = r.randint(2, 3), r.randint(4, 6)
        return (["input x[1, %d, %d]" % (h, h), "conv2d a(%d, kernel=1)" % c,
                 "conv2d c(%d, kernel=3, pad=1)" % r.randint(600, 1100), "relu",
                 "maxpool p(%d)" % h, "flatten", "dense out(3)"], "softmax_cross_entropy")
    big, wide = force == "big" or r.random() < 0.1, force == "wide" or r.random() < 0.25
    c = r.randint(10, 12) if wide else r.randint(4, 8)
    h, w = (r.randint(66, 70), r.randint(66, 70)) if big else (r.randint(6, 13), r.randint(6, 13))
    oh = ow = 0
    while min(oh, ow) < 3:  # room for a 3x3 window
        kh, kw = r.randint(1, 4), r.randint(5 if force == "wide" else 4 if wide else -(-16 // c), 5)
        sh, sw = (1, 1) if big else (r.choice([1, 1, 2]), r.choice([1, 1, 2]))
        ph, pw = r.randint(0, kh // 2 + 1), r.randint(0, kw // 2 + 1)
        oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    pkh, pkw = (2, 2) if big else (r.choice([2, 2, 3]), r.choice([2, 2, 3]))
    kind = "tiled" if big else r.choice(["tiled", "tiled", "overlap", "gaps"])
    psh, psw = {"tiled": (pkh, pkw), "overlap": (pkh - 1, pkw - 1) if pkh == pkw == 3 else (2, 2),
                "gaps": (pkh + 1, pkw + 1)}[kind]
    pool = "maxpool p(%d, stride=%d)" % (pkh, psh) if (pkh, psh) == (pkw, psw) else \
        "maxpool p([%d, %d], stride=[%d, %d])" % (pkh, pkw, psh, psw)
    layers = ["input x[%d, %d, %d]" % (r.randint(1, 2), h, w),
              "conv2d a(%d, kernel=1)" % c,
              "conv2d c(%d, kernel=[%d, %d], stride=[%d, %d], pad=[%d, %d])" % (
                  r.choice([r.randint(1, 5), r.randint(16, 40)]), kh, kw, sh, sw, ph, pw)]
    if r.random() < 0.7:
        layers.append("relu")  # applied to the maxima (rewrite.c)
    layers.append(pool)
    if force == "wide" or r.random() < 0.2:
        layers.append("dropout(0.5)")
    layers += ["flatten", "dense out(%d)" % r.randint(2, 4)]
    return layers, "softmax_cross_entropy"


def gen_pool(op):
    def g(r):
        if op == "maxpool" and r.random() < 0.35:
            return gen_conv_maxpool(r)
        c, h, w = image(r)
        # rows wider than the fused activation-and-average-pool backward's
        # block of 1024 floats (emit_c.c, emit_avgpool_act_dx): g one row
        wide = op == "avgpool" and r.random() < 0.15
        if wide:
            c, h, w = r.randint(1, 2), r.randint(3, 5), r.randint(515, 640)
        ktxt, (kh, kw) = pair(r, 2 if wide else 1, 3)
        stxt, _ = pair(r, 1, 3)
        ph, pw = r.randint(0, kh // 2), r.randint(0, kw // 2)
        if wide or r.random() < 0.35:
            # windows side by side (stride = kernel, no padding): the
            # backward's own path, with the rows and columns no window
            # covers when the size is not a multiple of the window
            stxt, ph, pw = ktxt, 0, 0
        ptxt = str(ph) if ph == pw else "[%d, %d]" % (ph, pw)
        before = []
        if r.random() < 0.5:
            # laminac adds a convolution's bias after a max pooling, and
            # crops the convolution to what the pooling reads (rewrite.c)
            k = r.choice([1, 3])
            conv = "conv2d c(%d, kernel=%d, pad=%d)" % (r.randint(1, 4), k, k // 2)
            k2, s2, p2h, p2w = r.choice([1, 2, 3]), r.choice([1, 2]), r.randint(0, 3), r.randint(0, 3)
            oh, ow = (h + 2 * p2h - k2) // s2 + 1, (w + 2 * p2w - k2) // s2 + 1
            if r.random() < 0.3 and oh >= kh + 1 and ow >= kw + 1:
                # strided, or padded wider than half its window: col2im's
                # general path, or its fold reaching into the padding
                conv = "conv2d c(%d, kernel=%d, stride=%d, pad=[%d, %d])" % (r.randint(1, 4), k2, s2,
                                                                         p2h, p2w)
            before.append(conv)
        if op == "maxpool" and r.random() < 0.5:
            # relu: laminac applies it to the maxima (rewrite.c); the
            # others stay between the convolution and the pooling, and
            # are cropped with its output where no window reads the last
            # rows or columns (rewrite.c)
            before.append(r.choice(["relu", "relu", "tanh", "elu(1.5)"]))
        if op == "avgpool" and (wide or r.random() < 0.5):
            # laminac differentiates it in the pooling's backward loop
            # where the windows lie side by side (grad.c), with the
            # convolution's bias gradient
            before.append(r.choice(["tanh", "sigmoid", "relu", "step", "leaky_relu(0.1)",
                                    "elu(1.5)"]))
        layers = (["input x[%d, %d, %d]" % (c, h, w)] + before +
                  ["%s p(%s, stride=%s, pad=%s)" % (op, ktxt, stxt, ptxt),
                   "flatten", "dense out(%d)" % r.randint(2, 5)])
        return layers, "softmax_cross_entropy"
    return g


def gen_dense(r):
    return (["input x[%d]" % r.randint(1, 40), "dense d(%d)" % r.randint(1, 30),
             "dense out(%d)" % r.randint(2, 6)], "softmax_cross_entropy")


def gen_flatten(r):
    c, h, w = image(r)
    return (["input x[%d, %d, %d]" % (c, h, w), "flatten", "dense out(%d)" % r.randint(2, 5)],
            "softmax_cross_entropy")


def gen_dropout(r):
    return (["input x[%d]" % r.randint(2, 30), "dense d(%d)" % r.randint(4, 30),
             "dropout(%s)" % r.choice([0.1, 0.25, 0.5, 0.75]), "dense out(%d)" % r.randint(2, 5)],
            "softmax_cross_entropy")


def gen_act(name):
    def g(r):
        arg = ""
        if name == "leaky_relu":
            arg = "(%s)" % r.choice([0.01, 0.1, 0.2, 0.5])
        elif name == "elu":
            arg = "(%s)" % r.choice([0.5, 1, 1.5])
        i = r.randint(1, 30)
        layers = ["input x[%d]" % i]
        if name in ("step", "softmax") or r.random() < 0.3:
            layers.append("dense d(%d)" % r.randint(2, 20))  # a layer before it
        layers += [name + arg, "dense out(%d)" % r.randint(2, 6)]
        return layers, "softmax_cross_entropy"
    return g


def gen_softmax_ce(r):
    layers = ["input x[%d]" % r.randint(1, 30), "dense out(%d)%s" % (
        r.randint(2, 12), " softmax" if r.random() < 0.5 else "")]
    return layers, "softmax_cross_entropy"


def gen_sigmoid_bce(r):
    return (["input x[%d]" % r.randint(1, 30), "dense out(%d)%s" % (
        r.randint(1, 8), " sigmoid" if r.random() < 0.5 else "")], "sigmoid_bce")


def gen_mse(r):
    i = r.randint(1, 30)
    if r.random() < 0.4:
        return ["input x[%d]" % i, "dense d(%d) tanh" % r.randint(1, 10), "dense out(%d)" % i], "mse(target=x)"
    return ["input x[%d]" % i, "dense out(%d)" % r.randint(1, 10)], "mse"


def gen_perceptron(r):
    return (["input x[%d]" % r.randint(1, 10), "dense unit(1)%s" % (" step" if r.random() < 0.5 else "")],
            "perceptron")


GENERATORS = {
    "dense": gen_dense, "conv2d": gen_conv2d, "maxpool": gen_pool("maxpool"),
    "avgpool": gen_pool("avgpool"), "flatten": gen_flatten, "dropout": gen_dropout,
    "softmax_cross_entropy": gen_softmax_ce, "sigmoid_bce": gen_sigmoid_bce, "mse": gen_mse,
    "perceptron": gen_perceptron,
}
for act in ("step", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "softmax"):
    GENERATORS[act] = gen_act(act)


def table_ops():
    out = subprocess.run([parity.LAMINAC, "--list-ops"], capture_output=True, text=True, check=True)
    return [l.split()[0] for l in out.stdout.splitlines() if l.split()[1] != "gradient"]


# Configurations every run has, whatever the count per op: the cases of
# gen_conv_maxpool that its draws reach only now and then.
PINNED = {("maxpool", 0): "big", ("maxpool", 1): "wide", ("maxpool", 2): "global"}


def one(op, k):
    r = random.Random("%s/%d" % (op, k))
    if (op, k) in PINNED:
        layers, loss = gen_conv_maxpool(r, PINNED[(op, k)])
    else:
        layers, loss = GENERATORS[op](r)
    batch = r.randint(1, 8)
    n = r.randint(1, batch)
    results = []
    for name, opt in (("sgd", sgd(r)), ("adam", adam(r))):
        text = model(layers, loss, batch, opt)
        label = "%s #%d %s" % (op, k, name)
        try:
            results.append((label, parity.check_model(text, label, n, seed=k), text))
        except RuntimeError as e:
            res = parity.Result(label)
            res.failures.append(str(e))
            results.append((label, res, text))
    return results


def main():
    per = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    ops = sys.argv[2:] or table_ops()
    missing = [op for op in table_ops() if op not in GENERATORS]
    passed = failed = 0
    for op in missing:
        print("FAIL %s: the op table has it, but test_ops.py has no generator" % op)
        failed += 1
    jobs = [(op, k) for op in ops if op in GENERATORS for k in range(per)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        for results in pool.map(lambda j: one(*j), jobs):
            for label, res, text in results:
                if res.failures:
                    failed += 1
                    print("FAIL %s (%d checks)\n  %s\n%s" % (label, res.checks, "\n  ".join(res.failures), text))
                else:
                    passed += 1
    print("ops: %d configurations (%d per op, each with SGD and Adam) against PyTorch" % (
        passed + failed, per))
    print("ops: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
