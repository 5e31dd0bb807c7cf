/*
 * parser.y — the grammar of the lamina language.
 *
 * A pure bison parser over the reentrant scanner in lexer.l. The grammar
 * is deliberately uniform (every statement is `head [name] [(args)]
 * [activations] ;`); what a statement means is lower.c's business, so
 * this file holds no semantic checks: actions call ast.c builders.
 *
 * A file is read as a flat list of items (block headers, statements and
 * closing braces) that the actions group into blocks, so a missing or
 * extra '}' is reported once, where it is, and the blocks around it are
 * still read. Syntax errors recover at the end of the statement:
 *   - a statement whose ';' is missing at the end of its line (or before
 *     a '}') is reported as such and kept whole;
 *   - any other broken statement is skipped to its ';' (or to a '}' or
 *     '{') and kept as a "broken" statement, one with no head word, so
 *     that lower.c knows something stood there and neither reports it
 *     missing nor shape-checks across it;
 *   - a broken block header becomes a block with no kind, which lower.c
 *     skips.
 * So one run reports every syntax error, each once.
 *
 *   program   = item*
 *   item      = IDENT [IDENT] '{'          (model lenet5 {, train {)
 *             | stmt
 *             | '}'
 *   stmt      = IDENT [IDENT] ['(' args ')' act*] ';'
 *             | IDENT IDENT '[' values ']' ';'          (input x[1,28,28])
 *             | IDENT number ';'                       (batch 64)
 *   act       = IDENT ['(' args ')']
 *   args      = [arg (',' arg)* [',']]
 *   arg       = value | IDENT '=' value
 *   value     = number | IDENT | '[' values ']'
 *   number    = ['-'] (INT | FLOAT)
 */
%define api.pure full
%define parse.error custom
%locations
%expect 0
%param {void *scanner}
%parse-param {ParseCtx *cx}

%code requires {
#include "lamina.h"

/* The blocks of the file as the items arrive: the open block (if any),
 * its header and its statements so far; and the last block closed. */
typedef struct Items {
    bool open;
    const char *kind, *name; /* kind NULL: a broken header */
    Loc loc, name_loc, brace;
    PtrVec *stmts;
    Block *last;         /* the last block closed, and its statements */
    PtrVec *last_stmts;
    bool stray_said;     /* "outside any block" said since the last '}' */
    bool stray_pending;  /* a statement came before the first block */
} Items;
}

%code provides {
int yylex(YYSTYPE *lval, YYLTYPE *lloc, void *scanner);
}

