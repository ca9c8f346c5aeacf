/* `tierbus dev`: the embedded default. It starts (or reuses) a nats-server with JetStream,
 * provisions the streams, runs every tier's workers in one process, and with --demo publishes a
 * steady mixed stream of the seed events so that a first run shows every tier at work. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "api/publish.h"
#include "bus/server.h"
#include "cli/cli.h"
#include "http/http.h"
#include "codec/codec.h"
#include "core/clock.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/status.h"
#include "sim/sim.h"

/* ---------------------------------------------------------------- demo publisher */

typedef struct demo {
  tb_cli_t *cli;
  int rate; /* events per second */
  volatile int stop;
  pthread_t thread;
  int started; /* the thread runs and must be joined */
} demo_t;

static void *demo_loop(void *arg) {
  demo_t *dm = arg;
  size_t n_events = tb_catalogue_count(dm->cli->cat);
  long gap_ns = 1000000000L / (dm->rate > 0 ? dm->rate : 1);
  unsigned n = 0;
  int warned = 0;
  while (!dm->stop && !tb_cli_stop) {
    const tb_event_def_t *ev = tb_catalogue_at(dm->cli->cat, n % n_events);
    /* Continuations, replies and scheduled slots are tierbus's own traffic, and a sample
     * execute-workflow names no registered workflow: the demo sends only what a service would. */
    if (strcmp(ev->handler, "workflow.step") == 0 || strcmp(ev->handler, "workflow.resume") == 0 ||
        strcmp(ev->handler, "workflow.start") == 0 || strcmp(ev->handler, "sched.run") == 0) {
      n++;
      continue;
    }
    json_t *payload = tb_sample_payload(ev, n);
    /* A third of the events keep their default tier; the rest rotate over every tier, so that
     * the first run shows each tier (and the dispatcher's ordering) at work. */
    const char *tier = n % 3 == 0 ? NULL : dm->cli->cfg.tiers[(n / 3) % dm->cli->cfg.n_tiers].name;
    tb_publish_req_t req = {
        .event = ev->name, .payload = payload, .tier = tier, .source = "tierbus-demo"};
    tb_prepared_t p;
    tb_status st = tb_publish_prepare(&dm->cli->cfg, dm->cli->cat, &req, &p);
    if (st == TB_OK) {
      st = tb_publish_send(dm->cli->bus, &p, NULL, NULL);
      tb_prepared_free(&p);
    }
    if (st != TB_OK && !warned++)
      TB_LOG(TB_LOG_WARN, "demo", "publish %s: %s", ev->name, tb_errdetail());
    json_decref(payload);
    n++;
    tb_sleep_us(gap_ns / 1000);
  }
  return NULL;
}

/* ---------------------------------------------------------------- server supervision */

/* Restart attempts in a row before dev gives up, and the first delay between them (doubled per
 * attempt: 0.25 + 0.5 + 1 + 2 + 4 s, so a port held by another process fails within ~8 s). */
#define RESTART_ATTEMPTS 5
#define RESTART_DELAY_US 250000LL

typedef struct supervisor {
  tb_server_t *srv; /* the server dev started; pid 0 while it is down */
  const char *data_dir, *conf;
  int port;     /* the same port: the workers' connections reconnect to it by themselves */
  int down;     /* 1 from its death until it answers again */
  int attempts; /* failed restarts since it died */
  int64_t next_us;
  int restarts; /* over the whole run, for the log */
} supervisor_t;

/* The run loop's tick (tb_cli_run_workers): restarts a nats-server that died on the same store
 * and port, with backoff; TB_EXIT_FAIL after printing the reason when it cannot. A store that
 * survives a kill -9 keeps every message it acked (short of an OS crash: README, Durability). */
