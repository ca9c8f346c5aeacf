/* A loopback NATS cluster for development and tests (see cluster.h). */
#include "bus/cluster.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>
#include <nats/nats.h>

#include "bus/server.h"
#include "core/clock.h"
#include "core/fs.h"

#define STATE_FILE "cluster.json"

static void state_path(const char *dir, char *buf, size_t cap) {
  snprintf(buf, cap, "%s/" STATE_FILE, dir);
}

/* Alive means a nats-server process that has not exited: a killed node whose parent (the `up`
 * command, long gone) left it to an init that does not reap is a zombie, and a pid reused by
 * another program is not ours to signal. Reads /proc/<pid>/stat: "pid (comm) state ...". */
int tb_cluster_node_alive(const tb_cluster_node_t *n) {
  if (n->pid <= 0) return 0;
  char path[64], line[256];
  snprintf(path, sizeof(path), "/proc/%d/stat", (int)n->pid);
  FILE *f = fopen(path, "r");
  if (f == NULL) return 0;
  int ok = fgets(line, sizeof(line), f) != NULL;
  fclose(f);
  static const char comm[] = "(nats-server) ";
  const char *at = ok ? strchr(line, '(') : NULL;
  if (at == NULL || strncmp(at, comm, sizeof(comm) - 1) != 0) return 0;
  char state = at[sizeof(comm) - 1];
  return state != 'Z' && state != 'X';
}

void tb_cluster_url(const tb_cluster_t *c, char *buf, size_t cap) {
  size_t len = 0;
  buf[0] = '\0';
  for (int i = 0; i < c->n_nodes && len < cap; i++)
    len += (size_t)snprintf(buf + len, cap - len, "%snats://127.0.0.1:%d", i ? "," : "",
                            c->nodes[i].port);
}

/* The node's nats-server config: its name, and routes to every node (itself included, which
 * nats-server ignores), so that any node started alone still finds the others. */
static tb_status write_node_conf(const tb_cluster_t *c, int i, const char *path) {
  FILE *f = fopen(path, "w");
  if (f == NULL) return tb__fail(TB_ERR_IO, "cannot write %s: %s", path, strerror(errno));
  const tb_cluster_node_t *n = &c->nodes[i];
  fprintf(f, "server_name: %s\ncluster {\n  name: %s\n  listen: 127.0.0.1:%d\n  routes: [\n",
          n->name, TB_CLUSTER_NAME, n->route_port);
  for (int k = 0; k < c->n_nodes; k++)
    fprintf(f, "    nats-route://127.0.0.1:%d\n", c->nodes[k].route_port);
  fprintf(f, "  ]\n}\n");
  if (fclose(f) != 0) return tb__fail(TB_ERR_IO, "cannot write %s: %s", path, strerror(errno));
  return TB_OK;
}

static tb_status save(const tb_cluster_t *c) {
  json_t *nodes = json_array(),
         *j = json_pack("{s:s,s:o}", "name", TB_CLUSTER_NAME, "nodes", nodes);
  if (j == NULL) return tb__fail(TB_ERR_NOMEM, "cluster state");
  for (int i = 0; i < c->n_nodes; i++) {
    const tb_cluster_node_t *n = &c->nodes[i];
    json_array_append_new(nodes,
                          json_pack("{s:s,s:i,s:i,s:i,s:s}", "name", n->name, "pid", (int)n->pid,
                                    "port", n->port, "route_port", n->route_port, "dir", n->dir));
  }
  char path[PATH_MAX + 16];
  state_path(c->dir, path, sizeof(path));
  int rc = json_dump_file(j, path, JSON_INDENT(2));
  json_decref(j);
  return rc == 0 ? TB_OK : tb__fail(TB_ERR_IO, "cannot write %s", path);
}

tb_status tb_cluster_load(tb_cluster_t *c, const char *dir) {
  memset(c, 0, sizeof(*c));
  snprintf(c->dir, sizeof(c->dir), "%s", dir);
  char path[PATH_MAX + 16];
  state_path(dir, path, sizeof(path));
  if (access(path, F_OK) != 0) return tb__fail(TB_ERR_NOT_FOUND, "no cluster at %s", path);
  json_error_t jerr;
  json_t *j = json_load_file(path, 0, &jerr);
  json_t *nodes = json_object_get(j, "nodes");
  tb_status s = TB_OK;
  if (!json_is_array(nodes) || json_array_size(nodes) == 0 ||
      json_array_size(nodes) > TB_CLUSTER_MAX_NODES)
    s = tb__fail(TB_ERR_INVALID, "%s: not a cluster state file (%s)", path,
                 j ? "no nodes" : jerr.text);
  for (size_t i = 0; s == TB_OK && i < json_array_size(nodes); i++) {
    const json_t *o = json_array_get(nodes, i);
    const char *name = json_string_value(json_object_get(o, "name"));
    const char *ndir = json_string_value(json_object_get(o, "dir"));
    tb_cluster_node_t *n = &c->nodes[c->n_nodes++];
    n->pid = (pid_t)json_integer_value(json_object_get(o, "pid"));
    n->port = (int)json_integer_value(json_object_get(o, "port"));
    n->route_port = (int)json_integer_value(json_object_get(o, "route_port"));
    if (name == NULL || ndir == NULL || n->pid <= 0 || n->port <= 0 || n->route_port <= 0)
      s = tb__fail(TB_ERR_INVALID, "%s: node %zu is incomplete", path, i + 1);
    else {
      snprintf(n->name, sizeof(n->name), "%s", name);
      snprintf(n->dir, sizeof(n->dir), "%s", ndir);
    }
  }
  json_decref(j);
  return s;
}

