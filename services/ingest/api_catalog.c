/* GET /v1/event-types: the event type catalog (event_types with their
 * aliases), marking which types this token may subscribe to. */
#include "api.h"

#include <stdio.h>

static void on_list(api_ctx_t *c)
{
    const char *params[] = {c->directory ? "true" : "false"};
    PGresult *r = api_query(
        c,
        "SELECT json_build_object('data', coalesce(json_agg(json_build_object("
        "  'name', t.name, 'entity', t.entity, 'description', t.description,"
        "  'source', t.source, 'directory_level', t.directory_level,"
        "  'subscribable', NOT t.directory_level OR $1::boolean,"
        "  'aliases', coalesce((SELECT json_agg(a.alias ORDER BY a.alias)"
        "               FROM event_type_aliases a WHERE a.name = t.name), '[]'::json))"
        "  ORDER BY t.name), '[]'::json))"
        " FROM event_types t",
        1, params);
    if (!r) return;
    api_reply(c, 200, PQgetvalue(r, 0, 0));
    PQclear(r);
}

const api_route_t api_catalog_routes[] = {
    {"GET", "/v1/event-types", on_list, API_STYLE_NATIVE, API_BODY_NONE},
    {NULL, NULL, NULL, 0, 0},
};
