/* `tierbus replay`, `tierbus rebuild` and `tierbus db checksum|prune`: re-driving history from
 * the streams through the handlers, rebuilding a database from the log, and the checksum that
 * says whether two databases hold the same logical state. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bus/deployment.h"
#include "cli/cli.h"
#include "core/clock.h"
#include "core/status.h"
#include "replay/replay.h"
#include "replay/snapshot.h"
#include "store/logstate.h"
#include "workflows/registry.h"

/* ---------------------------------------------------------------- progress and summary */

static void progress(void *arg, const tb_replay_stats_t *s) {
  (void)arg;
  double rate = s->secs > 0 ? (double)s->read / s->secs : 0;
  char eta[32] = "?";
  if (rate > 0 && s->total >= s->read)
    snprintf(eta, sizeof(eta), "%.0fs", (double)(s->total - s->read) / rate);
  fprintf(stderr, "\rreplay: %lld/%lld read, %lld applied, %lld skipped, %.0f/s, ETA %s   ",
          (long long)s->read, (long long)s->total, (long long)s->applied, (long long)s->skipped,
          rate, eta);
  fflush(stderr);
}

static void summary(const char *what, const tb_replay_stats_t *s, int dry_run) {
  printf("%s: read %lld, %s %lld%s, skipped as already processed %lld, failed %lld", what,
         (long long)s->read, dry_run ? "would apply" : "applied", (long long)s->applied,
         s->forced ? " (forced)" : "", (long long)s->skipped, (long long)s->failed);
  if (s->dead) printf(", dead-lettered %lld", (long long)s->dead);
  if (s->pruned) printf(", before the prune horizon (not re-applied) %lld", (long long)s->pruned);
  printf(" in %.2f s (%.0f events/s, %lld streams)\n", s->secs,
         s->secs > 0 ? (double)s->read / s->secs : 0.0, (long long)s->streams);
}

static void list_safe(FILE *out) {
  int n = 0;
  const char *const *names = tb_registry_names(&n);
  fprintf(out, "handlers safe to re-apply (--force):");
  int any = 0;
  for (int i = 0; i < n; i++)
    if (tb_registry_safe_to_reapply(names[i])) {
      fprintf(out, " %s", names[i]);
      any = 1;
    }
  fprintf(out, "%s\n", any ? "" : " none");
}

static void replay_usage(FILE *out) {
  fprintf(out,
          "usage: tierbus replay [--tier TIER|all] [--since TIME | --from-seq N]\n"
          "                      [--until TIME | --to-seq N] [--subject FILTER] [--event TYPE]\n"
          "                      [--limit N] [--dry-run] [--force] [--list-safe]\n"
          "TIME is RFC 3339 (2026-01-02T03:04:05Z) or a duration before now (90s, 2h, 3d).\n"
          "Sequences are per stream (TB_<TIER>_<DOMAIN>); use --subject to pick one.\n"
          "An event already processed is skipped; --force runs it again only when its handler\n"
          "is safe to re-apply.\n"
          "examples:\n"
          "  tierbus replay --tier high --since 2h --dry-run\n"
          "  tierbus replay --subject 'tb.evt.*.crm.>' --since 2026-01-02T00:00:00Z\n"
          "  tierbus replay --event CLIENT_CREATED --from-seq 100 --to-seq 200 --force\n");
  list_safe(out);
}

/* Parses --tier into |o|: one tier name or "all". Returns 0, or prints and returns -1. */
static int parse_tier(tb_cli_t *cli, const char *arg, tb_replay_opts_t *o) {
  o->n_tiers = 0;
  if (arg == NULL || strcmp(arg, "all") == 0) {
    for (int i = 0; i < cli->cfg.n_tiers; i++) o->tiers[o->n_tiers++] = i;
    return 0;
  }
  for (int i = 0; i < cli->cfg.n_tiers; i++)
    if (strcmp(cli->cfg.tiers[i].name, arg) == 0) {
      o->tiers[o->n_tiers++] = i;
      return 0;
    }
  char names[256];
  tb_cli_config_names(&cli->cfg, TB_CLI_TIERS, names, sizeof(names));
  tb_cli_usage_error(cli, "--tier: unknown tier '%s' (%s, all)", arg, names);
  return -1;
}

