/* A listening TCP socket on 127.0.0.1 at a port the kernel picks, for tests that stand in for a
 * server (an HTTP provider, a webhook endpoint). Include after cmocka.h. */
#ifndef OF_TEST_LISTEN_H
#define OF_TEST_LISTEN_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

/* Returns the listening socket (the caller closes it) and its port in *port. */
static int tl_listen_loopback(int backlog, int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t al = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    *port = ntohs(a.sin_port);
    assert_int_equal(listen(fd, backlog), 0);
    return fd;
}

#endif /* OF_TEST_LISTEN_H */
