/* The ws_* functions of the host table (ABI 1.2): subscriptions and snapshots a WebSocket
 * route's handler sets up for the connection it is about to open, and publishing from a stage.
 * Like the rest of the table, they log and fail on bad input instead of crashing the host. */
#include "gateway.h"

#include "log.h"
#include "stage_runtime.h"
#include "ws_hub.h"

static const char *route_stage(const of_http_request *req)
{
    return req && req->route ? req->route->stage : NULL;
}

int of_api_ws_subscribe(of_http_request *req, const char *channel)
{
    if (!req || !req->ws) {
        of_log(OF_LVL_ERROR, NULL, route_stage(req),
               "ws_subscribe: only a handler of a route with websocket: true can subscribe");
        return -1;
    }
    if (!of_ws_channel_valid(channel)) {
        of_log(OF_LVL_ERROR, NULL, route_stage(req),
               "ws_subscribe: bad channel name (1..%d bytes of A-Z a-z 0-9 : . _ @ -)",
               OF_WS_CHANNEL_MAX);
        return -1;
    }
    if (of_ws_client_subscribe(req->ws, channel) != 0) {
        of_log(OF_LVL_ERROR, NULL, route_stage(req),
               "ws_subscribe('%s'): at most %d channels a connection", channel, OF_WS_MAX_CHANNELS);
        return -1;
    }
    return 0;
}

int of_api_ws_send(of_http_request *req, const void *msg, size_t len)
{
    if (!req || !req->ws) {
        of_log(OF_LVL_ERROR, NULL, route_stage(req),
               "ws_send: only a handler of a route with websocket: true can send");
        return -1;
    }
    if ((!msg && len) || of_ws_client_send_first(req->ws, msg, len) != 0) {
        of_log(OF_LVL_ERROR, NULL, route_stage(req),
               "ws_send: the first messages are limited to %u bytes in all",
               (unsigned)OF_WS_MAX_MESSAGE);
        return -1;
    }
    return 0;
}

int of_api_ws_publish(of_stage *stage, const char *channel, const void *msg, size_t len)
{
    if (!stage)
        return -1;
    const char *pn = stage->pipeline_name, *sn = stage->def ? stage->def->name : NULL;
    if (!of_ws_channel_valid(channel)) {
        of_log(OF_LVL_ERROR, pn, sn, "ws_publish: bad channel name");
        return -1;
    }
    if ((!msg && len) || len > OF_WS_MAX_MESSAGE) {
        of_log(OF_LVL_ERROR, pn, sn, "ws_publish('%s'): a message is at most %u bytes", channel,
               (unsigned)OF_WS_MAX_MESSAGE);
        return -1;
    }
    if (!stage->ws_hub)
        return -1;
    return of_ws_hub_publish(stage->ws_hub, pn ? pn : "", channel, msg, len);
}