enum {
  OPT_TIER = OPT__COMMON_END,
  OPT_SINCE,
  OPT_UNTIL,
  OPT_FROM_SEQ,
  OPT_TO_SEQ,
  OPT_SUBJECT,
  OPT_EVENT,
  OPT_LIMIT,
  OPT_DRY_RUN,
  OPT_FORCE,
  OPT_LIST_SAFE,
  OPT_HELP,
  OPT_TABLES,
  OPT_JSON,
  OPT_OLDER_THAN,
  OPT_FROM_SNAPSHOT,
  OPT_OUT,
};

static int parse_seq(tb_cli_t *cli, const char *opt, const char *arg, uint64_t *out) {
  long v = 0;
  int rc = tb_cli_parse_long(cli, opt, arg, 1, 0x7fffffffffffffffL, &v);
  if (rc == TB_EXIT_OK) *out = (uint64_t)v;
  return rc;
}

int tb_cmd_replay(int argc, char **argv) {
  tb_cli_t cli = {.prog = "tierbus replay"};
  static const struct option opts[] = {TB_CLI_COMMON_OPTIONS,
                                       {"tier", required_argument, NULL, OPT_TIER},
                                       {"since", required_argument, NULL, OPT_SINCE},
                                       {"until", required_argument, NULL, OPT_UNTIL},
                                       {"from-seq", required_argument, NULL, OPT_FROM_SEQ},
                                       {"to-seq", required_argument, NULL, OPT_TO_SEQ},
                                       {"subject", required_argument, NULL, OPT_SUBJECT},
                                       {"event", required_argument, NULL, OPT_EVENT},
                                       {"limit", required_argument, NULL, OPT_LIMIT},
                                       {"dry-run", no_argument, NULL, OPT_DRY_RUN},
                                       {"force", no_argument, NULL, OPT_FORCE},
                                       {"list-safe", no_argument, NULL, OPT_LIST_SAFE},
                                       {"help", no_argument, NULL, OPT_HELP},
                                       {0}};
  const char *tier = NULL, *since = NULL, *until = NULL, *from = NULL, *to = NULL;
  tb_replay_opts_t o = {0};
  long limit = 0;
  int c;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    if (tb_cli_common_opt(&cli, c, optarg)) continue;
    switch (c) {
    case OPT_TIER:
      tier = optarg;
      break;
    case OPT_SINCE:
      since = optarg;
      break;
    case OPT_UNTIL:
      until = optarg;
      break;
    case OPT_FROM_SEQ:
      from = optarg;
      break;
    case OPT_TO_SEQ:
      to = optarg;
      break;
    case OPT_SUBJECT:
      o.subject = optarg;
      break;
    case OPT_EVENT:
      o.event = optarg;
      break;
    case OPT_LIMIT:
      if (tb_cli_parse_long(&cli, "--limit", optarg, 1, 0x7fffffffffffffffL, &limit) != 0)
        return TB_EXIT_USAGE;
      break;
    case OPT_DRY_RUN:
      o.dry_run = 1;
      break;
    case OPT_FORCE:
      o.force = tb_registry_safe_to_reapply;
      break;
    case OPT_LIST_SAFE:
      list_safe(stdout);
      return TB_EXIT_OK;
    case OPT_HELP:
      replay_usage(stdout);
      return TB_EXIT_OK;
    default:
      return TB_EXIT_USAGE;
    }
  }
  if (optind < argc) return tb_cli_usage_error(&cli, "unexpected argument '%s'", argv[optind]);
  if (since && from) return tb_cli_usage_error(&cli, "--since and --from-seq exclude each other");
  if (until && to) return tb_cli_usage_error(&cli, "--until and --to-seq exclude each other");
  if (o.dry_run && o.force)
    return tb_cli_usage_error(&cli, "--dry-run and --force exclude each other");
  int64_t now = tb_wall_us();
  if (since && tb_time_parse_us(since, now, &o.since_us) != TB_OK)
    return tb_cli_usage_error(&cli, "--since: %s", tb_errdetail());
  if (until && tb_time_parse_us(until, now, &o.until_us) != TB_OK)
    return tb_cli_usage_error(&cli, "--until: %s", tb_errdetail());
  if (o.since_us && o.until_us && o.until_us < o.since_us)
    return tb_cli_usage_error(&cli, "--until %s is before --since %s", until, since);
  if (from && parse_seq(&cli, "--from-seq", from, &o.from_seq) != TB_EXIT_OK) return TB_EXIT_USAGE;
  if (to && parse_seq(&cli, "--to-seq", to, &o.to_seq) != TB_EXIT_OK) return TB_EXIT_USAGE;
  if (o.from_seq && o.to_seq && o.to_seq < o.from_seq)
    return tb_cli_usage_error(&cli, "--to-seq %s is below --from-seq %s", to, from);
  if (o.subject && strncmp(o.subject, "tb.evt.", 7) != 0 && strcmp(o.subject, ">") != 0 &&
      strncmp(o.subject, "tb.*.", 5) != 0 && strcmp(o.subject, "tb.>") != 0)
    return tb_cli_usage_error(&cli, "--subject %s: replay reads event subjects (tb.evt.>)",
                              o.subject);
  o.limit = limit;
  int rc = tb_cli_load(&cli);
  if (rc != TB_EXIT_OK) return rc;
  if (parse_tier(&cli, tier, &o) != 0) {
    tb_cli_close(&cli);
    return TB_EXIT_USAGE;
  }
  if (o.event && tb_catalogue_find(cli.cat, o.event) == NULL) {
    tb_cli_close(&cli);
    return tb_cli_usage_error(&cli, "--event: unknown event type '%s' (tierbus events lists them)",
                              o.event);
  }
  if (o.subject) {
    char probe[256];
    if (!tb_replay_subject_meet(o.subject, "tb.evt.*.*.>", probe, sizeof(probe))) {
      tb_cli_close(&cli);
      return tb_cli_usage_error(
          &cli, "--subject %s matches no event stream (tb.evt.<tier>.<domain>.>)", o.subject);
    }
  }
  rc = tb_cli_connect(&cli);
  if (rc == TB_EXIT_OK) rc = tb_cli_open_store(&cli);
  if (rc != TB_EXIT_OK) {
    tb_cli_close(&cli);
    return rc;
  }
  tb_cli_trap_signals();
  if (isatty(STDERR_FILENO)) o.progress = progress;
  o.stop = &tb_cli_stop;
  tb_replay_stats_t s;
  tb_status st = tb_replay_run(cli.bus, &cli.cfg, cli.cat, cli.store, tb_registry_handler, &o, &s);
  if (o.progress) fprintf(stderr, "\n");
  summary(o.dry_run ? "replay (dry run)" : "replay", &s, o.dry_run);
  if (st == TB_ERR_INVALID) {
    rc = tb_cli_usage_error(&cli, "%s", tb_errdetail());
  } else if (st != TB_OK) {
    fprintf(stderr, "%s: error: %s: %s\n", cli.prog, tb_strerror(st), tb_errdetail());
    rc = TB_EXIT_FAIL;
  } else if (s.failed > 0) {
    fprintf(stderr, "%s: %lld events failed; the workers' logs or a later replay say why\n",
            cli.prog, (long long)s.failed);
    rc = TB_EXIT_FAIL;
  }
  tb_cli_close(&cli);
  return rc;
}

