/* The metrics HTTP server: one thread per registry, one connection at a
 * time (scrapes are small and rare), a 5 s budget per connection so a
 * stuck client cannot hold the others off for long, and a pipe that wakes
 * the thread to stop. It never calls Lua: it renders from the registry
 * under its lock. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "metrics/metrics.h"

#define REQUEST_MAX 8192
#define CONNECTION_BUDGET_MS 5000
#define CONTENT_TYPE_METRICS "text/plain; version=0.0.4; charset=utf-8"
#define CONTENT_TYPE_TEXT "text/plain; charset=utf-8"

struct metrics_server {
  metrics_registry *reg;
  int listen_fd;
  int wake[2]; /* written to stop the thread */
  pthread_t thread;
  char address[80];
};

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until fd is ready for events; 0 on timeout, on a stop request or
 * on an error. */
static int wait_for(metrics_server *s, int fd, short events, long long deadline) {
  for (;;) {
    struct pollfd p[2] = {{fd, events, 0}, {s->wake[0], POLLIN, 0}};
    long long left = deadline - now_ms();
    int n;
    if (left <= 0) return 0;
    n = poll(p, 2, (int)left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || p[1].revents) return 0;
    return 1;
  }
}

static int send_all(metrics_server *s, int fd, const char *p, size_t len, long long deadline) {
  while (len > 0) {
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      if (!wait_for(s, fd, POLLOUT, deadline)) return 0;
      continue;
    }
    if (n <= 0) return 0;
    p += n;
    len -= (size_t)n;
  }
  return 1;
}

static void respond(metrics_server *s, int fd, int head_only, int status, const char *content_type, const char *body,
                    size_t body_len, long long deadline) {
  const char *reason = status == 200   ? "OK"
                       : status == 400 ? "Bad Request"
                       : status == 404 ? "Not Found"
                       : status == 405 ? "Method Not Allowed"
                       : status == 500 ? "Internal Server Error"
                                       : "Service Unavailable";
  char header[256];
  int n = snprintf(header, sizeof header,
                   "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%sConnection: close\r\n\r\n", status,
                   reason, content_type, body_len, status == 405 ? "Allow: GET, HEAD\r\n" : "");
  if (!send_all(s, fd, header, (size_t)n, deadline)) return;
  if (!head_only) send_all(s, fd, body, body_len, deadline);
}

static void respond_text(metrics_server *s, int fd, int head_only, int status, const char *text, long long deadline) {
  respond(s, fd, head_only, status, CONTENT_TYPE_TEXT, text, strlen(text), deadline);
}

static void serve_metrics(metrics_server *s, int fd, int head_only, long long deadline) {
  metrics_buf body = {0};
  pthread_mutex_lock(&s->reg->lock);
  metrics_render(s->reg, &body);
  pthread_mutex_unlock(&s->reg->lock);
  if (body.failed) respond_text(s, fd, head_only, 500, "out of memory\n", deadline);
  else respond(s, fd, head_only, 200, CONTENT_TYPE_METRICS, body.data ? body.data : "", body.len, deadline);
  metrics_buf_free(&body);
}

static void serve_health(metrics_server *s, int fd, int head_only, long long deadline) {
  metrics_buf body = {0};
  int healthy;
  pthread_mutex_lock(&s->reg->lock);
  healthy = s->reg->healthy;
  metrics_buf_addf(&body, "%s\n", healthy ? "ok" : s->reg->health_reason ? s->reg->health_reason : "unhealthy");
  pthread_mutex_unlock(&s->reg->lock);
  respond_text(s, fd, head_only, healthy ? 200 : 503, body.data ? body.data : "unhealthy\n", deadline);
  metrics_buf_free(&body);
}

/* Reads one request head and answers it. */
static void handle(metrics_server *s, int fd) {
  char req[REQUEST_MAX + 1], method[16], target[1024];
  size_t len = 0;
  long long deadline = now_ms() + CONNECTION_BUDGET_MS;
  int head_only;
  req[0] = '\0';
  while (strstr(req, "\r\n\r\n") == NULL && strstr(req, "\n\n") == NULL) { /* "\n\n": a bare-LF client */
    ssize_t n;
    if (len == REQUEST_MAX) {
      respond_text(s, fd, 0, 400, "request too large\n", deadline);
      return;
    }
    n = recv(fd, req + len, REQUEST_MAX - len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      if (!wait_for(s, fd, POLLIN, deadline)) return;
      continue;
    }
    if (n <= 0) return;
    len += (size_t)n;
    req[len] = '\0';
  }
  if (sscanf(req, "%15s %1023s", method, target) != 2) {
    respond_text(s, fd, 0, 400, "bad request\n", deadline);
    return;
  }
  target[strcspn(target, "?#")] = '\0';
  head_only = strcmp(method, "HEAD") == 0;
  if (!head_only && strcmp(method, "GET") != 0) respond_text(s, fd, 0, 405, "only GET and HEAD\n", deadline);
  else if (strcmp(target, "/metrics") == 0) serve_metrics(s, fd, head_only, deadline);
  else if (strcmp(target, "/healthz") == 0) serve_health(s, fd, head_only, deadline);
  else respond_text(s, fd, head_only, 404, "not found: try /metrics or /healthz\n", deadline);
}

