#!/usr/bin/env python3
"""check_docs.py — runs the examples of lamina's documents as they are shown.

Usage: check_docs.py DOC.md ...   (from the repository root; see run.sh for
what each kind of fenced block must do). Needs only the Python standard
library; a ```python block runs with the interpreter running this script.
Prints "ok   ..." or "FAIL ..." per check and "readme: N passed, N failed".
"""
import gzip
import os
import re
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LAMINAC = os.path.join(ROOT, "laminac")
RUNTIME_LIB = os.path.join(ROOT, "build", "liblamina_rt.a")
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
CC = os.environ.get("CC_DOCS", "gcc")
TIMEOUT = 120

passed = 0
failed = 0


def record(label, problems):
    global passed, failed
    if problems:
        failed += 1
        print("FAIL " + label)
        for p in problems:
            for line in str(p).rstrip("\n").split("\n")[:40]:
                print("     | " + line)
    else:
        passed += 1
        print("ok   " + label)


def run(cmd, cwd, stdin=None, shell=False):
    """(exit status, stdout, stderr) of cmd; status -1 on a timeout."""
    try:
        p = subprocess.run(cmd, cwd=cwd, input=stdin, capture_output=True, shell=shell,
                           timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return -1, b"", b"timed out"
    return p.returncode, p.stdout, p.stderr


def text(b):
    return b.decode("utf-8", "replace")


# ---- reading the documents ------------------------------------------------

COMMENT = re.compile(r"^<!--\s*([a-z]+):\s?(.*?)\s*-->\s*$")


class Block:
    def __init__(self, doc, line, info, body):
        self.doc, self.line, self.info, self.body = doc, line, info, body
        self.meta = {}     # from <!-- key: value --> comments just after it
        self.next = None   # the fenced block right after it, if nothing else is between

    def where(self):
        return "%s:%d" % (self.doc, self.line)


def read_blocks(path):
    lines = open(path, encoding="utf-8").read().split("\n")
    blocks = []
    i = 0
    last_end = None  # (block, index of the line after its closing fence)
    while i < len(lines):
        m = re.match(r"^```(\S*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        start = i
        i += 1
        body = []
        while i < len(lines) and not re.match(r"^```\s*$", lines[i]):
            body.append(lines[i])
            i += 1
        b = Block(os.path.relpath(path, ROOT), start + 1, m.group(1), "\n".join(body) + "\n")
        if last_end is not None:
            prev, after = last_end
            between = lines[after:start]
            if all(not l.strip() or COMMENT.match(l) for l in between):
                prev.next = b
        blocks.append(b)
        i += 1
        # The comments right after the block belong to it.
        j = i
        while j < len(lines) and (not lines[j].strip() or COMMENT.match(lines[j])):
            c = COMMENT.match(lines[j])
            if c:
                b.meta[c.group(1)] = c.group(2)
            j += 1
        last_end = (b, i)
    return blocks


def decode_example(s):
    """A table example as bytes: \\n, \\t and \\xNN stand for those bytes."""
    out = bytearray()
    i = 0
    while i < len(s):
        if s.startswith("\\x", i) and re.match(r"[0-9a-fA-F]{2}", s[i + 2:i + 4]):
            out.append(int(s[i + 2:i + 4], 16))
            i += 4
        elif s.startswith("\\n", i):
            out += b"\n"
            i += 2
        elif s.startswith("\\t", i):
            out += b"\t"
            i += 2
        else:
            out += s[i].encode("utf-8")
            i += 1
    return bytes(out)


def table_rows(path, section):
    """(message, example or None) of the rows between <!-- section:begin/end -->."""
    rows = []
    inside = False
    for n, line in enumerate(open(path, encoding="utf-8"), 1):
        if re.match(r"^<!--\s*%s:begin\s*-->" % section, line):
            inside = True
        elif re.match(r"^<!--\s*%s:end\s*-->" % section, line):
            inside = False
        elif inside:
            m = re.match(r"^\|\s*`([^`]+)`\s*\|\s*(.*?)\s*\|\s*$", line)
            if m:
                ex = re.match(r"^`(.*)`$", m.group(2))
                rows.append((m.group(1), ex.group(1) if ex else None, n))
    return rows


# ---- the front end's messages -----------------------------------------------

def c_string_at(src, i):
    """The C string literal(s) starting at src[i] == '"', concatenated."""
    out = []
    while i < len(src) and src[i] == '"':
        i += 1
        while src[i] != '"':
            if src[i] == "\\":
                nxt = src[i + 1]
                out.append({"n": "\n", "t": "\t", '"': '"', "\\": "\\", "'": "'"}.get(nxt, nxt))
                i += 2
            else:
                out.append(src[i])
                i += 1
        i += 1
        while i < len(src) and src[i] in " \t\r\n":
            i += 1
    return "".join(out)


def front_end_formats():
    """{'error': [(format, file)], 'warning': [...]} of every diag_error and
    diag_warning call in grammar/ and compiler/."""
    found = {"error": [], "warning": []}
    files = [os.path.join("grammar", f) for f in sorted(os.listdir(os.path.join(ROOT, "grammar")))]
    files += [os.path.join("compiler", f) for f in sorted(os.listdir(os.path.join(ROOT, "compiler")))
              if f.endswith(".c")]
    for rel in files:
        src = open(os.path.join(ROOT, rel), encoding="utf-8").read()
        for m in re.finditer(r"\bdiag_(error|warning)\s*\(", src):
            # The format is the first string literal among the arguments.
            i, depth = m.end(), 1
            while i < len(src) and depth > 0 and src[i] != '"':
                depth += {"(": 1, ")": -1}.get(src[i], 0)
                i += 1
            if depth > 0 and i < len(src) and src[i] == '"':
                found[m.group(1)].append((c_string_at(src, i), rel))
    return found


def format_regex(fmt):
    spec = re.compile(r"%[-+ #0]*\d*(?:\.\d+)?(?:hh|h|ll|l|z|j|t)?[diouxXeEfgGsc%]")
    parts, last = [], 0
    for m in spec.finditer(fmt):
        parts.append(re.escape(fmt[last:m.start()]))
        parts.append("%" if m.group(0) == "%%" else ".*?")
        last = m.end()
    parts.append(re.escape(fmt[last:]))
    return re.compile("".join(parts) + r"\Z", re.S)


# ---- the work directory and its fixtures --------------------------------------

def blas_libs():
    stamp = os.path.join(ROOT, "build", "blas.stamp")
    blas = open(stamp).read().strip() if os.path.exists(stamp) else "openblas"
    if blas != "openblas":
        return []
    p = subprocess.run(["pkg-config", "--libs", "openblas"], capture_output=True, text=True)
    return p.stdout.split() if p.returncode == 0 else ["-lopenblas"]


LIBS = [RUNTIME_LIB] + blas_libs() + ["-lz", "-lm"]


class Work:
    """A directory that looks like the repository root to the documents."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="lamina-docs-")
        shutil.copytree(os.path.join(ROOT, "examples"), os.path.join(self.dir, "examples"))
        for name in ("runtime", "build", "tests"):
            os.symlink(os.path.join(ROOT, name), os.path.join(self.dir, name))
        os.symlink(LAMINAC, os.path.join(self.dir, "laminac"))
        self.fixtures = {}
        self.count = 0

    def path(self, *p):
        return os.path.join(self.dir, *p)

    def new_dir(self, what):
        self.count += 1
        d = self.path("_%s%d" % (what, self.count))
        os.makedirs(d)
        return d

    def generate(self, model, options):
        """Runs laminac on model; returns (directory, prefix) or raises."""
        d = self.new_dir("gen")
        rc, out, err = run([LAMINAC] + options + [model, "-o", d], self.dir)
        if rc != 0:
            raise RuntimeError("laminac %s: exit %d\n%s" % (" ".join(options + [model]), rc, text(err)))
        headers = [f for f in os.listdir(d) if f.endswith(".h")]
        if len(headers) != 1:
            raise RuntimeError("laminac wrote %s into %s" % (headers, d))
        return d, headers[0][:-2]

    def fixture(self, model):
        """A checkpoint of model saved by its own generated code (20 training
        steps on 8 made-up images), the images as IDX and raw bytes, and the
        class the model gives each image."""
        if model in self.fixtures:
            return self.fixtures[model]
        gen, prefix = self.generate(model, [])
        d = self.new_dir("fix")
        up = prefix.upper()
        helper = r"""#include <stdio.h>
#include "lamina_rt.h"
#include "%(p)s.h"

int main(int argc, char **argv)
{
    char err[512] = "usage: helper CKPT IMAGES";
    lm_dataset d = {0};
    %(p)s *m = %(p)s_create(7);
    if (argc < 3 || !m || lm_idx_load(&d, argv[2], NULL, %(u)s_SCALE, %(u)s_SHIFT, err, sizeof err) != 0) {
        fprintf(stderr, "%%s\n", err);
        return 1;
    }
#if %(u)s_TRAINING && %(u)s_LABELS
    for (int step = 0; step < 20; step++)
        for (int i = 0; i < d.n; i++) {
            const %(p)s_target label = i %% %(u)s_NUM_CLASSES;
            %(p)s_train_step(m, d.x + (size_t)i * %(u)s_IN_SIZE, &label, 1);
        }
#endif
    if (%(p)s_save(m, argv[1], err, sizeof err) != 0) {
        fprintf(stderr, "%%s\n", err);
        return 1;
    }
    for (int i = 0; i < d.n; i++) {
        float y[%(u)s_OUT_SIZE];
        int best = 0;
        %(p)s_forward(m, d.x + (size_t)i * %(u)s_IN_SIZE, 1, y);
        for (int k = 1; k < %(u)s_OUT_SIZE; k++)
            best = y[k] > y[best] ? k : best;
        printf("%%d\n", best);
    }
    return 0;
}
""" % {"p": prefix, "u": up}
        with open(os.path.join(d, "helper.c"), "w") as f:
            f.write(helper)
        rc, out, err = run([CC, "-std=c99", "-O1", "-I" + gen, "-I" + os.path.join(ROOT, "runtime"),
                            os.path.join(d, "helper.c"), os.path.join(gen, prefix + ".c")] + LIBS
                           + ["-o", os.path.join(d, "helper")], d)
        if rc != 0:
            raise RuntimeError("building the checkpoint helper:\n" + text(err))
        in_size = int(re.search(r"#define %s_IN_SIZE (\d+)" % up,
                                open(os.path.join(gen, prefix + ".h")).read()).group(1))
        images = []
        for n in range(8):
            images.append(bytes((i * (n + 3) * 7 + (i // 28) * 29 * n + 17 * n) % 256
                                for i in range(in_size)))
        idx = struct.pack(">IIi", 0x802, len(images), in_size) + b"".join(images)
        with gzip.open(os.path.join(d, "images.idx.gz"), "wb") as f:
            f.write(idx)
        fx = {"ckpt": os.path.join(d, "model.safetensors"), "images": os.path.join(d, "images.idx.gz")}
        for n, img in enumerate(images):
            fx["image%d" % n] = os.path.join(d, "image%d.raw" % n)
            with open(fx["image%d" % n], "wb") as f:
                f.write(img)
        rc, out, err = run([os.path.join(d, "helper"), fx["ckpt"], fx["images"]], d)
        if rc != 0:
            raise RuntimeError("the checkpoint helper failed:\n" + text(err))
        for n, c in enumerate(text(out).split()):
            fx["class%d" % n] = c
        self.fixtures[model] = fx
        return fx


PLACEHOLDER = re.compile(r"\{(ckpt|images|image\d+|class\d+)\}")


def substitute(s, fx, escape=False):
    def one(m):
        key = m.group(1)
        if key not in fx:
            raise RuntimeError("no fixture {%s}" % key)
        return re.escape(fx[key]) if escape else fx[key]
    return PLACEHOLDER.sub(one, s)


# ---- comparing output ----------------------------------------------------------

def is_number(s):
    try:
        float(s)
        return True
    except ValueError:
        return False


def same_line(want, got):
    want, got = want.rstrip(), got.rstrip()
    if want == got:
        return True
    w, g = want.split(), got.split()
    if len(w) != len(g):
        return False
    for a, b in zip(w, g):
        if a == b:
            continue
        if not (is_number(a) and is_number(b)):
            return False
        x, y = float(a), float(b)
        if abs(x - y) > 0.05 * max(abs(x), abs(y)) + 1e-3:
            return False
    return True


def lines_match(want, got):
    """want's lines against got's; a line "..." matches any number of lines."""
    memo = {}

    def m(i, j):
        if (i, j) in memo:
            return memo[(i, j)]
        if i == len(want):
            r = j == len(got)
        elif want[i].strip() == "...":
            r = any(m(i + 1, k) for k in range(j, len(got) + 1))
        else:
            r = j < len(got) and same_line(want[i], got[j]) and m(i + 1, j + 1)
        memo[(i, j)] = r
        return r
    return m(0, 0)


def first_difference(want, got):
    for k, (a, b) in enumerate(zip(want, got)):
        if a.strip() != "..." and not same_line(a, b):
            return "line %d: expected %r\n         got %r" % (k + 1, a, b)
    return "expected %d lines, got %d" % (len(want), len(got))


# ---- the blocks ----------------------------------------------------------------

def check_lam(work, b):
    first = b.body.split("\n", 1)[0]
    m = re.match(r"^#\s+(\w+\.lam)\b", first)
    if m:
        with open(work.path(m.group(1)), "w") as f:
            f.write(b.body)
    d = work.new_dir("lam")
    path = os.path.join(d, "model.lam")
    with open(path, "w") as f:
        f.write(b.body)
    rc, out, err = run([LAMINAC, "--check", "model.lam"], d)
    problems = []
    if rc != 0 or err:
        problems.append("laminac --check: exit %d\n%s" % (rc, text(err)))
    record("%s: lam block compiles%s" % (b.where(), " (saved as %s)" % m.group(1) if m else ""),
           problems)


def check_diagnosed(work, b, want_rc, what):
    d = work.new_dir("lam")
    with open(os.path.join(d, "model.lam"), "w") as f:
        f.write(b.body)
    rc, out, err = run([LAMINAC, "--check", "model.lam"], d)
    problems = []
    if rc != want_rc:
        problems.append("exit %d, expected %d" % (rc, want_rc))
    if what not in text(err):
        problems.append("no %s in:\n%s" % (what.rstrip(":"), text(err)))
    label = "%s: %s block gives %s" % (b.where(), b.info, "exit %d" % want_rc)
    if b.next is not None and b.next.info == "text":
        label += " and the diagnostics shown"
        if text(err) != b.next.body:
            problems.append("standard error differs from the text block:\n" + text(err))
    record(label, problems)


def check_c(work, b, classify_c):
    problems = []
    lines = b.body.split("\n")
    m = re.search(r"model:\s*(.*?)\s*\*/", lines[0])
    label = "%s: C block" % b.where()
    if not m:
        record(label + " names its model", ["the first line has no /* model: PATH */ comment"])
        return
    spec = shlex.split(m.group(1))
    model, options = spec[0], spec[1:]
    for k in range(2):
        n = re.match(r"^/\*\s+(\w+\.c)\b", lines[k]) if k < len(lines) else None
        if n:
            with open(work.path(n.group(1)), "w") as f:
                f.write(b.body)
            label += " (%s)" % n.group(1)
            if n.group(1) == "classify.c" and classify_c is not None:
                shown = "\n".join(lines[1:])
                record("%s: the embedding example is tests/embed/classify.c" % b.where(),
                       [] if shown == classify_c else ["the block differs from tests/embed/classify.c"])
            break
    try:
        fx = {}
        if any(PLACEHOLDER.search(s) for s in options + [b.meta.get("run", ""), b.meta.get("expect", "")]):
            fx = work.fixture(model)
        options = [substitute(o, fx) for o in options]
        gen, prefix = work.generate(model, options)
    except RuntimeError as e:
        record(label + " against " + model, [e])
        return
    d = work.new_dir("c")
    src = os.path.join(d, "block.c")
    with open(src, "w") as f:
        f.write(b.body)
    has_main = re.search(r"\bint\s+main\s*\(", b.body) is not None
    inc = ["-I" + gen, "-I" + os.path.join(ROOT, "runtime")]
    rc, out, err = run([CC] + STRICT + ["-O1"] + inc + ["-c", src, "-o", os.path.join(d, "block.o")], d)
    if rc != 0:
        record(label + " compiles with " + " ".join(STRICT), [text(err)])
        return
    if not has_main:
        record(label + " compiles with " + " ".join(STRICT) + " against " + " ".join([model] + options),
               [])
        return
    prog = os.path.join(d, "prog")
    rc, out, err = run([CC, "-std=c99", "-O1"] + inc + [os.path.join(d, "block.o"),
                       os.path.join(gen, prefix + ".c")] + LIBS + ["-o", prog], d)
    if rc != 0:
        record(label + " links", [text(err)])
        return
    args = substitute(b.meta.get("run", ""), fx)
    rc, out, err = run(shlex.quote(prog) + " " + args, work.dir, shell=True)
    if rc != 0:
        problems.append("exit %d\n%s%s" % (rc, text(out), text(err)))
    if "expect" in b.meta:
        want = substitute(b.meta["expect"], fx, escape=True)
        if not re.search(want, text(out)):
            problems.append("output does not match /%s/:\n%s" % (want, text(out)))
    record(label + " compiles with " + " ".join(STRICT) + " and runs" +
           (" as expected" if "expect" in b.meta else ""), problems)


def check_python(work, b):
    rc, out, err = run([sys.executable, "-"], work.dir, stdin=b.body.encode())
    problems = []
    if rc != 0:
        problems.append("exit %d\n%s%s" % (rc, text(out), text(err)))
    if "expect" in b.meta and not re.search(b.meta["expect"], text(out)):
        problems.append("output does not match /%s/:\n%s" % (b.meta["expect"], text(out)))
    record("%s: python block runs%s" % (b.where(), " as expected" if "expect" in b.meta else ""),
           problems)


def check_console(work, b):
    steps = []  # [command, expected lines]
    for line in b.body.rstrip("\n").split("\n"):
        if line.startswith("$ "):
            steps.append([line[2:], []])
        elif steps:
            steps[-1][1].append(line)
    for cmd, want in steps:
        rc, out, err = run(cmd, work.dir, shell=True)
        got = text(out + err).rstrip("\n").split("\n") if (out + err) else []
        problems = []
        if rc != 0:
            problems.append("exit %d\n%s" % (rc, "\n".join(got)))
        elif want and not lines_match(want, got):
            problems.append(first_difference(want, got) + "\n--- output:\n" + "\n".join(got))
        short = cmd if len(cmd) <= 70 else cmd[:67] + "..."
        record("%s: $ %s%s" % (b.where(), short, " (output as shown)" if want else ""), problems)


def check_tables(work, path, formats):
    rel = os.path.relpath(path, ROOT)
    tables = {"error": table_rows(path, "errors"), "warning": table_rows(path, "warnings")}
    if not tables["error"]:
        return False
    d = work.new_dir("table")
    for kind, rows in tables.items():
        for message, example, line in rows:
            if example is None:
                continue
            with open(os.path.join(d, "t.lam"), "wb") as f:
                f.write(decode_example(example))
            rc, out, err = run([LAMINAC, "--check", "t.lam"], d)
            want_rc = 1 if kind == "error" else 0
            pattern = re.compile(r"^t\.lam:\d+:\d+: %s: %s$" % (kind, re.escape(message)), re.M)
            problems = []
            if rc != want_rc:
                problems.append("exit %d, expected %d" % (rc, want_rc))
            if not pattern.search(text(err)):
                problems.append("no such %s in:\n%s" % (kind, text(err)))
            record("%s:%d: %s '%s'" % (rel, line, kind, message), problems)
    # Every message of the front end is in a table, and every row without
    # an example is still a message of the front end.
    for kind, fmts in formats.items():
        messages = [r[0] for r in tables[kind]]
        missing = []
        for fmt, src in fmts:
            if fmt == "%s":  # the parser's syntax messages, covered by examples
                continue
            rx = format_regex(fmt)
            if not any(rx.match(msg) for msg in messages):
                missing.append("%s: \"%s\"" % (src, fmt))
        record("%s: every diag_%s message of the front end is in the table (%d formats)"
               % (rel, kind, len(fmts)), missing)
        regexes = [format_regex(f) for f, _ in fmts]
        for message, example, line in tables[kind]:
            if example is None and not any(rx.match(message) for rx in regexes):
                record("%s:%d: '%s' is a message of the front end" % (rel, line, message),
                       ["no diag_%s format matches it" % kind])
    return True


def check_macros(work, path):
    """A table after <!-- macros: MODEL --> lists macros of MODEL's header
    and their values: each must be what laminac writes."""
    lines = open(path, encoding="utf-8").read().split("\n")
    rel = os.path.relpath(path, ROOT)
    for n, line in enumerate(lines):
        m = re.match(r"^<!--\s*macros:\s*(\S+)\s*-->", line)
        if not m:
            continue
        try:
            gen, prefix = work.generate(m.group(1), [])
        except RuntimeError as e:
            record("%s:%d: macros of %s" % (rel, n + 1, m.group(1)), [e])
            continue
        header = open(os.path.join(gen, prefix + ".h")).read()
        defines = dict(re.findall(r"^#define (\w+) (\S+)", header, re.M))
        problems, count = [], 0
        for row in lines[n + 1:]:
            if row.strip() and not row.startswith("|"):
                break
            cells = [c.strip() for c in row.strip().strip("|").split("|")]
            if len(cells) < 2 or not cells[0].startswith("`"):
                continue
            names = re.findall(r"`(\w+)`", cells[0])
            values = [v.strip() for v in cells[1].split(",")]
            if len(names) != len(values):
                problems.append("row %r: %d macros, %d values" % (row, len(names), len(values)))
                continue
            for name, value in zip(names, values):
                count += 1
                if defines.get(name) != value:
                    problems.append("%s is %s, the table says %s" % (name, defines.get(name), value))
        record("%s:%d: %d macro values of %s as laminac writes them" % (rel, n + 1, count, m.group(1)),
               problems)


def main(paths):
    formats = front_end_formats()
    classify_path = os.path.join(ROOT, "tests", "embed", "classify.c")
    classify_c = open(classify_path).read() if os.path.exists(classify_path) else None
    for path in paths:
        path = os.path.join(ROOT, path)
        work = Work()
        try:
            print("-- " + os.path.relpath(path, ROOT))
            blocks = read_blocks(path)
            follows = {id(b.next) for b in blocks if b.next is not None and b.info in ("lam-error", "lam-warn")}
            for b in blocks:
                if b.info == "lam":
                    check_lam(work, b)
                elif b.info == "lam-warn":
                    check_diagnosed(work, b, 0, "warning:")
                elif b.info == "lam-error":
                    check_diagnosed(work, b, 1, "error:")
                elif b.info == "c":
                    check_c(work, b, classify_c)
                elif b.info == "console":
                    check_console(work, b)
                elif b.info == "python":
                    check_python(work, b)
                elif b.info == "text" and id(b) not in follows:
                    pass  # shown only
            check_macros(work, path)
            check_tables(work, path, formats)
        finally:
            shutil.rmtree(work.dir, ignore_errors=True)
    print("readme: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
