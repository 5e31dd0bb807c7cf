#!/usr/bin/env python3
"""mutate.py — the mutation test: laminac must survive broken model files.

Makes RUNS seeded, reproducible byte-level mutants of examples/*.lam (bit
flips, random bytes, insertions, deletions, duplicated ranges, lines
spliced in from other examples, huge numbers, deep brackets, long lines,
CRLF, truncation, tokens of the language), writes them to a work
directory and runs the given laminac (a sanitizer build) on each, two at a
time:
    laminac --summary --emit=ir MUTANT      (every mutant)
    laminac --emit=dot --inference-only MUTANT   (every eighth)
and checks that every run
  - exits 0 or 1 (no signal, no exit 2, no timeout),
  - printed no sanitizer report,
  - located every error: each line with "error:" is "FILE:LINE:COL: error: ".
A failing mutant is kept in WORK/failures/ with the command to rerun it.

Usage: mutate.py LAMINAC EXAMPLES_DIR WORK_DIR [RUNS [SEED]]
Prints one line per failure, a summary, and "fuzz: N passed, N failed".
"""
import concurrent.futures
import os
import random
import re
import shutil
import subprocess
import sys

HUGE = [b"99999999999", b"99999999999999999999999999999", b"2147483647", b"2147483648",
        b"4294967296", b"-2147483648", b"1e39", b"1e999", b"-1e-999", b"3.4028236e38",
        b"0", b"-0", b"0.0", b"1e-45", b".5", b"5.", b"1.5.2", b"3x", b"0x10", b"65536",
        b"65537", b"16777217"]
TOKENS = [b"model", b"train", b"input", b"dense", b"conv2d", b"maxpool", b"avgpool",
          b"flatten", b"dropout", b"relu", b"softmax", b"tanh", b"step", b"leaky_relu",
          b"elu", b"sigmoid", b"loss", b"mse", b"softmax_cross_entropy", b"sigmoid_bce",
          b"perceptron", b"kernel=", b"stride=", b"pad=", b"same", b"valid", b"target=",
          b"init=", b"batch", b"epochs", b"seed", b"optimizer", b"sgd", b"adam",
          b"nesterov=true", b"momentum=", b"lr=", b"eps=0", b"{", b"}", b"(", b")", b"[",
          b"]", b";", b",", b"=", b"-", b"#", b"\n", b"\r\n", b"\t", b" ", b"x", b"int",
          b"__x", b"labels", b"input x[1, 28, 28];", b"input x[784];", b"flatten;",
          b"loss mse;", b"}\n", b"model m {\n"]
ERROR_LINE = re.compile(rb"^[^:\n]+:\d+:\d+: error: ")
SANITIZER = re.compile(rb"Sanitizer|runtime error:|==\d+==ERROR")


