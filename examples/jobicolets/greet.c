/* greet: render a greeting from a JSON event (C, wasi-libc, WASI reactor).
 *
 * Event:  {"name":"Ada","lang":"fr"}   (canonical JSON, keys sorted)
 * Result: code 0, "Bonjour, Ada!"      (lang: en (default), es, fr, de)
 *         code 1, "missing \"name\""   when there is no non-empty string "name"
 *         code 2, "unknown lang: xx"
 * Logs the chosen language at info level through env.log.
 *
 * ABI: exports memory, malloc/free (wasi-libc's: free(ptr), no `ver`),
 * `_initialize` (reactor), `event`; imports env.log and WASI (wasi-libc).
 * Build: clang --target=wasm32-wasi -mexec-model=reactor (see build.py).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((import_module("env"), import_name("log")))
void jobico_log(int32_t level, const char *ptr, int32_t len);

static void logmsg(int level, const char *s) { jobico_log(level, s, (int32_t)strlen(s)); }

/* Find the string value of "key" at the top level of a flat JSON object.
 * Handles \" and \\ escapes (copied as the escaped character). */
static int json_string(const char *in, size_t n, const char *key, char *out, size_t cap) {
    size_t klen = strlen(key);
    for (size_t i = 0; i + klen + 2 < n; i++) {
        if (in[i] == '"' && strncmp(in + i + 1, key, klen) == 0 && in[i + 1 + klen] == '"') {
            size_t j = i + 2 + klen;
            while (j < n && (in[j] == ' ' || in[j] == ':')) j++;
            if (j >= n || in[j] != '"') return -1;
            j++;
            size_t o = 0;
            while (j < n && in[j] != '"') {
                if (in[j] == '\\' && j + 1 < n) j++;
                if (o + 1 < cap) out[o++] = in[j];
                j++;
            }
            out[o] = 0;
            return (int)o;
        }
    }
    return -1;
}

static void put_result(uint64_t *res, uint64_t code, const char *s) {
    size_t len = strlen(s);
    char *copy = malloc(len + 1);
    memcpy(copy, s, len + 1);
    res[0] = code;
    res[1] = ((uint64_t)(uintptr_t)copy << 32) | (uint64_t)len;
}

__attribute__((export_name("event")))
void event(uint64_t *res, const char *in, int32_t len) {
    char name[256], lang[16], out[512];
    if (json_string(in, (size_t)len, "name", name, sizeof name) <= 0) {
        logmsg(2, "event without a name");
        put_result(res, 1, "missing \"name\"");
        return;
    }
    if (json_string(in, (size_t)len, "lang", lang, sizeof lang) < 0) strcpy(lang, "en");
    const char *hello;
    if (!strcmp(lang, "en")) hello = "Hello";
    else if (!strcmp(lang, "es")) hello = "Hola";
    else if (!strcmp(lang, "fr")) hello = "Bonjour";
    else if (!strcmp(lang, "de")) hello = "Hallo";
    else {
        snprintf(out, sizeof out, "unknown lang: %s", lang);
        put_result(res, 2, out);
        return;
    }
    snprintf(out, sizeof out, "lang=%s", lang);
    logmsg(1, out);
    snprintf(out, sizeof out, "%s, %s!", hello, name);
    put_result(res, 0, out);
}

/* wasi-libc's allocator, exported under the ABI's names */
__attribute__((export_name("malloc"))) void *jobico_malloc(size_t n) { return malloc(n); }
__attribute__((export_name("free"))) void jobico_free(void *p) { free(p); }
