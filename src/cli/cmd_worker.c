/* `tierbus worker` and `tierbus init`, and the worker run loop shared with `tierbus dev`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/status.h"
#include "dispatch/dispatch.h"
#include "engine/engine.h"
#include "engine/relay.h"
#include "replay/snapshot.h"
#include "workflows/escalation.h"
#include "workflows/registry.h"
#include "sched/scheduler.h"

/* The relay's periodic wake; the engine kicks it after every commit that wrote outbox rows, so
 * this only bounds the delay of retries and of rows left by a previous run. */
#define RELAY_INTERVAL_MS 200

int tb_cli_run_workers(tb_cli_t *cli, const tb_worker_scope_t *scope, int report_s,
                       tb_cli_tick_fn tick, void *tick_arg) {
  const int *tiers = scope->tiers, n = scope->n_tiers;
  tb_engine_t *engine = NULL;
  tb_dispatcher_t *disp = NULL;
  tb_relay_t *relay = NULL;
  tb_sweeper_t *sweeper = NULL; /* seed 000: stuck runs are escalated by every worker */
  tb_scheduler_t *sched = NULL;
  tb_snapshotter_t *snap = NULL; /* periodic snapshots, one per interval however many workers */
  tb_status st = tb_store_offload_checkpoints(cli->store, cli->cfg.db_path, 0);
  if (st == TB_OK)
    st = tb_engine_create(&engine, &cli->cfg, cli->cat, cli->store, cli->bus, tb_registry_handler);
  /* The relay first: rows left by a previous run go out before new work adds to them. */
  if (st == TB_OK) st = tb_relay_start(&relay, cli->cfg.db_path, cli->bus, RELAY_INTERVAL_MS);
  if (st == TB_OK) tb_engine_set_relay(engine, relay);
  if (st == TB_OK) st = tb_dispatcher_start(&disp, &cli->cfg, cli->bus, engine, scope);
  if (st == TB_OK && cli->cfg.escalation_sweep_ms > 0)
    st = tb_sweeper_start(&sweeper, cli->cfg.db_path, &cli->cfg, cli->cat,
                          cli->cfg.escalation_sweep_ms);
  /* Every worker may run the scheduler: a slot fires once however many do (sched/scheduler.h). */
  if (st == TB_OK && cli->cfg.scheduler) {
    st = tb_scheduler_create(&sched, &cli->cfg, cli->cat, cli->cfg.db_path, cli->bus);
    if (st == TB_OK) st = tb_scheduler_start(sched);
  }
  if (st == TB_OK && cli->cfg.snapshot_interval_ms > 0)
    st = tb_snapshotter_start(&snap, &cli->cfg, cli->bus);
  if (st != TB_OK) {
    fprintf(stderr, "%s: error: cannot start workers: %s\n", cli->prog, tb_errdetail());
    tb_snapshotter_stop(snap);
    tb_sweeper_stop(sweeper);
    tb_dispatcher_stop(disp);
    tb_scheduler_destroy(sched);
    tb_relay_stop(relay);
    tb_engine_destroy(engine);
    return TB_EXIT_FAIL;
  }
  int ticks = 0, rc = TB_EXIT_OK;
  while (!tb_cli_stop) {
    tb_sleep_us(100000);
    if (tick != NULL && (rc = tick(tick_arg)) != TB_EXIT_OK) break;
    if (report_s > 0 && ++ticks % (report_s * 10) == 0) {
      char line[512];
      size_t off = 0;
      for (int i = 0; i < n; i++) {
        tb_engine_tier_stats_t ts;
        tb_engine_tier_stats(engine, tiers[i], &ts);
        off += (size_t)snprintf(line + off, sizeof(line) - off, " %s=%lld",
                                cli->cfg.tiers[tiers[i]].name, (long long)ts.processed);
        if (off >= sizeof(line)) break;
      }
      TB_LOG(TB_LOG_INFO, "worker", "processed:%s inversions=%lld peak_in_flight=%d", line,
             (long long)tb_dispatcher_inversions(disp), tb_dispatcher_peak_inflight(disp));
    }
  }
  TB_LOG(TB_LOG_INFO, "worker", "stopping: finishing in-flight messages");
  /* No new work from here on: the other threads' stops can wait for the store's lock, and the
   * dispatcher would go on fetching the backlog meanwhile. */
  tb_dispatcher_stop_fetching(disp);
  tb_snapshotter_stop(snap);   /* a copy under way is abandoned: stopping does not wait for it */
  tb_scheduler_destroy(sched); /* no new slot is published while the workers wind down */
  int peak = tb_dispatcher_peak_inflight(disp);
  tb_sweeper_stop(sweeper);
  tb_dispatcher_stop(disp);
  tb_relay_stop(relay); /* after the dispatcher: the last batches' follow-ups go out too */
  tb_engine_destroy(engine);
  TB_LOG(TB_LOG_INFO, "worker", "stopped: peak_in_flight=%d", peak);
  return rc;
}