/* ---------------------------------------------------------------- rebuild */

static int print_checksum(tb_cli_t *cli, const char *label) {
  char hex[33];
  tb_status st = tb_store_checksum(cli->store, hex, NULL);
  if (st != TB_OK) {
    fprintf(stderr, "%s: error: checksum: %s\n", cli->prog, tb_errdetail());
    return TB_EXIT_FAIL;
  }
  printf("%s%s\n", label, hex);
  return TB_EXIT_OK;
}

/* Where a rebuild from a snapshot resumes |stream|: the position the snapshot recorded (0, the
 * start, for a stream it did not know). */
static uint64_t snapshot_start(void *arg, const char *stream) {
  uint64_t seq = 0;
  if (tb_store_snapshot_position(arg, stream, &seq) != TB_OK) seq = 0; /* from the start: safe */
  return seq;
}

int tb_cmd_rebuild(int argc, char **argv) {
  /* The one read-write command besides init, worker and dev that makes its database. */
  tb_cli_t cli = {.prog = "tierbus rebuild", .create_db = 1};
  static const struct option opts[] = {
      TB_CLI_COMMON_OPTIONS,
      {"from-snapshot", optional_argument, NULL, OPT_FROM_SNAPSHOT},
      {"help", no_argument, NULL, OPT_HELP},
      {0}};
  const char *snapshot = NULL;
  int from_snapshot = 0, c;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    if (tb_cli_common_opt(&cli, c, optarg)) continue;
    if (c == OPT_FROM_SNAPSHOT) {
      /* "--from-snapshot FILE" as well as "--from-snapshot=FILE" (rebuild takes no other
       * argument); alone, the newest snapshot of the snapshot directory. */
      from_snapshot = 1;
      snapshot = optarg;
      if (snapshot == NULL && optind < argc && argv[optind][0] != '-') snapshot = argv[optind++];
      continue;
    }
    if (c == OPT_HELP) {
      printf(
          "usage: tierbus rebuild --db NEW.db [--from-snapshot [FILE]]\n"
          "Replays every tier from the start of retained history into an empty database, or,\n"
          "with --from-snapshot, restores a snapshot (the newest in <data_dir>/snapshots, taken\n"
          "by the workers every snapshot_interval or by `tierbus db snapshot`, or FILE) and\n"
          "replays each stream only from where the snapshot left it.\n"
          "Nothing is published: commands, replies and continuations are read from the log.\n"
          "examples:\n"
          "  tierbus rebuild --db /tmp/rebuilt.db\n"
          "  tierbus rebuild --db /tmp/rebuilt.db --from-snapshot\n"
          "  tierbus db checksum --db /tmp/rebuilt.db   # compare with the live database's\n");
      return TB_EXIT_OK;
    }
    return TB_EXIT_USAGE;
  }
  if (optind < argc) return tb_cli_usage_error(&cli, "unexpected argument '%s'", argv[optind]);
  if (cli.db == NULL)
    return tb_cli_usage_error(&cli, "--db NEW.db is required: the database to build (empty)");
  int rc = tb_cli_load(&cli);
  if (rc != TB_EXIT_OK) return rc;
  char latest[PATH_MAX];
  if (from_snapshot && snapshot == NULL) {
    if (tb_snapshot_latest(&cli.cfg, latest, sizeof(latest), NULL) != TB_OK) {
      tb_cli_close(&cli);
      return tb_cli_usage_error(&cli,
                                "--from-snapshot: %s (give FILE, or take one with `tierbus "
                                "db snapshot`)",
                                tb_errdetail());
    }
    snapshot = latest;
  }
  struct stat snap_sb;
  if (snapshot != NULL && stat(snapshot, &snap_sb) != 0) {
    tb_cli_close(&cli);
    return tb_cli_usage_error(&cli, "--from-snapshot %s: %s", snapshot, strerror(errno));
  }
  if (snapshot != NULL) printf("rebuild: from snapshot %s\n", snapshot);
  rc = tb_cli_open_store(&cli);
  if (rc != TB_EXIT_OK) {
    tb_cli_close(&cli);
    return rc;
  }
  int empty = 0;
  tb_status st = tb_store_is_empty(cli.store, &empty);
  if (st != TB_OK) {
    fprintf(stderr, "%s: error: %s\n", cli.prog, tb_errdetail());
    tb_cli_close(&cli);
    return TB_EXIT_FAIL;
  }
  if (!empty) {
    tb_cli_close(&cli);
    return tb_cli_usage_error(&cli,
                              "--db %s is not empty (it has processed messages or state); "
                              "rebuild only fills a new database",
                              cli.cfg.db_path);
  }
  if (snapshot != NULL && tb_store_restore(cli.store, snapshot) != TB_OK) {
    fprintf(stderr, "%s: error: %s\n", cli.prog, tb_errdetail());
    tb_cli_close(&cli);
    return TB_EXIT_FAIL;
  }
  rc = tb_cli_connect(&cli);
  if (rc != TB_EXIT_OK) {
    tb_cli_close(&cli);
    return rc;
  }
  /* The new database holds this deployment's state: it carries the deployment's id, so that a
   * worker takes it as the deployment's own (tb_cli_check_deployment). */
  char id[80], have[80];
  int found = 0;
  st = tb_bus_deployment_get(cli.bus, &cli.cfg, id, sizeof(id), &found);
  if (st == TB_OK && found) st = tb_store_set_deployment(cli.store, id, have, sizeof(have));
  if (st != TB_OK) {
    fprintf(stderr, "%s: error: recording the deployment id: %s\n", cli.prog, tb_errdetail());
    tb_cli_close(&cli);
    return TB_EXIT_FAIL;
  }
  tb_cli_trap_signals();
  tb_replay_opts_t o = {0};
  for (int i = 0; i < cli.cfg.n_tiers; i++) o.tiers[o.n_tiers++] = i;
  o.batch = 4096; /* one writer, nobody to wait for: big transactions are cheapest */
  if (snapshot != NULL) {
    o.start_seq = snapshot_start;
    o.start_arg = cli.store;
  }
  if (isatty(STDERR_FILENO)) o.progress = progress;
  o.stop = &tb_cli_stop;
  tb_replay_stats_t s;
  st = tb_replay_run(cli.bus, &cli.cfg, cli.cat, cli.store, tb_registry_handler, &o, &s);
  if (o.progress) fprintf(stderr, "\n");
  summary("rebuild", &s, 0);
  /* The follow-ups the handlers wrote were published by the live system: their messages are in
   * the log (events this database has now processed, commands in the command stream). */
  char cmd_stream[64];
  tb_bus_cmd_stream(&cli.cfg, cmd_stream, sizeof(cmd_stream));
  char **ids = NULL;
  int64_t n_ids = 0, dropped = 0;
  if (st == TB_OK) st = tb_replay_stream_ids(cli.bus, cmd_stream, &ids, &n_ids);
  if (st == TB_OK)
    st = tb_store_outbox_drop_logged(cli.store, (const char *const *)ids, n_ids, &dropped);
  tb_replay_ids_free(ids, n_ids);
  if (st != TB_OK) {
    fprintf(stderr, "%s: error: %s: %s\n", cli.prog, tb_strerror(st), tb_errdetail());
    tb_cli_close(&cli);
    return TB_EXIT_FAIL;
  }
  int64_t left = 0;
  tb_store_outbox_count(cli.store, &left);
  printf("rebuild: outbox: %lld follow-ups already in the log dropped, %lld not yet sent kept\n",
         (long long)dropped, (long long)left);
  rc = print_checksum(&cli, "checksum ");
  if (rc == TB_EXIT_OK && s.failed > 0) {
    fprintf(stderr, "%s: %lld events failed to apply; the state is incomplete\n", cli.prog,
            (long long)s.failed);
    rc = TB_EXIT_FAIL;
  }
  tb_cli_close(&cli);
  return rc;
}