tb_status tb_cluster_wait_jetstream(const char *url, int timeout_ms) {
  int64_t deadline = tb_mono_us() + (int64_t)timeout_ms * 1000;
  natsStatus s = NATS_ERR;
  jsErrCode jerr = 0;
  char last[256] = "no answer";
  do {
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsAccountInfo *ai = NULL;
    s = natsConnection_ConnectTo(&nc, url);
    if (s == NATS_OK) s = natsConnection_JetStream(&js, nc, NULL);
    if (s == NATS_OK) s = js_GetAccountInfo(&ai, js, NULL, &jerr);
    if (s != NATS_OK)
      snprintf(last, sizeof(last), "%s%s%s", natsStatus_GetText(s),
               nats_GetLastError(NULL) ? ": " : "",
               nats_GetLastError(NULL) ? nats_GetLastError(NULL) : "");
    jsAccountInfo_Destroy(ai);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    if (s == NATS_OK) return TB_OK;
    tb_sleep_us(200000);
  } while (tb_mono_us() < deadline);
  return tb__fail(TB_ERR_TIMEOUT, "JetStream at %s did not answer within %d ms: %s", url,
                  timeout_ms, last);
}

tb_status tb_cluster_up(tb_cluster_t *c, const char *dir, int n_nodes, int ready_ms) {
  if (n_nodes < 1 || n_nodes > TB_CLUSTER_MAX_NODES)
    return tb__fail(TB_ERR_INVALID, "--nodes must be 1 to %d, not %d", TB_CLUSTER_MAX_NODES,
                    n_nodes);
  tb_cluster_t old;
  if (tb_cluster_load(&old, dir) == TB_OK)
    for (int i = 0; i < old.n_nodes; i++)
      if (tb_cluster_node_alive(&old.nodes[i]))
        return tb__fail(TB_ERR_INVALID,
                        "a cluster already runs from %s (node %s, pid %d, port %d); stop it with "
                        "`tierbus cluster down --dir %s`",
                        dir, old.nodes[i].name, (int)old.nodes[i].pid, old.nodes[i].port, dir);
  memset(c, 0, sizeof(*c));
  snprintf(c->dir, sizeof(c->dir), "%s", dir);
  tb_mkdirs(dir, 1);
  /* Every port is chosen before any node starts: each node's routes name all of them. Two
   * ports picked apart could come out equal; pick again until they differ. */
  for (int i = 0; i < n_nodes; i++) {
    tb_cluster_node_t *n = &c->nodes[i];
    snprintf(n->name, sizeof(n->name), "n%d", i + 1);
    snprintf(n->dir, sizeof(n->dir), "%s/n%d", dir, i + 1);
    for (int tries = 0; tries < 50; tries++) {
      n->port = tb_free_port();
      n->route_port = tb_free_port();
      int clash = n->port <= 0 || n->route_port <= 0 || n->port == n->route_port;
      for (int k = 0; k < i && !clash; k++)
        clash = n->port == c->nodes[k].port || n->port == c->nodes[k].route_port ||
                n->route_port == c->nodes[k].port || n->route_port == c->nodes[k].route_port;
      if (!clash) break;
      n->port = n->route_port = 0;
    }
    if (n->port <= 0) return tb__fail(TB_ERR_IO, "no free ports on 127.0.0.1 for node %s", n->name);
  }
  c->n_nodes = n_nodes;
  tb_status s = TB_OK;
  for (int i = 0; i < n_nodes && s == TB_OK; i++) {
    tb_cluster_node_t *n = &c->nodes[i];
    char conf[PATH_MAX + 16];
    tb_mkdirs(n->dir, 1);
    snprintf(conf, sizeof(conf), "%s/nats.conf", n->dir);
    s = write_node_conf(c, i, conf);
    tb_server_t srv;
    if (s == TB_OK) s = tb_server_start(&srv, n->dir, n->port, conf, ready_ms);
    if (s == TB_OK) n->pid = srv.pid;
  }
  char url[TB_CLUSTER_MAX_NODES * 32];
  tb_cluster_url(c, url, sizeof(url));
  if (s == TB_OK) s = tb_cluster_wait_jetstream(url, ready_ms);
  if (s == TB_OK) s = save(c);
  if (s != TB_OK) {
    char detail[1024];
    snprintf(detail, sizeof(detail), "%s", tb_errdetail());
    tb_cluster_down(c, 2000);
    return tb__fail(s, "%s", detail);
  }
  return TB_OK;
}

int tb_cluster_down(tb_cluster_t *c, int grace_ms) {
  int running = 0;
  for (int i = 0; i < c->n_nodes; i++)
    if (tb_cluster_node_alive(&c->nodes[i])) {
      kill(c->nodes[i].pid, SIGTERM);
      running++;
    }
  /* Not our children (the command that started them has exited): wait for them to be gone. */
  for (int waited = 0; waited < grace_ms; waited += 20) {
    int left = 0;
    for (int i = 0; i < c->n_nodes; i++) {
      /* A node started by this process (up failing half-way) is our child: reap it. */
      if (c->nodes[i].pid > 0 && waitpid(c->nodes[i].pid, NULL, WNOHANG) == c->nodes[i].pid)
        c->nodes[i].pid = 0;
      left += tb_cluster_node_alive(&c->nodes[i]);
    }
    if (left == 0) break;
    tb_sleep_us(20000);
  }
  for (int i = 0; i < c->n_nodes; i++)
    if (tb_cluster_node_alive(&c->nodes[i])) {
      kill(c->nodes[i].pid, SIGKILL);
      waitpid(c->nodes[i].pid, NULL, WNOHANG);
    }
  return running;
}
