/* notification: the stage's shared declarations (notification.c, notification_http.c). */
#ifndef ORDERFLOW_NOTIFICATION_H
#define ORDERFLOW_NOTIFICATION_H

#include <orderflow/stage.h>

#include "notify.h"
#include "ofp_http.h"

typedef struct ntf {
    const of_host_api *api;
    of_stage *stage;
    int has_ws;           /* the host has ws_publish / ws_subscribe / ws_send (ABI 1.2) */
    int64_t max_webhooks; /* per customer */
    int allow_private;    /* registration accepts private addresses */
    of_counter *changes, *deliveries, *published, *registered;
} ntf;

/* Registers the HTTP handlers; 0, or -1 with a reason. */
int ntf_http_register(ntf *n, char *errstr, size_t errstr_size);

#endif /* ORDERFLOW_NOTIFICATION_H */
