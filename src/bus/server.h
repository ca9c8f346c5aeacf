/* The embedded nats-server: a child process with JetStream on loopback, used by `tierbus dev`,
 * `tierbus bench` and the integration tests. */
#ifndef TB_BUS_SERVER_H
#define TB_BUS_SERVER_H

#include <sys/types.h>

#include "bus/auth.h"
#include "tierbus.h"

typedef struct tb_server {
  pid_t pid;
  int port;
  char url[64];
  char store_dir[4096];
  char log_path[4096];
} tb_server_t;

/* Starts nats-server -js on 127.0.0.1:|port| (0 = pick a free port) storing under
 * |data_dir|/jetstream, with |conf_path| as its config file when non-NULL, logging to
 * |data_dir|/nats-server.log. Waits up to |ready_ms| until it accepts connections. TB_ERR_IO with
 * a detail (and the tail of its log) if it does not come up. */
tb_status tb_server_start(tb_server_t *srv, const char *data_dir, int port, const char *conf_path,
                          int ready_ms);

/* Writes the config file of a nats-server that requires |auth|'s credentials (user/password or
 * token) to |path|: the text of |base_conf| (the shipped limits; NULL = none) followed by an
 * authorization block. Written with mode 0600 under a temporary name and renamed into place,
 * because it holds the secret: the secret goes to the server in this file, never on its command
 * line, where `ps` would show it. TB_ERR_CONFIG naming the option for credentials nats-server
 * cannot take here (a creds file, which needs an operator setup; none at all; a password that
 * looks like a bcrypt hash, which the server would compare as one); TB_ERR_IO naming the file
 * otherwise. */
tb_status tb_server_write_conf(const char *path, const char *base_conf, const tb_bus_auth_t *auth);

/* SIGTERM, then SIGKILL after |grace_ms|; reaps the child. No-op if not running. */
void tb_server_stop(tb_server_t *srv, int grace_ms);

/* SIGKILL at once (tests of a crashed server). */
void tb_server_kill(tb_server_t *srv);

/* A TCP port on 127.0.0.1 that was free a moment ago. */
int tb_free_port(void);

/* 1 if something accepts TCP connections at the host:port of a nats:// URL. */
int tb_url_answers(const char *url);

#endif
