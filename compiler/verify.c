/*
 * verify.c — --verify: the emitted C, parsed by libclang in-process and
 * checked against what the design promises of generated code.
 *
 * It owns these checks, on DIR/PREFIX.c (and the PREFIX.h it includes):
 *   - it compiles clean: -std=c99 -Wall -Wextra -pedantic, and any warning
 *     or error is a failure (printed file:line:col, as clang words it);
 *   - the hot path — every function reachable from the compute entry points
 *     (PREFIX_forward, _forward_train, _backward, _train_step, _zero_grad,
 *     _update, _evaluate, _output, _input_grad) — calls only functions
 *     defined in the file, the runtime's compute functions (rt_compute[]),
 *     <math.h> and memcpy/memset; allocates nothing; calls through no
 *     function pointer;
 *   - nothing in the file uses a variable-length (or variably modified)
 *     type, and nothing recurses (no cycle in the call graph, which counts
 *     taking a function's address as calling it);
 * and it reports, for the record, what the functions outside the hot path
 * (create, destroy, init, save, load) call beyond the file, and each entry
 * point's deepest stack: along the deepest call chain, the sum of each
 * function's parameters and automatic locals (clang_Type_getSizeOf). That
 * is the C's own bound before optimisation — no spills, no call overhead,
 * nothing inside the runtime (lm_sgemm's portable fallback alone uses about
 * 160 KiB) or libc.
 *
 * It must not change the files or compile them for real, and it needs
 * nothing of the IR: it checks only what was written, so it catches what
 * any emitter bug leaves in the C. Names are matched, not declarations
 * traced into headers: a runtime compute function added to lamina_rt.h
 * must be added to rt_compute[] below.
 *
 * The runtime's header is looked for in runtime_include, or, when that is
 * NULL, next to the laminac executable (/proc/self/exe): <exe dir>/runtime
 * (./laminac in the source tree), then <exe dir>/../runtime
 * (build/laminac-verify). Built without libclang (make LIBCLANG=1 or make
 * laminac-verify), verify_c says so and fails.
 */
#include "lamina.h"

#ifndef LM_LIBCLANG

bool verify_available(void)
{
    return false;
}

bool verify_c(const char *dir, const char *prefix, const char *runtime_include)
{
    (void)dir;
    (void)prefix;
    (void)runtime_include;
    fputs("laminac: --verify needs a laminac built with libclang: make LIBCLANG=1\n", stderr);
    return false;
}

#else

bool verify_available(void)
{
    return true;
}

#include <clang-c/Index.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* What the hot path may call besides the file's own functions. */
static const char *const rt_compute[] = {
    "lm_sgemm", "lm_sgather_sum", "lm_adam_update", "lm_rand_u64", "lm_rand_uniform", "lm_rand_normal",
    "lm_fill_uniform", "lm_fill_normal", "lm_shuffle",
};
static const char *const mem_ok[] = {
    "memcpy", "memset", "__builtin_memcpy", "__builtin_memset",
};
/* C99's <math.h> functions; each also with an f and an l suffix. */
static const char *const math_fns[] = {
    "acos", "asin", "atan", "atan2", "cos", "sin", "tan", "acosh", "asinh", "atanh",
    "cosh", "sinh", "tanh", "exp", "exp2", "expm1", "frexp", "ilogb", "ldexp", "log",
    "log10", "log1p", "log2", "logb", "modf", "scalbn", "scalbln", "cbrt", "fabs",
    "hypot", "pow", "sqrt", "erf", "erfc", "lgamma", "tgamma", "ceil", "floor",
    "nearbyint", "rint", "lrint", "llrint", "round", "lround", "llround", "trunc",
    "fmod", "remainder", "remquo", "copysign", "nan", "nextafter", "nexttoward",
    "fdim", "fmax", "fmin", "fma",
};
/* What <math.h>'s macros (NAN, INFINITY, isnan, ...) expand to, after
 * "__builtin_" (clang) or "__" (glibc); also with f and l suffixes. */
