/* session_stream_fastrows: the split's fast path for the plainest lines, in C (optional: where it
 * was not built, include/session_stream/split/fastsplit.py stages every line in Python).
 *
 * configure(session_fields, collections, end_field, start_field): the spec, from tables.py
 * (fastsplit.py builds it; no column name is written here).
 * stage(raw, index, source) -> (per_table, absent, items, session_id, end_time, start_time) | None
 *
 * `stage` takes a line without a backslash whose every value is in its plainest form: strings of
 * valid UTF-8 that fit their column, integers in range, "t"/"f" flags, money as a plain decimal,
 * times as UTC ISO to the millisecond ("2026-11-01T00:11:05.299Z"), exactly the keys the spec
 * knows, each once, in any order. It returns what fastsplit.stage returns for such a line, byte
 * for byte, with the staged session_id, end_time and start_time. For any other line it returns
 * None and stages nothing: fastsplit.py then takes the line as it did before (Python's fast path,
 * or the general path that names the reject). It never judges a line bad, only not its own, so
 * a doubt costs time, never a row: tests/unit/test_fastrows.py compares the two paths.
 *
 * Why: the split's row building in Python took ~2.5 s of CPU for a day of 88,000 sessions, as
 * much as MariaDB's whole load, on a machine of two cores that both share.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { K_STR, K_INT, K_BIGINT, K_MONEY, K_FLAG, K_DATETIME };
enum { S_MAP, S_LIST, S_MAP_OF_OBJECTS };

#define MAX_FIELDS 64  /* fields of one object, session collections included (a bit mask) */
#define ROWS_MAX 65536 /* tables.ROW_NO_MAX + 1, set by configure */
#define SMALL_MAP 16   /* maps up to this many keys are checked for repeats pairwise */

typedef struct {
    char *key;
    Py_ssize_t keylen;
    int kind;
    Py_ssize_t maxlen; /* STR: code points */
    int not_null;
} Field;

typedef struct {
    Field fields[MAX_FIELDS];
    int n;
} ObjSpec;

typedef struct {
    char *key;
    Py_ssize_t keylen;
    int shape;
    int table;
    Py_ssize_t key_maxlen;
    ObjSpec obj;      /* S_MAP: one field, the value; S_LIST, S_MAP_OF_OBJECTS: the object */
    char *nested_key; /* S_MAP_OF_OBJECTS: the list inside each object ("items") */
    Py_ssize_t nested_keylen;
    int nested_table;
    ObjSpec nested;
} Collection;

static ObjSpec session_spec;
static Collection collections[MAX_FIELDS];
static int n_collections, n_tables, end_field = -1, start_field = -1, configured;
static Py_ssize_t rows_max = ROWS_MAX;

/* One staged value: bytes of the line (or a constant), copied as they are or re-punctuated. */
typedef struct {
    const char *p;
    Py_ssize_t len;
    unsigned char datetime; /* "YYYY-MM-DDTHH:MM:SS.mmmZ" staged as "YYYY-MM-DD HH:MM:SS.mmm" */
    unsigned char nonascii;
} Slot;

static const char NULL_TEXT[] = "\\N";

typedef struct {
    char *p;
    Py_ssize_t len, cap;
} Buf;

static Buf row; /* the row being built (kept from line to line: the GIL is held) */

typedef struct {
    const unsigned char *p, *end;
    PyObject **lists; /* one list of rows per table */
    Buf *row_buf;
    char lead[24]; /* the session's index in the file */
    Py_ssize_t leadlen;
    int items;   /* purchase lines that carry their nested list (not null) */
    int lenient; /* keys the spec does not know were skipped: Python audits them */
} Parser;

/* Text made while a line is parsed (decoded strings, integers and times in their staged form),
 * kept until the line's rows are built: chunks that never move, the first kept for the next
 * line. */
typedef struct Chunk {
    struct Chunk *next;
    size_t used, cap;
    char data[];
} Chunk;

static Chunk *arena_first, *arena_cur;

static void
arena_reset(void)
{
    if (arena_first == NULL) {
        return;
    }
    Chunk *c = arena_first->next;
    while (c != NULL) {
        Chunk *next = c->next;
        free(c);
        c = next;
    }
    arena_first->next = NULL;
    arena_first->used = 0;
    arena_cur = arena_first;
}

