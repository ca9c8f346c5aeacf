/* nats-server child process management. */
#include "bus/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/fs.h"
#include "core/status.h"

#ifndef TB_NATS_SERVER
#define TB_NATS_SERVER "nats-server"
#endif

extern char **environ;

int tb_free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(a);
  int port = -1;
  if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
      getsockname(fd, (struct sockaddr *)&a, &len) == 0)
    port = ntohs(a.sin_port);
  close(fd);
  return port;
}

static int port_answers(const char *host, int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, host, &a.sin_addr) != 1) inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  int ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
  close(fd);
  return ok;
}

int tb_url_answers(const char *url) {
  char host[256] = "127.0.0.1";
  int port = 4222;
  const char *p = strstr(url, "://");
  p = p ? p + 3 : url;
  const char *colon = strrchr(p, ':');
  if (colon) {
    size_t n = (size_t)(colon - p);
    if (n > 0 && n < sizeof(host)) {
      memcpy(host, p, n);
      host[n] = '\0';
    }
    port = atoi(colon + 1);
  }
  if (strcmp(host, "localhost") == 0) strcpy(host, "127.0.0.1");
  return port_answers(host, port);
}

tb_status tb_server_start(tb_server_t *srv, const char *data_dir, int port, const char *conf_path,
                          int ready_ms) {
  memset(srv, 0, sizeof(*srv));
  if (port == 0) port = tb_free_port();
  if (port <= 0) return tb__fail(TB_ERR_IO, "no free port on 127.0.0.1");
  if (port_answers("127.0.0.1", port))
    return tb__fail(TB_ERR_IO, "port %d on 127.0.0.1 is already in use", port);
  srv->port = port;
  snprintf(srv->url, sizeof(srv->url), "nats://127.0.0.1:%d", port);
  snprintf(srv->store_dir, sizeof(srv->store_dir), "%s/jetstream", data_dir);
  snprintf(srv->log_path, sizeof(srv->log_path), "%s/nats-server.log", data_dir);
  tb_mkdirs(srv->store_dir, 1);

  char portbuf[16];
  snprintf(portbuf, sizeof(portbuf), "%d", port);
  const char *argv[16];
  int n = 0;
  argv[n++] = TB_NATS_SERVER;
  if (conf_path != NULL) {
    argv[n++] = "-c";
    argv[n++] = conf_path;
  }
  argv[n++] = "-js";
  argv[n++] = "-a";
  argv[n++] = "127.0.0.1";
  argv[n++] = "-p";
  argv[n++] = portbuf;
  argv[n++] = "-sd";
  argv[n++] = srv->store_dir;
  argv[n++] = "-l";
  argv[n++] = srv->log_path;
  argv[n] = NULL;

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  /* Its own process group: a Ctrl-C at the terminal reaches tierbus alone, which drains its
   * in-flight work and only then stops the server. */
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);
  int rc = posix_spawn(&srv->pid, TB_NATS_SERVER, &fa, &attr, (char *const *)argv, environ);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    srv->pid = 0;
    return tb__fail(TB_ERR_IO, "cannot start %s: %s", TB_NATS_SERVER, strerror(rc));
  }
  for (int waited = 0; waited < ready_ms; waited += 20) {
    int status;
    if (waitpid(srv->pid, &status, WNOHANG) == srv->pid) {
      srv->pid = 0;
      return tb__fail(TB_ERR_IO, "nats-server exited at start (status %d); see %s",
                      WIFEXITED(status) ? WEXITSTATUS(status) : -1, srv->log_path);
    }
    if (port_answers("127.0.0.1", port)) return TB_OK;
    tb_sleep_us(20000);
  }
  tb_server_stop(srv, 1000);
  return tb__fail(TB_ERR_IO, "nats-server on port %d not ready after %d ms; see %s", port, ready_ms,
                  srv->log_path);
}

void tb_server_stop(tb_server_t *srv, int grace_ms) {
  if (srv->pid <= 0) return;
  kill(srv->pid, SIGTERM);
  for (int waited = 0; waited < grace_ms; waited += 10) {
    if (waitpid(srv->pid, NULL, WNOHANG) == srv->pid) {
      srv->pid = 0;
      return;
    }
    tb_sleep_us(10000);
  }
  kill(srv->pid, SIGKILL);
  waitpid(srv->pid, NULL, 0);
  srv->pid = 0;
}

void tb_server_kill(tb_server_t *srv) {
  if (srv->pid <= 0) return;
  kill(srv->pid, SIGKILL);
  waitpid(srv->pid, NULL, 0);
  srv->pid = 0;
}