static const char *const math_macro_fns[] = {
    "inf", "huge_val", "nans", "isnan", "isinf", "isinf_sign", "isfinite", "finite",
    "isnormal", "fpclassify", "signbit", "isgreater", "isgreaterequal", "isless",
    "islessequal", "islessgreater", "isunordered", "issignaling", "iseqsig",
};
/* Allocation, forbidden anywhere on the hot path. */
static const char *const alloc_fns[] = {
    "malloc", "calloc", "realloc", "free", "aligned_alloc", "alloca", "posix_memalign",
    "memalign", "valloc", "pvalloc", "reallocarray", "strdup", "strndup",
    "__builtin_alloca", "__builtin_alloca_with_align", "__builtin_malloc",
    "__builtin_calloc", "__builtin_realloc", "__builtin_free", "__builtin_strdup",
    "__builtin_strndup",
};

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

static bool in_list(const char *s, const char *const *list, int n)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(s, list[i]))
            return true;
    return false;
}

/* s is one of list[], or one of them with an f or l suffix. */
static bool in_list_fl(const char *s, const char *const *list, int n)
{
    size_t len = strlen(s);
    for (int i = 0; i < n; i++) {
        size_t l = strlen(list[i]);
        if (!strncmp(s, list[i], l) &&
            (len == l || (len == l + 1 && (s[l] == 'f' || s[l] == 'l'))))
            return true;
    }
    return false;
}

static bool is_math(const char *s)
{
    if (in_list_fl(s, math_fns, COUNT(math_fns)))
        return true;
    if (!strncmp(s, "__builtin_", 10))
        return in_list_fl(s + 10, math_fns, COUNT(math_fns)) ||
               in_list_fl(s + 10, math_macro_fns, COUNT(math_macro_fns));
    if (!strncmp(s, "__", 2))
        return in_list_fl(s + 2, math_macro_fns, COUNT(math_macro_fns));
    return false;
}

/* ---- what the walk collects ------------------------------------------------ */

typedef struct Where {
    const char *file;
    unsigned line, col;
} Where;

typedef struct Fn Fn;

/* A use of a function inside a function body: a call, or its address
 * taken (kind REF_FUNC), or a call through a pointer (REF_POINTER_CALL). */
typedef enum RefKind { REF_FUNC, REF_POINTER_CALL } RefKind;

typedef struct Ref {
    RefKind kind;
    const char *name; /* REF_FUNC: the function */
    Fn *fn;           /* its definition in the file, or NULL: outside */
    Where at;
} Ref;

/* A function defined in the generated files. */
struct Fn {
    const char *name;
    CXCursor cursor;
    int64_t frame; /* bytes of parameters and automatic locals */
    PtrVec refs;   /* Ref*, in source order */
    bool hot;
    Fn *via;       /* hot: its caller on a shortest chain from an entry point */
    int state;     /* depth-first walk: 0 not seen, 1 on the stack, 2 done */
    int64_t deep;  /* frame + the deepest chain of callees in the file */
    Fn *deep_next; /* the first callee on that chain */
};

typedef struct Verify {
    Arena *arena;
    const char *base; /* PREFIX.c, for the report */
    CXFile files[2];  /* the generated .c and .h */
    PtrVec fns;       /* Fn*, in file order */
    Fn *cur;          /* the function being walked, or NULL */
    int errors;
    PtrVec stack;     /* Fn*: the depth-first walk's path */
} Verify;

static const char *str_take(Arena *a, CXString s)
{
    const char *p = arena_strdup(a, clang_getCString(s) ? clang_getCString(s) : "");
    clang_disposeString(s);
    return p;
}

/* Where c is, in the file (a macro's use, not its definition). */
static Where where_of(Verify *v, CXCursor c)
{
    CXFile file;
    unsigned line, col;
    clang_getExpansionLocation(clang_getCursorLocation(c), &file, &line, &col, NULL);
    Where w = {"?", line, col};
    if (file)
        w.file = str_take(v->arena, clang_getFileName(file));
    return w;
}