static char *
arena_alloc(size_t n)
{
    if (arena_cur == NULL || arena_cur->cap - arena_cur->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        Chunk *c = malloc(sizeof(Chunk) + cap);
        if (c == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        c->next = NULL;
        c->used = 0;
        c->cap = cap;
        if (arena_cur == NULL) {
            arena_first = c;
        } else {
            arena_cur->next = c;
        }
        arena_cur = c;
    }
    char *out = arena_cur->data + arena_cur->used;
    arena_cur->used += n;
    return out;
}

/* ---- output ---------------------------------------------------------------------------- */

static int
buf_reserve(Buf *b, Py_ssize_t more)
{
    if (b->len + more <= b->cap) {
        return 0;
    }
    Py_ssize_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + more) {
        cap *= 2;
    }
    char *p = realloc(b->p, (size_t)cap);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static inline int
buf_put(Buf *b, const char *p, Py_ssize_t n)
{
    if (buf_reserve(b, n) < 0) {
        return -1;
    }
    memcpy(b->p + b->len, p, (size_t)n);
    b->len += n;
    return 0;
}

static inline int
buf_tab(Buf *b)
{
    return buf_put(b, "\t", 1);
}

static int
buf_slot(Buf *b, const Slot *s)
{
    if (!s->datetime) {
        return buf_put(b, s->p, s->len);
    }
    if (buf_reserve(b, 23) < 0) {
        return -1;
    }
    memcpy(b->p + b->len, s->p, 10);
    b->p[b->len + 10] = ' ';
    memcpy(b->p + b->len + 11, s->p + 11, 12);
    b->len += 23;
    return 0;
}

static int
buf_number(Buf *b, Py_ssize_t n)
{
    char text[24];
    int len = snprintf(text, sizeof text, "%zd", n);
    return buf_put(b, text, len);
}

/* The row built in p->row_buf, as a str appended to the table's list. */
static int
emit(Parser *p, int table, int nonascii)
{
    PyObject *s;
    if (nonascii) {
        s = PyUnicode_DecodeUTF8(p->row_buf->p, p->row_buf->len, "strict");
    } else {
        s = PyUnicode_New(p->row_buf->len, 127);
        if (s != NULL) {
            memcpy(PyUnicode_DATA(s), p->row_buf->p, (size_t)p->row_buf->len);
        }
    }
    if (s == NULL) {
        return -1;
    }
    int r = PyList_Append(p->lists[table], s);
    Py_DECREF(s);
    return r;
}

/* A child row of `table` into its list: the session's index, the row's number `n`, the map key
 * `key` (NULL for a list's rows) and `count` values. */
static int
emit_child_row(Parser *p, int table, Py_ssize_t n, const Slot *key, const Slot *values, int count)
{
    Buf *b = p->row_buf;
    b->len = 0;
    int high = key != NULL && key->nonascii;
    if (buf_put(b, p->lead, p->leadlen) < 0 || buf_tab(b) < 0 || buf_number(b, n) < 0) {
        return -1;
    }
    if (key != NULL && (buf_tab(b) < 0 || buf_slot(b, key) < 0)) {
        return -1;
    }
    for (int k = 0; k < count; k++) {
        high |= values[k].nonascii;
        if (buf_tab(b) < 0 || buf_slot(b, &values[k]) < 0) {
            return -1;
        }
    }
    return emit(p, table, high);
}

/* ---- the JSON text --------------------------------------------------------------------- */

/* What the parse functions return: OK, NOT_MINE (the line is not of the plainest form: leave it
 * to Python) or ERROR (a Python exception is set: out of memory). */
enum { OK = 0, NOT_MINE = 1, ERROR = -1 };

static inline void
skip_ws(Parser *p)
{
    while (p->p < p->end && (*p->p == ' ' || *p->p == '\t' || *p->p == '\n' || *p->p == '\r')) {
        p->p++;
    }
}

static inline int
expect(Parser *p, unsigned char c)
{
    skip_ws(p);
    if (p->p < p->end && *p->p == c) {
        p->p++;
        return 1;
    }
    return 0;
}

/* A string, in its staged form (layout.escape of the decoded text). */
typedef struct {
    const char *p;
    Py_ssize_t len;   /* staged bytes */
    Py_ssize_t chars; /* code points of the decoded text */
    int nonascii;
    int escaped;      /* written with JSON escapes */
} Str;

/* The length of a valid UTF-8 sequence at q (first byte >= 0x80), or 0: RFC 3629, so no
 * overlong forms, surrogates or code points past U+10FFFF. */
static inline int
utf8_length(const unsigned char *q, const unsigned char *end)
{
    unsigned char c = *q, lo = 0x80, hi = 0xBF;
    int need;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0) {
            lo = 0xA0;
        } else if (c == 0xED) {
            hi = 0x9F;
        }
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0) {
            lo = 0x90;
        } else if (c == 0xF4) {
            hi = 0x8F;
        }
    } else {
        return 0;
    }
    if (end - q <= need || q[1] < lo || q[1] > hi) {
        return 0;
    }
    for (int i = 2; i <= need; i++) {
        if (q[i] < 0x80 || q[i] > 0xBF) {
            return 0;
        }
    }
    return need + 1;
}

static inline int
hex4(const unsigned char *q, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = q[i];
        v <<= 4;
        if (c >= '0' && c <= '9') {
            v |= c - '0';
        } else if (c >= 'a' && c <= 'f') {
            v |= c - 'a' + 10;
        } else if (c >= 'A' && c <= 'F') {
            v |= c - 'A' + 10;
        } else {
            return 0;
        }
    }
    *out = v;
    return 1;
}

/* The staged form of a code point the line escaped: what layout.escape maps, escaped again. */
static inline char *
put_code_point(char *w, unsigned cp)
{
    switch (cp) {
    case 0:
        *w++ = '\\';
        *w++ = '0';
        return w;
    case '\\':
        *w++ = '\\';
        *w++ = '\\';
        return w;
    case '\t':
        *w++ = '\\';
        *w++ = 't';
        return w;
    case '\n':
        *w++ = '\\';
        *w++ = 'n';
        return w;
    case '\r':
        *w++ = '\\';
        *w++ = 'r';
        return w;
    }
    if (cp < 0x80) {
        *w++ = (char)cp;
    } else if (cp < 0x800) {
        *w++ = (char)(0xC0 | (cp >> 6));
        *w++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *w++ = (char)(0xE0 | (cp >> 12));
        *w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *w++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *w++ = (char)(0xF0 | (cp >> 18));
        *w++ = (char)(0x80 | ((cp >> 12) & 0x3F));
        *w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *w++ = (char)(0x80 | (cp & 0x3F));
    }
    return w;
}

/* A string written with escapes, from its content `s` to the closing quote `close`: decoded and
 * staged into the arena (never longer than as written). NOT_MINE for a lone surrogate. */
