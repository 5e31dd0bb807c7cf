#!/usr/bin/python3
"""break.py — one deliberate fault in a freshly generated model, for run.sh.

    break.py KIND DIR PREFIX

edits DIR/PREFIX.c (or .h) in place so that `laminac --verify` must reject
it for one reason, KIND (see FAULTS). The edits find their place by the
shape of the generated code, not by line numbers: the first
`static void forward_*(..., int n)` (or backward_*) function, or an
exported API function (PREFIX_destroy, PREFIX_zero_grad), so they keep working as the generator changes.
Exit status 2 if the place cannot be found: run.sh reports that as a failure.
"""
import re
import sys

# KIND: (where, text to insert at the start of that function's body)
FAULTS = {
    # a harmless edit: the control that the edits themselves are clean
    "control":   ("forward", "    (void)n;\n    (void)sqrtf(2.0f);\n"),
    "malloc":    ("forward", "    float *lm_p_ = malloc(sizeof *lm_p_);\n    (void)lm_p_;\n"),
    "vla":       ("forward", "    float lm_vla_[n];\n    lm_vla_[0] = 0.0f;\n    (void)lm_vla_;\n"),
    "recursion": ("forward", "    (void)lm_depth_(n);\n"),
    "mutual":    ("destroy", "    (void)lm_even_(2);\n"),
    "printf":    ("backward", "    printf(\"n = %d\\n\", n);\n"),
    "fopen":     ("zero_grad", "    FILE *lm_f_ = fopen(\"/dev/null\", \"r\");\n    (void)lm_f_;\n"),
    "runtime":   ("forward", "    (void)lm_now();\n"),
    "pointer":   ("forward", "    float (*lm_fp_)(float) = tanhf;\n    (void)lm_fp_(0.0f);\n"),
    "syntax":    ("forward", "    int lm_bad_ = ;\n"),
    "warning":   ("forward", "    int lm_unused_ = 0;\n"),
    "header":    (None, None),
}

# Functions some faults need, put before the function broken.
HELPERS = {
    "recursion": "static int lm_depth_(int k)\n{\n    return k <= 0 ? 0 : 1 + lm_depth_(k - 1);\n}\n\n",
    "mutual": ("static int lm_even_(int k);\n"
               "static int lm_odd_(int k)\n{\n    return k > 0 && lm_even_(k - 1);\n}\n"
               "static int lm_even_(int k)\n{\n    return k == 0 || lm_odd_(k - 1);\n}\n\n"),
}


def find(src, where, prefix):
    """(start of the definition, start of its body) of the function `where`
    names, or None."""
    if where in ("forward", "backward"):
        # the first forward_* / backward_* that takes the batch size n
        pat = r"^static void %s_\w+\([^)]*\bint n\)\n\{\n" % where
    else:
        pat = r"^[\w ]+\**%s_%s\([^)]*\)\n\{\n" % (re.escape(prefix), where)
    m = re.search(pat, src, re.M)
    return (m.start(), m.end()) if m else None


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in FAULTS:
        sys.exit("usage: break.py {%s} DIR PREFIX" % ",".join(FAULTS))
    kind, d, prefix = sys.argv[1:]
    if kind == "header":
        # a pedantic warning in the generated header, after its include guard
        with open("%s/%s.h" % (d, prefix), "a") as f:
            f.write("\n;\n")
        return
    path = "%s/%s.c" % (d, prefix)
    src = open(path).read()
    where, text = FAULTS[kind]
    at = find(src, where, prefix)
    if at is None:
        sys.exit("break.py: %s: no %s function to break" % (path, where))
    src = src[:at[0]] + HELPERS.get(kind, "") + src[at[0]:at[1]] + text + src[at[1]:]
    # printf, malloc, ... declared whatever the generator includes
    src = "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n" + src
    open(path, "w").write(src)


if __name__ == "__main__":
    main()
