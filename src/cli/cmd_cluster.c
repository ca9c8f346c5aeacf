/* `tierbus cluster up|status|down`: a loopback NATS cluster for development and tests
 * (bus/cluster.h), and what a cluster holds of tierbus's: nodes, streams with their leaders and
 * replicas. */
#include <stdlib.h>
#include <string.h>

#include "bus/cluster.h"
#include "bus/lease.h"
#include "cli/cli.h"
#include "core/util.h"

enum { OPT_NODES = OPT__COMMON_END, OPT_DIR, OPT_JSON };

#define READY_MS 30000

/* DIR: --dir, else <data_dir>/cluster of the loaded config. */
static void cluster_dir(const tb_cli_t *cli, const char *given, char *buf, size_t cap) {
  if (given != NULL)
    snprintf(buf, cap, "%s", given);
  else
    snprintf(buf, cap, "%s/cluster", cli->cfg.data_dir);
}

/* Parses the options shared by the subcommands. Returns TB_EXIT_OK or the exit status. */
static int parse(tb_cli_t *cli, int argc, char **argv, int with_nodes, long *nodes,
                 const char **dir, int *as_json) {
  static const struct option opts[] = {TB_CLI_COMMON_OPTIONS,
                                       {"nodes", required_argument, NULL, OPT_NODES},
                                       {"dir", required_argument, NULL, OPT_DIR},
                                       {"json", no_argument, NULL, OPT_JSON},
                                       {0}};
  int c;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    if (tb_cli_common_opt(cli, c, optarg)) continue;
    if (c == OPT_NODES && with_nodes) {
      if (tb_cli_parse_long(cli, "--nodes", optarg, 1, TB_CLUSTER_MAX_NODES, nodes) != TB_EXIT_OK)
        return TB_EXIT_USAGE;
    } else if (c == OPT_DIR) {
      if (optarg[0] == '\0') return tb_cli_usage_error(cli, "--dir must not be empty");
      *dir = optarg;
    } else if (c == OPT_JSON && as_json != NULL) {
      *as_json = 1;
    } else {
      return tb_cli_usage_error(cli, "unknown option '%s'", argv[optind - 1]);
    }
  }
  if (optind < argc) return tb_cli_usage_error(cli, "unexpected argument '%s'", argv[optind]);
  return tb_cli_load(cli);
}

static int cluster_up(int argc, char **argv) {
  tb_cli_t cli = {.prog = "tierbus cluster up"};
  long nodes = 3;
  const char *given = NULL;
  int rc = parse(&cli, argc, argv, 1, &nodes, &given, NULL);
  if (rc != TB_EXIT_OK) return rc;
  char dir[PATH_MAX + 16];
  cluster_dir(&cli, given, dir, sizeof(dir));
  tb_cluster_t c;
  tb_status s = tb_cluster_up(&c, dir, (int)nodes, READY_MS);
  if (s != TB_OK) {
    fprintf(stderr, "%s: error: %s\n", cli.prog, tb_errdetail());
    tb_cli_close(&cli);
    return s == TB_ERR_INVALID ? TB_EXIT_USAGE : TB_EXIT_FAIL;
  }
  char url[TB_CLUSTER_MAX_NODES * 32];
  tb_cluster_url(&c, url, sizeof(url));
  printf("cluster %s: %d node%s up, JetStream ready (state in %s/cluster.json)\n", TB_CLUSTER_NAME,
         c.n_nodes, c.n_nodes == 1 ? "" : "s", dir);
  static const char *const headers[] = {"NODE", ">PID", "CLIENT", "ROUTE", "STORE"};
  tb_cli_table_t *t = tb_cli_table_new(5, headers);
  for (int i = 0; t && i < c.n_nodes; i++) {
    char pid[16], client[48], route[48];
    snprintf(pid, sizeof(pid), "%d", (int)c.nodes[i].pid);
    snprintf(client, sizeof(client), "nats://127.0.0.1:%d", c.nodes[i].port);
    snprintf(route, sizeof(route), "127.0.0.1:%d", c.nodes[i].route_port);
    tb_cli_table_add(t, c.nodes[i].name, pid, client, route, c.nodes[i].dir);
  }
  if (t) tb_cli_table_print(t, stdout);
  tb_cli_table_free(t);
  printf("nats_url: %s\n", url);
  printf("next: tierbus init --nats-url %s --set replicas=%d\n", url, c.n_nodes >= 3 ? 3 : 1);
  tb_cli_close(&cli);
  return TB_EXIT_OK;
}

