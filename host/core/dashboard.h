/* The live dashboard (`/dashboard`): a page with no build step and no external assets, fed over
 * a WebSocket (`/dashboard/ws`) by the host's hub. Once a second this host publishes its stages'
 * counters, in-flight events and breaker states on the "dashboard" channel; the page turns the
 * counters into rates. Stages may publish items there too ({"type":"item","key","state",...},
 * the notification stage does for every order status change), which the page lists as recent
 * items with their latest state. Through the hub's Redis fan-out a page sees every host. */
#ifndef OF_DASHBOARD_H
#define OF_DASHBOARD_H

#include "runner.h"
#include "ws_hub.h"

#include <stddef.h>

#define OF_DASHBOARD_CHANNEL "dashboard"
/* The "pipeline" the host's own dashboard messages are published under. */
#define OF_DASHBOARD_PIPELINE "orderflow"

typedef struct of_dashboard of_dashboard;

/* Starts the publishing thread (period_ms between two snapshots, 1000 in the daemon). NULL when
 * out of resources. */
of_dashboard *of_dashboard_start(of_ws_hub *hub, of_runner *runner, int period_ms);
void of_dashboard_stop(of_dashboard *d); /* joins the thread and frees; NULL is fine */
/* The latest snapshot message (malloc'd, NUL-terminated), for a page that just connected; NULL
 * before the first one. */
char *of_dashboard_latest(of_dashboard *d);

/* The page itself. */
extern const char of_dashboard_html[];
extern const size_t of_dashboard_html_len;

#endif
