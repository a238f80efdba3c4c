/* A minimal WebSocket client (RFC 6455) for the gateway tests, on test_gateway_client.h's
 * connection: the upgrade request, server frames in (unmasked, as a server must send them) and
 * masked client frames out. Include after test_gateway_client.h. */
#ifndef OF_TEST_WS_CLIENT_H
#define OF_TEST_WS_CLIENT_H

#include <stdint.h>

#define WS_TEXT  0x1
#define WS_CLOSE 0x8
#define WS_PING  0x9
#define WS_PONG  0xA

/* Sends the upgrade for target with extra header lines ("A: b\r\n...", or NULL) and reads the
 * answer into *r. The connection stays open (a 101 leaves it speaking WebSocket). 0, or -1 when
 * it could not connect. */
static int ws_open(http_conn *c, int port, const char *target, const char *headers, http_resp *r)
{
    memset(r, 0, sizeof(*r));
    if (conn_open(c, port) < 0)
        return -1;
    char *req = NULL;
    int n = asprintf(&req,
                     "GET %s HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: "
                     "Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s\r\n",
                     target, headers ? headers : "");
    if (n < 0)
        return -1;
    (void)conn_send(c, req, (size_t)n);
    free(req);
    conn_read(c, r, 5000);
    return 0;
}

/* One frame from the server: 1 and its opcode and payload (malloc'd, NUL-terminated), 0 when
 * the connection closed, -1 on timeout. */
static int ws_read(http_conn *c, int *opcode, char **payload, size_t *len, int timeout_ms)
{
    *payload = NULL;
    *len = 0;
    for (;;) {
        if (c->len >= 2) {
            const unsigned char *b = (const unsigned char *)c->buf;
            size_t hl = 2;
            uint64_t pl = b[1] & 0x7f;
            if (pl == 126) {
                hl = 4;
                if (c->len >= 4)
                    pl = ((uint64_t)b[2] << 8) | b[3];
            } else if (pl == 127) {
                hl = 10;
                if (c->len >= 10) {
                    pl = 0;
                    for (int i = 0; i < 8; i++)
                        pl = (pl << 8) | b[2 + i];
                }
            }
            if (c->len >= hl && c->len >= hl + pl) {
                *opcode = b[0] & 0x0f;
                *payload = malloc(pl + 1);
                memcpy(*payload, c->buf + hl, pl);
                (*payload)[pl] = '\0';
                *len = pl;
                memmove(c->buf, c->buf + hl + pl, c->len - hl - pl);
                c->len -= hl + pl;
                return 1;
            }
        }
        ssize_t got = conn_fill(c, timeout_ms);
        if (got == 0)
            return 0;
        if (got < 0)
            return -1;
    }
}

/* The next text frame within timeout_ms (pings and pongs skipped): its payload, or NULL. */
static char *ws_next_text(http_conn *c, int timeout_ms)
{
    for (;;) {
        int op;
        char *p;
        size_t n;
        if (ws_read(c, &op, &p, &n, timeout_ms) != 1)
            return NULL;
        if (op == WS_TEXT)
            return p;
        free(p);
        if (op == WS_CLOSE)
            return NULL;
    }
}

/* Sends a masked frame. 0 or -1. */
static int ws_send_frame(http_conn *c, int opcode, const void *data, size_t len)
{
    unsigned char h[8];
    size_t hl = 2;
    if (len > 125)
        return -1;
    h[0] = (unsigned char)(0x80 | opcode);
    h[1] = (unsigned char)(0x80 | len);
    const unsigned char mask[4] = {0x11, 0x22, 0x33, 0x44};
    memcpy(h + hl, mask, 4);
    hl += 4;
    unsigned char frame[8 + 125];
    memcpy(frame, h, hl);
    for (size_t i = 0; i < len; i++)
        frame[hl + i] = ((const unsigned char *)data)[i] ^ mask[i % 4];
    return conn_send(c, frame, hl + len);
}

#endif