static int
decode_escaped(const unsigned char *s, const unsigned char *close, Str *out)
{
    char *w0 = arena_alloc((size_t)(close - s) + 1), *w = w0;
    if (w0 == NULL) {
        return ERROR;
    }
    Py_ssize_t chars = 0;
    int high = 0;
    const unsigned char *q = s;
    while (q < close) {
        unsigned char c = *q;
        if (c < 0x20) {
            return NOT_MINE;
        }
        if (c >= 0x80) {
            int n = utf8_length(q, close + 1);
            if (n == 0 || q + n > close) {
                return NOT_MINE;
            }
            memcpy(w, q, (size_t)n);
            w += n;
            q += n;
            high = 1;
        } else if (c != '\\') {
            *w++ = (char)c;
            q++;
        } else {
            if (close - q < 2) {
                return NOT_MINE;
            }
            unsigned cp;
            switch (q[1]) {
            case '"':
            case '/':
                cp = q[1];
                q += 2;
                break;
            case '\\':
                cp = '\\';
                q += 2;
                break;
            case 'b':
                cp = 0x08;
                q += 2;
                break;
            case 'f':
                cp = 0x0C;
                q += 2;
                break;
            case 'n':
                cp = '\n';
                q += 2;
                break;
            case 'r':
                cp = '\r';
                q += 2;
                break;
            case 't':
                cp = '\t';
                q += 2;
                break;
            case 'u':
                if (close - q < 6 || !hex4(q + 2, &cp)) {
                    return NOT_MINE;
                }
                q += 6;
                if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    return NOT_MINE; /* a low surrogate alone */
                }
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    unsigned low;
                    if (close - q < 6 || q[0] != '\\' || q[1] != 'u' || !hex4(q + 2, &low)
                        || low < 0xDC00 || low > 0xDFFF) {
                        return NOT_MINE; /* a high surrogate alone */
                    }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                    q += 6;
                }
                break;
            default:
                return NOT_MINE;
            }
            high |= cp >= 0x80;
            w = put_code_point(w, cp);
        }
        chars++;
    }
    out->p = w0;
    out->len = w - w0;
    out->chars = chars;
    out->nonascii = high;
    out->escaped = 1;
    return OK;
}

/* A string at p->p (its opening quote), in its staged form. NOT_MINE for a control character
 * or bytes that are not UTF-8. */
static int
parse_string(Parser *p, Str *out)
{
    const unsigned char *s = p->p + 1, *q = s, *end = p->end;
    Py_ssize_t cont = 0;
    int high = 0;
    for (;;) {
        while (q < end && *q >= 0x20 && *q < 0x80 && *q != '"' && *q != '\\') {
            q++;
        }
        if (q >= end || *q < 0x20) {
            return NOT_MINE;
        }
        if (*q == '"') {
            break;
        }
        if (*q == '\\') { /* escapes: find the closing quote, then decode */
            while (q < end && *q != '"') {
                q += *q == '\\' ? 2 : 1;
            }
            if (q >= end) {
                return NOT_MINE;
            }
            int r = decode_escaped(s, q, out);
            if (r == OK) {
                p->p = q + 1;
            }
            return r;
        }
        int n = utf8_length(q, end);
        if (n == 0) {
            return NOT_MINE;
        }
        cont += n - 1;
        high = 1;
        q += n;
    }
    out->p = (const char *)s;
    out->len = q - s;
    out->chars = out->len - cont;
    out->nonascii = high;
    out->escaped = 0;
    p->p = q + 1;
    return OK;
}

/* A number at p->p, by JSON's grammar: its text, and whether it is an integer (no fraction, no
 * exponent). */
static int
parse_number(Parser *p, const char **start, Py_ssize_t *len, int *integer)
{
    const unsigned char *q = p->p, *end = p->end;
    if (q < end && *q == '-') {
        q++;
    }
    if (q >= end || *q < '0' || *q > '9') {
        return NOT_MINE;
    }
    if (*q == '0') {
        q++;
    } else {
        while (q < end && *q >= '0' && *q <= '9') {
            q++;
        }
    }
    *integer = 1;
    if (q < end && *q == '.') {
        q++;
        if (q >= end || *q < '0' || *q > '9') {
            return NOT_MINE;
        }
        while (q < end && *q >= '0' && *q <= '9') {
            q++;
        }
        *integer = 0;
    }
    if (q < end && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < end && (*q == '+' || *q == '-')) {
            q++;
        }
        if (q >= end || *q < '0' || *q > '9') {
            return NOT_MINE;
        }
        while (q < end && *q >= '0' && *q <= '9') {
            q++;
        }
        *integer = 0;
    }
    /* a number runs into the next token: "1x" or "1true" is not JSON */
    if (q < end && !(*q == ',' || *q == '}' || *q == ']' || *q == ' ' || *q == '\t' || *q == '\n'
                     || *q == '\r')) {
        return NOT_MINE;
    }
    *start = (const char *)p->p;
    *len = q - p->p;
    p->p = q;
    return OK;
}

static inline int
is_null(Parser *p)
{
    if (p->end - p->p >= 4 && memcmp(p->p, "null", 4) == 0) {
        p->p += 4;
        return 1;
    }
    return 0;
}

/* The value of `n` ASCII digits (checked by the caller), negative or not, when it fits 64 bits. */
static int
digits_value(const char *d, Py_ssize_t n, int negative, int64_t *value)
{
    if (n > 19) {
        return 0;
    }
    uint64_t v = 0; /* 19 digits stay below 2^64: no overflow */
    for (Py_ssize_t i = 0; i < n; i++) {
        v = v * 10 + (uint64_t)(d[i] - '0');
    }
    if (v > ((uint64_t)1 << 63) - (negative ? 0 : 1)) {
        return 0;
    }
    *value = negative ? (int64_t)(0 - v) : (int64_t)v;
    return 1;
}

