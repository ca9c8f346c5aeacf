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
  /* Its stdout and stderr go to its log too (what it prints before it opens the log: a bad
   * config), never to ours: a server that outlives the command (`cluster up`) would otherwise
   * hold the caller's pipe open, and `tierbus cluster up | tee` would never end. */
  posix_spawn_file_actions_addopen(&fa, 1, srv->log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
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

/* Appends |value| to |f| as a nats-server config string: double-quoted, with '"' and '\\'
 * escaped (the option table allows printable ASCII only, so nothing else needs it). */
static void put_quoted(FILE *f, const char *value) {
  fputc('"', f);
  for (const char *p = value; *p; p++) {
    if (*p == '"' || *p == '\\') fputc('\\', f);
    fputc(*p, f);
  }
  fputc('"', f);
}

tb_status tb_server_write_conf(const char *path, const char *base_conf, const tb_bus_auth_t *auth) {
  const char *key = auth->kind == TB_AUTH_TOKEN ? "nats_token" : "nats_password";
  if (auth->kind == TB_AUTH_CREDS)
    return tb__fail(TB_ERR_CONFIG,
                    "nats_creds: the nats-server `tierbus dev` starts cannot take a creds file "
                    "(that needs an operator and account JWTs); set nats_user/nats_password or "
                    "nats_token, or leave them unset for a generated secret, or give --nats-url "
                    "of the server the creds file belongs to");
  if (auth->kind == TB_AUTH_NONE)
    return tb__fail(TB_ERR_CONFIG, "no NATS credentials to start nats-server with");
  /* nats-server reads a password or token of this shape as a bcrypt hash to compare against. */
  if (strncmp(auth->secret, "$2", 2) == 0)
    return tb__fail(TB_ERR_CONFIG,
                    "%s: begins with '$2', which nats-server takes for a bcrypt hash; choose "
                    "another",
                    key);
  char tmp[PATH_MAX + 32];
  snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
  tb_mkdirs(path, 0);
  unlink(tmp);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return tb__fail(TB_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
  FILE *f = fdopen(fd, "w");
  if (f == NULL) {
    close(fd);
    unlink(tmp);
    return tb__fail(TB_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
  }
  tb_status st = TB_OK;
  if (fchmod(fd, 0600) != 0) /* exact, whatever the umask */
    st = tb__fail(TB_ERR_IO, "cannot chmod %s: %s", tmp, strerror(errno));
  fprintf(f,
          "# Written by `tierbus dev` at each start%s%s, with the NATS credentials (%s).\n"
          "# Mode 0600: it holds the secret. Edit the source or the nats_* options, not this.\n",
          base_conf ? " from " : "", base_conf ? base_conf : "", auth->source);
  if (st == TB_OK && base_conf != NULL) {
    FILE *in = fopen(base_conf, "r");
    if (in == NULL) {
      st = tb__fail(TB_ERR_IO, "cannot read %s: %s", base_conf, strerror(errno));
    } else {
      char buf[4096];
      size_t n;
      while ((n = fread(buf, 1, sizeof(buf), in)) > 0) fwrite(buf, 1, n, f);
      fclose(in);
    }
  }
  /* Clients of the global account: JetStream, the tier streams and the deployment bucket stay
   * where they were before the bus was locked. No no_auth_user: a client without credentials
   * is refused at CONNECT, before it can publish, subscribe or call the JetStream API. */
  fputs("\nauthorization {\n", f);
  if (auth->kind == TB_AUTH_TOKEN) {
    fputs("  token: ", f);
    put_quoted(f, auth->secret);
    fputc('\n', f);
  } else {
    fputs("  users: [\n    {user: ", f);
    put_quoted(f, auth->user);
    fputs(", password: ", f);
    put_quoted(f, auth->secret);
    fputs("}\n  ]\n", f);
  }
  fputs("}\n", f);
  if (st == TB_OK && (fflush(f) != 0 || fsync(fd) != 0))
    st = tb__fail(TB_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
  if (fclose(f) != 0 && st == TB_OK)
    st = tb__fail(TB_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
  if (st == TB_OK && rename(tmp, path) != 0)
    st = tb__fail(TB_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
  if (st != TB_OK) unlink(tmp);
  return st;
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