static bool in_generated(Verify *v, CXCursor c)
{
    CXFile file;
    clang_getExpansionLocation(clang_getCursorLocation(c), &file, NULL, NULL, NULL);
    return file && (clang_File_isEqual(file, v->files[0]) ||
                    (v->files[1] && clang_File_isEqual(file, v->files[1])));
}

static void verror(Verify *v, Where at, const char *fmt, ...) LM_PRINTF(3, 4);
static void verror(Verify *v, Where at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s:%u:%u: error: ", at.file, at.line, at.col);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    v->errors++;
}

static Fn *find_fn(Verify *v, const char *name)
{
    for (int i = 0; i < v->fns.len; i++) {
        Fn *f = v->fns.items[i];
        if (!strcmp(f->name, name))
            return f;
    }
    return NULL;
}

/* A type that is, or points into, a variable-length array. */
static bool variably_modified(CXType t)
{
    for (int depth = 0; depth < 32; depth++) {
        t = clang_getCanonicalType(t);
        switch (t.kind) {
        case CXType_VariableArray:
            return true;
        case CXType_ConstantArray:
        case CXType_IncompleteArray:
            t = clang_getArrayElementType(t);
            break;
        case CXType_Pointer:
            t = clang_getPointeeType(t);
            break;
        default:
            return false;
        }
    }
    return false;
}

static bool is_decl_with_type(enum CXCursorKind k)
{
    return k == CXCursor_VarDecl || k == CXCursor_ParmDecl || k == CXCursor_FieldDecl ||
           k == CXCursor_TypedefDecl;
}

/* Inside a function (v->cur) or a file-level declaration (v->cur NULL):
 * variable-length arrays, the frame, and every use of a function. */
static enum CXChildVisitResult walk_body(CXCursor c, CXCursor parent, CXClientData data)
{
    (void)parent;
    Verify *v = data;
    enum CXCursorKind k = clang_getCursorKind(c);
    if (is_decl_with_type(k) || k == CXCursor_CStyleCastExpr ||
        k == CXCursor_CompoundLiteralExpr) {
        CXType t = clang_getCursorType(c);
        if (variably_modified(t)) {
            const char *ty = str_take(v->arena, clang_getTypeSpelling(t));
            Where at = where_of(v, c);
            const char *what = str_take(v->arena, clang_getCursorSpelling(c));
            if (is_decl_with_type(k) && *what)
                verror(v, at, "%s%s'%s' is a variable-length array (%s)",
                       v->cur ? v->cur->name : "", v->cur ? ": " : "", what, ty);
            else
                verror(v, at, "%s%suses a variable-length array type (%s)",
                       v->cur ? v->cur->name : "", v->cur ? ": " : "", ty);
        }
    }
    if (!v->cur)
        return CXChildVisit_Recurse;
    Fn *f = v->cur;
    if (k == CXCursor_ParmDecl || k == CXCursor_VarDecl) {
        /* Its own parameters and automatic locals, not those of a function
         * type written inside it, nor statics. */
        enum CX_StorageClass sc = clang_Cursor_getStorageClass(c);
        if (clang_equalCursors(clang_getCursorSemanticParent(c), f->cursor) &&
            sc != CX_SC_Static && sc != CX_SC_Extern) {
            long long size = clang_Type_getSizeOf(clang_getCursorType(c));
            if (size > 0)
                f->frame += size;
        }
    } else if (k == CXCursor_CallExpr) {
        CXCursor callee = clang_getCursorReferenced(c);
        if (clang_Cursor_isNull(callee) || clang_getCursorKind(callee) != CXCursor_FunctionDecl) {
            Ref *r = ARENA_NEW(v->arena, Ref);
            r->kind = REF_POINTER_CALL;
            r->name = "";
            r->at = where_of(v, c);
            vec_push(v->arena, &f->refs, r);
        }
    } else if (k == CXCursor_DeclRefExpr) {
        CXCursor d = clang_getCursorReferenced(c);
        if (clang_getCursorKind(d) == CXCursor_FunctionDecl) {
            Ref *r = ARENA_NEW(v->arena, Ref);
            r->kind = REF_FUNC;
            r->name = str_take(v->arena, clang_getCursorSpelling(d));
            r->at = where_of(v, c);
            vec_push(v->arena, &f->refs, r);
        }
    }
    return CXChildVisit_Recurse;
}

