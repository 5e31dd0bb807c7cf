#!/usr/bin/python3
"""report.py — turns the JSON lines of a `make bench` run into its table.

    report.py table RAW.jsonl OUTDIR     print the table; write OUTDIR/results.md
                                         and OUTDIR/results.csv
    report.py choose RAW.jsonl IMPL MODEL MEASURE [THREADS]
                                         the fastest thread setting ("config") of
                                         IMPL (lamina or pytorch) in the
                                         calibration runs for MODEL/MEASURE

RAW.jsonl holds every line bench.c, torch_bench.py, peak.c and sgemm.c
printed during the run (each tagged with its repetition and phase by
bench/run.sh), and the machine facts ({"impl": "fact", "key", "value"}).
Only the standard library: this runs where torch may not be installed.
"""
import csv
import json
import statistics
import sys

MODELS = ("mlp", "lenet5", "cnn", "alexnet")
MEASURES = ("train", "latency", "throughput")
TITLE = {"mlp": "MLP 784-256-128-10", "lenet5": "LeNet-5", "cnn": "Keras-style CNN",
         "alexnet": "AlexNet"}
WHAT = {"train": "training samples/s", "latency": "inference latency",
        "throughput": "inference samples/s"}
WHAT_UNIT = {"train": "samples/s", "latency": "us", "throughput": "samples/s"}

# issue 5's targets: one thread; lamina vs PyTorch (x, >1: lamina faster).
TARGETS = [
    ("train", "mlp", 1.5), ("train", "lenet5", 3.0), ("train", "cnn", 3.0),
    ("latency", "mlp", 5.0), ("latency", "lenet5", 5.0), ("latency", "cnn", 5.0),
    ("throughput", "mlp", 2.0), ("throughput", "lenet5", 2.0), ("throughput", "cnn", 2.0),
]


def load(path):
    lines = []
    with open(path) as f:
        for raw in f:
            raw = raw.strip()
            if not raw.startswith("{"):
                continue
            try:
                lines.append(json.loads(raw))
            except ValueError:
                print("report.py: skipping a malformed line: %s" % raw[:120], file=sys.stderr)
    return lines


def facts_of(lines):
    return {l["key"]: l["value"] for l in lines if l.get("impl") == "fact"}


def better(measure, a, b):
    """a is better than b (latency: lower; the rest: higher)."""
    return a < b if measure == "latency" else a > b


FALLBACK = {"pytorch": "omp2_blas1", "lamina": "blas"}


def calibration(lines, impl, model, measure, threads=None):
    """{config: median value} of the calibration runs."""
    runs = {}
    for l in lines:
        if (l.get("phase") == "calibrate" and l.get("impl") == impl
                and l.get("model") == model and l.get("measure") == measure
                and (threads is None or l.get("threads") == threads)):
            runs.setdefault(l["config"], []).append(l["value"])
    return {c: statistics.median(v) for c, v in runs.items()}


def choose(lines, impl, model, measure, threads=None):
    """The setting with the best median in the calibration rounds."""
    best = None
    for c, v in calibration(lines, impl, model, measure, threads).items():
        if best is None or better(measure, v, best[1]):
            best = (c, v)
    return best[0] if best else FALLBACK[impl]


def fmt_value(v, unit, ms=None):
    """v in its unit; latencies (us) in ms when ms (default: when v >= 10 ms)."""
    if v is None:
        return "—"
    if unit == "us":
        if ms is None:
            ms = v >= 10000
        if ms:
            return "{:,.1f} ms".format(v / 1000)
        return "{:,.0f} µs".format(v) if v >= 100 else "{:,.1f} µs".format(v)
    return "{:,.0f}".format(v) if v >= 100 else "{:,.2f}".format(v)


def fmt_range(s, unit):
    """median (min–max), every number in the median's unit."""
    if not s:
        return "—"
    ms = unit == "us" and s["median"] >= 10000
    if len(s["all"]) == 1:
        return fmt_value(s["median"], unit, ms)
    lo, hi = fmt_value(s["min"], unit, ms), fmt_value(s["max"], unit, ms)
    if unit == "us":  # "74–81 µs"
        lo = lo.rsplit(" ", 1)[0]
    return "%s (%s–%s)" % (fmt_value(s["median"], unit, ms), lo, hi)


