/*
 * healthcheck.c - `keel healthcheck`: asks the local server's
 * /health/ready and exits 0 when it answers 200, 1 otherwise (for Docker
 * HEALTHCHECK and Kubernetes exec probes). It reads the same configuration
 * as `keel serve` to find the address; a wildcard listen address is probed
 * on loopback.
 */
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "keel/cmd.h"
#include "keel/commands.h"

#define PROBE_TIMEOUT_S 5

static int probe(const char *host, int port)
{
    struct addrinfo hints = {0}, *ai = NULL;
    struct timeval tv = {PROBE_TIMEOUT_S, 0};
    char service[16], req[256], resp[64];
    int fd = -1, status = 0;
    ssize_t n;
    size_t got = 0;

    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    snprintf(service, sizeof(service), "%d", port);
    if (getaddrinfo(host, service, &hints, &ai) != 0)
        return 0;
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto out;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0)
        goto out;
    n = snprintf(req, sizeof(req),
                 "GET /health/ready HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n"
                 "User-Agent: keel-healthcheck\r\n\r\n",
                 strchr(host, ':') ? "localhost" : host);
    if (write(fd, req, (size_t)n) != n)
        goto out;
    while (got < sizeof(resp) - 1 && (n = read(fd, resp + got, sizeof(resp) - 1 - got)) > 0)
        got += (size_t)n;
    resp[got] = '\0';
    if (sscanf(resp, "HTTP/1.%*d %d", &status) != 1)
        status = 0;
out:
    if (fd >= 0)
        close(fd);
    freeaddrinfo(ai);
    return status;
}

static void healthcheck_help(FILE *f)
{
    fprintf(f, "Usage: keel healthcheck [OPTIONS]\n\n"
               "Probes GET /health/ready on the configured listen address (KEEL_LISTEN);\n"
               "exit 0 when it answers 200, 1 otherwise. Takes the options of 'keel serve'.\n");
}

int keel_cmd_healthcheck(int argc, char **argv)
{
    struct keel_config_extra extra[] = {
        {.flag = "--help", .help = "show this help"},
        {.flag = "-h", .help = "show this help"},
    };
    struct keel_config cfg = {0};
    const char *host;
    bool proceed;
    int code, status;

    code =
        keel_cmd_start(&cfg, argc, argv, extra, KEEL_ARRAY_LEN(extra), healthcheck_help, &proceed);
    if (!proceed)
        return code;
    host = cfg.listen.host;
    if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "") == 0)
        host = "127.0.0.1";
    else if (strcmp(host, "::") == 0)
        host = "::1";
    status = probe(host, cfg.listen.port);
    keel_config_free(&cfg);
    if (status != 200) {
        fprintf(stderr, "keel healthcheck: %s\n",
                status ? "server is not ready" : "no answer from the server");
        return KEEL_EXIT_FAILURE;
    }
    return KEEL_EXIT_OK;
}
