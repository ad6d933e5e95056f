/* json_schema.c - placeholder */
#include "sample/grammar.h"
vt_err smp_json_schema_to_gbnf(const char *schema, size_t len, char **gbnf)
{
    (void)schema; (void)len; *gbnf = NULL;
    return vt_fail(VT_ERR_UNSUPPORTED, "json schema: not yet");
}