def stats(values):
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "all": values}


def pct(x):
    return "—" if x is None else ("%.1f%%" % (100 * x) if x < 0.1 else "%.0f%%" % (100 * x))


def contention(facts, peaks, end_peaks):
    """A sentence when the run shared the CPU with other work, else ''."""
    said = []
    try:
        load = float(str(facts.get("loadavg_start", "0")).split()[0])
        cores = int(facts.get("cores", "0"))
    except ValueError:
        load, cores = 0.0, 0
    try:  # CPU seconds others used during the run, steal, run seconds (run.sh)
        others, steal, secs = (float(v) for v in facts["cpu_others"].split())
    except (KeyError, ValueError):
        others = steal = secs = None
    if secs:
        # Measured: the share of one core that other processes (and, as steal,
        # other guests) took while the run went on.
        if (others + steal) / secs > 0.05:
            said.append("other processes took %.0f%% of a core over the run (%.0f s of CPU, "
                        "%.0f s of it stolen by the hypervisor)" % (
                            100 * (others + steal) / secs, others + steal, steal))
    elif load > 0.5:
        said.append("the load average was %.1f when the run started" % load)
    for when, p in (("at the start", peaks), ("at the end", end_peaks)):
        if 1 in p and 2 in p and cores >= 2 and p[2]["value"] < 1.6 * p[1]["value"]:
            said.append("the FMA peak on 2 threads %s was only %.2f× the 1-thread one "
                        "(%.1f vs %.1f GFLOP/s)" % (when, p[2]["value"] / p[1]["value"],
                                                   p[2]["value"], p[1]["value"]))
    if not said:
        return ""
    return ("other processes were using this machine's cores during the run: %s. The "
            "2-thread rows (and 2-thread ratios) are unreliable, and the 1-thread rows may be "
            "slowed by sharing; run `make bench` again on a quiet machine."
            % "; ".join(said))