static int cluster_down(int argc, char **argv) {
  tb_cli_t cli = {.prog = "tierbus cluster down"};
  const char *given = NULL;
  int rc = parse(&cli, argc, argv, 0, NULL, &given, NULL);
  if (rc != TB_EXIT_OK) return rc;
  char dir[PATH_MAX + 16];
  cluster_dir(&cli, given, dir, sizeof(dir));
  tb_cluster_t c;
  tb_status s = tb_cluster_load(&c, dir);
  if (s != TB_OK) {
    fprintf(stderr, "%s: error: %s\n", cli.prog, tb_errdetail());
    tb_cli_close(&cli);
    return s == TB_ERR_NOT_FOUND ? TB_EXIT_USAGE : TB_EXIT_FAIL;
  }
  int stopped = tb_cluster_down(&c, 10000);
  printf("cluster %s: stopped %d of %d node%s (stores kept under %s)\n", TB_CLUSTER_NAME, stopped,
         c.n_nodes, c.n_nodes == 1 ? "" : "s", dir);
  tb_cli_close(&cli);
  return TB_EXIT_OK;
}

/* "n2*" for the leader, then its peers: "n1", "n3 (behind: lag 12, seen 0.4 s ago)",
 * "n3 (offline)". */
static void peers_text(const jsClusterInfo *ci, char *buf, size_t cap) {
  size_t len = 0;
  buf[0] = '\0';
  if (ci == NULL) return;
  len += (size_t)snprintf(buf, cap, "%s*", ci->Leader ? ci->Leader : "(no leader)");
  for (int i = 0; i < ci->ReplicasLen && len < cap; i++) {
    const jsPeerInfo *p = ci->Replicas[i];
    len += (size_t)snprintf(buf + len, cap - len, " %s", p->Name);
    if (p->Offline)
      len += (size_t)snprintf(buf + len, cap - len, " (offline)");
    else if (!p->Current) /* a dead node shows so until the server marks it offline */
      len += (size_t)snprintf(buf + len, cap - len, " (behind: lag %llu, seen %.1f s ago)",
                              (unsigned long long)p->Lag, (double)p->Active / 1e9);
  }
}

static int by_name(const void *a, const void *b) {
  const jsStreamInfo *x = *(const jsStreamInfo *const *)a, *y = *(const jsStreamInfo *const *)b;
  return strcmp(x->Config ? x->Config->Name : "", y->Config ? y->Config->Name : "");
}

