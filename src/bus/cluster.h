/* A NATS cluster for development and tests: N nats-server nodes with JetStream on loopback, each
 * with its own client port, route port and store under DIR/<node>, routed to every other, so
 * that streams can be replicated (config `replicas: 3`). The nodes outlive the command that
 * starts them; DIR/cluster.json records them (name, pid, ports) for `cluster status` and
 * `cluster down`, which stop them by pid. Production clusters are set up with nats-server's own
 * configuration (README, "Running on several machines"); this is their loopback stand-in. */
#ifndef TB_BUS_CLUSTER_H
#define TB_BUS_CLUSTER_H

#include <limits.h>
#include <sys/types.h>

#include "core/status.h"

#define TB_CLUSTER_MAX_NODES 7
#define TB_CLUSTER_NAME "tierbus-dev"

typedef struct tb_cluster_node {
  char name[16]; /* n1, n2, ... (the server_name) */
  pid_t pid;
  int port;       /* client port on 127.0.0.1 */
  int route_port; /* cluster (route) port on 127.0.0.1 */
  char dir[PATH_MAX];
} tb_cluster_node_t;

typedef struct tb_cluster {
  char dir[PATH_MAX];
  int n_nodes;
  tb_cluster_node_t nodes[TB_CLUSTER_MAX_NODES];
} tb_cluster_t;

/* Starts |n_nodes| (1 to TB_CLUSTER_MAX_NODES) nodes under |dir| on free ports, waits until each
 * accepts clients and JetStream answers through the cluster (a meta leader is elected), and
 * writes DIR/cluster.json. TB_ERR_INVALID when |dir| already holds a running cluster (naming its
 * first live node); TB_ERR_IO when a node does not come up (the nodes started are stopped). */
tb_status tb_cluster_up(tb_cluster_t *c, const char *dir, int n_nodes, int ready_ms);

/* Reads DIR/cluster.json into |c|. TB_ERR_NOT_FOUND when there is none; TB_ERR_INVALID when it
 * cannot be read as one (naming the file). */
tb_status tb_cluster_load(tb_cluster_t *c, const char *dir);

/* The client URL of every node, comma-separated (tierbus's nats_url for the cluster). */
void tb_cluster_url(const tb_cluster_t *c, char *buf, size_t cap);

/* 1 while the node's process exists. */
int tb_cluster_node_alive(const tb_cluster_node_t *n);

/* Stops every live node: SIGTERM, then SIGKILL after |grace_ms|. Returns how many were running.
 * The stores stay (a later `up` on the same DIR starts fresh nodes on new stores only after
 * they are removed by hand). */
int tb_cluster_down(tb_cluster_t *c, int grace_ms);

/* Waits up to |timeout_ms| until JetStream answers an account-info request at |url| (on a cluster:
 * once a meta leader is elected). TB_ERR_TIMEOUT with the last error otherwise. */
tb_status tb_cluster_wait_jetstream(const char *url, int timeout_ms);

#endif