static void worker_usage(FILE *out) {
  fprintf(out,
          "usage: tierbus worker [--tiers critical,high,...] [--preset NAME] [--task-queue Q]\n"
          "                      [--domains a,b | --domains a b] [--max-concurrent-workflows N]\n"
          "                      [--max-concurrent-activities N] [--nats-url URL] [--db PATH]\n"
          "                      [--config FILE] [--log-level LEVEL]\n"
          "Consumes the given tiers and domains (default: all) from their shared durable\n"
          "consumers, one per (tier, domain). --preset names a config preset (tiers, domains,\n"
          "max_concurrent_workflows) or any catalogue domain. --task-queue Q (seed 004) is a\n"
          "tier, in any case or as seed 000's queue (high-priority, default), or else a preset.\n"
          "--max-concurrent-activities N caps the messages the worker holds at once, as\n"
          "--max-concurrent-workflows does (activities run inside those messages); with both,\n"
          "the smaller applies. Run as many workers as you like; they share the work.\n"
          "examples:\n"
          "  tierbus worker --data-dir var\n"
          "  tierbus worker --tiers critical,high --domains crm,enrichment\n"
          "  tierbus worker --task-queue high-priority --max-concurrent-activities 8\n"
          "  tierbus worker --preset background --max-concurrent-workflows 4\n");
}