/* The file's top level: each function definition, and the declarations
 * of the generated files (for variable-length arrays). */
static enum CXChildVisitResult walk_top(CXCursor c, CXCursor parent, CXClientData data)
{
    (void)parent;
    Verify *v = data;
    if (!in_generated(v, c))
        return CXChildVisit_Continue;
    if (clang_getCursorKind(c) == CXCursor_FunctionDecl && clang_isCursorDefinition(c)) {
        Fn *f = ARENA_NEW(v->arena, Fn);
        f->name = str_take(v->arena, clang_getCursorSpelling(c));
        f->cursor = c;
        vec_push(v->arena, &v->fns, f);
        v->cur = f;
        clang_visitChildren(c, walk_body, v);
        v->cur = NULL;
    } else {
        walk_body(c, parent, v);
        clang_visitChildren(c, walk_body, v);
    }
    return CXChildVisit_Continue;
}

/* ---- the checks ------------------------------------------------------------ */

/* "entry -> ... -> f" along the hot path's shortest chain. */
static const char *hot_chain(Verify *v, Fn *f)
{
    const char *s = f->name;
    for (Fn *g = f->via; g; g = g->via)
        s = arena_printf(v->arena, "%s -> %s", g->name, s);
    return s;
}

static void check_hot(Verify *v, Fn *f)
{
    for (int i = 0; i < f->refs.len; i++) {
        Ref *r = f->refs.items[i];
        if (r->kind == REF_POINTER_CALL) {
            verror(v, r->at, "%s calls through a function pointer on the hot path (%s)", f->name,
                   hot_chain(v, f));
        } else if (r->fn) {
            continue;
        } else if (in_list(r->name, alloc_fns, COUNT(alloc_fns))) {
            verror(v, r->at, "%s allocates memory on the hot path: calls %s (%s)", f->name,
                   r->name, hot_chain(v, f));
        } else if (!in_list(r->name, rt_compute, COUNT(rt_compute)) &&
                   !in_list(r->name, mem_ok, COUNT(mem_ok)) && !is_math(r->name)) {
            verror(v, r->at,
                   "%s calls %s on the hot path: only the file's functions, the runtime's "
                   "compute functions, <math.h>, memcpy and memset are allowed (%s)",
                   f->name, r->name, hot_chain(v, f));
        }
    }
}

/* Depth-first from f: reports each cycle once (at the use that closes it)
 * and sets f->deep, ignoring the edges that close cycles. */
static void walk_calls(Verify *v, Fn *f)
{
    f->state = 1;
    vec_push(v->arena, &v->stack, f);
    int64_t below = 0;
    for (int i = 0; i < f->refs.len; i++) {
        Ref *r = f->refs.items[i];
        Fn *g = r->fn;
        if (!g)
            continue;
        if (g->state == 1) {
            bool again = false;
            for (int j = 0; j < i && !again; j++)
                again = ((Ref *)f->refs.items[j])->fn == g;
            if (again)
                continue;
            int j = v->stack.len - 1;
            while (j > 0 && v->stack.items[j] != g)
                j--;
            const char *cycle = g->name;
            for (j++; j < v->stack.len; j++)
                cycle = arena_printf(v->arena, "%s -> %s", cycle, ((Fn *)v->stack.items[j])->name);
            verror(v, r->at, "%s is recursive: %s -> %s", g->name, cycle, g->name);
            continue;
        }
        if (g->state == 0)
            walk_calls(v, g);
        if (!f->deep_next || g->deep > below) {
            below = g->deep;
            f->deep_next = g;
        }
    }
    f->deep = f->frame + below;
    v->stack.len--;
    f->state = 2;
}

