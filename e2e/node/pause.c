/* The node's sandbox ("pause") image: PID 1 of every pod, holding its namespaces. It sleeps until a signal, reaps
 * the zombies of processes sharing its PID namespace, and exits on SIGINT or SIGTERM. e2e/cluster builds it static,
 * since no registry is reachable to pull registry.k8s.io/pause. */
#include <signal.h>
#include <stddef.h>
#include <sys/wait.h>
#include <unistd.h>

static void quit(int sig) {
	(void)sig;
	_exit(0);
}

static void reap(int sig) {
	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0) {
	}
}

int main(void) {
	struct sigaction stop = {.sa_handler = quit}, child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
	sigaction(SIGINT, &stop, NULL);
	sigaction(SIGTERM, &stop, NULL);
	sigaction(SIGCHLD, &child, NULL);
	for (;;) pause();
}