/* An integer's text (JSON's: no leading zero) as a value, within 64 bits. */
static int
json_integer(const char *s, Py_ssize_t len, int64_t *value)
{
    int negative = s[0] == '-';
    return digits_value(s + negative, len - negative, negative, value);
}

/* Whether a value fits the column: INT's 32 bits (BIGINT's 64 hold every value here). */
static inline int
fits_kind(int64_t v, int kind)
{
    return kind != K_INT || (v >= INT32_MIN && v <= INT32_MAX);
}

/* Money as convert.is_plain_money has it: -?\d{1,12}(\.\d{1,4})? */
static int
plain_money(const char *s, Py_ssize_t len)
{
    Py_ssize_t i = 0, n;
    if (i < len && s[i] == '-') {
        i++;
    }
    for (n = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++, n++) {
    }
    if (n < 1 || n > 12) {
        return 0;
    }
    if (i == len) {
        return 1;
    }
    if (s[i++] != '.') {
        return 0;
    }
    for (n = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++, n++) {
    }
    return n >= 1 && n <= 4 && i == len;
}

static inline int
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian), and back (H. Hinnant's algorithms). */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void
civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

#define MS_PER_DAY 86400000LL
/* Milliseconds from the epoch of 1000-01-01 00:00 and of 10000-01-01 00:00 (DATETIME's and
 * Python's datetime's range for the staged time). */
#define MS_MIN (-30610224000000LL)
#define MS_END (253402300800000LL)

static inline void
put_digits(char *w, int v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        w[i] = (char)('0' + v % 10);
        v /= 10;
    }
}

/* A time in ms from the epoch as convert.py stages it: "YYYY-MM-DD HH:MM:SS.mmm", into the
 * arena. NOT_MINE before the year 1000 or past 9999 (Python rejects those). */
static int
staged_time(int64_t ms, Slot *slot)
{
    if (ms < MS_MIN || ms >= MS_END) {
        return NOT_MINE;
    }
    int64_t days = ms >= 0 ? ms / MS_PER_DAY : -((-ms + MS_PER_DAY - 1) / MS_PER_DAY);
    int64_t rem = ms - days * MS_PER_DAY, y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    char *w = arena_alloc(23);
    if (w == NULL) {
        return ERROR;
    }
    /* every field is within its range here: rem is 0 .. MS_PER_DAY - 1, y 1000 .. 9999 */
    put_digits(w, (int)y, 4);
    w[4] = '-';
    put_digits(w + 5, m, 2);
    w[7] = '-';
    put_digits(w + 8, d, 2);
    w[10] = ' ';
    put_digits(w + 11, (int)(rem / 3600000), 2);
    w[13] = ':';
    put_digits(w + 14, (int)(rem / 60000 % 60), 2);
    w[16] = ':';
    put_digits(w + 17, (int)(rem / 1000 % 60), 2);
    w[19] = '.';
    put_digits(w + 20, (int)(rem % 1000), 3);
    slot->p = w;
    slot->len = 23;
    return OK;
}

static inline int
two(const char *s)
{
    return (s[0] - '0') * 10 + (s[1] - '0');
}

static int
real_day(int y, int m, int d)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m < 1 || m > 12 || d < 1) {
        return 0;
    }
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return d <= days[m - 1] + (m == 2 && leap);
}

/* "YYYY-MM-DDTHH:MM:SS.fff" with every field in range (year 1000 on, a real day): its ms from
 * the epoch. */
static int
iso_local_ms(const char *s, int64_t *ms)
{
    if (s[0] < '1' || s[0] > '9' || !is_digit(s[1]) || !is_digit(s[2]) || !is_digit(s[3])
        || s[4] != '-' || !is_digit(s[5]) || !is_digit(s[6]) || s[7] != '-' || !is_digit(s[8])
        || !is_digit(s[9]) || s[10] != 'T' || !is_digit(s[11]) || !is_digit(s[12]) || s[13] != ':'
        || s[14] < '0' || s[14] > '5' || !is_digit(s[15]) || s[16] != ':' || s[17] < '0'
        || s[17] > '5' || !is_digit(s[18]) || s[19] != '.' || !is_digit(s[20]) || !is_digit(s[21])
        || !is_digit(s[22])) {
        return 0;
    }
    int year = two(s) * 100 + two(s + 2), month = two(s + 5), day = two(s + 8), hour = two(s + 11);
    if (hour > 23 || !real_day(year, month, day)) {
        return 0;
    }
    *ms = days_from_civil(year, month, day) * MS_PER_DAY + (int64_t)hour * 3600000
          + (int64_t)two(s + 14) * 60000 + (int64_t)two(s + 17) * 1000
          + (s[20] - '0') * 100 + (s[21] - '0') * 10 + (s[22] - '0');
    return 1;
}

/* A time string convert.py stages without a doubt: UTC to the millisecond with Z (its usual
 * form: convert.is_iso_utc_ms, a real day) or with an offset ±HH:MM (converted to UTC). */
static int
staged_iso_time(const Str *t, Slot *slot)
{
    int64_t ms;
    if (t->escaped || (t->len != 24 && t->len != 29) || !iso_local_ms(t->p, &ms)) {
        return NOT_MINE;
    }
    const char *z = t->p + 23;
    if (t->len == 24) {
        if (z[0] != 'Z') {
            return NOT_MINE;
        }
        slot->datetime = 1; /* re-punctuated from the line's own bytes */
        slot->p = t->p;
        slot->len = 24;
        return OK;
    }
    if ((z[0] != '+' && z[0] != '-') || !is_digit(z[1]) || !is_digit(z[2]) || z[3] != ':'
        || z[4] < '0' || z[4] > '5' || !is_digit(z[5]) || two(z + 1) > 23) {
        return NOT_MINE;
    }
    int64_t offset = (int64_t)two(z + 1) * 3600000 + (int64_t)two(z + 4) * 60000;
    return staged_time(z[0] == '+' ? ms - offset : ms + offset, slot);
}