static int supervise(void *arg) {
  supervisor_t *sv = arg;
  if (!sv->down) {
    int status = 0;
    if (sv->srv->pid <= 0 || waitpid(sv->srv->pid, &status, WNOHANG) != sv->srv->pid)
      return TB_EXIT_OK;
    TB_LOG(TB_LOG_WARN, "dev", "nats-server pid %d died (%s %d); restarting it on store %s",
           (int)sv->srv->pid, WIFSIGNALED(status) ? "signal" : "exit status",
           WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), sv->srv->store_dir);
    sv->srv->pid = 0;
    sv->down = 1;
    sv->attempts = 0;
    sv->next_us = tb_mono_us();
  }
  if (tb_mono_us() < sv->next_us) return TB_EXIT_OK;
  tb_status st = tb_server_start(sv->srv, sv->data_dir, sv->port, sv->conf, 10000);
  if (st == TB_OK) {
    sv->down = 0;
    sv->restarts++;
    TB_LOG(TB_LOG_INFO, "dev", "nats-server restarted: pid %d on %s (restart %d, attempt %d)",
           (int)sv->srv->pid, sv->srv->url, sv->restarts, sv->attempts + 1);
    return TB_EXIT_OK;
  }
  sv->attempts++;
  if (sv->attempts >= RESTART_ATTEMPTS) {
    fprintf(stderr,
            "tierbus dev: error: nats-server died and could not be restarted after %d attempts: "
            "%s\n",
            sv->attempts, tb_errdetail());
    return TB_EXIT_FAIL;
  }
  int64_t delay = RESTART_DELAY_US << (sv->attempts - 1);
  TB_LOG(TB_LOG_WARN, "dev", "nats-server restart %d of %d failed (%s); next in %lld ms",
         sv->attempts, RESTART_ATTEMPTS, tb_errdetail(), (long long)delay / 1000);
  sv->next_us = tb_mono_us() + delay;
  return TB_EXIT_OK;
}

/* ---------------------------------------------------------------- command */

static void dev_usage(FILE *out) {
  fprintf(out,
          "usage: tierbus dev [--data-dir DIR] [--nats-port P] [--nats-url URL] [--demo]\n"
          "                   [--demo-rate N] [--http-port N] [--http-threads N] [--db PATH]\n"
          "                   [--config FILE] [--log-level LEVEL]\n"
          "Serves the HTTP API and metrics on http_bind:http_port (127.0.0.1:8080; --http-port 0\n"
          "or http_port: 0 for none) with a pool of --http-threads (config http_threads, 1-256,\n"
          "default 8), as `tierbus api` does.\n"
          "Starts nats-server with JetStream under DIR (default ./var) unless --nats-url is given\n"
          "or a server already answers, creates the streams and consumers, and runs the workers\n"
          "for every tier until SIGINT/SIGTERM. A server it started that dies is restarted on\n"
          "the same store and port (5 attempts, backoff from 250 ms); if it cannot be, dev\n"
          "stops its workers and exits 1 with the reason.\n"
          "The server it starts requires nats_user/nats_password or nats_token from the config,\n"
          "else user tierbus with a password generated into DIR/nats-password (mode 0600, kept\n"
          "for restarts); other commands find it with --data-dir DIR or TIERBUS_DATA_DIR.\n"
          "examples:\n"
          "  tierbus dev --demo                    # seed events at 20/s, dashboard on :8080\n"
          "  tierbus dev --data-dir /srv/tb --nats-port 4333 --http-port 0\n");
}