int tb_cmd_worker(int argc, char **argv) {
  tb_cli_t cli = {.prog = "tierbus worker", .create_db = 1};
  const char *tiers = NULL, *preset = NULL, *domains = NULL, *max_cw = NULL, *queue = NULL;
  const char *max_ca = NULL;
  static const struct option opts[] = {TB_CLI_COMMON_OPTIONS,
                                       {"tiers", required_argument, NULL, 't'},
                                       {"preset", required_argument, NULL, 'p'},
                                       {"task-queue", required_argument, NULL, 'q'},
                                       {"domains", required_argument, NULL, 'D'},
                                       {"domain", required_argument, NULL, 'D'},
                                       {"max-concurrent-workflows", required_argument, NULL, 'M'},
                                       {"max-concurrent-activities", required_argument, NULL, 'A'},
                                       {"help", no_argument, NULL, 'h'},
                                       {0}};
  int c;
  while ((c = getopt_long(argc, argv, "t:p:q:h", opts, NULL)) != -1) {
    if (tb_cli_common_opt(&cli, c, optarg)) continue;
    if (c == 't')
      tiers = optarg;
    else if (c == 'p')
      preset = optarg;
    else if (c == 'q')
      queue = optarg;
    else if (c == 'D')
      domains = optarg;
    else if (c == 'M')
      max_cw = optarg;
    else if (c == 'A')
      max_ca = optarg;
    else if (c == 'h')
      return worker_usage(stdout), TB_EXIT_OK;
    else
      return worker_usage(stderr), TB_EXIT_USAGE;
  }
  /* Seed 004 writes `--domains a b`: the words after --domains (getopt moves every non-option
   * to the end, in order) join its list. Without --domains a word is still a mistake. */
  char domain_list[512];
  if (optind < argc && domains == NULL)
    return tb_cli_usage_error(&cli, "unexpected argument '%s'", argv[optind]);
  if (optind < argc) {
    size_t off = (size_t)snprintf(domain_list, sizeof(domain_list), "%s", domains);
    for (int i = optind; i < argc && off < sizeof(domain_list); i++)
      off += (size_t)snprintf(domain_list + off, sizeof(domain_list) - off, ",%s", argv[i]);
    if (off >= sizeof(domain_list)) return tb_cli_usage_error(&cli, "--domains: list too long");
    domains = domain_list;
  }
  if (queue != NULL && (tiers != NULL || preset != NULL))
    return tb_cli_usage_error(&cli, "give --task-queue, --tiers or --preset, not two of them");
  int rc = tb_cli_load(&cli);
  if (rc != TB_EXIT_OK) return rc;
  if (queue != NULL) {
    /* A task queue is a tier (any of its names), else a preset or a domain (as --preset). */
    int ti = tb_config_tier_index(&cli.cfg, queue);
    if (ti >= 0) {
      tiers = cli.cfg.tiers[ti].name;
    } else if (tb_config_preset(&cli.cfg, queue) != NULL ||
               tb_config_domain_index(&cli.cfg, queue) >= 0) {
      preset = queue;
    } else {
      char t[256], p[256], d[256];
      tb_cli_config_names(&cli.cfg, TB_CLI_TIERS, t, sizeof(t));
      tb_cli_config_names(&cli.cfg, TB_CLI_PRESETS, p, sizeof(p));
      tb_cli_config_names(&cli.cfg, TB_CLI_DOMAINS, d, sizeof(d));
      rc = tb_cli_usage_error(&cli,
                              "--task-queue: unknown queue '%s' (tiers: %s, or <tier>-priority; "
                              "presets: %s; domains: %s)",
                              queue, t, p, d);
      tb_cli_close(&cli);
      return rc;
    }
  }
  tb_worker_scope_t scope;
  if (tb_cli_parse_scope(&cli, tiers, preset, domains, max_cw, &scope) < 0) {
    tb_cli_close(&cli);
    return TB_EXIT_USAGE;
  }
  if (max_ca != NULL) {
    char *end = NULL;
    long v = strtol(max_ca, &end, 10);
    if (end == max_ca || *end != '\0' || v < 1 || v > 100000) {
      rc = tb_cli_usage_error(
          &cli, "--max-concurrent-activities must be an integer 1 to 100000 (got '%s')", max_ca);
      tb_cli_close(&cli);
      return rc;
    }
    if (scope.max_inflight == 0 || v < scope.max_inflight) scope.max_inflight = (int)v;
  }
  tb_cli_trap_signals();
  rc = tb_cli_connect(&cli);
  if (rc == TB_EXIT_OK) rc = tb_cli_open_store(&cli);
  if (rc == TB_EXIT_OK) rc = tb_cli_check_deployment(&cli);
  if (rc == TB_EXIT_OK) {
    char names[256] = "", doms[256] = "";
    for (int i = 0; i < scope.n_tiers; i++)
      snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s", i ? "," : "",
               cli.cfg.tiers[scope.tiers[i]].name);
    for (int i = 0; i < scope.n_domains; i++)
      snprintf(doms + strlen(doms), sizeof(doms) - strlen(doms), "%s%s", i ? "," : "",
               cli.cfg.domains[scope.domains[i]]);
    TB_LOG(TB_LOG_INFO, "worker",
           "worker ready: nats=%s db=%s tiers=%s domains=%s max_concurrent_workflows=%d",
           cli.cfg.nats_url, cli.cfg.db_path, names, doms, scope.max_inflight);
    rc = tb_cli_run_workers(&cli, &scope, 10, NULL, NULL);
  }
  tb_cli_close(&cli);
  return rc;
}

static void init_usage(FILE *out) {
  fprintf(out,
          "usage: tierbus init [--wait DURATION] [--nats-url URL] [--db PATH | --data-dir DIR]\n"
          "                    [--config FILE]\n"
          "Creates or updates a stream and a durable consumer per (tier, domain), the DLQ and\n"
          "command streams, and the database (binding it to the server's deployment); prints\n"
          "one line per stream. Safe to run again: what is in place is left alone. A changed\n"
          "`replicas` converts the existing streams, consumers and key-value buckets; init\n"
          "then waits up to --wait (default 2m; 0 = do not wait) until every one holds that\n"
          "many current copies, and fails naming the first one still behind.\n"
          "examples:\n"
          "  tierbus init --data-dir var\n"
          "  tierbus init --nats-url nats://10.0.0.5:4222 --db /srv/tierbus.db\n"
          "  tierbus init --nats-url nats://a:4222,nats://b:4222,nats://c:4222 --set replicas=3\n");
}

#define INIT_WAIT_MS (2 * 60 * 1000)

/* Waits up to |wait_ms| until every stream and consumer holds cfg.replicas current copies: after
 * a conversion the servers copy the data in the background, and the deployment survives a lost
 * node only once they are done. Progress goes to stdout every 5 s. */