%code {
#include <string.h>

static Loc loc_of(YYLTYPE l)
{
    Loc at = {l.first_line, l.first_column,
              l.last_line == l.first_line ? l.last_column : l.first_column + 1};
    return at;
}

/* From the start of a to the end of b, if they are on one line. */
static Loc span(YYLTYPE a, YYLTYPE b)
{
    Loc at = loc_of(a);
    if (b.last_line == a.first_line)
        at.end_col = b.last_column;
    return at;
}

/* The point just after a token. */
static Loc after(Loc tok)
{
    Loc at = {tok.line, tok.end_col, tok.end_col};
    return at;
}

static void yyerror(YYLTYPE *l, void *scanner, ParseCtx *cx, const char *msg)
{
    (void)scanner;
    diag_error(cx->diag, loc_of(*l), "%s", msg);
}

/* A statement that stopped where ';' was wanted lacks just the ';' when
 * what follows is on a later line or is the block's '}'. */
static bool semi_missing(const ParseCtx *cx, Loc ahead, bool ahead_is_brace)
{
    return cx->prev.line > 0 && (ahead_is_brace || ahead.line > cx->prev.line);
}

/* Whether a statement whose end is `error` lacks only its ';': what
 * follows is on a later line or is the block's '}', and no bracket is
 * left open inside the statement (an error inside brackets is not a
 * missing ';', even if recovery pops back to where a ';' could go). */
static bool only_semi_missing(const ParseCtx *cx, int lookahead)
{
    return lookahead != YYEOF && (cx->depth == 0 || cx->open_ch[cx->depth - 1] == '{') &&
           semi_missing(cx, cx->last, lookahead == '}');
}

#define END(e)                                                   \
    do {                                                         \
        if ((e) && !only_semi_missing(cx, yychar))               \
            YYERROR;                                             \
        if (e)                                                   \
            yyerrok;                                             \
    } while (0)

static Stmt *broken(ParseCtx *cx, YYLTYPE at)
{
    return ast_stmt_head(cx, ast_stmt(cx), NULL, loc_of(at));
}

static void items_close(ParseCtx *cx, Items *it)
{
    if (!it->open)
        return;
    it->last = ast_block(cx, it->loc, it->kind, it->name, it->name_loc, it->stmts);
    it->last_stmts = it->stmts;
    ast_add_block(cx, it->last);
    it->open = false;
    it->stray_said = false;
}

/* `kind [name] {`: a header while a block is open means its '}' is missing. */
static Items *items_open(ParseCtx *cx, Items *it, const char *kind, Loc at, const char *name,
                         Loc name_at, Loc brace)
{
    if (it->open && kind && it->kind) {
        diag_error(cx->diag, at, "expected '}' before '%s'", kind);
        diag_note(cx->diag, it->brace, "to close this '{'");
    }
    items_close(cx, it);
    it->open = true;
    it->kind = kind;
    it->name = name;
    it->loc = at;
    it->name_loc = name_at;
    it->brace = brace;
    it->stmts = ast_vec(cx);
    if (it->stray_pending) /* what stood before the block may be its own */
        ast_push(cx, it->stmts, ast_stmt_head(cx, ast_stmt(cx), NULL, at));
    it->stray_pending = false;
    return it;
}

/* A statement outside any block is reported, and the nearest block gets a
 * broken statement in its place, so that what the block seems to lack is
 * not reported too: the statement may be it. */
static Items *items_stmt(ParseCtx *cx, Items *it, Stmt *s)
{
    if (it->open) {
        ast_push(cx, it->stmts, s);
        return it;
    }
    if (s->head.word && !it->stray_said) {
        diag_error(cx->diag, s->loc, "statement '%s' is outside any block", s->head.word);
        diag_note(cx->diag, (Loc){0, 0, 0}, "statements go inside 'model NAME { ... }' or "
                                            "'train { ... }'");
        it->stray_said = true;
    }
    if (!it->last) {
        it->stray_pending = true;
    } else {
        ast_push(cx, it->last_stmts, ast_stmt_head(cx, ast_stmt(cx), NULL, s->loc));
        it->last->stmts = (Stmt **)it->last_stmts->items;
        it->last->nstmts = it->last_stmts->len;
    }
    return it;
}

static Items *items_brace(ParseCtx *cx, Items *it, Loc at, bool quiet)
{
    if (!it->open && !quiet)
        diag_error(cx->diag, at, "unexpected '}': no block is open");
    items_close(cx, it);
    return it;
}

static void items_end(ParseCtx *cx, Items *it)
{
    if (it->open && cx->depth >= 0) {
        diag_error(cx->diag, after(cx->last), "unexpected end of file; expected '}'");
        diag_note(cx->diag, it->brace, "to close this '{'");
    }
    items_close(cx, it);
}

/* Negative numbers in the lexer's values mark numbers it reported. */
static Value *number_int(ParseCtx *cx, Loc at, int64_t i)
{
    Value *v = ast_int(cx, at, i);
    v->bad = i < 0;
    return v;
}

static Value *number_float(ParseCtx *cx, Loc at, double f)
{
    Value *v = ast_float(cx, at, f);
    v->bad = f != f;
    return v;
}
}

%union {
    int64_t i;
    double f;
    const char *s;
    Value *val;
    PtrVec *vec;
    Arg *arg;
    Call *call;
    Stmt *stmt;
    Items *items;
}

%token <i> INT "integer"
%token <f> FLOAT "number"
%token <s> IDENT "word"

%type <val> value number
%type <vec> values values1 args args1 acts
%type <arg> arg
%type <call> act
%type <stmt> stmt
%type <i> end
%type <items> items

%%

program
    : items                      { items_end(cx, $1); }
    ;

items
    : %empty                     { $$ = ARENA_NEW(cx->arena, Items); }
    | items IDENT '{'            { $$ = items_open(cx, $1, $2, loc_of(@2), NULL, loc_of(@2), loc_of(@3)); }
    | items IDENT IDENT '{'      { $$ = items_open(cx, $1, $2, loc_of(@2), $3, loc_of(@3), loc_of(@4)); }
    | items stmt                 { $$ = items_stmt(cx, $1, $2); }
    | items '}'                  { $$ = items_brace(cx, $1, loc_of(@2), false); }
    | items error ';'            { $$ = items_stmt(cx, $1, broken(cx, @2)); yyerrok; }
    | items error '}'            { $$ = items_brace(cx, items_stmt(cx, $1, broken(cx, @2)), loc_of(@3), true);
                                   yyerrok; }
    | items error '{'            { $$ = items_open(cx, $1, NULL, loc_of(@2), NULL, loc_of(@2), loc_of(@3));
                                   yyerrok; }
    ;

/* A statement ends with ';' or, after a syntax error where the ';' was
 * wanted, with `error`. Then it is kept if only the ';' is missing, else
 * YYERROR hands it to `items error` as broken. */