/* An integer given as a string, as convert.py reads one: ` *[-+]?\d+ *`, 20 characters at
 * most (a longer one goes to Decimal there: not mine), its value within 64 bits. */
static int
int_string(const Str *t, int64_t *value)
{
    if (t->escaped || t->len > 20) {
        return 0;
    }
    const char *s = t->p, *end = t->p + t->len;
    while (s < end && *s == ' ') {
        s++;
    }
    while (end > s && end[-1] == ' ') {
        end--;
    }
    int negative = 0;
    if (s < end && (*s == '-' || *s == '+')) {
        negative = *s == '-';
        s++;
    }
    if (s >= end) {
        return 0;
    }
    for (const char *q = s; q < end; q++) {
        if (!is_digit(*q)) {
            return 0;
        }
    }
    while (end - s > 1 && *s == '0') {
        s++;
    }
    return digits_value(s, end - s, negative, value);
}

static int
staged_integer(int64_t v, int kind, Slot *slot)
{
    if (!fits_kind(v, kind)) {
        return NOT_MINE;
    }
    char *w = arena_alloc(24);
    if (w == NULL) {
        return ERROR;
    }
    slot->p = w;
    slot->len = snprintf(w, 24, "%lld", (long long)v);
    return OK;
}

/* One scalar value of `f` at p->p, as its staged form in `slot`. */
static int
parse_value(Parser *p, const Field *f, Slot *slot)
{
    skip_ws(p);
    if (p->p >= p->end) {
        return NOT_MINE;
    }
    slot->datetime = slot->nonascii = 0;
    if (*p->p == 'n') {
        if (!is_null(p) || f->not_null) {
            return NOT_MINE;
        }
        slot->p = NULL_TEXT;
        slot->len = 2;
        return OK;
    }
    int64_t v;
    if (*p->p == '"') {
        Str t;
        int r = parse_string(p, &t);
        if (r != OK) {
            return r;
        }
        slot->p = t.p;
        slot->len = t.len;
        switch (f->kind) {
        case K_STR:
            if (t.chars > f->maxlen) {
                return NOT_MINE;
            }
            slot->nonascii = (unsigned char)t.nonascii;
            return OK;
        case K_FLAG:
            if (t.escaped || t.len != 1 || (t.p[0] != 't' && t.p[0] != 'f')) {
                return NOT_MINE;
            }
            slot->p = t.p[0] == 't' ? "1" : "0";
            return OK;
        case K_MONEY:
            return !t.escaped && plain_money(t.p, t.len) ? OK : NOT_MINE;
        case K_DATETIME:
            if (int_string(&t, &v)) {
                return staged_time(v, slot);
            }
            return staged_iso_time(&t, slot);
        default: /* K_INT, K_BIGINT */
            return int_string(&t, &v) ? staged_integer(v, f->kind, slot) : NOT_MINE;
        }
    }
    if (*p->p == '-' || (*p->p >= '0' && *p->p <= '9')) {
        const char *s;
        Py_ssize_t len;
        int integer;
        if (parse_number(p, &s, &len, &integer) != OK) {
            return NOT_MINE;
        }
        if (integer && len == 2 && s[0] == '-' && s[1] == '0') {
            s = "0"; /* -0 is the integer 0: Python stages str(0) */
            len = 1;
        }
        slot->p = s;
        slot->len = len;
        switch (f->kind) {
        case K_INT:
        case K_BIGINT: /* staged as written: a JSON integer has no leading zero */
            return integer && json_integer(s, len, &v) && fits_kind(v, f->kind) ? OK : NOT_MINE;
        case K_MONEY:
            return plain_money(s, len) ? OK : NOT_MINE;
        case K_DATETIME:
            return integer && json_integer(s, len, &v) ? staged_time(v, slot) : NOT_MINE;
        default:
            return NOT_MINE;
        }
    }
    return NOT_MINE;
}

/* Any JSON value at p->p, skipped (a key the spec does not know), checked as JSON. */
static int
skip_value(Parser *p, int depth)
{
    skip_ws(p);
    if (p->p >= p->end || depth > 64) {
        return NOT_MINE;
    }
    unsigned char c = *p->p;
    if (c == '"') {
        Str t;
        return parse_string(p, &t);
    }
    if (c == '{' || c == '[') {
        unsigned char close = c == '{' ? '}' : ']';
        p->p++;
        if (expect(p, close)) {
            return OK;
        }
        for (;;) {
            int r = NOT_MINE;
            if (c == '{') {
                Str key;
                skip_ws(p);
                if (p->p >= p->end || *p->p != '"' || (r = parse_string(p, &key)) != OK) {
                    return r == ERROR ? ERROR : NOT_MINE;
                }
                if (!expect(p, ':')) {
                    return NOT_MINE;
                }
            }
            if ((r = skip_value(p, depth + 1)) != OK) {
                return r;
            }
            if (expect(p, ',')) {
                continue;
            }
            return expect(p, close) ? OK : NOT_MINE;
        }
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        const char *s;
        Py_ssize_t len;
        int integer;
        return parse_number(p, &s, &len, &integer);
    }
    static const char *literals[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(literals[i]);
        if ((size_t)(p->end - p->p) >= n && memcmp(p->p, literals[i], n) == 0) {
            p->p += n;
            return OK;
        }
    }
    return NOT_MINE;
}