def table(lines, outdir):
    facts = facts_of(lines)
    main = [l for l in lines if l.get("phase") == "main"]
    peaks = {l["threads"]: l for l in lines
             if l.get("measure") == "fma_peak" and l.get("phase") != "end"}
    end_peaks = {l["threads"]: l for l in lines
                 if l.get("measure") == "fma_peak" and l.get("phase") == "end"}
    flops = {m: float(facts["flops_" + m]) for m in MODELS if ("flops_" + m) in facts}
    train_flops = {m: float(facts["train_flops_" + m]) for m in MODELS
                   if facts.get("train_flops_" + m)}

    def series(impl, model, measure, threads):
        return [l for l in main if l.get("impl") == impl and l.get("model") == model
                and l.get("measure") == measure and l.get("threads") == threads]

    rows = []
    for model in MODELS:
        for measure in MEASURES:
            for t in (1, 2):
                lam, pt = series("lamina", model, measure, t), series("pytorch", model, measure, t)
                if not lam and not pt:
                    continue
                unit = (lam or pt)[0]["unit"]
                batch = (lam or pt)[0]["batch"]
                ls, ps = stats([l["value"] for l in lam]), stats([l["value"] for l in pt])
                speed = None
                pairs = []
                if ls and ps:
                    # The ratio of each repetition's pair (run seconds apart):
                    # their median is the headline, robust to drift over the run.
                    byrep = {l.get("rep"): l["value"] for l in pt}
                    for l in lam:
                        if l.get("rep") in byrep:
                            p = byrep[l.get("rep")]
                            pairs.append(p / l["value"] if measure == "latency" else l["value"] / p)
                    if pairs:
                        speed = statistics.median(pairs)
                    else:
                        speed = (ps["median"] / ls["median"] if measure == "latency"
                                 else ls["median"] / ps["median"])
                fps = flops.get(model)
                if measure == "train":  # as written; else the usual 3 x forward
                    fps = train_flops.get(model, fps * 3 if fps is not None else None)
                peak = peaks.get(t, {}).get("value")

                def gflops(s):
                    if not s or fps is None:
                        return None
                    if measure == "latency":
                        return fps / (s["median"] * 1e-6) * 1e-9
                    return s["median"] * fps * 1e-9

                lg, pg = gflops(ls), gflops(ps)
                rows.append({
                    "model": model, "measure": measure, "threads": t, "batch": batch,
                    "unit": unit, "lamina": ls, "pytorch": ps,
                    "config": pt[0].get("config", "") if pt else "",
                    "lamina_config": lam[0].get("config", "") if lam else "",
                    "speedup": speed, "pair_min": min(pairs) if pairs else None,
                    "pair_max": max(pairs) if pairs else None,
                    "flop": fps, "lamina_gflops": lg, "pytorch_gflops": pg,
                    "lamina_peak": lg / peak if lg and peak else None,
                    "pytorch_peak": pg / peak if pg and peak else None,
                })

    # The time to read each model's parameters once (bench.c, latency runs).
    weights = {}
    for model in MODELS:
        ws = series("lamina", model, "weights", 1)
        if ws:
            weights[model] = statistics.median([l["value"] for l in ws])

    mem = []
    for model in MODELS:
        for t in (1, 2):
            ms = series("lamina", model, "memory", t)
            if ms:
                mem.append({"model": model, "threads": t, "size": ms[0]["size_bytes"],
                            "ratio": stats([m["value"] for m in ms]),
                            "resident": statistics.median([m["resident_bytes"] for m in ms]),
                            "hwm_kb": max(m["vmhwm_kb"] for m in ms),
                            "vmrss_delta": statistics.median(
                                [(m["vmrss_after_kb"] - m["vmrss_before_kb"]) * 1024
                                 for m in ms])})

    out = []
    w = out.append
    quick = facts.get("quick") == "1"
    w("# lamina vs PyTorch%s" % (" (BENCH_QUICK smoke run: not a measurement)" if quick else ""))
    w("")
    w("`make bench`, %s, on %s (%s cores), load average %s at the start, %s at the end." % (
        facts.get("date", "?"), facts.get("cpu", "?"), facts.get("cores", "?"),
        facts.get("loadavg_start", "?"), facts.get("loadavg_end", "?")))
    w("Median of %s interleaved repetitions (AlexNet: %s), min–max in brackets; "
      "timed windows of %s s after %s s of warm-up." % (
          facts.get("reps", "?"), facts.get("alexnet_reps", "?"), facts.get("seconds", "?"),
          facts.get("warmup", "?")))
    w("**×** is lamina against PyTorch, >1 when lamina is faster (samples/s: lamina/PyTorch; "
      "latency: PyTorch/lamina): the median of the ratios of each repetition's pair, run "
      "seconds apart, with their range. **peak** is the "
      "fraction of the FMA peak measured in the same run for that many threads; training counts "
      "`laminac --summary --no-rewrite`'s training FLOPs per sample (the layers as written, "
      "forward and backward: no input gradient for the first layer; PyTorch computes none "
      "either).")
    w("")
    w("| model | measure | batch | threads | lamina | PyTorch | × (pairs) | lamina peak | PyTorch peak | lamina threads | PyTorch threads |")
    w("|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for r in rows:
        sp = "—" if r["speedup"] is None else "**%.2f**" % r["speedup"]
        if r["pair_min"] is not None and r["pair_max"] is not None and r["pair_min"] != r["pair_max"]:
            sp += " (%.2f–%.2f)" % (r["pair_min"], r["pair_max"])
        w("| %s | %s | %d | %d | %s | %s | %s | %s | %s | %s | %s |" % (
            TITLE[r["model"]], WHAT[r["measure"]], r["batch"], r["threads"],
            fmt_range(r["lamina"], r["unit"]), fmt_range(r["pytorch"], r["unit"]), sp,
            pct(r["lamina_peak"]), pct(r["pytorch_peak"]), r["lamina_config"], r["config"]))
    w("")

    if mem:
        w("Memory of a training instance (batch 64): what the process's anonymous resident "
          "memory (RssAnon) grew by from creating the instance and training it, against "
          "`NAME_size()` (= `--summary`'s total). The 2-thread build (laminac --threads 2) "
          "holds per-part gradients and a work area per part.")
        w("")
        w("| model | threads | NAME_size() | resident | resident/size | VmRSS growth | VmHWM of the process |")
        w("|---|---:|---:|---:|---:|---:|---:|")
        for m in mem:
            w("| %s | %d | {:,} B | {:,.0f} B | %.3f | {:,.0f} B | {:,} kB |".format(
                m["size"], m["resident"], m["vmrss_delta"], m["hwm_kb"])
              % (TITLE[m["model"]], m["threads"], m["ratio"]["median"]))
        w("")
    warn = contention(facts, peaks, end_peaks)
    if warn:
        w("> **Warning:** " + warn)
        w("")

    # Targets of issue 5.
    def row(model, measure, t):
        for r in rows:
            if r["model"] == model and r["measure"] == measure and r["threads"] == t:
                return r
        return None

    w("## Issue 5's targets (one thread, batch 64 unless stated)")
    w("")
    w("**ceiling** is the best ratio this machine allows, from probes in the same run: "
      "for training and inference samples/s, lamina at 100% of the FMA peak (1 / PyTorch's peak "
      "fraction: the FLOPs of the computation as written, before any algorithm that needs "
      "fewer, such as Winograd's); for "
      "batch-1 latency, the larger of that and the time to read the model's parameters once "
      "(a vectorised sum over them, hot in cache as in the latency loop: a forward pass "
      "reads every weight once). A target above its ceiling cannot be met on this machine "
      "in float32.")
    w("")
    w("| target | wanted | measured | ceiling | |")
    w("|---|---:|---:|---:|---|")
    met = total = 0

    def target(name, wanted, got, ok, ceiling="", beyond=False):
        nonlocal met, total
        total += 1
        met += bool(ok)
        verdict = "met" if ok else "**missed** (beyond the ceiling)" if beyond else "**missed**"
        w("| %s | %s | %s | %s | %s |" % (name, wanted, got, ceiling, verdict))

    def times(x, want):
        """x as "1.23×", with more decimals where two would put it on the
        other side of want (2.998 is not 3.00, nor 2.9996 3.000)."""
        d = 2
        while d < 6 and (round(x, d) >= want) != (x >= want):
            d += 1
        return "%.*f×" % (d, x)

    def ceiling(r):
        """The best lamina/PyTorch ratio the probes allow, or None."""
        if not r["pytorch"] or r["pytorch_peak"] is None:
            return None
        if r["measure"] == "train" and r["model"] not in train_flops:
            return None  # training's FLOPs only estimated (3 x forward): no ceiling
        best = 1.0 / r["pytorch_peak"]  # lamina at 100% of the FMA peak
        if r["measure"] == "latency":
            floor = weights.get(r["model"])
            if floor:
                best = min(best, r["pytorch"]["median"] / floor)
        return best

    for measure, model, want in TARGETS:
        r = row(model, measure, 1)
        if r and r["speedup"] is not None:
            name = {"train": "training", "latency": "inference latency, batch 1",
                    "throughput": "inference, batch 64"}[measure]
            c = ceiling(r)
            target("%s: %s" % (TITLE[model], name), "≥ %.1f× PyTorch" % want,
                   times(r["speedup"], want), r["speedup"] >= want,
                   times(c, want) if c else "", c is not None and c < want)
    for model in ("lenet5", "cnn"):
        r1, r2 = row(model, "train", 1), row(model, "train", 2)
        if r1 and r2 and r1["lamina"] and r2["lamina"]:
            s = r2["lamina"]["median"] / r1["lamina"]["median"]
            target("%s: training, 2 threads / 1 thread" % TITLE[model], "≥ 1.70×", times(s, 1.7),
                   s >= 1.7)
    for m in mem:
        if m["model"] == "alexnet" or m["threads"] != 1:
            continue
        x = m["ratio"]["median"]
        target("%s: training instance resident / --summary" % TITLE[m["model"]], "within 10%",
               "%.3f" % x, abs(x - 1) <= 0.10)
    ahead = [r for r in rows if r["speedup"] is not None]
    n_ahead = sum(1 for r in ahead if r["speedup"] >= 1)
    w("")
    w("%d of %d targets met; lamina is ahead of PyTorch on %d of %d rows." % (
        met, total, n_ahead, len(ahead)))
    w("")

    w("## Probes (same run)")
    w("")
    if weights:
        w("- reading the parameters once (the floor under batch-1 latency): " + "; ".join(
            "%s %s" % (TITLE[m], fmt_value(weights[m], "us")) for m in MODELS if m in weights))
    for t in sorted(peaks):
        p = peaks[t]
        extra = ", 512-bit %.1f" % p["fma512"] if "fma512" in p else ""
        again = ("; %.1f at the end of the run" % end_peaks[t]["value"]) if t in end_peaks else ""
        w("- FMA peak, %d thread%s: **%.1f GFLOP/s** (256-bit FMA loop %.1f%s%s)" % (
            t, "" if t == 1 else "s", p["value"], p["fma256"], extra, again))
    sg = [l for l in lines if l.get("measure") == "sgemm"]
    if sg:
        w("- `lm_sgemm` (%s), GFLOP/s, C[m,n] += op(A)[m,k] op(B)[k,n]:" % facts.get("blas", "?"))
        w("")
        w("| shape | m | n | k | 1 thread | 2 threads |")
        w("|---|---:|---:|---:|---:|---:|")
        seen = []
        for l in sg:
            if l["shape"] not in seen:
                seen.append(l["shape"])
        for s in seen:
            by = {l["threads"]: l for l in sg if l["shape"] == s}
            any_ = next(iter(by.values()))
            w("| %s%s | %d | %d | %d | %s | %s |" % (
                s, " (B transposed)" if any_["tb"] else "", any_["m"], any_["n"], any_["k"],
                "%.1f" % by[1]["value"] if 1 in by else "—",
                "%.1f" % by[2]["value"] if 2 in by else "—"))
    w("")

    for impl, name in (("lamina", "lamina"), ("pytorch", "PyTorch")):
        cal = [l for l in lines if l.get("phase") == "calibrate" and l.get("impl") == impl]
        if not cal:
            continue
        rounds = len({l.get("rep") for l in cal})
        w("## %s's 2-thread settings (median of %d short run%s each; the best is used)"
          % (name, rounds, "" if rounds == 1 else "s"))
        w("")
        configs = []
        for l in cal:
            if l["config"] not in configs:
                configs.append(l["config"])
        w("| model | measure | " + " | ".join(configs) + " |")
        w("|---|---|" + "---:|" * len(configs))
        for model in MODELS:
            for measure in MEASURES:
                by = calibration(lines, impl, model, measure)
                if not by:
                    continue
                best = choose(lines, impl, model, measure)
                cells = []
                for c in configs:
                    if c not in by:
                        cells.append("—")
                        continue
                    v = fmt_value(by[c], WHAT_UNIT[measure])
                    cells.append("**%s**" % v if c == best else v)
                w("| %s | %s | %s |" % (TITLE[model], WHAT[measure], " | ".join(cells)))
        w("")
        if impl == "lamina":
            w("split: `laminac --threads 2`, `NAME_set_threads(m, 2)`: every pass splits the batch "
              "in 2 parts (OpenMP), the BLAS on 1 thread; split_passive: the same with "
              "OMP_WAIT_POLICY=PASSIVE; blas: `NAME_set_threads(m, 1)`, `lm_set_threads(2)`, "
              "OPENBLAS_NUM_THREADS=2.")
        else:
            legend = {
                "omp2_blas1": "`torch.set_num_threads(2)`, OMP_NUM_THREADS=2, "
                              "OPENBLAS_NUM_THREADS=1",
                "omp2_blas2_passive": "both 2, OMP_WAIT_POLICY=PASSIVE",
                "omp1_blas2": "intra-op 1 thread, OpenBLAS 2",
                "omp2_blas2": "both 2 threads, OpenMP spinning (the default)"}
            w("; ".join("%s: %s" % (c, legend.get(c, "?")) for c in configs) +
              ". One thread: `torch.set_num_threads(1)`, OMP_NUM_THREADS=1, "
              "OPENBLAS_NUM_THREADS=1.")
        w("")

    w("## Machine and settings")
    w("")
    for key, label in (("cpu", "CPU"), ("cores", "cores (nproc)"), ("cpu_flags", "vector ISA"),
                       ("kernel", "kernel"), ("blas", "BLAS (lm_blas_describe)"),
                       ("blas_config", "BLAS build"), ("cc", "C compiler"),
                       ("cflags", "generated code compiled with"),
                       ("lamina_threads", "lamina's threads"), ("torch", "PyTorch"),
                       ("numpy", "numpy"), ("commit", "lamina commit"),
                       ("duration", "run time")):
        if key in facts:
            w("- %s: %s" % (label, facts[key]))
    if "cpu_others" in facts:
        o, st, secs = facts["cpu_others"].split()
        w("- CPU time others used during the run (the machine's busy time minus the run's; "
          "steal: taken by the hypervisor): %s s, steal %s s, over %s s" % (o, st, secs))
    w("")
    text = "\n".join(out)
    print(text)
    with open("%s/results.md" % outdir, "w") as f:
        f.write(text + "\n")

    with open("%s/results.csv" % outdir, "w", newline="") as f:
        cw = csv.writer(f)
        cw.writerow(["model", "measure", "batch", "threads", "unit", "lamina_config",
                     "lamina_median", "lamina_min", "lamina_max", "lamina_runs",
                     "pytorch_median", "pytorch_min", "pytorch_max", "pytorch_runs",
                     "pytorch_config", "speedup", "speedup_pair_min", "speedup_pair_max",
                     "flop_per_sample", "lamina_gflops", "lamina_peak_fraction",
                     "pytorch_gflops", "pytorch_peak_fraction"])

        def g(s, k):
            return "" if not s else "%.6g" % s[k]

        def o(x):
            return "" if x is None else "%.6g" % x

        for r in rows:
            cw.writerow([r["model"], r["measure"], r["batch"], r["threads"], r["unit"],
                         r["lamina_config"],
                         g(r["lamina"], "median"), g(r["lamina"], "min"), g(r["lamina"], "max"),
                         len(r["lamina"]["all"]) if r["lamina"] else 0,
                         g(r["pytorch"], "median"), g(r["pytorch"], "min"),
                         g(r["pytorch"], "max"), len(r["pytorch"]["all"]) if r["pytorch"] else 0,
                         r["config"], o(r["speedup"]), o(r["pair_min"]), o(r["pair_max"]),
                         o(r["flop"]), o(r["lamina_gflops"]), o(r["lamina_peak"]),
                         o(r["pytorch_gflops"]), o(r["pytorch_peak"])])
        for m in mem:
            cw.writerow([m["model"], "memory", 64, m["threads"], "resident/size", "",
                         "%.6g" % m["ratio"]["median"], "%.6g" % m["ratio"]["min"],
                         "%.6g" % m["ratio"]["max"], len(m["ratio"]["all"]),
                         "", "", "", "", "", "", "", "", "", "", "", "", ""])
    return 0


def main(argv):
    if len(argv) == 4 and argv[1] == "table":
        return table(load(argv[2]), argv[3])
    if len(argv) in (6, 7) and argv[1] == "choose" and argv[3] in FALLBACK:
        threads = int(argv[6]) if len(argv) == 7 else None
        print(choose(load(argv[2]), argv[3], argv[4], argv[5], threads))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
