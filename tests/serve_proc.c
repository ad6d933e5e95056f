/*
 * serve_proc.c - `vitamin serve` as a child process for the tests (see
 * serve_proc.h): the model, start and stop, GET over a raw socket, metrics,
 * node lookup.
 */
#include "serve_proc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
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

#include "test.h"

const char *const serve_template =
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}";

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

bool serve_make_model(const char *path, int dim, int layers, int heads, int kv_heads, int ff)
{
    const char *vocab = "tests/data/vocab/ggml-vocab-llama-spm.gguf";
    if (!test_need_vitamin() || !test_need_file(vocab, "the serve test model"))
        return false;
    char tpl[600], cmd[2048];
    snprintf(tpl, sizeof tpl, "%s/serve_chat.jinja", test_tmpdir());
    FILE *f = fopen(tpl, "w");
    bool ok = f && fputs(serve_template, f) >= 0;
    if (f && fclose(f))
        ok = false;
    if (!ok) {
        test_fail_at(__FILE__, __LINE__, "cannot write %s", tpl);
        return false;
    }
    snprintf(cmd, sizeof cmd,
             "%s gen-model --arch llama --dim %d --layers %d --heads %d --kv-heads %d --ff %d "
             "--type q8_0 --vocab %s --chat-template %s -o %s > /dev/null",
             test_vitamin_bin(), dim, layers, heads, kv_heads, ff, vocab, tpl, path);
    if (system(cmd) != 0) {
        test_fail_at(__FILE__, __LINE__, "`%s` failed", cmd);
        return false;
    }
    return true;
}

bool serve_start(serve_proc *p, const char *model, const char *const *extra)
{
    p->pid = -1;
    p->port = 0;
    snprintf(p->log, sizeof p->log, "%s/serve.log", test_tmpdir());
    const char *argv[64];
    int n = 0;
    argv[n++] = "vitamin";
    argv[n++] = "serve";
    argv[n++] = "-m";
    argv[n++] = model;
    argv[n++] = "--port";
    argv[n++] = "0";
    for (int i = 0; extra && extra[i] && n < 63; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    int out[2];
    if (pipe(out)) {
        test_fail_at(__FILE__, __LINE__, "pipe: %s", strerror(errno));
        return false;
    }
    /* the server's default memory store goes under the test's folder, never
     * into the home folder (a test that wants its own passes --memory-db) */
    char xdg[600];
    snprintf(xdg, sizeof xdg, "%s/xdg", test_tmpdir());
    pid_t pid = fork();
    if (pid == 0) {
        setenv("XDG_DATA_HOME", xdg, 0);
        int logfd = open(p->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(out[1], 1);
        if (logfd >= 0)
            dup2(logfd, 2);
        close(out[0]);
        execv(test_vitamin_bin(), (char *const *)argv);
        _exit(127);
    }
    close(out[1]);
    if (pid < 0) {
        test_fail_at(__FILE__, __LINE__, "fork: %s", strerror(errno));
        close(out[0]);
        return false;
    }
    p->pid = pid;
    char line[512];
    size_t len = 0;
    for (double end = now() + 60; len < sizeof line - 1 && now() < end;) {
        struct pollfd pf = {out[0], POLLIN, 0};
        if (poll(&pf, 1, 200) <= 0)
            continue;
        if (read(out[0], line + len, 1) <= 0)
            break;
        if (line[len++] == '\n')
            break;
    }
    line[len] = 0;
    close(out[0]);
    const char *key = "listening on http://127.0.0.1:";
    const char *u = strstr(line, key);
    if (u)
        p->port = atoi(u + strlen(key));
    if (p->port <= 0) {
        test_fail_at(__FILE__, __LINE__, "the server printed '%s' (log: %s)", line, p->log);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        p->pid = -1;
        return false;
    }
    return true;
}

bool serve_stop(serve_proc *p, double secs)
{
    if (p->pid <= 0)
        return false;
    kill(p->pid, SIGTERM);
    int st = 0;
    pid_t w = 0;
    struct timespec ts = {0, 20 * 1000 * 1000};
    for (double end = now() + secs; now() < end && (w = waitpid(p->pid, &st, WNOHANG)) == 0;)
        nanosleep(&ts, NULL);
    bool ok = w == p->pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (w != p->pid) {
        test_fail_at(__FILE__, __LINE__, "the server is still running %.0f s after SIGTERM", secs);
        kill(p->pid, SIGKILL);
        waitpid(p->pid, NULL, 0);
    } else if (!ok) {
        char *log = test_read_file(p->log, NULL);
        size_t ll = log ? strlen(log) : 0;
        test_fail_at(__FILE__, __LINE__, "the server's exit after SIGTERM: %s %d; its log ends: %s",
                     WIFEXITED(st) ? "status" : "signal",
                     WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st),
                     log ? log + (ll > 3000 ? ll - 3000 : 0) : "(none)");
        free(log);
    }
    p->pid = -1;
    return ok;
}

char *serve_get(const serve_proc *p, const char *path)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p->port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) {
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    char req[512];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                     path);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    if (!buf || send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        free(buf);
        close(fd);
        return NULL;
    }
    for (double end = now() + 10; now() < end;) {
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, 100) <= 0)
            continue;
        if (len + 1 == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb)
                break;
            buf = nb;
        }
        ssize_t got = recv(fd, buf + len, cap - len - 1, 0);
        if (got <= 0)
            break;
        len += (size_t)got;
    }
    close(fd);
    buf[len] = 0;
    char *body = strstr(buf, "\r\n\r\n");
    if (strncmp(buf, "HTTP/1.1 200", 12) || !body) {
        free(buf);
        return NULL;
    }
    memmove(buf, body + 4, strlen(body + 4) + 1);
    return buf;
}