static int cluster_status(int argc, char **argv) {
  tb_cli_t cli = {.prog = "tierbus cluster status"};
  const char *given = NULL;
  int as_json = 0;
  int rc = parse(&cli, argc, argv, 0, NULL, &given, &as_json);
  if (rc != TB_EXIT_OK) return rc;
  char dir[PATH_MAX + 16], url[TB_CLUSTER_MAX_NODES * 32] = "";
  cluster_dir(&cli, given, dir, sizeof(dir));
  tb_cluster_t c;
  int have = tb_cluster_load(&c, dir) == TB_OK;
  /* The cluster's own nodes unless a URL is given (flag or environment). */
  if (have && cli.nats_url == NULL && getenv("TIERBUS_NATS_URL") == NULL) {
    tb_cluster_url(&c, url, sizeof(url));
    snprintf(cli.cfg.nats_url, sizeof(cli.cfg.nats_url), "%s", url);
  }
  json_t *out = json_pack("{s:s,s:[],s:[],s:[]}", "dir", dir, "nodes", "streams", "leases");
  tb_cli_table_t *nodes = NULL;
  if (have) {
    static const char *const headers[] = {"NODE", ">PID", "CLIENT", "STATE"};
    nodes = tb_cli_table_new(4, headers);
    for (int i = 0; i < c.n_nodes; i++) {
      const tb_cluster_node_t *n = &c.nodes[i];
      char pid[16], client[48];
      snprintf(pid, sizeof(pid), "%d", (int)n->pid);
      snprintf(client, sizeof(client), "nats://127.0.0.1:%d", n->port);
      const char *state = tb_cluster_node_alive(n) ? "up" : "down";
      if (nodes) tb_cli_table_add(nodes, n->name, pid, client, state);
      json_array_append_new(json_object_get(out, "nodes"),
                            json_pack("{s:s,s:i,s:s,s:s}", "name", n->name, "pid", (int)n->pid,
                                      "client", client, "state", state));
    }
  }
  /* A short connect timeout: status should say what is down, not wait for it. */
  if (cli.cfg.nats_connect_timeout_ms > 3000) cli.cfg.nats_connect_timeout_ms = 3000;
  rc = tb_cli_connect(&cli);
  static const char *const sheaders[] = {"STREAM", ">REPLICAS", ">MSGS", "LEADER* AND PEERS"};
  tb_cli_table_t *streams = tb_cli_table_new(4, sheaders);
  jsStreamInfoList *list = NULL;
  jsErrCode jerr = 0;
  natsStatus ns = NATS_ERR;
  if (rc == TB_EXIT_OK) ns = js_Streams(&list, tb_bus_js(cli.bus), NULL, &jerr);
  if (ns == NATS_NOT_FOUND) ns = NATS_OK; /* no stream at all */
  if (list != NULL) qsort(list->List, (size_t)list->Count, sizeof(*list->List), by_name);
  int shown = 0;
  size_t prefix = strlen(cli.cfg.stream_prefix);
  for (int i = 0; list != NULL && i < list->Count; i++) {
    const jsStreamInfo *si = list->List[i];
    if (si->Config == NULL || strncmp(si->Config->Name, cli.cfg.stream_prefix, prefix) != 0)
      continue;
    char reps[16], msgs[24], peers[512];
    snprintf(reps, sizeof(reps), "%lld", (long long)si->Config->Replicas);
    snprintf(msgs, sizeof(msgs), "%llu", (unsigned long long)si->State.Msgs);
    peers_text(si->Cluster, peers, sizeof(peers));
    if (streams) tb_cli_table_add(streams, si->Config->Name, reps, msgs, peers[0] ? peers : "-");
    shown++;
    json_array_append_new(json_object_get(out, "streams"),
                          json_pack("{s:s,s:I,s:I,s:s?}", "name", si->Config->Name, "replicas",
                                    (json_int_t)si->Config->Replicas, "msgs",
                                    (json_int_t)si->State.Msgs, "leader",
                                    si->Cluster ? si->Cluster->Leader : NULL));
  }
  /* Who holds each duty (bus/lease.h): the scheduler's leader today. */
  static const char *const lheaders[] = {"LEASE", "HOLDER", ">TTL", ">RENEWED", ">REVISION"};
  tb_cli_table_t *leases = tb_cli_table_new(5, lheaders);
  tb_lease_info_t li[32];
  int n_leases = 0;
  tb_status lst = rc == TB_EXIT_OK && ns == NATS_OK
                      ? tb_lease_list(cli.bus, &cli.cfg, li, (int)TB_COUNTOF(li), &n_leases)
                      : TB_OK;
  for (int i = 0; i < n_leases; i++) {
    char ttl[24], age[24], rev[24];
    snprintf(ttl, sizeof(ttl), "%.1fs", (double)li[i].ttl_ms / 1000.0);
    snprintf(age, sizeof(age), "%.1fs ago", (double)li[i].age_ms / 1000.0);
    snprintf(rev, sizeof(rev), "%llu", (unsigned long long)li[i].revision);
    if (leases)
      tb_cli_table_add(leases, li[i].name, li[i].holder[0] ? li[i].holder : "(free)", ttl, age,
                       rev);
    json_array_append_new(json_object_get(out, "leases"),
                          json_pack("{s:s,s:s?,s:I,s:I,s:I}", "name", li[i].name, "holder",
                                    li[i].holder[0] ? li[i].holder : NULL, "ttl_ms",
                                    (json_int_t)li[i].ttl_ms, "renewed_ms_ago",
                                    (json_int_t)li[i].age_ms, "revision",
                                    (json_int_t)li[i].revision));
  }
  if (as_json) {
    json_object_set_new(out, "connected", json_boolean(ns == NATS_OK));
    json_dumpf(out, stdout, JSON_INDENT(2));
    printf("\n");
  } else {
    if (have) {
      printf("cluster %s (%s):\n", TB_CLUSTER_NAME, dir);
      tb_cli_table_print(nodes, stdout);
      printf("\n");
    }
    if (ns == NATS_OK && shown == 0)
      printf("streams: none named %s* (create them with `tierbus init`)\n", cli.cfg.stream_prefix);
    else if (ns == NATS_OK) {
      printf("streams (%s*):\n", cli.cfg.stream_prefix);
      tb_cli_table_print(streams, stdout);
    }
    if (ns == NATS_OK && lst == TB_OK && n_leases == 0)
      printf("\nleases: none yet (a worker running the scheduler takes one)\n");
    else if (ns == NATS_OK && lst == TB_OK) {
      printf("\nleases:\n");
      tb_cli_table_print(leases, stdout);
    }
    /* Said, not hidden: issue 13's partitions are not built yet. */
    printf("\npartitions: 1 (state is not partitioned yet: every worker shares one database; "
           "no partition leases)\n");
  }
  if (rc == TB_EXIT_OK && ns != NATS_OK) {
    fprintf(stderr, "%s: error: listing streams: %s\n", cli.prog, natsStatus_GetText(ns));
    rc = TB_EXIT_FAIL;
  } else if (rc == TB_EXIT_OK && lst != TB_OK) {
    fprintf(stderr, "%s: error: listing leases: %s\n", cli.prog, tb_errdetail());
    rc = TB_EXIT_FAIL;
  }
  jsStreamInfoList_Destroy(list);
  tb_cli_table_free(nodes);
  tb_cli_table_free(streams);
  tb_cli_table_free(leases);
  json_decref(out);
  tb_cli_close(&cli);
  return rc;
}

