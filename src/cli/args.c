/*
 * args.c - small, strict parsers for command-line values shared by the
 * subcommands: the whole string must parse and lie in range, else a one-line
 * error names the option.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

bool cli_need_value(int argc, char **argv, int i)
{
    if (i + 1 >= argc) {
        fprintf(stderr, "vitamin: option %s needs a value\n", argv[i]);
        return false;
    }
    return true;
}

bool cli_parse_int(const char *opt, const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) {
        fprintf(stderr, "vitamin: %s: expected an integer in [%ld, %ld], got '%s'\n", opt, min, max,
                s);
        return false;
    }
    *out = v;
    return true;
}

bool cli_parse_float(const char *opt, const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end) {
        fprintf(stderr, "vitamin: %s: expected a number, got '%s'\n", opt, s);
        return false;
    }
    *out = v;
    return true;
}

bool cli_parse_int_list(const char *opt, const char *s, int32_t **out, int *n)
{
    int cap = 16, cnt = 0;
    int32_t *v = malloc(sizeof *v * (size_t)cap);
    const char *p = s;
    if (!v)
        return false;
    while (*p) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (errno || end == p || x < 0 || x > INT32_MAX || (*end && *end != ',')) {
            fprintf(stderr, "vitamin: %s: expected comma-separated non-negative integers, got '%s'\n",
                    opt, s);
            free(v);
            return false;
        }
        if (cnt == cap) {
            int32_t *nv = realloc(v, sizeof *v * (size_t)(cap *= 2));
            if (!nv) {
                free(v);
                return false;
            }
            v = nv;
        }
        v[cnt++] = (int32_t)x;
        p = *end ? end + 1 : end;
    }
    if (cnt == 0) {
        fprintf(stderr, "vitamin: %s: empty list\n", opt);
        free(v);
        return false;
    }
    *out = v;
    *n = cnt;
    return true;
}

bool cli_parse_size(const char *opt, const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end), mul = 1;
    if (*end == 'k' || *end == 'K')
        mul = 1024.0, end++;
    else if (*end == 'm' || *end == 'M')
        mul = 1024.0 * 1024, end++;
    else if (*end == 'g' || *end == 'G')
        mul = 1024.0 * 1024 * 1024, end++;
    if (*end == 'B' || *end == 'b')
        end++;
    if (errno || end == s || *end || !(v > 0) || v * mul > 1e15) {
        fprintf(stderr, "vitamin: %s: expected a size such as 512M or 2G, got '%s'\n", opt, s);
        return false;
    }
    *out = (int64_t)(v * mul);
    return true;
}

char *cli_memory_default_db(void)
{
    const char *x = getenv("XDG_DATA_HOME"), *home = getenv("HOME");
    char buf[4096];
    if (x && *x)
        snprintf(buf, sizeof buf, "%s/vitamin/memory.db", x);
    else if (home && *home)
        snprintf(buf, sizeof buf, "%s/.local/share/vitamin/memory.db", home);
    else
        return NULL;
    return strdup(buf);
}
