/* regex.c - placeholder */
#include "sample/grammar.h"
vt_err smp_regex_to_gbnf(const char *re, size_t len, char **gbnf)
{
    (void)re; (void)len; *gbnf = NULL;
    return vt_fail(VT_ERR_UNSUPPORTED, "regex: not yet");
}