double serve_metric(const serve_proc *p, const char *name)
{
    char *t = serve_get(p, "/metrics");
    double v = NAN;
    size_t nl = strlen(name);
    for (char *l = t; l && *l;) {
        if (!strncmp(l, name, nl) && l[nl] == ' ') {
            v = strtod(l + nl + 1, NULL);
            break;
        }
        char *e = strchr(l, '\n');
        l = e ? e + 1 : NULL;
    }
    free(t);
    return v;
}

bool serve_have_node(void)
{
    return system("node --version > /dev/null 2>&1") == 0;
}

const char *serve_node_dir(const char *pkg)
{
    static char buf[1100];
    const char *env = getenv("VT_NODE_DIR"), *home = getenv("HOME");
    char cands[4][1024];
    int n = 0;
    if (env)
        snprintf(cands[n++], sizeof cands[0], "%s", env);
    char cwd[512];
    if (getcwd(cwd, sizeof cwd))
        snprintf(cands[n++], sizeof cands[0], "%s/.ci/node", cwd);
    if (home)
        snprintf(cands[n++], sizeof cands[0], "%s/.cache/vitamin-test-node", home);
    snprintf(cands[n++], sizeof cands[0], "/root/oracle");
    for (int i = 0; i < n; i++) {
        char probe[1200];
        snprintf(probe, sizeof probe, "%.1024s/node_modules/%.100s/package.json", cands[i], pkg);
        if (access(probe, R_OK) == 0) {
            snprintf(buf, sizeof buf, "%.1024s", cands[i]);
            return buf;
        }
    }
    return NULL;
}

char *serve_capture(const char *cmd, int *status)
{
    FILE *p = popen(cmd, "r");
    if (!p)
        return NULL;
    size_t cap = 4096, len = 0, got;
    char *buf = malloc(cap);
    while (buf && (got = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += got;
        if (len + 1 == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb)
                free(buf);
            buf = nb;
        }
    }
    int st = pclose(p);
    if (status)
        *status = st;
    if (buf)
        buf[len] = 0;
    return buf;
}