def mutate(rng, data, others):
    """One mutation of data (bytes); others: the other examples' lines."""
    n = len(data)
    op = rng.randrange(14)
    pos = rng.randrange(n + 1)
    if op == 0 and n:  # flip a bit
        i = rng.randrange(n)
        return data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1:]
    if op == 1 and n:  # a random byte, often a nasty one
        i = rng.randrange(n)
        b = rng.choice([0, 0x7f, 0x80, 0xc0, 0xff, 0xe2, 0x0d, 0x09, 0x01, rng.randrange(256)])
        return data[:i] + bytes([b]) + data[i + 1:]
    if op == 2:  # insert random bytes
        return data[:pos] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 8))) + data[pos:]
    if op == 3 and n:  # delete a range
        j = min(n, pos + rng.randint(1, 40))
        return data[:pos] + data[j:]
    if op == 4 and n:  # duplicate a range
        i = rng.randrange(n)
        j = min(n, i + rng.randint(1, 200))
        return data[:pos] + data[i:j] + data[pos:]
    if op == 5:  # splice lines from another example
        lines = data.split(b"\n")
        src = rng.choice(others)
        k = rng.randint(1, 6)
        a = rng.randrange(len(src))
        i = rng.randrange(len(lines) + 1)
        lines[i:i + rng.randint(0, 3)] = src[a:a + k]
        return b"\n".join(lines)
    if op == 6:  # a huge or odd number
        return data[:pos] + rng.choice(HUGE) + data[pos:]
    if op == 7:  # replace a number with a huge one
        nums = [m.span() for m in re.finditer(rb"\d+(\.\d+)?", data)]
        if nums:
            a, b = rng.choice(nums)
            return data[:a] + rng.choice(HUGE) + data[b:]
        return data
    if op == 8:  # deep brackets, balanced or not
        k = rng.choice([1, 2, 10, 63, 64, 65, 100, 1000])
        o, c = rng.choice([(b"[", b"]"), (b"(", b")"), (b"{", b"}")])
        body = o * k + (c * k if rng.random() < 0.5 else b"")
        return data[:pos] + body + data[pos:]
    if op == 9:  # a long line or a long word
        unit = rng.choice([b"a", b"dense(1) relu; ", b" ", b"1", b"\xc3\xa9", b"#"])
        return data[:pos] + unit * rng.choice([100, 1000, 20000]) + data[pos:]
    if op == 10:  # CRLF line endings, or lone CRs
        if rng.random() < 0.5:
            return data.replace(b"\n", b"\r\n")
        return data[:pos] + b"\r" + data[pos:]
    if op == 11:  # truncate
        return data[:pos]
    if op == 12:  # a token of the language
        return data[:pos] + rng.choice(TOKENS) + data[pos:]
    # swap two lines
    lines = data.split(b"\n")
    if len(lines) > 1:
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    return b"\n".join(lines)


def check(laminac, path, args):
    """Runs laminac; returns None or a description of what went wrong."""
    try:
        p = subprocess.run([laminac] + args + [path], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, timeout=20)
    except subprocess.TimeoutExpired:
        return "timed out"
    if p.returncode < 0:
        return "killed by signal %d" % -p.returncode
    if SANITIZER.search(p.stderr):
        return "sanitizer report (exit %d)" % p.returncode
    if p.returncode not in (0, 1):
        return "exit status %d" % p.returncode
    for line in p.stderr.split(b"\n"):
        if b"error:" in line and not ERROR_LINE.match(line):
            return "unlocated error line: %r" % line[:120]
    return None


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    laminac, examples, work = sys.argv[1], sys.argv[2], sys.argv[3]
    runs = int(sys.argv[4]) if len(sys.argv) > 4 else 5000
    seed = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    names = sorted(f for f in os.listdir(examples) if f.endswith(".lam"))
    seeds = [open(os.path.join(examples, f), "rb").read() for f in names]
    lines = [s.split(b"\n") for s in seeds]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(os.path.join(work, "failures"))
    env_note = "ASAN_OPTIONS=%s" % os.environ.get("ASAN_OPTIONS", "")
    jobs = []
    rng = random.Random(seed)
    for k in range(runs):
        base = rng.randrange(len(seeds))
        data = seeds[base]
        for _ in range(rng.choice([1, 1, 2, 3, 4])):
            data = mutate(rng, data, lines)
        path = os.path.join(work, "m%05d.lam" % k)
        with open(path, "wb") as f:
            f.write(data)
        jobs.append((path, ["--summary", "--emit=ir"]))
        if k % 8 == 0:
            jobs.append((path, ["--emit=dot", "--inference-only"]))
    passed = failed = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        results = pool.map(lambda j: (j, check(laminac, j[0], j[1])), jobs)
        for (path, args), problem in results:
            if problem is None:
                passed += 1
                continue
            failed += 1
            kept = os.path.join(work, "failures", os.path.basename(path))
            shutil.copy(path, kept)
            print("FAIL %s: %s\n     rerun: %s %s %s %s" % (os.path.basename(path), problem,
                  env_note, laminac, " ".join(args), kept))
    print("%d mutants of %d examples (seed %d), %d runs of %s" % (runs, len(seeds), seed,
          len(jobs), laminac))
    print("fuzz: %d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
