/*
 * hexrl-pause: the process of a pod's sandbox container on the dev cluster's real nodes.
 *
 * A pod sandbox needs one long-lived process that holds the pod's namespaces (network, IPC, and PID when
 * the pod shares it) while the pod's real containers come and go. This program does nothing but wait:
 *
 *   - SIGINT or SIGTERM: exit 0 (the runtime stops the sandbox this way when the pod goes away);
 *   - SIGCHLD: reap every exited child, so that a pod sharing its PID namespace never accumulates zombies
 *     (this process is PID 1 there and inherits every orphan).
 *
 * Signals are blocked and taken synchronously with sigwaitinfo(): no handler runs asynchronously, so there
 * is no async-signal-safety to get wrong. Blocking matters for another reason too: the kernel drops a
 * signal sent to a namespace's PID 1 when its disposition is the default one, but never a blocked signal.
 *
 * Built by hexrl.devcluster.images with `gcc -static` (the image holds only this binary).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define VERSION "hexrl-pause 1"

static void reap_children(void) {
    /* Several children may have exited behind one SIGCHLD: collect them all, never block. */
    for (;;) {
        pid_t pid = waitpid(-1, NULL, WNOHANG);
        if (pid > 0)
            continue;
        if (pid < 0 && errno == EINTR)
            continue;
        return; /* 0: children remain but none exited; -1/ECHILD: no children at all */
    }
}

int main(int argc, char **argv) {
    sigset_t waited;

    if (argc > 1 && (strcmp(argv[1], "-v") == 0 || strcmp(argv[1], "--version") == 0)) {
        puts(VERSION);
        return 0;
    }
    sigemptyset(&waited);
    sigaddset(&waited, SIGINT);
    sigaddset(&waited, SIGTERM);
    sigaddset(&waited, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &waited, NULL) != 0) {
        perror("hexrl-pause: sigprocmask");
        return 1;
    }
    for (;;) {
        int sig = sigwaitinfo(&waited, NULL);
        if (sig < 0) {
            if (errno == EINTR)
                continue;
            perror("hexrl-pause: sigwaitinfo");
            return 1;
        }
        if (sig == SIGCHLD) {
            reap_children();
            continue;
        }
        return 0; /* SIGINT or SIGTERM */
    }
}
