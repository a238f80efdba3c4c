/* The dashboard's publisher (dashboard.h). */
#include "dashboard.h"

#include "log.h"
#include "thread_name.h"
#include "timeutil.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct of_dashboard {
    of_ws_hub *hub;
    of_runner *runner;
    int period_ms;
    char host[128];
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC; stop */
    int stop;
    char *latest;
};

static char *snapshot(of_dashboard *d)
{
    json_t *stages = of_runner_stats_json(d->runner);
    json_t *msg = json_pack("{s:s, s:s, s:I, s:o}", "type", "stats", "host", d->host, "at",
                            (json_int_t)of_now_ms(), "stages", stages ? stages : json_array());
    char *text = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
    json_decref(msg);
    return text;
}

static void *run(void *arg)
{
    of_dashboard *d = arg;
    pthread_mutex_lock(&d->mu);
    while (!d->stop) {
        pthread_mutex_unlock(&d->mu);
        char *text = snapshot(d);
        if (text)
            (void)of_ws_hub_publish(d->hub, OF_DASHBOARD_PIPELINE, OF_DASHBOARD_CHANNEL, text,
                                    strlen(text));
        pthread_mutex_lock(&d->mu);
        free(d->latest);
        d->latest = text;
        struct timespec until = of_mono_after_ms(d->period_ms);
        while (!d->stop && pthread_cond_timedwait(&d->cv, &d->mu, &until) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

of_dashboard *of_dashboard_start(of_ws_hub *hub, of_runner *runner, int period_ms)
{
    if (!hub || !runner)
        return NULL;
    of_dashboard *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->hub = hub;
    d->runner = runner;
    d->period_ms = period_ms > 0 ? period_ms : 1000;
    char name[96] = "host";
    if (gethostname(name, sizeof(name)) != 0)
        snprintf(name, sizeof(name), "host");
    name[sizeof(name) - 1] = '\0';
    snprintf(d->host, sizeof(d->host), "%s:%d", name, (int)getpid());
    if (pthread_mutex_init(&d->mu, NULL) != 0) {
        free(d);
        return NULL;
    }
    if (of_cond_init_monotonic(&d->cv) != 0 || pthread_create(&d->thread, NULL, run, d) != 0) {
        pthread_mutex_destroy(&d->mu);
        free(d);
        return NULL;
    }
    of_thread_name(d->thread, "of-dashboard", NULL);
    return d;
}

void of_dashboard_stop(of_dashboard *d)
{
    if (!d)
        return;
    pthread_mutex_lock(&d->mu);
    d->stop = 1;
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
    pthread_join(d->thread, NULL);
    free(d->latest);
    pthread_cond_destroy(&d->cv);
    pthread_mutex_destroy(&d->mu);
    free(d);
}

char *of_dashboard_latest(of_dashboard *d)
{
    if (!d)
        return NULL;
    pthread_mutex_lock(&d->mu);
    char *copy = d->latest ? strdup(d->latest) : NULL;
    pthread_mutex_unlock(&d->mu);
    return copy;
}
