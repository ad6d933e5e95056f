/*
 * page.h - the chat page at GET / (page.c): src/server/page.html compiled
 * into the binary by tools/embed_page.py ($(BUILD)/gen/page_html.c), served
 * with a Content-Security-Policy that allows only its own inline script and
 * style (by hash) and fetches to this server.
 */
#ifndef VT_SERVER_PAGE_H
#define VT_SERVER_PAGE_H

#include <stddef.h>

/* The generated page and its policy (static data, never freed). */
extern const unsigned char srv_page_html[];
extern const size_t srv_page_html_len;
extern const char srv_page_csp[];

#endif
