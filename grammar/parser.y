/*
 * parser.y — the grammar of the lamina language.
 *
 * A pure bison parser over the reentrant scanner in lexer.l. The grammar
 * is deliberately uniform (every statement is `head [name] [(args)]
 * [activations] ;`); what a statement means is lower.c's business, so
 * this file holds no semantic checks: each action is one call into an
 * ast.c builder. Errors recover at statement and block boundaries so one
 * run reports every syntax error.
 *
 *   program   = block*
 *   block     = IDENT [IDENT] '{' stmt* '}'
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

static void yyerror(YYLTYPE *l, void *scanner, ParseCtx *cx, const char *msg)
{
    (void)scanner;
    diag_error(cx->diag, loc_of(*l), "%s", msg);
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
    Block *block;
}

%token <i> INT "integer"
%token <f> FLOAT "number"
%token <s> IDENT "word"

%type <val> value number
%type <vec> values values1 args args1 acts stmts
%type <arg> arg
%type <call> act
%type <stmt> stmt tail
%type <block> block
%type <s> opt_name

%%

program
    : %empty
    | program block              { ast_add_block(cx, $2); }
    | program error '}'          { yyerrok; }
    ;

block
    : IDENT opt_name '{' stmts '}'
                                 { $$ = ast_block(cx, loc_of(@1), $1, $2, loc_of(@2), $4); }
    ;

opt_name
    : %empty                     { $$ = NULL; }
    | IDENT                      { $$ = $1; }
    ;

stmts
    : %empty                     { $$ = ast_vec(cx); }
    | stmts stmt                 { $$ = $1; ast_push(cx, $1, $2); }
    | stmts error ';'            { $$ = $1; yyerrok; }
    ;

stmt
    : IDENT tail ';'             { $$ = ast_stmt_head(cx, $2, $1, loc_of(@1)); }
    | IDENT number ';'           { $$ = ast_stmt_value(cx, $1, loc_of(@1), $2); }
    ;

tail
    : %empty                     { $$ = ast_stmt(cx); }
    | '(' args ')' acts          { $$ = ast_stmt_call(cx, ast_stmt(cx), loc_of(@1), $2, $4); }
    | IDENT                      { $$ = ast_stmt_name(cx, ast_stmt(cx), $1, loc_of(@1)); }
    | IDENT '(' args ')' acts    { $$ = ast_stmt_call(cx, ast_stmt_name(cx, ast_stmt(cx), $1, loc_of(@1)),
                                                      loc_of(@2), $3, $5); }
    | IDENT '[' values ']'       { $$ = ast_stmt_shape(cx, ast_stmt_name(cx, ast_stmt(cx), $1, loc_of(@1)),
                                                       ast_list(cx, loc_of(@2), $3)); }
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
    | '[' values ']'             { $$ = ast_list(cx, loc_of(@1), $2); }
    ;

number
    : INT                        { $$ = ast_int(cx, loc_of(@1), $1); }
    | FLOAT                      { $$ = ast_float(cx, loc_of(@1), $1); }
    | '-' INT                    { $$ = ast_negate(cx, loc_of(@1), ast_int(cx, loc_of(@2), $2)); }
    | '-' FLOAT                  { $$ = ast_negate(cx, loc_of(@1), ast_float(cx, loc_of(@2), $2)); }
    ;

%%

#include "lexer.h"

/* "unexpected 'foo'; expected ';' or '('", plus, when the parser wanted a
 * closing bracket, a note pointing at the bracket it would close. */
static int yyreport_syntax_error(const yypcontext_t *pcx, void *scanner, ParseCtx *cx)
{
    (void)scanner;
    enum { MAX_EXPECTED = 6 };
    yysymbol_kind_t expected[MAX_EXPECTED];
    int n = yypcontext_expected_tokens(pcx, expected, MAX_EXPECTED);
    yysymbol_kind_t got = yypcontext_token(pcx);
    Loc at = loc_of(*yypcontext_location(pcx));
    if (got == YYSYMBOL_YYEOF) /* just after the last token */
        at = (Loc){cx->last.line ? cx->last.line : 1, cx->last.end_col ? cx->last.end_col : 1,
                   cx->last.end_col ? cx->last.end_col : 1};
    Buf b = {0};
    if (got == YYSYMBOL_YYEOF)
        buf_puts(&b, "unexpected end of file");
    else
        buf_printf(&b, "unexpected %s", yysymbol_name(got));
    if (n > 0 && n < MAX_EXPECTED) {
        buf_puts(&b, "; expected ");
        for (int i = 0; i < n; i++)
            buf_printf(&b, "%s%s", i == 0 ? "" : i == n - 1 ? " or " : ", ",
                       yysymbol_name(expected[i]));
    }
    diag_error(cx->diag, at, "%s", b.s);
    buf_free(&b);
    for (int i = 0; i < n && n < MAX_EXPECTED; i++) {
        if (expected[i] == YYSYMBOL_YYUNDEF)
            continue;
        const char *name = yysymbol_name(expected[i]);
        if (strcmp(name, "'}'") == 0 || strcmp(name, "')'") == 0 || strcmp(name, "']'") == 0) {
            if (strcmp(name, "'}'") != 0 || n == 1 || got == YYSYMBOL_YYEOF)
                ast_note_open(cx, name[1]);
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
    if (yylex_init_extra(&cx, &cx.scanner) != 0)
        die("cannot start the lexer");
    if (src->len > (size_t)INT32_MAX / 2) {
        diag_error(d, (Loc){1, 1, 1}, "the file is too large (%zu bytes)", src->len);
        yylex_destroy(cx.scanner);
        return ARENA_NEW(a, Program);
    }
    /* A model file is UTF-8 text; anything else is refused whole, at its
     * first bad byte, rather than reported byte by byte. */
    for (size_t i = 0, line = 1, col = 1; i < src->len;) {
        const unsigned char *c = (const unsigned char *)src->text + i;
        int n = utf8_len(c, src->len - i);
        if (n == 0 || *c == 0) {
            diag_error(d, (Loc){(int)line, (int)col, (int)col + 1},
                       "this is not a text file: byte 0x%02x at offset %zu is not UTF-8 text", *c, i);
            yylex_destroy(cx.scanner);
            return ARENA_NEW(a, Program);
        }
        line += *c == '\n';
        col = *c == '\n' ? 1 : col + (size_t)n;
        i += (size_t)n;
    }
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
