/* The e2e network probe (image zenml-e2e.local/net): one static binary, FROM scratch, built and imported by
 * e2e/cluster like the pause image, for the connectivity tests (e2e/src/network.rs).
 *
 *   net serve PORT...               accept TCP connections on each PORT (IPv4, all addresses), answer "ok PORT\n"
 *                                   and close; runs until SIGTERM or SIGINT
 *   net connect HOST PORT [MS]      one TCP connect to the IPv4 address HOST with a timeout of MS milliseconds
 *                                   (default 1500); prints one line and exits with its code:
 *                                     "connected" 0, "refused" 1 (a RST, or ICMP port unreachable),
 *                                     "timed out" 2, "unreachable" 4 (ICMP host or net unreachable),
 *                                     "error: ..." 3 (bad arguments, or another failure, named)
 *
 * A NetworkPolicy that denies ingress is enforced by rejecting the SYN (kube-router answers ICMP port unreachable:
 * "refused") or dropping it ("timed out"), depending on the implementation: a test that wants to tell the wall from
 * an empty port connects to a port the server listens on. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void quit(int sig) {
	(void)sig;
	_exit(0);
}

static int port_of(const char *s) {
	char *end;
	long p = strtol(s, &end, 10);
	return (*s && !*end && p > 0 && p < 65536) ? (int)p : -1;
}

static int serve(int argc, char **argv) {
	struct pollfd fds[16];
	int ports[16], n = 0;
	if (argc < 1 || argc > 16) {
		printf("error: serve takes 1 to 16 ports\n");
		return 3;
	}
	signal(SIGPIPE, SIG_IGN);
	for (int i = 0; i < argc; i++) {
		int port = port_of(argv[i]), one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = INADDR_ANY};
		if (port < 0) {
			printf("error: not a port: %s\n", argv[i]);
			return 3;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, 64) < 0) {
			printf("error: cannot listen on port %d: %s\n", port, strerror(errno));
			return 3;
		}
		fds[n] = (struct pollfd){.fd = fd, .events = POLLIN};
		ports[n++] = port;
	}
	printf("serving");
	for (int i = 0; i < n; i++) printf(" %d", ports[i]);
	printf("\n");
	fflush(stdout);
	for (;;) {
		if (poll(fds, n, -1) < 0) continue;
		for (int i = 0; i < n; i++) {
			if (!(fds[i].revents & POLLIN)) continue;
			int c = accept(fds[i].fd, NULL, NULL);
			if (c < 0) continue;
			char line[32];
			int len = snprintf(line, sizeof line, "ok %d\n", ports[i]);
			(void)!write(c, line, len);
			close(c);
		}
	}
}

static int result(const char *what, int code) {
	printf("%s\n", what);
	return code;
}

static int connect_once(int argc, char **argv) {
	struct sockaddr_in addr = {.sin_family = AF_INET};
	int port, ms = 1500, fd, err = 0;
	socklen_t len = sizeof err;
	if (argc < 2 || argc > 3) return result("error: usage: net connect HOST PORT [TIMEOUT_MS]", 3);
	if (inet_pton(AF_INET, argv[0], &addr.sin_addr) != 1) return result("error: HOST must be an IPv4 address", 3);
	if ((port = port_of(argv[1])) < 0) return result("error: bad PORT", 3);
	if (argc == 3 && (ms = atoi(argv[2])) <= 0) return result("error: bad TIMEOUT_MS", 3);
	addr.sin_port = htons(port);
	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0)) < 0) return result("error: socket", 3);
	if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) return result("connected", 0);
	if (errno != EINPROGRESS) err = errno;
	if (!err) {
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		int ready = poll(&p, 1, ms);
		if (ready == 0) return result("timed out", 2);
		if (ready < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
	}
	switch (err) {
	case 0:
		return result("connected", 0);
	case ECONNREFUSED:
		return result("refused", 1);
	case EHOSTUNREACH:
	case ENETUNREACH:
		return result("unreachable", 4);
	case ETIMEDOUT:
		return result("timed out", 2);
	default:
		printf("error: %s\n", strerror(err));
		return 3;
	}
}

int main(int argc, char **argv) {
	signal(SIGTERM, quit);
	signal(SIGINT, quit);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 2 && strcmp(argv[1], "serve") == 0) return serve(argc - 2, argv + 2);
	if (argc >= 2 && strcmp(argv[1], "connect") == 0) return connect_once(argc - 2, argv + 2);
	return result("error: usage: net serve PORT... | net connect HOST PORT [TIMEOUT_MS]", 3);
}
