/* The WebSocket hub: which open WebSocket connections listen on which channel, the queue of
 * messages stages publish (ws_publish, ABI 1.2), the thread that writes them to the connections,
 * and the fan-out between hosts through Redis pub/sub.
 *
 * Why a queue and one writer thread: a stage publishes from its worker threads, which must never
 * wait for a slow client; the writer does the waiting, and a connection that cannot keep up is
 * closed rather than allowed to hold the others back for long.
 *
 * Why one Redis channel for every message (`<key_prefix>ws`) rather than one per subscription:
 * a host hears everything from the moment its subscriber connection is up, so a client that
 * subscribes and then reads a snapshot cannot fall into the gap a per-channel SUBSCRIBE would
 * leave; hosts drop what no local connection wants. Every message carries its origin host's
 * random id so a host does not deliver its own messages twice. A host subscribes only while it
 * has connections (and OF_WS_FANOUT_LINGER_MS after the last one left): a new connection waits
 * in of_ws_client_new until the subscription is up, so it is up before the snapshot is read.
 * Every host publishes whether or not anyone listens; Redis drops what no host hears.
 *
 * The hub knows nothing of civetweb: the gateway gives it the function that writes a text frame
 * and the one that closes a connection, and unit tests give it their own.
 *
 * A client's life (gateway.c):
 *   c = of_ws_client_new(hub, pipeline)   the route's handler is about to run (NULL: full)
 *   of_ws_client_subscribe(c, channel)    in the handler (ws_subscribe): from here on, what is
 *                                         published on the channel is kept for the client
 *   of_ws_client_send_first(c, msg, len)  in the handler (ws_send): the snapshot
 *   of_ws_client_open(c, conn)            after the handshake, on the connection's thread:
 *                                         writes the snapshot, then what was kept, then live
 *   of_ws_client_close(c)                 the connection ended (or the upgrade was refused):
 *                                         unsubscribes, waits for a write in progress, frees
 */
#ifndef OF_WS_HUB_H
#define OF_WS_HUB_H

#include "cache.h"
#include "metrics.h"

#include <stddef.h>
#include <stdint.h>

#define OF_WS_CHANNEL_MAX         128
#define OF_WS_MAX_CHANNELS        8              /* per connection */
#define OF_WS_MAX_MESSAGE         (256u * 1024u) /* one published message, and a snapshot in all */
#define OF_WS_QUEUE_MAX           65536          /* messages waiting for the writer */
#define OF_WS_BACKLOG_MAX         1024           /* messages kept for a client not yet open */
#define OF_WS_DEFAULT_MAX_CLIENTS 64
#define OF_WS_FANOUT_LINGER_MS    10000 /* subscribed this long after the last client left */

typedef struct of_ws_hub of_ws_hub;
typedef struct of_ws_client of_ws_client;

/* Writes one text frame; 0, or -1 when the connection is gone or too slow (the hub then stops
 * writing to it and closes it). Called on the hub's writer thread or the connection's own. */
typedef int (*of_ws_write_fn)(void *conn, const char *msg, size_t len);
/* Sends a close frame with a status code and a short reason; the connection's thread then ends
 * it. Called on the hub's threads. */
typedef void (*of_ws_close_fn)(void *conn, int code, const char *reason);

/* A hub for at most max_clients connections. redis NULL (or not enabled): this host only.
 * metrics may be NULL. NULL when out of memory. */
of_ws_hub *of_ws_hub_new(const of_redis_config *redis, of_metrics *metrics, int max_clients,
                         of_ws_write_fn write_fn, of_ws_close_fn close_fn);
/* Starts the writer thread and, with Redis, the subscriber thread (which connects, and
 * reconnects, on its own: Redis being down at start is not an error). 0 or -1. */
int of_ws_hub_start(of_ws_hub *hub, char *errstr, size_t errstr_size);
/* Sends every open client a close frame (1001, going away), then stops the threads. Publishing
 * afterwards fails. Safe to call twice. */
void of_ws_hub_stop(of_ws_hub *hub);
/* How long the fan-out stays subscribed after the last client left (OF_WS_FANOUT_LINGER_MS
 * unless set; tests shorten it), so a reloading page does not unsubscribe and subscribe again. */
void of_ws_hub_set_linger(of_ws_hub *hub, int64_t ms);
/* Stops the hub if needed and frees it; every client must have been closed. NULL is fine. */
void of_ws_hub_free(of_ws_hub *hub);

/* 1 when the channel name is 1..OF_WS_CHANNEL_MAX bytes of [A-Za-z0-9:._@-]. */
int of_ws_channel_valid(const char *channel);

/* Queues msg (copied) for every client subscribed to (pipeline, channel) on this host and, with
 * Redis, on the other hosts. 0, or -1: bad channel or message, hub stopped, or the queue full
 * (the message is dropped, counted and logged). Never blocks on a client. */
int of_ws_hub_publish(of_ws_hub *hub, const char *pipeline, const char *channel, const void *msg,
                      size_t len);

/* A client of this "pipeline" hears its channels in every pipeline (the host's dashboard). */
#define OF_WS_ANY_PIPELINE "*"

/* Clients: see the life above. of_ws_client_new returns NULL when the hub has max_clients
 * already or is stopped (*full set to 1) or when out of memory (*full 0). With Redis it may wait
 * for the fan-out's subscription: at most a connect and three commands' timeouts, and not at all
 * while it is up or while Redis is known to be away. */
of_ws_client *of_ws_client_new(of_ws_hub *hub, const char *pipeline, int *full);
/* 0, or -1 (bad channel name, too many channels). A repeated channel is accepted once. */
int of_ws_client_subscribe(of_ws_client *c, const char *channel);
/* 0, or -1 when the snapshot would pass OF_WS_MAX_MESSAGE in all, or out of memory. */
int of_ws_client_send_first(of_ws_client *c, const void *msg, size_t len);
size_t of_ws_client_channels(const of_ws_client *c);
/* 0, or -1 when a write failed (the connection is then to be closed). */
int of_ws_client_open(of_ws_client *c, void *conn);
void of_ws_client_close(of_ws_client *c);

/* Sees every message published on this hub, synchronously in of_ws_hub_publish (the SDK test
 * harness records what a stage publishes with it). Set before publishing starts. */
typedef void (*of_ws_tap_fn)(void *opaque, const char *pipeline, const char *channel,
                             const void *msg, size_t len);
void of_ws_hub_set_tap(of_ws_hub *hub, of_ws_tap_fn fn, void *opaque);

typedef struct of_ws_stats {
    uint64_t published;  /* messages accepted by of_ws_hub_publish */
    uint64_t remote;     /* messages heard from other hosts */
    uint64_t sent;       /* frames written to clients */
    uint64_t dropped;    /* messages lost: queue full, backlog full, or a client too slow */
    uint64_t redis_down; /* times the fan-out lost Redis */
    int clients;         /* open and opening */
    int fanout_up;       /* 1 while subscribed (only while there are clients, and a linger) */
} of_ws_stats;
void of_ws_hub_stats(of_ws_hub *hub, of_ws_stats *out);

#endif
