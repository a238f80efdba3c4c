/* Readiness and state notifications to the service manager (systemd's Type=notify), by the
 * NOTIFY_SOCKET protocol: one datagram of "VAR=value" lines to the unix socket the environment
 * names. No libsystemd: the protocol is a single sendto(). */
#ifndef OF_SD_NOTIFY_H
#define OF_SD_NOTIFY_H

/* Sends state (e.g. "READY=1", "RELOADING=1", "STOPPING=1", "STATUS=...", several separated by
 * newlines) when $NOTIFY_SOCKET is set. Returns 1 when sent, 0 when there is no service manager
 * to tell, -1 on an error (a bad socket name, a failed send); errno is then set. */
int of_sd_notify(const char *state);

#endif