int tb_cmd_dev(int argc, char **argv) {
  tb_cli_t cli = {.prog = "tierbus dev", .create_db = 1};
  int port = 0, demo = 0, demo_rate = 20;
  long http_port = -1; /* -1: the config's http_port */
  enum { OPT_PORT = OPT__COMMON_END + 1, OPT_DEMO, OPT_DEMO_RATE, OPT_HTTP_PORT, OPT_HTTP_THREADS };
  static const struct option opts[] = {TB_CLI_COMMON_OPTIONS,
                                       {"nats-port", required_argument, NULL, OPT_PORT},
                                       {"http-port", required_argument, NULL, OPT_HTTP_PORT},
                                       {"http-threads", required_argument, NULL, OPT_HTTP_THREADS},
                                       {"demo", no_argument, NULL, OPT_DEMO},
                                       {"demo-rate", required_argument, NULL, OPT_DEMO_RATE},
                                       {"help", no_argument, NULL, 'h'},
                                       {0}};
  int c;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    if (tb_cli_common_opt(&cli, c, optarg)) continue;
    long v = 0;
    switch (c) {
    case OPT_PORT:
      if (tb_cli_parse_long(&cli, "--nats-port", optarg, 1, 65535, &v) != TB_EXIT_OK)
        return TB_EXIT_USAGE;
      port = (int)v;
      break;
    case OPT_HTTP_PORT:
      if (tb_cli_parse_long(&cli, "--http-port", optarg, 0, 65535, &http_port) != TB_EXIT_OK)
        return TB_EXIT_USAGE;
      break;
    case OPT_HTTP_THREADS:
      tb_cli_flag_option(&cli, "--http-threads", "http_threads", optarg);
      break;
    case OPT_DEMO:
      demo = 1;
      break;
    case OPT_DEMO_RATE:
      if (tb_cli_parse_long(&cli, "--demo-rate", optarg, 1, 100000, &v) != TB_EXIT_OK)
        return TB_EXIT_USAGE;
      demo_rate = (int)v;
      break;
    case 'h':
      dev_usage(stdout);
      return TB_EXIT_OK;
    default:
      dev_usage(stderr);
      return TB_EXIT_USAGE;
    }
  }
  if (optind < argc) return tb_cli_usage_error(&cli, "unexpected argument '%s'", argv[optind]);
  if (cli.nats_url && port)
    return tb_cli_usage_error(&cli, "give --nats-url or --nats-port, not both");
  if (cli.data_dir == NULL && getenv("TIERBUS_DATA_DIR") == NULL) cli.data_dir = "var";
  char url[64];
  if (port) {
    snprintf(url, sizeof(url), "nats://127.0.0.1:%d", port);
    cli.nats_url = url;
  }
  int rc = tb_cli_load(&cli);
  if (rc != TB_EXIT_OK) return rc;
  tb_cli_trap_signals();

  tb_server_t srv = {0};
  supervisor_t sv = {.srv = &srv, .data_dir = cli.cfg.data_dir};
  int explicit_url = cli.nats_url != NULL && port == 0;
  if (explicit_url || tb_url_answers(cli.cfg.nats_url)) {
    TB_LOG(TB_LOG_INFO, "dev", "using the NATS server at %s", cli.cfg.nats_url);
  } else {
    int want = port;
    if (want == 0) {
      const char *colon = strrchr(cli.cfg.nats_url, ':');
      want = colon ? atoi(colon + 1) : 4222;
    }
    char base[PATH_MAX]; /* the shipped limits */
    snprintf(base, sizeof(base), "%s/config/nats-server.conf", TB_SOURCE_DIR);
    FILE *probe = fopen("config/nats-server.conf", "r");
    if (probe) {
      fclose(probe);
      snprintf(base, sizeof(base), "config/nats-server.conf");
    }
    tb_mkdirs(cli.cfg.data_dir, 1);
    /* The bus is locked (issue 11): the server requires the configured credentials, else the
     * data directory's secret, generated on the first start and kept for every restart, so the
     * supervisor's restarts and every other command meet the same server. */
    rc = tb_cli_resolve_auth(&cli, 0);
    if (rc == TB_EXIT_OK && !cli.auth.tls && cli.auth.kind == TB_AUTH_NONE)
      rc = tb_cli_resolve_auth(&cli, 1);
    if (rc != TB_EXIT_OK) {
      tb_cli_close(&cli);
      return rc;
    }
    if (cli.auth.tls) {
      tb_cli_close(&cli);
      return tb_cli_usage_error(&cli,
                                "config error: nats_tls_ca, nats_tls_cert or a tls:// nats_url "
                                "asks for TLS, but the nats-server dev starts listens on "
                                "127.0.0.1 without it; unset them, or give --nats-url of the TLS "
                                "server");
    }
    static char conf[PATH_MAX + 32]; /* the supervisor restarts with it */
    snprintf(conf, sizeof(conf), "%s/nats-server.conf", cli.cfg.data_dir);
    tb_status st = tb_server_write_conf(conf, base, &cli.auth);
    if (st != TB_OK) {
      fprintf(stderr, "%s: %s%s\n", cli.prog,
              st == TB_ERR_CONFIG ? "config error: " : "error: ", tb_errdetail());
      tb_cli_close(&cli);
      return st == TB_ERR_CONFIG ? TB_EXIT_USAGE : TB_EXIT_FAIL;
    }
    st = tb_server_start(&srv, cli.cfg.data_dir, want, conf, 10000);
    if (st != TB_OK) {
      fprintf(stderr, "%s: error: %s\n", cli.prog, tb_errdetail());
      tb_cli_close(&cli);
      return TB_EXIT_FAIL;
    }
    snprintf(cli.cfg.nats_url, sizeof(cli.cfg.nats_url), "%s", srv.url);
    sv.conf = conf;
    sv.port = srv.port;
    TB_LOG(TB_LOG_INFO, "dev", "started nats-server pid %d on %s, store %s, credentials: %s",
           (int)srv.pid, srv.url, srv.store_dir, cli.auth.source);
  }

  rc = tb_cli_connect(&cli);
  if (rc == TB_EXIT_OK) {
    tb_status st = tb_bus_provision(cli.bus, &cli.cfg);
    if (st != TB_OK) {
      fprintf(stderr, "%s: error: %s\n", cli.prog, tb_errdetail());
      rc = TB_EXIT_FAIL;
    }
  }
  if (rc == TB_EXIT_OK) rc = tb_cli_open_store(&cli);
  if (rc == TB_EXIT_OK) rc = tb_cli_check_deployment(&cli);
  if (rc == TB_EXIT_OK) {
    demo_t dm = {.cli = &cli, .rate = demo_rate};
    /* The HTTP API (issue 11) beside the workers, unless http_port is 0. A port already taken
     * costs the API, not the workers: dev says so and goes on. */
    tb_http_t *http = NULL;
    tb_store_t *http_store = NULL; /* its own connection: the executor owns cli.store */
    char http_url[96] = "";
    if (http_port < 0) http_port = cli.cfg.http_port;
    if (http_port > 0) {
      tb_status hs = tb_store_open(&http_store, cli.cfg.db_path);
      if (hs == TB_OK)
        hs = tb_http_start(&http, &(tb_http_opts_t){.bind = cli.cfg.http_bind,
                                                    .port = (int)http_port,
                                                    .token = cli.cfg.api_token,
                                                    .threads = cli.cfg.http_threads,
                                                    .cfg = &cli.cfg,
                                                    .cat = cli.cat,
                                                    .bus = cli.bus,
                                                    .store = http_store});
      if (hs == TB_OK)
        snprintf(http_url, sizeof(http_url), " http=http://%s:%d", cli.cfg.http_bind,
                 tb_http_port(http));
      else
        TB_LOG(TB_LOG_WARN, "dev", "HTTP API not started: %s", tb_errdetail());
    }
    /* Another service needs this to connect (README, "Connecting to the locked bus"). */
    if (srv.pid > 0) printf("tierbus dev: NATS credentials: %s\n", cli.auth.source);
    printf("tierbus dev ready: nats=%s db=%s%s tiers=%d%s (Ctrl-C to stop)\n", cli.cfg.nats_url,
           cli.cfg.db_path, http_url, cli.cfg.n_tiers, demo ? " demo=on" : "");
    fflush(stdout);
    /* The demo's workflows send commands; the simulator answers them in-process, the first
     * enrichment submit of each batch with a 429 so that a retry shows in the history. */
    tb_sim_t *sim = NULL;
    if (demo) {
      tb_sim_opts_t so;
      tb_sim_opts_init(&so);
      so.bus = cli.bus;
      so.cfg = &cli.cfg;
      so.cat = cli.cat;
      so.latency_ms = 20;
      so.enrich_delay_ms = 500;
      if (tb_sim_parse_fail("enrichment.submit=429:1", &so.fails[0]) == TB_OK) so.n_fails = 1;
      if (tb_sim_start(&sim, &so) != TB_OK) {
        TB_LOG(TB_LOG_WARN, "dev", "simulator not started, commands stay unanswered: %s",
               tb_errdetail());
        sim = NULL;
      }
      /* Like the simulator, the demo is an extra: without it the workers still run. */
      int prc = pthread_create(&dm.thread, NULL, demo_loop, &dm);
      if (prc != 0)
        TB_LOG(TB_LOG_WARN, "dev", "demo publisher not started, no demo events: %s", strerror(prc));
      dm.started = prc == 0;
    }
    tb_worker_scope_t scope;
    tb_worker_scope_all(&cli.cfg, &scope);
    scope.max_inflight = cli.cfg.max_concurrent_workflows;
    /* Only a server dev started is supervised; one it found or was given is someone else's. */
    rc = tb_cli_run_workers(&cli, &scope, 10, srv.pid > 0 ? supervise : NULL, &sv);
    if (demo) {
      dm.stop = 1;
      if (dm.started) pthread_join(dm.thread, NULL);
      tb_sim_stop(sim, NULL);
    }
    tb_http_stop(http);
    tb_store_close(http_store);
  }
  tb_cli_close(&cli);
  if (srv.pid > 0) {
    tb_server_stop(&srv, 5000);
    TB_LOG(TB_LOG_INFO, "dev", "nats-server stopped");
  }
  return rc;
}