/* A key at p->p (after whitespace) and its colon. */
static int
parse_key(Parser *p, Str *key)
{
    skip_ws(p);
    if (p->p >= p->end || *p->p != '"') {
        return NOT_MINE;
    }
    int r = parse_string(p, key);
    if (r != OK) {
        return r;
    }
    return expect(p, ':') ? OK : NOT_MINE;
}

/* The field of `spec` named `key`, looked for from `hint` on (keys usually come in spec order). */
static inline int
find_field(const ObjSpec *spec, const char *key, Py_ssize_t len, int hint)
{
    for (int k = 0; k < spec->n; k++) {
        int i = hint + k < spec->n ? hint + k : hint + k - spec->n;
        const Field *f = &spec->fields[i];
        if (f->keylen == len && memcmp(f->key, key, (size_t)len) == 0) {
            return i;
        }
    }
    return -1;
}

static int parse_collection(Parser *p, const Collection *c);
static int parse_object(Parser *p, const ObjSpec *spec, Slot *slots, int session,
                        const Collection *nested, const Slot *line_key, uint64_t *collections_present);

/* A purchase line's list of items at p->p (not null): one row each of `c->nested_table`, led by
 * the line's key and numbered across the session's lines. */
static int
parse_items(Parser *p, const Collection *c, const Slot *line_key)
{
    p->items++;
    if (!expect(p, '[')) {
        return NOT_MINE;
    }
    if (expect(p, ']')) {
        return OK;
    }
    Slot item[MAX_FIELDS];
    PyObject *list = p->lists[c->nested_table];
    for (;;) {
        int r = parse_object(p, &c->nested, item, 0, NULL, NULL, NULL);
        if (r != OK) {
            return r;
        }
        if (emit_child_row(p, c->nested_table, PyList_GET_SIZE(list), line_key, item, c->nested.n) < 0) {
            return ERROR;
        }
        if (expect(p, ',')) {
            continue;
        }
        return expect(p, ']') ? OK : NOT_MINE;
    }
}

/* An object of `spec` at p->p: every field once, none else, into `slots`. With `session`, the
 * spec's collections too (their rows are emitted as they are read); with `nested`, the one list
 * of a purchase line (rows of `nested->nested_table`, led by the line's key `line_key`). */
static int
parse_object(Parser *p, const ObjSpec *spec, Slot *slots, int session, const Collection *nested,
             const Slot *line_key, uint64_t *collections_present)
{
    if (!expect(p, '{')) {
        return NOT_MINE;
    }
    uint64_t seen = 0, coll_seen = 0, coll_present = 0;
    int hint = 0;
    skip_ws(p);
    if (p->p < p->end && *p->p == '}') {
        p->p++;
        return spec->n == 0 ? OK : NOT_MINE;
    }
    for (;;) {
        /* Keys match in their staged form: the spec's names hold nothing layout.escape maps, so
         * that is the decoded key wherever one of them can match (as msgspec matches). */
        Str k;
        int r;
        if ((r = parse_key(p, &k)) != OK) {
            return r;
        }
        const char *key = k.p;
        Py_ssize_t len = k.len;
        int i = find_field(spec, key, len, hint);
        if (i >= 0) {
            if (seen & ((uint64_t)1 << i)) {
                return NOT_MINE; /* a key written twice: Python's check names it */
            }
            seen |= (uint64_t)1 << i;
            if ((r = parse_value(p, &spec->fields[i], &slots[i])) != OK) {
                return r;
            }
            hint = i + 1 < spec->n ? i + 1 : 0;
        } else if (session) {
            int c;
            for (c = 0; c < n_collections; c++) {
                if (collections[c].keylen == len && memcmp(collections[c].key, key, (size_t)len) == 0) {
                    break;
                }
            }
            if (c == n_collections) { /* a key the spec does not know: Python audits it */
                if ((r = skip_value(p, 1)) != OK) {
                    return r;
                }
                p->lenient = 1;
                goto next;
            }
            if (coll_seen & ((uint64_t)1 << c)) {
                return NOT_MINE; /* written twice */
            }
            coll_seen |= (uint64_t)1 << c;
            skip_ws(p);
            if (p->p < p->end && *p->p == 'n') {
                if (!is_null(p)) { /* null: absent, as a missing key is */
                    return NOT_MINE;
                }
            } else if ((r = parse_collection(p, &collections[c])) != OK) {
                return r;
            } else {
                coll_present |= (uint64_t)1 << c;
            }
        } else if (nested != NULL && nested->nested_keylen == len
                   && memcmp(nested->nested_key, key, (size_t)len) == 0) {
            if (coll_seen) {
                return NOT_MINE;
            }
            coll_seen = 1;
            skip_ws(p);
            if (p->p < p->end && *p->p == 'n') {
                if (!is_null(p)) {
                    return NOT_MINE;
                }
            } else if ((r = parse_items(p, nested, line_key)) != OK) {
                return r;
            }
        } else { /* a key the spec does not know: Python audits it */
            if ((r = skip_value(p, 1)) != OK) {
                return r;
            }
            p->lenient = 1;
        }
    next:
        if (expect(p, ',')) {
            continue;
        }
        if (expect(p, '}')) {
            break;
        }
        return NOT_MINE;
    }
    uint64_t all = spec->n == 64 ? ~(uint64_t)0 : (((uint64_t)1 << spec->n) - 1);
    if (seen != all) {
        return NOT_MINE; /* a scalar key missing: the general path counts it */
    }
    if (collections_present != NULL) {
        *collections_present = coll_present;
    }
    return OK;
}