stmt
    : IDENT end                  { END($2); $$ = ast_stmt_head(cx, ast_stmt(cx), $1, loc_of(@1)); }
    | IDENT '(' args ')' acts end
                                 { END($6); $$ = ast_stmt_head(cx, ast_stmt_call(cx, ast_stmt(cx), loc_of(@2), $3, $5),
                                                               $1, loc_of(@1)); }
    | IDENT IDENT end            { END($3); $$ = ast_stmt_head(cx, ast_stmt_name(cx, ast_stmt(cx), $2, loc_of(@2)),
                                                               $1, loc_of(@1)); }
    | IDENT IDENT '(' args ')' acts end
                                 { END($7);
                                   $$ = ast_stmt_head(cx, ast_stmt_call(cx, ast_stmt_name(cx, ast_stmt(cx), $2, loc_of(@2)),
                                                                        loc_of(@3), $4, $6),
                                                      $1, loc_of(@1)); }
    | IDENT IDENT '[' values ']' end
                                 { END($6);
                                   $$ = ast_stmt_head(cx, ast_stmt_shape(cx, ast_stmt_name(cx, ast_stmt(cx), $2, loc_of(@2)),
                                                                         ast_list(cx, span(@3, @5), $4)),
                                                      $1, loc_of(@1)); }
    | IDENT number end           { END($3); $$ = ast_stmt_value(cx, $1, loc_of(@1), $2); }
    ;

end
    : ';'                        { $$ = 0; }
    | error                      { $$ = 1; }
    ;

acts
    : %empty                     { $$ = ast_vec(cx); }
    | acts act                   { $$ = $1; ast_push(cx, $1, $2); }
    ;

act
    : IDENT                      { $$ = ast_call(cx, $1, loc_of(@1), false, loc_of(@1), NULL); }
    | IDENT '(' args ')'         { $$ = ast_call(cx, $1, loc_of(@1), true, loc_of(@2), $3); }
    ;

args
    : %empty                     { $$ = ast_vec(cx); }
    | args1                      { $$ = $1; }
    | args1 ','                  { $$ = $1; }
    ;

args1
    : arg                        { $$ = ast_vec(cx); ast_push(cx, $$, $1); }
    | args1 ',' arg              { $$ = $1; ast_push(cx, $1, $3); }
    ;

arg
    : value                      { $$ = ast_arg(cx, NULL, loc_of(@1), $1); }
    | IDENT '=' value            { $$ = ast_arg(cx, $1, loc_of(@1), $3); }
    ;

values
    : %empty                     { $$ = ast_vec(cx); }
    | values1                    { $$ = $1; }
    | values1 ','                { $$ = $1; }
    ;

values1
    : value                      { $$ = ast_vec(cx); ast_push(cx, $$, $1); }
    | values1 ',' value          { $$ = $1; ast_push(cx, $1, $3); }
    ;

value
    : number                     { $$ = $1; }
    | IDENT                      { $$ = ast_word(cx, loc_of(@1), $1); }
    | '[' values ']'             { $$ = ast_list(cx, span(@1, @3), $2); }
    ;

number
    : INT                        { $$ = number_int(cx, loc_of(@1), $1); }
    | FLOAT                      { $$ = number_float(cx, loc_of(@1), $1); }
    | '-' INT                    { $$ = ast_negate(cx, loc_of(@1), number_int(cx, loc_of(@2), $2)); }
    | '-' FLOAT                  { $$ = ast_negate(cx, loc_of(@1), number_float(cx, loc_of(@2), $2)); }
    ;

%%

#include "lexer.h"

