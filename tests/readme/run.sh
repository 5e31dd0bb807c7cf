#!/bin/sh
# tests/readme/run.sh — every example in README.md and docs/language.md,
# run as the documents show it.
#
# Run from the repository root after `make`. check_docs.py reads the
# fenced blocks of each document, by their info string:
#   ```lam        must compile: `laminac --check` exits 0 and prints nothing;
#                 a first line "# NAME.lam..." also saves it as NAME.lam for
#                 the blocks after it;
#   ```lam-warn   must compile with warnings; ```lam-error must fail (exit 1);
#                 a ```text block right after either is the exact standard
#                 error (the file is called model.lam);
#   ```c          compiled with gcc -std=c99 -Wall -Wextra -Werror -pedantic
#                 against the model named in the first line's comment
#                 ("model: PATH [laminac options]"), linked with the runtime
#                 and run if it has a main (<!-- run: ARGS --> and
#                 <!-- expect: REGEX --> just after the block give arguments
#                 and expected output; {ckpt}, {images}, {imageN}, {classN}
#                 are a checkpoint, IDX images and classes the test makes
#                 with the generated code itself); a first line "/* NAME.c"
#                 also saves it as NAME.c;
#   ```console    each "$ command" runs in the work directory and must exit 0;
#                 the lines under it are its expected output ("..." skips
#                 lines; numbers may differ by 5%);
#   ```python     run with /usr/bin/python3 (<!-- expect --> as for C);
#   ```sh, ```text, ```ebnf and the rest are shown, not run.
# It also runs every row of the language reference's error and warning
# tables, checks that every diag_error and diag_warning message of the
# front end is in those tables, that a table after <!-- macros: MODEL -->
# gives the values laminac writes into MODEL's header, and that the
# README's embedding example is tests/embed/classify.c. The work directory is a temporary copy of
# examples/ with runtime/, build/, tests/ and laminac linked in, so the
# commands read as if typed at the repository root.
# Ends with "readme: N passed, N failed"; exits non-zero if anything failed.
set -u
cd "$(dirname "$0")/../.." || exit 2
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
if [ ! -x ./laminac ] || [ ! -f build/liblamina_rt.a ]; then
    echo "readme: build first: make"
    echo "readme: 0 passed, 1 failed"
    exit 1
fi
exec "$PY" tests/readme/check_docs.py README.md docs/language.md