/* Whether a map's keys repeat (msgspec would keep one of them: Python's check names it). */
static int
keys_repeat(const Slot *keys, Py_ssize_t n)
{
    if (n <= SMALL_MAP) {
        for (Py_ssize_t i = 1; i < n; i++) {
            for (Py_ssize_t j = 0; j < i; j++) {
                if (keys[i].len == keys[j].len && memcmp(keys[i].p, keys[j].p, (size_t)keys[i].len) == 0) {
                    return 1;
                }
            }
        }
        return 0;
    }
    size_t size = 64;
    while (size < (size_t)n * 2) {
        size *= 2;
    }
    Py_ssize_t *table = malloc(size * sizeof *table);
    if (table == NULL) {
        return 1; /* no memory for the check: leave the line to Python */
    }
    for (size_t i = 0; i < size; i++) {
        table[i] = -1;
    }
    int repeat = 0;
    for (Py_ssize_t i = 0; i < n && !repeat; i++) {
        uint64_t h = 1469598103934665603ULL;
        for (Py_ssize_t k = 0; k < keys[i].len; k++) {
            h = (h ^ (unsigned char)keys[i].p[k]) * 1099511628211ULL;
        }
        for (size_t at = h & (size - 1);; at = (at + 1) & (size - 1)) {
            Py_ssize_t j = table[at];
            if (j < 0) {
                table[at] = i;
                break;
            }
            if (keys[j].len == keys[i].len && memcmp(keys[j].p, keys[i].p, (size_t)keys[i].len) == 0) {
                repeat = 1;
                break;
            }
        }
    }
    free(table);
    return repeat;
}

/* A collection of the session at p->p (not null): its rows into its table's list. */
static int
parse_collection(Parser *p, const Collection *c)
{
    int r, is_map = c->shape != S_LIST;
    Py_ssize_t n = 0, keys_cap = SMALL_MAP;
    Slot small[SMALL_MAP], *keys = small;
    if (!expect(p, is_map ? '{' : '[')) {
        return NOT_MINE;
    }
    skip_ws(p);
    if (p->p < p->end && *p->p == (is_map ? '}' : ']')) {
        p->p++;
        return OK;
    }
    r = OK;
    for (;;) {
        Slot key = {0}, values[MAX_FIELDS];
        if (is_map) {
            Str k;
            if ((r = parse_key(p, &k)) != OK || k.chars > c->key_maxlen) {
                r = r == ERROR ? ERROR : NOT_MINE;
                break;
            }
            key.p = k.p;
            key.len = k.len;
            key.nonascii = (unsigned char)k.nonascii;
            if (n >= keys_cap) { /* the keys, for the repeat check */
                Slot *grown = keys == small ? malloc((size_t)keys_cap * 2 * sizeof *keys)
                                            : realloc(keys, (size_t)keys_cap * 2 * sizeof *keys);
                if (grown == NULL) {
                    r = ERROR;
                    PyErr_NoMemory();
                    break;
                }
                if (keys == small) {
                    memcpy(grown, small, sizeof small);
                }
                keys = grown;
                keys_cap *= 2;
            }
            keys[n] = key;
        }
        if (c->shape == S_MAP) {
            r = parse_value(p, &c->obj.fields[0], &values[0]);
        } else {
            r = parse_object(p, &c->obj, values, 0, c->shape == S_MAP_OF_OBJECTS ? c : NULL, &key, NULL);
        }
        if (r != OK) {
            break;
        }
        if (++n > rows_max) {
            r = NOT_MINE; /* more rows than row_no numbers: the general path rejects it */
            break;
        }
        if (emit_child_row(p, c->table, n - 1, is_map ? &key : NULL, values, c->obj.n) < 0) {
            r = ERROR;
            break;
        }
        if (expect(p, ',')) {
            continue;
        }
        if (!expect(p, is_map ? '}' : ']')) {
            r = NOT_MINE;
        }
        break;
    }
    if (r == OK && is_map && keys_repeat(keys, n)) {
        r = NOT_MINE;
    }
    if (keys != small) {
        free(keys);
    }
    if (r == OK && c->shape == S_MAP_OF_OBJECTS
        && PyList_GET_SIZE(p->lists[c->nested_table]) > rows_max) {
        r = NOT_MINE;
    }
    return r;
}

/* ---- the module ------------------------------------------------------------------------ */

static void
free_spec(ObjSpec *spec)
{
    for (int i = 0; i < spec->n; i++) {
        PyMem_Free(spec->fields[i].key);
    }
    spec->n = 0;
}

static char *
copy_bytes(PyObject *o, Py_ssize_t *len)
{
    char *s;
    if (PyBytes_AsStringAndSize(o, &s, len) < 0) {
        return NULL;
    }
    char *copy = PyMem_Malloc((size_t)*len + 1);
    if (copy == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    memcpy(copy, s, (size_t)*len + 1);
    return copy;
}

/* fields: a sequence of (key: bytes, kind: int, maxlen: int, not_null: bool) */
static int
read_spec(PyObject *fields, ObjSpec *spec)
{
    PyObject *seq = PySequence_Fast(fields, "fields: a sequence");
    if (seq == NULL) {
        return -1;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > MAX_FIELDS) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "too many fields for one object");
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *key;
        Field *f = &spec->fields[i];
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "Sinp", &key, &f->kind, &f->maxlen, &f->not_null)
            || (f->key = copy_bytes(key, &f->keylen)) == NULL) {
            spec->n = (int)i;
            Py_DECREF(seq);
            return -1;
        }
        spec->n = (int)i + 1;
    }
    Py_DECREF(seq);
    return 0;
}