/* ---------------------------------------------------------------- db */

static int db_checksum(int argc, char **argv) {
  tb_cli_t cli = {.prog = "tierbus db checksum"};
  static const struct option opts[] = {TB_CLI_COMMON_OPTIONS,
                                       {"tables", no_argument, NULL, OPT_TABLES},
                                       {"json", no_argument, NULL, OPT_JSON},
                                       {0}};
  int tables = 0, as_json = 0, c;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    if (tb_cli_common_opt(&cli, c, optarg)) continue;
    if (c == OPT_TABLES)
      tables = 1;
    else if (c == OPT_JSON)
      as_json = 1;
    else
      return TB_EXIT_USAGE;
  }
  if (optind < argc) return tb_cli_usage_error(&cli, "unexpected argument '%s'", argv[optind]);
  int rc = tb_cli_load(&cli);
  if (rc != TB_EXIT_OK) return rc;
  rc = tb_cli_open_store(&cli); /* never creates one: it says where it looked, and why there */
  if (rc != TB_EXIT_OK) {
    tb_cli_close(&cli);
    return rc;
  }
  int n = 0;
  const tb_checksum_table_t *t = tb_store_checksum_tables(&n);
  tb_checksum_part_t *parts = calloc((size_t)n, sizeof(*parts));
  char hex[33];
  tb_status st = parts ? tb_store_checksum(cli.store, hex, parts) : TB_ERR_NOMEM;
  if (st != TB_OK) {
    fprintf(stderr, "%s: error: %s\n", cli.prog, tb_errdetail());
    rc = TB_EXIT_FAIL;
  } else if (as_json) {
    json_t *j = json_pack("{s:s,s:o}", "checksum", hex, "tables", json_array());
    for (int i = 0; i < n; i++)
      json_array_append_new(json_object_get(j, "tables"),
                            json_pack("{s:s,s:s,s:I,s:s}", "table", t[i].table, "columns",
                                      t[i].columns, "rows", (json_int_t)parts[i].rows, "sha",
                                      parts[i].hex));
    json_dumpf(j, stdout, JSON_INDENT(2));
    printf("\n");
    json_decref(j);
  } else {
    printf("%s\n", hex);
    static const char *const headers[] = {"TABLE", ">ROWS", "SHA", "COLUMNS", "LEFT OUT"};
    tb_cli_table_t *table = tables ? tb_cli_table_new(5, headers) : NULL;
    for (int i = 0; table != NULL && i < n; i++) {
      char rows[24], cols[1024];
      snprintf(rows, sizeof(rows), "%lld", (long long)parts[i].rows);
      snprintf(cols, sizeof(cols), "%s%s%s", t[i].columns, t[i].where ? " where " : "",
               t[i].where ? t[i].where : "");
      tb_cli_table_add(table, t[i].table, rows, parts[i].hex, cols,
                       *t[i].why ? t[i].why : "nothing");
    }
    if (tables && (table == NULL || tb_cli_table_print(table, stdout) != TB_OK)) {
      fprintf(stderr, "%s: error: out of memory\n", cli.prog);
      rc = TB_EXIT_FAIL;
    }
    tb_cli_table_free(table);
  }
  free(parts);
  tb_cli_close(&cli);
  return rc;
}