static void cluster_usage(FILE *out) {
  fprintf(out,
          "usage: tierbus cluster up [--nodes N] [--dir DIR]   start N (default 3) nats-server\n"
          "                                                   nodes with JetStream on loopback\n"
          "       tierbus cluster status [--dir DIR] [--json] nodes, tierbus's streams with\n"
          "                                                   their leader, replicas and lag\n"
          "       tierbus cluster down [--dir DIR]            stop the nodes (by pid)\n"
          "DIR defaults to <data_dir>/cluster. The nodes are for development and tests: they\n"
          "accept any client on 127.0.0.1 (no credentials). `up` prints the nats_url to use;\n"
          "replicated streams come from config `replicas: 3` and `tierbus init`.\n"
          "examples:\n"
          "  tierbus cluster up --nodes 3 --dir /tmp/tbc\n"
          "  tierbus init --nats-url nats://127.0.0.1:4301,nats://127.0.0.1:4302 --set replicas=3\n"
          "  tierbus cluster status --dir /tmp/tbc\n"
          "  tierbus cluster down --dir /tmp/tbc\n");
}

int tb_cmd_cluster(int argc, char **argv) {
  static const tb_cli_sub_t subs[] = {
      {"up", cluster_up}, {"status", cluster_status}, {"down", cluster_down}};
  return tb_cli_run_subcommand("tierbus cluster", argc, argv, subs, 3, cluster_usage);
}
