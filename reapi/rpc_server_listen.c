/*
 * gRPC server: the listening sockets (bind, accept, hand-off of each new
 * socket to rpc__conn_new()) and the cross-thread post queue (a mutex-
 * protected list plus an eventfd that wakes the loop). Connections, the
 * nghttp2 session callbacks and shutdown are in rpc_server.c; see
 * rpc_server_int.h.
 */
#include "rpc_server_int.h"

#include "db_err.h"
#include "db_log.h"

#include <errno.h>
#include <event2/event.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define LOG_COMP "rpc-server"

/* ---- listeners ---- */

static void accept_cb(evutil_socket_t lfd, short what, void *arg) {
  rpc_server *srv = arg;
  int i, fd, one = 1;

  (void)what;
  for (i = 0; i < 32; i++) {
    fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR)
        continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ECONNABORTED)
        DB_WARN(LOG_COMP, "accept: %s", strerror(errno));
      return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (rpc__conn_new(srv, fd) != 0)
      DB_WARN(LOG_COMP, "cannot set up a connection: out of memory");
  }
}

int rpc_server_listen(rpc_server *srv, const char *host_port) {
  struct addrinfo hints, *res = NULL, *ai;
  char host[256];
  const char *port, *colon;
  rpc__listener *nl;
  int fd = -1, one = 1, rv;
  size_t hlen;

  if (!srv || !host_port || srv->shutting_down)
    return DB_EINVAL;
  if (host_port[0] == '[') {
    const char *end = strchr(host_port, ']');
    if (!end || end[1] != ':')
      return DB_EINVAL;
    hlen = (size_t)(end - host_port - 1);
    if (hlen >= sizeof(host))
      return DB_EINVAL;
    memcpy(host, host_port + 1, hlen);
    port = end + 2;
  } else {
    colon = strrchr(host_port, ':');
    if (!colon)
      return DB_EINVAL;
    hlen = (size_t)(colon - host_port);
    if (hlen >= sizeof(host))
      return DB_EINVAL;
    memcpy(host, host_port, hlen);
    port = colon + 1;
  }
  host[hlen] = '\0';
  if (!*port)
    return DB_EINVAL;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  if (getaddrinfo(hlen ? host : NULL, port, &hints, &res) != 0)
    return DB_EINVAL;
  rv = DB_ESYS;
  for (ai = res; ai; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                ai->ai_protocol);
    if (fd < 0)
      continue;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 1024) == 0)
      break;
    rv = db_err_from_errno(errno);
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0) {
    DB_ERROR(LOG_COMP, "cannot listen on %s", host_port);
    return rv;
  }
  nl = realloc(srv->listeners, (srv->nlisteners + 1) * sizeof(*nl));
  if (!nl) {
    close(fd);
    return DB_ENOMEM;
  }
  srv->listeners = nl;
  nl = &srv->listeners[srv->nlisteners];
  nl->fd = fd;
  nl->port = 0;
  {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
      if (ss.ss_family == AF_INET)
        nl->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
      else if (ss.ss_family == AF_INET6)
        nl->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
  }
  nl->ev = event_new(srv->base, fd, EV_READ | EV_PERSIST, accept_cb, srv);
  if (!nl->ev || event_add(nl->ev, NULL) != 0) {
    if (nl->ev)
      event_free(nl->ev);
    close(fd);
    return DB_ENOMEM;
  }
  srv->nlisteners++;
  DB_DEBUG(LOG_COMP, "listening on %s (port %d)", host_port, nl->port);
  return 0;
}

int rpc_server_port(const rpc_server *srv) {
  return srv && srv->nlisteners > 0 ? srv->listeners[0].port : 0;
}

void rpc__server_close_listeners(rpc_server *srv) {
  size_t i;

  for (i = 0; i < srv->nlisteners; i++) {
    event_free(srv->listeners[i].ev);
    close(srv->listeners[i].fd);
  }
  free(srv->listeners);
  srv->listeners = NULL;
  srv->nlisteners = 0;
}

/* ---- post queue ---- */

static void post_cb(evutil_socket_t fd, short what, void *arg) {
  rpc_server *srv = arg;
  rpc__post *list, *p;
  uint64_t v;

  (void)what;
  if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
    DB_WARN(LOG_COMP, "eventfd read: %s", strerror(errno));
  pthread_mutex_lock(&srv->post_mu);
  list = srv->post_head;
  srv->post_head = srv->post_tail = NULL;
  pthread_mutex_unlock(&srv->post_mu);
  while (list) {
    p = list;
    list = p->next;
    p->fn(p->arg);
    free(p);
  }
}

int rpc_server_post(rpc_server *srv, void (*fn)(void *), void *arg) {
  rpc__post *p;
  uint64_t one = 1;
  int wake;

  if (!srv || !fn)
    return DB_EINVAL;
  p = malloc(sizeof(*p));
  if (!p)
    return DB_ENOMEM;
  p->next = NULL;
  p->fn = fn;
  p->arg = arg;
  pthread_mutex_lock(&srv->post_mu);
  wake = srv->post_head == NULL;
  if (srv->post_tail)
    srv->post_tail->next = p;
  else
    srv->post_head = p;
  srv->post_tail = p;
  pthread_mutex_unlock(&srv->post_mu);
  /* One wake-up per batch; the eventfd counter absorbs races. */
  if (wake && write(srv->post_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
    return DB_ESYS;
  return 0;
}

int rpc__server_post_init(rpc_server *srv) {
  srv->post_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (srv->post_fd < 0)
    return DB_ESYS;
  srv->post_ev =
      event_new(srv->base, srv->post_fd, EV_READ | EV_PERSIST, post_cb, srv);
  if (!srv->post_ev || event_add(srv->post_ev, NULL) != 0)
    return DB_ENOMEM;
  return 0;
}

void rpc__server_post_fini(rpc_server *srv) {
  rpc__post *p;

  /* Posted functions that never ran are dropped (not called). */
  while (srv->post_head) {
    p = srv->post_head;
    srv->post_head = p->next;
    free(p);
  }
  if (srv->post_ev)
    event_free(srv->post_ev);
  srv->post_ev = NULL;
  if (srv->post_fd >= 0)
    close(srv->post_fd);
  srv->post_fd = -1;
}
