/*
 * page.c - answers GET / with the chat page (page.h): the embedded HTML as
 * text/html; charset=utf-8, with its Content-Security-Policy (only the
 * page's own inline script and style, by hash; fetches only to this
 * server; no frames, forms or remote loads), nosniff, no referrer, and
 * no-cache so that a new binary's page is seen at once.
 */
#include "server/page.h"
#include "server/server_int.h"

enum MHD_Result srv_page_send(srv_conn *k)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        srv_page_html_len, (void *)srv_page_html, MHD_RESPMEM_PERSISTENT);
    if (!r)
        return srv_send_errorf(k, 500, "internal_error", NULL, NULL, "out of memory");
    if (MHD_add_response_header(r, "Content-Type", "text/html; charset=utf-8") != MHD_YES ||
        MHD_add_response_header(r, "Content-Security-Policy", srv_page_csp) != MHD_YES ||
        MHD_add_response_header(r, "X-Content-Type-Options", "nosniff") != MHD_YES ||
        MHD_add_response_header(r, "Referrer-Policy", "no-referrer") != MHD_YES ||
        MHD_add_response_header(r, "Cache-Control", "no-cache") != MHD_YES) {
        MHD_destroy_response(r);
        return srv_send_errorf(k, 500, "internal_error", NULL, NULL, "out of memory");
    }
    return srv_send_response(k, 200, r);
}