static const char *deep_chain(Verify *v, Fn *f)
{
    const char *s = f->name;
    for (Fn *g = f->deep_next; g; g = g->deep_next)
        s = arena_printf(v->arena, "%s -> %s", s, g->name);
    return s;
}

/* The names f uses from outside the file, each once, in order. */
static const char *outside_calls(Verify *v, Fn *f)
{
    const char *s = NULL;
    for (int i = 0; i < f->refs.len; i++) {
        Ref *r = f->refs.items[i];
        if (r->fn)
            continue;
        const char *name = r->kind == REF_POINTER_CALL ? "(a function pointer)" : r->name;
        bool seen = false;
        for (int j = 0; j < i && !seen; j++) {
            Ref *q = f->refs.items[j];
            seen = !q->fn && q->kind == r->kind && !strcmp(q->name, r->name);
        }
        if (!seen)
            s = s ? arena_printf(v->arena, "%s %s", s, name) : name;
    }
    return s;
}

static void check(Verify *v, const char *prefix)
{
    static const char *const entries[] = {
        "forward", "forward_train", "backward", "train_step", "zero_grad",
        "update", "evaluate", "output", "input_grad",
    };
    for (int i = 0; i < v->fns.len; i++) {
        Fn *f = v->fns.items[i];
        for (int j = 0; j < f->refs.len; j++) {
            Ref *r = f->refs.items[j];
            if (r->kind == REF_FUNC)
                r->fn = find_fn(v, r->name);
        }
    }

    /* The hot path, breadth first so each function's chain is a shortest. */
    PtrVec queue = {0};
    PtrVec entry_fns = {0};
    for (int i = 0; i < COUNT(entries); i++) {
        Fn *f = find_fn(v, arena_printf(v->arena, "%s_%s", prefix, entries[i]));
        if (f && !f->hot) {
            f->hot = true;
            vec_push(v->arena, &queue, f);
            vec_push(v->arena, &entry_fns, f);
        }
    }
    if (!entry_fns.len) {
        Where at = {v->base, 1, 1};
        verror(v, at, "no compute entry point (%s_forward) is defined", prefix);
    }
    for (int q = 0; q < queue.len; q++) {
        Fn *f = queue.items[q];
        for (int i = 0; i < f->refs.len; i++) {
            Ref *r = f->refs.items[i];
            if (r->fn && !r->fn->hot) {
                r->fn->hot = true;
                r->fn->via = f;
                vec_push(v->arena, &queue, r->fn);
            }
        }
    }
    for (int q = 0; q < queue.len; q++)
        check_hot(v, queue.items[q]);

    /* Recursion anywhere, and each function's deepest chain. */
    for (int i = 0; i < v->fns.len; i++) {
        Fn *f = v->fns.items[i];
        if (f->state == 0)
            walk_calls(v, f);
    }

    /* The record: what the rest calls, and the stack. */
    bool said = false;
    for (int i = 0; i < v->fns.len; i++) {
        Fn *f = v->fns.items[i];
        const char *calls = f->hot ? NULL : outside_calls(v, f);
        if (!calls)
            continue;
        if (!said)
            printf("verify: %s: outside the hot path, calls out of the file:\n", v->base);
        said = true;
        printf("  %s: %s\n", f->name, calls);
    }
    Fn *deepest = NULL;
    for (int i = 0; i < entry_fns.len; i++) {
        Fn *f = entry_fns.items[i];
        printf("verify: %s: stack from %s: %lld bytes (%s)\n", v->base, f->name,
               (long long)f->deep, deep_chain(v, f));
        if (!deepest || f->deep > deepest->deep)
            deepest = f;
    }
    /* The exported rest (create, save, load, ...), deepest only. */
    Fn *cold = NULL;
    for (int i = 0; i < v->fns.len; i++) {
        Fn *f = v->fns.items[i];
        if (!f->hot && clang_Cursor_getStorageClass(f->cursor) != CX_SC_Static &&
            (!cold || f->deep > cold->deep))
            cold = f;
    }
    if (cold)
        printf("verify: %s: stack outside the hot path: %lld bytes (%s)\n", v->base,
               (long long)cold->deep, deep_chain(v, cold));
    if (v->errors) {
        fflush(stdout);
        fprintf(stderr, "verify: %s: FAILED: %d problem%s\n", v->base, v->errors,
                v->errors == 1 ? "" : "s");
    } else {
        printf("verify: %s: ok: %d functions, hot path %d functions, deepest stack %lld bytes "
               "(%s)\n",
               v->base, v->fns.len, queue.len, (long long)deepest->deep, deep_chain(v, deepest));
    }
}