static PyObject *
configure(PyObject *module, PyObject *args)
{
    PyObject *session_fields, *colls;
    if (!PyArg_ParseTuple(args, "OOiin", &session_fields, &colls, &end_field, &start_field, &rows_max)) {
        return NULL;
    }
    configured = 0;
    free_spec(&session_spec);
    for (int c = 0; c < n_collections; c++) {
        PyMem_Free(collections[c].key);
        PyMem_Free(collections[c].nested_key);
        free_spec(&collections[c].obj);
        free_spec(&collections[c].nested);
    }
    n_collections = n_tables = 0;
    if (read_spec(session_fields, &session_spec) < 0) {
        return NULL;
    }
    PyObject *seq = PySequence_Fast(colls, "collections: a sequence");
    if (seq == NULL) {
        return NULL;
    }
    if (PySequence_Fast_GET_SIZE(seq) > 30) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "too many collections");
        return NULL;
    }
    n_tables = 1;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        Collection *c = &collections[i];
        memset(c, 0, sizeof *c);
        PyObject *key, *fields, *nested_key, *nested_fields;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "SiinOSiO", &key, &c->shape, &c->table,
                              &c->key_maxlen, &fields, &nested_key, &c->nested_table, &nested_fields)
            || (c->key = copy_bytes(key, &c->keylen)) == NULL
            || (c->nested_key = copy_bytes(nested_key, &c->nested_keylen)) == NULL
            || read_spec(fields, &c->obj) < 0 || read_spec(nested_fields, &c->nested) < 0) {
            n_collections = (int)i + 1;
            Py_DECREF(seq);
            return NULL;
        }
        n_collections = (int)i + 1;
        n_tables = c->table + 1 > n_tables ? c->table + 1 : n_tables;
        n_tables = c->nested_table + 1 > n_tables ? c->nested_table + 1 : n_tables;
    }
    Py_DECREF(seq);
    configured = 1;
    Py_RETURN_NONE;
}

static PyObject *
slot_text(const Slot *s)
{
    return PyUnicode_DecodeUTF8(s->p, s->len, "strict");
}

static PyObject *
stage(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (!configured) {
        PyErr_SetString(PyExc_RuntimeError, "configure() first");
        return NULL;
    }
    if (nargs != 3 || !PyBytes_Check(args[0]) || !PyUnicode_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "stage(raw: bytes, index: int, source: str)");
        return NULL;
    }
    Py_ssize_t index = PyLong_AsSsize_t(args[1]);
    if (index == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t source_len;
    const char *source = PyUnicode_AsUTF8AndSize(args[2], &source_len);
    if (source == NULL) { /* a name that is not UTF-8 (surrogate escapes): Python's to judge */
        if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
            return NULL;
        }
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    int source_high = !PyUnicode_IS_ASCII(args[2]);

    PyObject *lists[MAX_FIELDS] = {0};
    PyObject *result = NULL;
    arena_reset();
    Parser p = {0};
    p.p = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    p.end = p.p + PyBytes_GET_SIZE(args[0]);
    p.lists = lists;
    p.row_buf = &row;
    p.leadlen = snprintf(p.lead, sizeof p.lead, "%zd", index);
    for (int t = 0; t < n_tables; t++) {
        if ((lists[t] = PyList_New(0)) == NULL) {
            goto done;
        }
    }
    Slot slots[MAX_FIELDS];
    uint64_t present = 0;
    int r = parse_object(&p, &session_spec, slots, 1, NULL, NULL, &present);
    if (r == ERROR) {
        goto done;
    }
    skip_ws(&p);
    if (r != OK || p.p != p.end || slots[0].len == 0 || slots[0].p == NULL_TEXT) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    /* the session's row: index, session_id, its other columns, the source file */
    Buf *b = p.row_buf;
    b->len = 0;
    int high = source_high;
    if (buf_put(b, p.lead, p.leadlen) < 0) {
        goto done;
    }
    for (int k = 0; k < session_spec.n; k++) {
        high |= slots[k].nonascii;
        if (buf_tab(b) < 0 || buf_slot(b, &slots[k]) < 0) {
            goto done;
        }
    }
    if (buf_tab(b) < 0 || buf_put(b, source, source_len) < 0 || emit(&p, 0, high) < 0) {
        goto done;
    }
    int absent = 0;
    for (int c = 0; c < n_collections; c++) {
        absent += !(present & ((uint64_t)1 << c));
    }
    PyObject *per_table = PyList_New(n_tables);
    if (per_table == NULL) {
        goto done;
    }
    for (int t = 0; t < n_tables; t++) {
        PyList_SET_ITEM(per_table, t, lists[t]);
        lists[t] = NULL;
    }
    PyObject *sid = slot_text(&slots[0]);
    PyObject *end = end_field >= 0 ? slot_text(&slots[end_field]) : Py_NewRef(Py_None);
    PyObject *start = start_field >= 0 ? slot_text(&slots[start_field]) : Py_NewRef(Py_None);
    if (sid != NULL && end != NULL && start != NULL) {
        result = Py_BuildValue("(NiiNNNO)", per_table, absent, p.items, sid, end, start,
                               p.lenient ? Py_True : Py_False);
    } else {
        Py_DECREF(per_table);
        Py_XDECREF(sid);
        Py_XDECREF(end);
        Py_XDECREF(start);
    }
done:
    for (int t = 0; t < n_tables; t++) {
        Py_XDECREF(lists[t]);
    }
    return result;
}

static PyMethodDef methods[] = {
    {"configure", configure, METH_VARARGS,
     "configure(session_fields, collections, end_field, start_field, rows_max): the spec (fastsplit.py)."},
    {"stage", (PyCFunction)(void (*)(void))stage, METH_FASTCALL,
     "stage(raw, index, source) -> (per_table, absent, items, session_id, end_time, start_time) | None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "session_stream_fastrows",
    "The split's fast path for the plainest lines, in C (session_stream.split.fastsplit).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit_session_stream_fastrows(void)
{
    return PyModule_Create(&module);
}