/* Whether a letter, digit or '_' stands just before (line, col). */
static bool word_ends_at(const Source *src, Loc at)
{
    const char *p = src->text, *end = src->text + src->len;
    for (int line = 1; line < at.line && p < end; p++)
        line += *p == '\n';
    if (at.col < 2 || (size_t)(end - p) < (size_t)at.col - 1)
        return false;
    char c = p[at.col - 2];
    return c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static const char *symbol_text(yysymbol_kind_t k)
{
    switch (k) {
    case YYSYMBOL_IDENT: return "a word";
    case YYSYMBOL_INT: return "an integer";
    case YYSYMBOL_FLOAT: return "a number";
    default: return yysymbol_name(k);
    }
}

/* "unexpected 'foo'; expected ';' or '('", or "missing ';' ..." at the end
 * of the statement that lacks it, plus, when the parser wanted a closing
 * bracket opened on another line, a note pointing at that bracket. */
static int yyreport_syntax_error(const yypcontext_t *pcx, void *scanner, ParseCtx *cx)
{
    if (cx->depth < 0) /* the lexer ended the parse and said why */
        return 0;
    enum { MAX_SHOWN = 5 }; /* a longer list says nothing useful */
    yysymbol_kind_t expected[YYNTOKENS];
    int n = yypcontext_expected_tokens(pcx, expected, YYNTOKENS);
    yysymbol_kind_t got = yypcontext_token(pcx);
    Loc at = loc_of(*yypcontext_location(pcx));
    bool want_semi = false;
    for (int i = 0; i < n; i++)
        want_semi |= !strcmp(yysymbol_name(expected[i]), "';'");
    if (got != YYSYMBOL_YYEOF && want_semi &&
        semi_missing(cx, at, !strcmp(yysymbol_name(got), "'}'"))) {
        diag_error(cx->diag, after(cx->prev), "missing ';' at the end of the statement");
        return 0;
    }
    Buf b = {0};
    if (got == YYSYMBOL_YYEOF) {
        at = cx->last.line ? after(cx->last) : (Loc){1, 1, 1};
        buf_puts(&b, "unexpected end of file");
    } else {
        const char *text = yyget_text(scanner);
        int len = yyget_leng(scanner);
        buf_printf(&b, "unexpected '%.*s%s'", len > 40 ? 40 : len, text, len > 40 ? "..." : "");
    }
    /* Inside a block, '{' could only start a nested block: not worth saying. */
    bool in_block = false;
    for (int d = 0; d < cx->depth; d++)
        in_block |= cx->open_ch[d] == '{';
    for (int i = 0; in_block && i < n; i++)
        if (!strcmp(yysymbol_name(expected[i]), "'{'")) {
            memmove(expected + i, expected + i + 1, sizeof *expected * (size_t)(n - i - 1));
            n--;
            break;
        }
    if (n > 0 && n <= MAX_SHOWN) {
        buf_puts(&b, "; expected ");
        for (int i = 0; i < n; i++)
            buf_printf(&b, "%s%s", i == 0 ? "" : i == n - 1 ? " or " : ", ",
                       symbol_text(expected[i]));
    }
    diag_error(cx->diag, at, "%s", b.s);
    buf_free(&b);
    if (got == YYSYMBOL_YYEOF)
        ;
    else if (!strcmp(yysymbol_name(got), "'-'") && cx->prev.line == at.line &&
             cx->prev.end_col == at.col && word_ends_at(cx->diag->src, at))
        diag_note(cx->diag, (Loc){0, 0, 0}, "a name is made of letters, digits and '_': "
                                            "'-' cannot be part of one");
    for (int i = 0; i < n; i++) {
        const char *name = yysymbol_name(expected[i]);
        if (!strcmp(name, "')'") || !strcmp(name, "']'")) {
            for (int d = cx->depth - 1; d >= 0; d--)
                if (cx->open_ch[d] == (name[1] == ')' ? '(' : '[')) {
                    if (cx->open_loc[d].line != at.line || got == YYSYMBOL_YYEOF)
                        diag_note(cx->diag, cx->open_loc[d], "to close this '%c'",
                                  cx->open_ch[d]);
                    break;
                }
            break;
        }
    }
    return 0;
}

Program *parse_program(Arena *a, Diag *d, const Source *src)
{
    ParseCtx cx;
    memset(&cx, 0, sizeof cx);
    cx.arena = a;
    cx.diag = d;
    if (src->len > (size_t)INT32_MAX / 2) {
        diag_error(d, (Loc){1, 1, 1}, "the file is too large (%zu bytes)", src->len);
        return ARENA_NEW(a, Program);
    }
    /* A model file is UTF-8 text; anything else is refused whole, at its
     * first bad byte, rather than reported byte by byte. */
    for (size_t i = 0, line = 1, col = 1; i < src->len;) {
        const unsigned char *c = (const unsigned char *)src->text + i;
        int n = utf8_len(c, src->len - i);
        if (n == 0 || *c == 0) {
            diag_error(d, (Loc){(int)line, (int)col, (int)col + 1},
                       "unexpected byte 0x%02x: a model file must be UTF-8 text", *c);
            return ARENA_NEW(a, Program);
        }
        line += *c == '\n';
        col = *c == '\n' ? 1 : col + (size_t)n;
        i += (size_t)n;
    }
    if (yylex_init_extra(&cx, &cx.scanner) != 0)
        die("cannot start the lexer");
    yy_scan_bytes(src->text, (int)src->len, cx.scanner);
    yyset_lineno(1, cx.scanner);
    yyset_column(1, cx.scanner);
    yyparse(cx.scanner, &cx);
    yylex_destroy(cx.scanner);
    Program *p = ARENA_NEW(a, Program);
    p->blocks = (Block **)cx.blocks.items;
    p->nblocks = cx.blocks.len;
    return p;
}