/* ---- the driver ------------------------------------------------------------ */

/* The directory holding lamina_rt.h next to the running laminac, or NULL. */
static const char *find_runtime(Arena *a)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        fputs("laminac: --verify: cannot find the runtime's header: /proc/self/exe is "
              "unreadable\n",
              stderr);
        return NULL;
    }
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash)
        *slash = '\0';
    const char *cand[] = {
        arena_printf(a, "%s/runtime", exe),
        arena_printf(a, "%s/../runtime", exe),
    };
    for (int i = 0; i < COUNT(cand); i++)
        if (access(arena_printf(a, "%s/lamina_rt.h", cand[i]), R_OK) == 0)
            return cand[i];
    fprintf(stderr, "laminac: --verify: cannot find lamina_rt.h in %s or %s\n", cand[0],
            cand[1]);
    return NULL;
}

/* Every diagnostic of severity warning or worse, as clang words it. */
static int report_diagnostics(CXTranslationUnit tu)
{
    int bad = 0;
    unsigned n = clang_getNumDiagnostics(tu);
    for (unsigned i = 0; i < n; i++) {
        CXDiagnostic d = clang_getDiagnostic(tu, i);
        if (clang_getDiagnosticSeverity(d) >= CXDiagnostic_Warning) {
            CXString s = clang_formatDiagnostic(d, clang_defaultDiagnosticDisplayOptions());
            fprintf(stderr, "%s\n", clang_getCString(s));
            clang_disposeString(s);
            bad++;
        }
        clang_disposeDiagnostic(d);
    }
    return bad;
}

bool verify_c(const char *dir, const char *prefix, const char *runtime_include)
{
    Arena *arena = arena_new();
    Verify v = {0};
    v.arena = arena;
    v.base = arena_printf(arena, "%s.c", prefix);
    const char *path = arena_printf(arena, "%s/%s.c", dir, prefix);
    const char *header = arena_printf(arena, "%s/%s.h", dir, prefix);
    if (access(path, R_OK) != 0) {
        fprintf(stderr, "laminac: --verify: cannot read '%s'\n", path);
        arena_free(arena);
        return false;
    }
    if (!runtime_include)
        runtime_include = find_runtime(arena);
    if (!runtime_include) {
        arena_free(arena);
        return false;
    }
    const char *args[] = {"-std=c99", "-Wall", "-Wextra", "-pedantic",
                          "-I", dir, "-I", runtime_include};
    CXIndex index = clang_createIndex(0, 0);
    CXTranslationUnit tu = NULL;
    enum CXErrorCode ec = clang_parseTranslationUnit2(
        index, path, args, COUNT(args), NULL, 0, CXTranslationUnit_KeepGoing, &tu);
    if (ec != CXError_Success || !tu) {
        fprintf(stderr, "laminac: --verify: libclang could not parse '%s' (error %d)\n", path,
                (int)ec);
        clang_disposeIndex(index);
        arena_free(arena);
        return false;
    }
    v.errors = report_diagnostics(tu);
    v.files[0] = clang_getFile(tu, path);
    v.files[1] = clang_getFile(tu, header);
    clang_visitChildren(clang_getTranslationUnitCursor(tu), walk_top, &v);
    check(&v, prefix);
    bool ok = v.errors == 0;
    fflush(stdout);
    clang_disposeTranslationUnit(tu);
    clang_disposeIndex(index);
    arena_free(arena);
    return ok;
}

#endif
