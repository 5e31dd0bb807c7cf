/*
 * vcheck.c — runs verify.c's checks on C that is already written:
 *     vcheck DIR PREFIX [RUNTIME_INCLUDE]
 * checks DIR/PREFIX.c as `laminac --verify` would right after writing it,
 * so tests/verify/run.sh can hand it generated files it has broken.
 * Exit status 0: the file passes; 1: it does not.
 */
#include "lamina.h"

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fputs("usage: vcheck DIR PREFIX [RUNTIME_INCLUDE]\n", stderr);
        return 2;
    }
    return verify_c(argv[1], argv[2], argc == 4 ? argv[3] : NULL) ? 0 : 1;
}