static int db_prune(int argc, char **argv) {
  tb_cli_t cli = {.prog = "tierbus db prune"};
  static const struct option opts[] = {
      TB_CLI_COMMON_OPTIONS, {"older-than", required_argument, NULL, OPT_OLDER_THAN}, {0}};
  const char *older = NULL;
  int c;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    if (tb_cli_common_opt(&cli, c, optarg)) continue;
    if (c == OPT_OLDER_THAN)
      older = optarg;
    else
      return TB_EXIT_USAGE;
  }
  if (optind < argc) return tb_cli_usage_error(&cli, "unexpected argument '%s'", argv[optind]);
  int rc = tb_cli_load(&cli);
  if (rc != TB_EXIT_OK) return rc;
  int64_t min_ms = tb_config_dedupe_horizon_ms(&cli.cfg), ms = min_ms;
  if (older && tb_duration_parse_ms(older, &ms) != TB_OK) {
    tb_cli_close(&cli);
    return tb_cli_usage_error(&cli, "--older-than: '%s' is not a duration (7d, 48h)", older);
  }
  if (ms < min_ms) {
    tb_cli_close(&cli);
    return tb_cli_usage_error(&cli,
                              "--older-than %s is shorter than the dedupe horizon %lld s (the "
                              "duplicate window and the longest redelivery window)",
                              older, (long long)(min_ms / 1000));
  }
  rc = tb_cli_open_store(&cli);
  int64_t deleted = 0, before = tb_wall_us() - ms * 1000;
  if (rc == TB_EXIT_OK) {
    tb_status s = tb_store_begin(cli.store);
    if (s == TB_OK) s = tb_store_prune_processed(cli.store, before, &deleted);
    if (s == TB_OK) s = tb_store_commit(cli.store);
    if (s != TB_OK) {
      fprintf(stderr, "%s: error: %s\n", cli.prog, tb_errdetail());
      tb_store_rollback(cli.store);
      rc = TB_EXIT_FAIL;
    }
  }
  if (rc == TB_EXIT_OK) {
    char at[40];
    tb_cli_fmt_time(before, at, sizeof(at));
    printf("pruned %lld processed records committed before %s (horizon %lld s)\n",
           (long long)deleted, at, (long long)(ms / 1000));
  }
  tb_cli_close(&cli);
  return rc;
}