static void *serve_loop(void *arg) {
  metrics_server *s = arg;
  for (;;) {
    struct pollfd p[2] = {{s->listen_fd, POLLIN, 0}, {s->wake[0], POLLIN, 0}};
    int fd;
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (p[1].revents) break;
    if (!(p[0].revents & POLLIN)) continue;
    fd = accept(s->listen_fd, NULL, NULL);
    if (fd < 0) {
      /* Out of descriptors: back off instead of spinning on poll. */
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
      }
      continue;
    }
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    handle(s, fd);
    close(fd);
  }
  return NULL;
}

/* Splits "host:port", ":port" or "[v6]:port"; host "" means every
 * interface. 0 when malformed. */
static int split_address(const char *addr, char *host, size_t host_size, char *port, size_t port_size) {
  const char *colon = strrchr(addr, ':'), *h = addr, *p;
  size_t hlen;
  long n;
  char *end;
  if (colon == NULL) return 0;
  hlen = (size_t)(colon - addr);
  if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
    h++;
    hlen -= 2;
  } else if (memchr(h, ':', hlen)) {
    return 0; /* a bare IPv6 address needs brackets */
  }
  p = colon + 1;
  if (hlen >= host_size || strlen(p) >= port_size || *p == '\0' || strspn(p, "0123456789") != strlen(p)) return 0;
  n = strtol(p, &end, 10);
  if (n > 65535) return 0;
  memcpy(host, h, hlen);
  host[hlen] = '\0';
  snprintf(port, port_size, "%s", p);
  return 1;
}

static void format_address(int fd, char *out, size_t size) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  char ip[INET6_ADDRSTRLEN] = "?";
  if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
    snprintf(out, size, "?");
  } else if (ss.ss_family == AF_INET6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
    snprintf(out, size, "[%s]:%u", ip, ntohs(a->sin6_port));
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
    snprintf(out, size, "%s:%u", ip, ntohs(a->sin_port));
  }
}

/* A listening socket for host:port; -1 with err set. */
static int listen_on(const char *addr, const char *host, const char *port, char *err, size_t errlen,
                     const char **name) {
  struct addrinfo hints, *res, *ai;
  int fd = -1, rc, saved = 0;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  if ((rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res)) != 0) {
    snprintf(err, errlen, "metrics: cannot resolve '%s': %s", addr, gai_strerror(rc));
    *name = "INVALID_ADDRESS";
    return -1;
  }
  for (ai = res; ai; ai = ai->ai_next) {
    int one = 1;
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) {
      saved = errno;
      continue;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 64) == 0) break;
    saved = errno;
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0) {
    snprintf(err, errlen, "metrics: cannot listen on %s: %s", addr, strerror(saved));
    *name = saved == EADDRINUSE ? "ADDRESS_IN_USE" : saved == EACCES ? "PERMISSION_DENIED" : "IO_ERROR";
  }
  return fd;
}

metrics_server *metrics_serve(metrics_registry *r, const char *addr, char *err, size_t errlen, const char **name) {
  char host[256], port[16];
  metrics_server *s;
  sigset_t all, old;
  int rc;
  if (!split_address(addr, host, sizeof host, port, sizeof port)) {
    snprintf(err, errlen, "metrics: bad address '%s' (want host:port, :port or [v6]:port; port 0 picks one)", addr);
    *name = "INVALID_ADDRESS";
    return NULL;
  }
  if ((s = calloc(1, sizeof *s)) == NULL) {
    snprintf(err, errlen, "metrics: out of memory");
    *name = "IO_ERROR";
    return NULL;
  }
  s->reg = r;
  s->wake[0] = s->wake[1] = -1;
  if ((s->listen_fd = listen_on(addr, host, port, err, errlen, name)) < 0) {
    free(s);
    return NULL;
  }
  format_address(s->listen_fd, s->address, sizeof s->address);
  if (pipe(s->wake) != 0) {
    snprintf(err, errlen, "metrics: cannot make a pipe: %s", strerror(errno));
    *name = "IO_ERROR";
    close(s->listen_fd);
    free(s);
    return NULL;
  }
  fcntl(s->wake[0], F_SETFD, FD_CLOEXEC);
  fcntl(s->wake[1], F_SETFD, FD_CLOEXEC);
  /* Signals stay with the Lua thread (SIGINT, SIGTERM handling). */
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  rc = pthread_create(&s->thread, NULL, serve_loop, s);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) {
    snprintf(err, errlen, "metrics: cannot start the server thread: %s", strerror(rc));
    *name = "IO_ERROR";
    close(s->wake[0]);
    close(s->wake[1]);
    close(s->listen_fd);
    free(s);
    return NULL;
  }
  return s;
}

const char *metrics_server_address(const metrics_server *s) { return s->address; }

void metrics_server_stop(metrics_server *s) {
  ssize_t n;
  do n = write(s->wake[1], "x", 1);
  while (n < 0 && errno == EINTR);
  pthread_join(s->thread, NULL);
  close(s->wake[0]);
  close(s->wake[1]);
  close(s->listen_fd);
  free(s);
}
