/* session_stream_keycount: the repeated-key check's count in C (optional: where it was not
 * built, include/session_stream/split/repeated_keys.py counts in Python, a little less exactly).
 *
 * colon_keys(data) -> int: the keys written in a JSON text, exactly (a key written twice counts
 * twice), whatever its strings hold and however it is spaced. For any other text, a number
 * that means nothing.
 *
 * In Python the check's count took a copy and a two-byte search of each line, ~9% of a day's
 * split, and counted one too many for a string that opens with ':' or whitespace (so the file
 * was split again, line by line). Here a line of the common shape is counted in one vectorized
 * pass (~0.3 us for 1.3 kB) and any other walked string by string.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* On x86-64 with GCC, a copy for AVX2 too, picked when the process starts (32 bytes a step). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define VECTOR_CLONES
#endif

/* The keys of a JSON text, exactly: the strings whose closing quote is followed, after any
 * whitespace, by a colon. A scalar walk over the strings (escapes included). */
static Py_ssize_t
exact_keys(const unsigned char *s, Py_ssize_t n)
{
    const unsigned char *p = s, *end = s + n;
    Py_ssize_t count = 0;
    while (p < end) {
        p = memchr(p, '"', (size_t)(end - p));  /* a string opens */
        if (p == NULL) {
            break;
        }
        const unsigned char *content = ++p, *close;
        for (;;) {  /* its closing quote: one after an even run of backslashes (none included) */
            close = memchr(p, '"', (size_t)(end - p));
            if (close == NULL) {
                return count;  /* not closed: not JSON, and the parser said so already */
            }
            const unsigned char *run = close;
            while (run > content && run[-1] == '\\') {
                run--;
            }
            if (((close - run) & 1) == 0) {
                break;
            }
            p = close + 1;  /* an escaped quote, inside the string */
        }
        p = close + 1;
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) {
            p++;
        }
        count += (p < end && *p == ':');
    }
    return count;
}

/* The same for a text without a backslash, in one branch-free pass that the compiler
 * vectorizes (16 or 32 bytes a step, a byte's counts summed in bytes over blocks of 224): the
 * '":' are the keys unless a string opens with ':' (its opening quote stands after ':', ',',
 * '[', '{' or whitespace) or whitespace follows a quote; such a text (rare: Monetate writes
 * neither) is walked by exact_keys. -1: walk it. ~0.2 us for a 1.3 kB line. */
#define BLOCK 224

VECTOR_CLONES static Py_ssize_t
plain_keys(const unsigned char *restrict s, Py_ssize_t n)
{
    if (n < 3 || s[0] == '"' || s[0] == '\\' || s[n - 1] == '\\') {
        return -1;
    }
    /* each position i in 1 .. n-2: the byte before it, the byte, the byte after it */
    const unsigned char *restrict before = s, *restrict here = s + 1, *restrict after = s + 2;
    Py_ssize_t keys = 0, doubt = 0, m = n - 2;
    for (Py_ssize_t start = 0; start < m; start += BLOCK) {
        Py_ssize_t stop = start + BLOCK < m ? start + BLOCK : m;
        unsigned char block_keys = 0, block_doubt = 0;
        for (Py_ssize_t i = start; i < stop; i++) {
            unsigned char a = here[i], c = after[i], b = before[i];
            unsigned char quote = a == '"';
            unsigned char colon = c == ':';
            unsigned char space = (c == ' ') + (c == '\t') + (c == '\r') + (c == '\n');
            unsigned char opens = (b == ':') + (b == ',') + (b == '[') + (b == '{') + (b == ' ')
                                  + (b == '\t') + (b == '\r');
            block_keys += quote & colon;
            block_doubt += (quote & (space + (colon & opens))) + (a == '\\');
        }
        keys += block_keys;
        doubt += block_doubt;
    }
    return doubt ? -1 : keys;
}

static Py_ssize_t
count_keys(const unsigned char *s, Py_ssize_t n)
{
    Py_ssize_t keys = plain_keys(s, n);  /* -1 for a backslash too: a string may escape a quote */
    return keys >= 0 ? keys : exact_keys(s, n);
}

static PyObject *
colon_keys(PyObject *module, PyObject *arg)
{
    if (PyBytes_CheckExact(arg)) {  /* a line as the split reads it: no buffer to take */
        return PyLong_FromSsize_t(count_keys(
            (const unsigned char *)PyBytes_AS_STRING(arg), PyBytes_GET_SIZE(arg)));
    }
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    Py_ssize_t count = count_keys((const unsigned char *)view.buf, view.len);
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(count);
}

static PyMethodDef methods[] = {
    {"colon_keys", colon_keys, METH_O,
     "colon_keys(data) -> int: the repeated-key check's count of '\":' (see the module's C source)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "session_stream_keycount",
    "The split's repeated-key count in C (session_stream.split.repeated_keys).", -1, methods,
};

PyMODINIT_FUNC
PyInit_session_stream_keycount(void)
{
    return PyModule_Create(&module);
}