/* `db snapshot [--out FILE]`: the consumers' ack floors first, then the online backup, so that
 * everything before each recorded position is in the copy. Without --out it goes into the
 * snapshot directory beside the periodic ones (pruned to snapshot_keep), where `rebuild
 * --from-snapshot` finds the newest. */
static int db_snapshot(int argc, char **argv) {
  tb_cli_t cli = {.prog = "tierbus db snapshot"};
  static const struct option opts[] = {
      TB_CLI_COMMON_OPTIONS, {"out", required_argument, NULL, OPT_OUT}, {0}};
  const char *out = NULL;
  int c;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    if (tb_cli_common_opt(&cli, c, optarg)) continue;
    if (c == OPT_OUT)
      out = optarg;
    else
      return TB_EXIT_USAGE;
  }
  if (optind < argc) return tb_cli_usage_error(&cli, "unexpected argument '%s'", argv[optind]);
  int rc = tb_cli_load_and_open(&cli); /* the database must exist: this command makes none */
  if (rc == TB_EXIT_OK) rc = tb_cli_connect(&cli);
  char path[PATH_MAX];
  int pruned = 0;
  tb_status st = TB_OK;
  if (rc == TB_EXIT_OK && out != NULL) {
    snprintf(path, sizeof(path), "%s", out);
    st = tb_snapshot_take(cli.bus, &cli.cfg, out, NULL, NULL);
  } else if (rc == TB_EXIT_OK) {
    st = tb_snapshot_take_dir(cli.bus, &cli.cfg, 0, NULL, path, sizeof(path), &pruned);
  }
  if (rc == TB_EXIT_OK && st != TB_OK) {
    fprintf(stderr, "%s: error: %s\n", cli.prog, tb_errdetail());
    rc = TB_EXIT_FAIL;
  }
  if (rc == TB_EXIT_OK)
    printf("snapshot: %s (%d stream positions)%s\n", path, cli.cfg.n_tiers * cli.cfg.n_domains,
           pruned > 0 ? "; older ones past snapshot_keep deleted" : "");
  tb_cli_close(&cli);
  return rc;
}

static void db_usage(FILE *out) {
  fprintf(out,
          "usage: tierbus db checksum [--tables] [--json]   checksum of the logical state\n"
          "       tierbus db prune [--older-than D]         drop old processed records\n"
          "       tierbus db snapshot [--out FILE]          online backup with stream positions,\n"
          "                                                 into <data_dir>/snapshots by default\n"
          "                                                 (rebuild --from-snapshot [FILE])\n"
          "checksum is read-only: it never creates a database.\n"
          "examples:\n"
          "  tierbus db checksum --data-dir var --tables\n"
          "  tierbus db prune --older-than 7d\n"
          "  tierbus db snapshot --out /backups/tierbus-$(date +%%F).db\n");
}

int tb_cmd_db(int argc, char **argv) {
  static const tb_cli_sub_t subs[] = {
      {"checksum", db_checksum}, {"prune", db_prune}, {"snapshot", db_snapshot}};
  return tb_cli_run_subcommand("tierbus db", argc, argv, subs, 3, db_usage);
}