static int wait_for_copies(tb_cli_t *cli, int64_t wait_ms) {
  int64_t t0 = tb_mono_us(), last_note = t0;
  char why[320] = "";
  for (;;) {
    int behind = 0;
    tb_status st = tb_bus_copies_behind(cli->bus, &cli->cfg, &behind, why, sizeof(why));
    if (st != TB_OK) {
      fprintf(stderr, "%s: error: %s\n", cli->prog, tb_errdetail());
      return TB_EXIT_FAIL;
    }
    int64_t now = tb_mono_us();
    if (!behind) {
      printf("copies: every stream and consumer holds %d current cop%s (%.1f s)\n",
             cli->cfg.replicas, cli->cfg.replicas == 1 ? "y" : "ies", (double)(now - t0) / 1e6);
      return TB_EXIT_OK;
    }
    if (now - t0 >= wait_ms * 1000) break;
    if (now - last_note >= 5000000) {
      printf("copies: waiting (%.0f s) for %s\n", (double)(now - t0) / 1e6, why);
      fflush(stdout);
      last_note = now;
    }
    tb_sleep_us(250000);
  }
  fprintf(stderr,
          "%s: error: after %.0f s, not every stream and consumer holds %d current copies yet: "
          "%s; the servers go on copying (`tierbus cluster status` shows them), and init can be "
          "run again to wait\n",
          cli->prog, (double)(tb_mono_us() - t0) / 1e6, cli->cfg.replicas, why);
  return TB_EXIT_FAIL;
}

int tb_cmd_init(int argc, char **argv) {
  tb_cli_t cli = {.prog = "tierbus init", .create_db = 1};
  static const struct option opts[] = {TB_CLI_COMMON_OPTIONS,
                                       {"wait", required_argument, NULL, 'w'},
                                       {"help", no_argument, NULL, 'h'},
                                       {0}};
  int64_t wait_ms = INIT_WAIT_MS;
  int c;
  while ((c = getopt_long(argc, argv, "w:h", opts, NULL)) != -1) {
    if (c == 'h') return init_usage(stdout), TB_EXIT_OK;
    if (c == 'w') {
      if (tb_duration_parse_ms(optarg, &wait_ms) != TB_OK)
        return tb_cli_usage_error(&cli, "--wait: %s", tb_errdetail());
      continue;
    }
    if (!tb_cli_common_opt(&cli, c, optarg)) return init_usage(stderr), TB_EXIT_USAGE;
  }
  if (optind < argc) return tb_cli_usage_error(&cli, "unexpected argument '%s'", argv[optind]);
  int rc = tb_cli_load(&cli);
  if (rc == TB_EXIT_OK) rc = tb_cli_connect(&cli);
  /* The database and the streams are bound to one deployment before anything is changed. */
  if (rc == TB_EXIT_OK) rc = tb_cli_open_store(&cli);
  if (rc == TB_EXIT_OK) rc = tb_cli_check_deployment(&cli);
  if (rc == TB_EXIT_OK) {
    tb_status st = tb_bus_provision(cli.bus, &cli.cfg);
    if (st != TB_OK) {
      fprintf(stderr, "%s: error: %s\n", cli.prog, tb_errdetail());
      rc = TB_EXIT_FAIL;
    } else {
      for (int i = 0; i < cli.cfg.n_tiers; i++)
        for (int d = 0; d < cli.cfg.n_domains; d++) {
          const char *tier = cli.cfg.tiers[i].name, *domain = cli.cfg.domains[d];
          char stream[64], durable[64];
          tb_bus_stream_name(&cli.cfg, tier, domain, stream, sizeof(stream));
          tb_bus_consumer_name(tier, domain, durable, sizeof(durable));
          printf("stream %-24s subjects tb.evt.%s.%s.>  consumer %s\n", stream, tier, domain,
                 durable);
        }
      char dlq[64], cmd[64];
      tb_bus_dlq_stream(&cli.cfg, dlq, sizeof(dlq));
      tb_bus_cmd_stream(&cli.cfg, cmd, sizeof(cmd));
      printf("stream %-14s subjects tb.dlq.>\nstream %-14s subjects tb.cmd.>\n", dlq, cmd);
      fflush(stdout);
      if (wait_ms > 0) rc = wait_for_copies(&cli, wait_ms);
    }
  }
  tb_cli_close(&cli);
  return rc;
}
