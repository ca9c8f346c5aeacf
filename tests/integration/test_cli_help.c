/* Integration: the command line as a new user meets it (issue 12). Every command and subcommand
 * answers --help with usage and examples (exit 0); read-only commands never create a database;
 * every bad-usage path exits 2 naming what is accepted, and leaves no database, data directory or
 * message behind; publish --file names its duplicate lines; tables are sized to their content and
 * have --json; the bash completion script is the one the binary generates and offers every
 * command. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "support/itest.h"

#define RUN_TIMEOUT_MS 20000

/* Runs `tierbus CMD <common options> ARGS...` into r. */
#define TB(cmd, ...) tb_h_tierbus(h, &r, RUN_TIMEOUT_MS, cmd, __VA_ARGS__, NULL)

/* 1 when |path| exists. */
static int exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

/* Fails when the test's directory holds a data directory (var/) or any *.db file: what a command
 * that created a database would leave. */
static void assert_no_database(const tb_h_t *h) {
  char var[TB_H_PATH];
  tb_h_path(h, "var", var, sizeof(var));
  if (exists(var)) fail_msg("%s was created", var);
  if (exists(h->db)) fail_msg("%s was created", h->db);
  DIR *d = opendir(h->dir);
  assert_non_null(d);
  for (struct dirent *e = readdir(d); e != NULL; e = readdir(d)) {
    size_t n = strlen(e->d_name);
    if (n > 3 && strcmp(e->d_name + n - 3, ".db") == 0)
      fail_msg("%s/%s was created", h->dir, e->d_name);
  }
  closedir(d);
}

/* Runs the binary with |words| (a command line split at spaces, at most 8 words) followed by the
 * NULL-terminated |extra| arguments, exactly as given. */
static void run_words(tb_h_t *h, tb_h_result_t *r, const char *words, const char *const *extra) {
  char buf[256];
  snprintf(buf, sizeof(buf), "%s", words);
  const char *argv[16];
  int n = 0;
  argv[n++] = h->binary;
  char *save = NULL;
  for (char *w = strtok_r(buf, " ", &save); w != NULL && n < 10; w = strtok_r(NULL, " ", &save))
    argv[n++] = w;
  for (int i = 0; extra != NULL && extra[i] != NULL && n < 15; i++) argv[n++] = extra[i];
  argv[n] = NULL;
  tb_h_execv(h, r, RUN_TIMEOUT_MS, argv);
}

/* The command names of `tierbus --help` (the lines under "commands:"), into |names|. */
static int top_commands(tb_h_t *h, char names[][32], int max) {
  tb_h_result_t r;
  tb_h_tierbus_raw(h, &r, RUN_TIMEOUT_MS, "--help", NULL);
  tb_assert_exit(r, 0);
  const char *p = strstr(r.out, "commands:\n");
  assert_non_null(p);
  p += strlen("commands:\n");
  int n = 0;
  while (*p == ' ' && n < max) {
    if (sscanf(p, " %31s", names[n]) == 1) n++;
    p = strchr(p, '\n');
    if (p == NULL) break;
    p++;
  }
  tb_h_result_free(&r);
  return n;
}

/* ---------------------------------------------------------------- --help everywhere */

/* `tierbus help --commands` lists every command of `tierbus --help` and the subcommands of the
 * ones that have them; each of them, and `tierbus help` of each, answers --help on stdout with
 * usage and examples, exit 0, nothing on stderr, and no database anywhere (run from an empty
 * directory, where the default database path var/tierbus.db would be created). */
static void test_help_everywhere(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  char cwd[TB_H_PATH];
  assert_non_null(getcwd(cwd, sizeof(cwd)));
  assert_int_equal(chdir(h->dir), 0);

  tb_h_tierbus_raw(h, &r, RUN_TIMEOUT_MS, "help", "--commands", NULL);
  tb_assert_exit(r, 0);
  char *tree = strdup(r.out);
  tb_h_result_free(&r);

  char names[64][32];
  int n_top = top_commands(h, names, 64);
  assert_true(n_top >= 18);
  for (int i = 0; i < n_top; i++) {
    if (strcmp(names[i], "help") == 0 || strcmp(names[i], "completion") == 0) continue;
    char line[64];
    snprintf(line, sizeof(line), "%.31s\n", names[i]);
    if (strncmp(tree, line, strlen(line)) != 0) {
      snprintf(line, sizeof(line), "\n%.31s\n", names[i]);
      tb_assert_contains(tree, line);
    }
  }
  /* The subcommand tables are read, not restated: a few of each command that has them. */
  const char *const subs[] = {"workflows list\n", "workflows retry\n", "priority inversions\n",
                              "schedule run\n",   "dlq purge\n",       "db checksum\n",
                              "db snapshot\n",    "config check\n",    "config example\n"};
  for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) tb_assert_contains(tree, subs[i]);

  int walked = 0;
  char *save = NULL;
  for (char *line = strtok_r(tree, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
    static const char *const help[] = {"--help", NULL};
    run_words(h, &r, line, help);
    if (r.status != 0) print_error("`tierbus %s --help`\n", line);
    tb_assert_exit(r, 0);
    tb_assert_contains(r.out, "usage: tierbus ");
    tb_assert_contains(r.out, "example");
    if (r.err[0] != '\0') fail_msg("`tierbus %s --help` wrote to stderr:\n%s", line, r.err);
    char *out = strdup(r.out);
    tb_h_result_free(&r);

    /* `tierbus help WORDS` is the same text. */
    char words[128];
    snprintf(words, sizeof(words), "help %s", line);
    run_words(h, &r, words, NULL);
    tb_assert_exit(r, 0);
    if (strcmp(r.out, out) != 0)
      fail_msg("`tierbus %s` differs from `tierbus %s --help`:\n%s\n---\n%s", words, line, r.out,
               out);
    tb_h_result_free(&r);
    free(out);
    walked++;
  }
  assert_true(walked >= 40);
  free(tree);

  /* -h, `help` as a subcommand, and the top level. */
  tb_h_tierbus_raw(h, &r, RUN_TIMEOUT_MS, "stats", "-h", NULL);
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "usage: tierbus stats");
  tb_h_result_free(&r);
  tb_h_tierbus_raw(h, &r, RUN_TIMEOUT_MS, "db", "help", NULL);
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "usage: tierbus db checksum");
  tb_h_result_free(&r);
  tb_h_tierbus_raw(h, &r, RUN_TIMEOUT_MS, "--help", NULL);
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "examples:");
  tb_h_result_free(&r);

  assert_no_database(h);
  assert_int_equal(chdir(cwd), 0);
}

/* ---------------------------------------------------------------- read-only commands */

/* Against a live server and no database: each read-only command either works without one
 * (events, workflows list, config check) or exits 1 saying there is none, and none of them
 * creates it, at the named path or at the default one. The commands that change an existing
 * database behave the same: only init, worker, dev and rebuild make one. */
static void test_read_only_never_create(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  tb_assert_ok(tb_h_server_start(h));
  static const char *const need_db[] = {
      "stats", "stats --json", "workflows show wf-1", "workflows runs", "workflows runs --json",
      "dlq list", "dlq list --json", "dlq show 1", "priority show repo-1", "priority inversions",
      "schedule list", "schedule list --json", "db checksum", "replay --dry-run",
      "api --http-port 0",
      /* and the commands that write to an existing one */
      "workflows cancel wf-1", "workflows retry wf-1", "schedule disable cleanup-temp-files",
      "schedule run cleanup-temp-files", "priority sync", "priority set repo-1 --override high",
      "dlq replay 1", "dlq purge --all --yes", "db prune", "db snapshot"};
  static const char *const no_db[] = {"events", "events --json", "workflows list",
                                      "workflows list --json", "config check"};
  const char *common[] = {"--nats-url", h->url, "--db", h->db, NULL};
  for (size_t i = 0; i < sizeof(need_db) / sizeof(need_db[0]); i++) {
    run_words(h, &r, need_db[i], common);
    if (r.status != 1) print_error("`tierbus %s`\n", need_db[i]);
    tb_assert_exit(r, 1);
    tb_assert_contains(r.err, "no database at");
    tb_assert_contains(r.err, "never creates one");
    tb_h_result_free(&r);
    assert_no_database(h);
  }
  for (size_t i = 0; i < sizeof(no_db) / sizeof(no_db[0]); i++) {
    run_words(h, &r, no_db[i], common);
    tb_assert_exit(r, 0);
    tb_h_result_free(&r);
    assert_no_database(h);
  }

  /* The default path (var/tierbus.db under the working directory) is never created either. */
  char cwd[TB_H_PATH];
  assert_non_null(getcwd(cwd, sizeof(cwd)));
  assert_int_equal(chdir(h->dir), 0);
  const char *url_only[] = {"--nats-url", h->url, NULL};
  for (size_t i = 0; i < sizeof(need_db) / sizeof(need_db[0]); i++) {
    run_words(h, &r, need_db[i], url_only);
    tb_assert_exit(r, 1);
    tb_assert_contains(r.err, "var/tierbus.db");
    tb_h_result_free(&r);
  }
  assert_no_database(h);
  assert_int_equal(chdir(cwd), 0);
}

/* ---------------------------------------------------------------- bad usage */

/* One bad command line: exit 2, stderr holding every string of |want| (NULL-terminated). */
static void expect_usage_error(tb_h_t *h, const char *words, const char *const *extra,
                               const char *const *want) {
  tb_h_result_t r;
  run_words(h, &r, words, extra);
  if (r.status != 2) print_error("`tierbus %s`\n", words);
  tb_assert_exit(r, 2);
  for (int i = 0; want[i] != NULL; i++) tb_assert_contains(r.err, want[i]);
  tb_h_result_free(&r);
  assert_no_database(h);
}

#define WANT(...) ((const char *const[]){__VA_ARGS__, NULL})

/* Every bad-usage path of issue 12 exits 2 with a message that lists what is accepted, and
 * leaves no database (at --db or at the default path), no data directory and no message. The
 * commands that may create a database (init, worker, dev, rebuild) are among them. */
static void test_usage_errors_write_nothing(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  tb_assert_ok(tb_h_server_start(h));
  char cwd[TB_H_PATH];
  assert_non_null(getcwd(cwd, sizeof(cwd)));
  assert_int_equal(chdir(h->dir), 0);
  const char *common[] = {"--nats-url", h->url, "--db", h->db, NULL};
  const char *none[] = {NULL};

  expect_usage_error(h, "frob", none, WANT("unknown command 'frob'", "publish", "workflows"));
  expect_usage_error(h, "help frob", none, WANT("unknown command 'frob'", "stats"));
  expect_usage_error(h, "workflows frob", common,
                     WANT("unknown subcommand 'frob'", "list, show, runs, cancel, retry"));
  expect_usage_error(h, "db frob", common, WANT("unknown subcommand 'frob'", "checksum"));
  expect_usage_error(h, "config frob", none, WANT("unknown subcommand 'frob'", "check, example"));
  expect_usage_error(h, "completion zsh", none, WANT("unknown shell 'zsh'", "bash"));
  expect_usage_error(h, "help --values nope", none,
                     WANT("unknown kind 'nope'", "tiers, domains, presets, events, workflows"));
  expect_usage_error(h, "stats --frob", common, WANT("frob", "usage: tierbus stats"));
  expect_usage_error(h, "events --frob", none, WANT("frob"));
  expect_usage_error(h, "init --frob", common, WANT("frob", "usage: tierbus init"));
  expect_usage_error(h, "init extra", common, WANT("unexpected argument 'extra'"));
  expect_usage_error(h, "rebuild", none, WANT("--db NEW.db is required"));
  expect_usage_error(h, "dev --nats-port 4222 --nats-url nats://127.0.0.1:1", none,
                     WANT("not both"));

  /* One domain vocabulary: what worker --domains and events --domain take, workflows list
   * --domain takes, and each refusal lists it. */
  expect_usage_error(
      h, "worker --domains crm,nope", common,
      WANT("unknown domain 'nope' in --domains", "crm, enrichment, workspace, ops, workflow"));
  expect_usage_error(h, "worker --tiers critical,urgent", common,
                     WANT("unknown tier 'urgent'", "critical, high, normal, low, background"));
  expect_usage_error(h, "worker --preset nope", common, WANT("unknown preset 'nope'", "customer"));
  expect_usage_error(
      h, "workflows list --domain nope", common,
      WANT("unknown domain 'nope'", "crm, enrichment, workspace, ops, workflow", "shared"));
  expect_usage_error(h, "events --domain nope", none,
                     WANT("unknown domain 'nope'", "crm, enrichment, workspace, ops, workflow"));
  static const char *const domains[] = {"crm", "enrichment", "workspace", "ops", "workflow"};
  for (size_t i = 0; i < sizeof(domains) / sizeof(domains[0]); i++) {
    char words[64];
    snprintf(words, sizeof(words), "workflows list --domain %s", domains[i]);
    run_words(h, &r, words, common);
    tb_assert_exit(r, 0);
    tb_h_result_free(&r);
    snprintf(words, sizeof(words), "events --domain %s", domains[i]);
    run_words(h, &r, words, none);
    tb_assert_exit(r, 0);
    tb_h_result_free(&r);
  }
  run_words(h, &r, "workflows list --domain shared --activities-only", common);
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "send_email");
  tb_h_result_free(&r);

  /* Unknown values name the accepted ones. */
  expect_usage_error(h, "publish NOPE --json {}", common,
                     WANT("unknown event 'NOPE'", "CLIENT_CREATED", "execute-workflow"));
  const char *prio[] = {
      "--json", "{\"client_id\": \"c1\"}", "--priority", "urgent", "--nats-url", h->url, NULL};
  expect_usage_error(h, "publish CLIENT_CREATED", prio,
                     WANT("unknown tier 'urgent'", "critical, high, normal, low, background"));
  const char *field[] = {"--json", "{\"client_id\": \"c1\", \"zzz\": 1}", "--nats-url", h->url,
                         NULL};
  expect_usage_error(h, "publish CLIENT_CREATED", field,
                     WANT("unknown field 'zzz'", "client_id, user_id, client_name, email"));
  expect_usage_error(h, "config check --set foo=1", none,
                     WANT("unknown option 'foo'", "max_payload", "nats_url"));
  expect_usage_error(h, "config check --set max_payloa=1", none,
                     WANT("did you mean 'max_payload'?"));
  expect_usage_error(h, "dlq list --reason nope", common,
                     WANT("unknown reason 'nope'", "malformed"));
  expect_usage_error(h, "replay --tier nope", common, WANT("unknown tier 'nope'", "background"));
  const char *sched[] = {"--name",     "t1",   "--cron", "* * * * *", "--event", "CLIENT_CREATED",
                         "--priority", "nope", "--db",   h->db,       NULL};
  expect_usage_error(h, "schedule add", sched, WANT("unknown tier 'nope'", "critical, high"));
  expect_usage_error(h, "trigger nope-workflow", common,
                     WANT("unknown workflow 'nope-workflow'", "subscriber-enrichment"));

  /* No stream was made and nothing was published. */
  assert_int_equal(tb_h_all_tier_msgs(h), 0);
  assert_no_database(h);
  assert_int_equal(chdir(cwd), 0);
}

/* ---------------------------------------------------------------- publish --file duplicates */

static void test_publish_file_duplicates(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  char path[TB_H_PATH], where[TB_H_PATH + 64];
  tb_it_start_and_init(h);
  tb_assert_ok(tb_h_write_file(
      h, "dups.ndjson",
      "{\"type\": \"CLIENT_CREATED\", \"payload\": {\"client_id\": \"c1\"}, \"id\": \"d1\"}\n"
      "\n"
      "{\"type\": \"CLIENT_CREATED\", \"payload\": {\"client_id\": \"c1\"}, \"id\": \"d1\"}\n"
      "{\"type\": \"CLIENT_CREATED\", \"payload\": {\"client_id\": \"c2\"}, \"id\": \"d2\"}\n",
      path, sizeof(path)));

  TB("publish", "--file", path);
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "published 3 events");
  tb_assert_contains(r.out, "2 new, 1 duplicates");
  snprintf(where, sizeof(where), "%s:3: duplicate: id d1 is already in the stream", path);
  tb_assert_contains(r.err, where);
  snprintf(where, sizeof(where), "%s:1: duplicate", path);
  tb_assert_not_contains(r.err, where);
  snprintf(where, sizeof(where), "%s:4: duplicate", path);
  tb_assert_not_contains(r.err, where);
  tb_h_result_free(&r);
  assert_int_equal(tb_h_tier_msgs(h, "high"), 2);

  /* Again: every line is a duplicate, each named by its number; nothing new is stored. */
  TB("publish", "--file", path);
  tb_assert_exit(r, 0);
  tb_assert_contains(r.out, "0 new, 3 duplicates");
  const int lines[] = {1, 3, 4};
  for (size_t i = 0; i < 3; i++) {
    snprintf(where, sizeof(where), "%s:%d: duplicate: id d%d ", path, lines[i],
             lines[i] == 4 ? 2 : 1);
    tb_assert_contains(r.err, where);
  }
  tb_h_result_free(&r);
  assert_int_equal(tb_h_tier_msgs(h, "high"), 2);
}

/* ---------------------------------------------------------------- tables */

/* Column |col| (0-based) of the header line |out| starts at this offset: columns are split by
 * two or more blanks. -1 when there is no such column. */
static int column_at(const char *out, int col) {
  const char *p = out;
  for (int c = 0; c < col; c++) {
    const char *gap = strstr(p, "  ");
    const char *eol = strchr(p, '\n');
    if (gap == NULL || (eol != NULL && gap > eol)) return -1;
    p = gap;
    while (*p == ' ') p++;
  }
  return (int)(p - out);
}

/* Every table-printing command takes --json and prints one valid JSON document; the text table's
 * columns are as wide as their widest cell: `events`' DOMAIN column starts two blanks after the
 * longest event name, which no fixed width would track. */
static void test_tables_and_json(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  tb_it_start_and_init(h);

  static const char *const json_cmds[] = {"stats --json",
                                          "events --json",
                                          "workflows list --json",
                                          "workflows runs --json",
                                          "dlq list --json",
                                          "schedule list --json",
                                          "priority inversions --json",
                                          "db checksum --json",
                                          "activity --json"};
  const char *common[] = {"--nats-url", h->url, "--db", h->db, NULL};
  for (size_t i = 0; i < sizeof(json_cmds) / sizeof(json_cmds[0]); i++) {
    run_words(h, &r, json_cmds[i], common);
    if (r.status != 0) print_error("`tierbus %s`\n", json_cmds[i]);
    tb_assert_exit(r, 0);
    json_error_t jerr;
    json_t *j = json_loads(r.out, 0, &jerr);
    if (j == NULL)
      fail_msg("`tierbus %s`: not JSON (%s at line %d):\n%s", json_cmds[i], jerr.text, jerr.line,
               r.out);
    json_decref(j);
    tb_h_result_free(&r);
  }

  TB("events", "--json");
  tb_assert_exit(r, 0);
  json_t *events = json_loads(r.out, 0, NULL);
  assert_non_null(events);
  size_t longest = 0, i;
  json_t *e;
  json_array_foreach(events, i, e) {
    size_t n = strlen(json_string_value(json_object_get(e, "name")));
    if (n > longest) longest = n;
  }
  size_t n_events = json_array_size(events);
  json_decref(events);
  tb_h_result_free(&r);

  tb_h_tierbus(h, &r, RUN_TIMEOUT_MS, "events", NULL);
  tb_assert_exit(r, 0);
  assert_int_equal(strncmp(r.out, "EVENT ", 6), 0);
  assert_int_equal(column_at(r.out, 1), (int)longest + 2);
  size_t n_lines = 0;
  for (const char *p = r.out; (p = strchr(p, '\n')) != NULL; p++) n_lines++;
  assert_int_equal(n_lines, n_events + 1);
  tb_h_result_free(&r);

  /* db checksum --tables: the checksum, then one row per table under a header. */
  tb_h_tierbus(h, &r, RUN_TIMEOUT_MS, "db", "checksum", "--tables", NULL);
  tb_assert_exit(r, 0);
  const char *second = strchr(r.out, '\n');
  assert_non_null(second);
  assert_int_equal(second - r.out, 32); /* 32 hex digits */
  assert_int_equal(strncmp(second + 1, "TABLE ", 6), 0);
  tb_assert_contains(second, "LEFT OUT\n");
  tb_assert_contains(second, "\nworkspace_repositories ");
  tb_h_result_free(&r);

  /* The same rule for a table of numbers: stats' PENDING column ends where its header does. */
  tb_h_tierbus(h, &r, RUN_TIMEOUT_MS, "stats", NULL);
  tb_assert_exit(r, 0);
  assert_int_equal(strncmp(r.out, "TIER ", 5), 0);
  assert_int_equal(column_at(r.out, 1), (int)strlen("background") + 2);
  tb_h_result_free(&r);
}

/* ---------------------------------------------------------------- completion */

/* contrib/tierbus.bash-completion is exactly what `tierbus completion bash` prints (so it cannot
 * drift from the command tables), and bash completes every command of `tierbus --help` from it,
 * the subcommands of a command, and a subcommand's options. */
static void test_bash_completion(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  char shipped[TB_H_PATH + 64];
  snprintf(shipped, sizeof(shipped), "%s/contrib/tierbus.bash-completion", h->source_dir);
  char *text = tb_h_read_file(shipped);
  if (text == NULL) fail_msg("cannot read %s", shipped);

  tb_h_tierbus_raw(h, &r, RUN_TIMEOUT_MS, "completion", "bash", NULL);
  tb_assert_exit(r, 0);
  if (strcmp(r.out, text) != 0)
    fail_msg("%s is not what `tierbus completion bash` prints; regenerate it with\n"
             "  build/tierbus completion bash > contrib/tierbus.bash-completion",
             shipped);
  tb_h_result_free(&r);
  free(text);

  char script[10 * TB_H_PATH];
  snprintf(script, sizeof(script),
           "source '%s' || exit 9\n"
           "COMP_WORDS=(tierbus ''); COMP_CWORD=1; _tierbus; echo \"top: ${COMPREPLY[*]} \"\n"
           "COMP_WORDS=(tierbus workflows ''); COMP_CWORD=2; _tierbus;"
           " echo \"workflows: ${COMPREPLY[*]} \"\n"
           "COMP_WORDS=(tierbus dlq list --re); COMP_CWORD=3; _tierbus;"
           " echo \"dlq list --re: ${COMPREPLY[*]} \"\n"
           /* Values come from the binary being completed: COMP_WORDS[0]. */
           "COMP_WORDS=('%s' worker --tiers ''); COMP_CWORD=3; _tierbus;"
           " echo \"tiers: ${COMPREPLY[*]} \"\n"
           "COMP_WORDS=('%s' workflows list --domain ''); COMP_CWORD=4; _tierbus;"
           " echo \"domains: ${COMPREPLY[*]} \"\n"
           "COMP_WORDS=('%s' publish WORKSPACE_REPO_); COMP_CWORD=2; _tierbus;"
           " echo \"events: ${COMPREPLY[*]} \"\n"
           "COMP_WORDS=('%s' trigger subscriber-); COMP_CWORD=2; _tierbus;"
           " echo \"workflows: ${COMPREPLY[*]} \"\n",
           shipped, h->binary, h->binary, h->binary, h->binary);
  const char *argv[] = {"/bin/bash", "--norc", "-c", script, NULL};
  tb_h_execv(h, &r, RUN_TIMEOUT_MS, argv);
  tb_assert_exit(r, 0);
  char *out = strdup(r.out);
  tb_h_result_free(&r);

  const char *top = strstr(out, "top: ");
  assert_non_null(top);
  char names[64][32];
  int n = top_commands(h, names, 64);
  assert_true(n >= 18);
  for (int i = 0; i < n; i++) {
    char word[40];
    snprintf(word, sizeof(word), " %.31s ", names[i]);
    const char *eol = strchr(top, '\n');
    const char *at = strstr(top + 4, word);
    if (at == NULL || at > eol) fail_msg("completion does not offer '%s':\n%s", names[i], out);
  }
  tb_assert_contains(out, "workflows: list show runs cancel retry --help \n");
  tb_assert_contains(out, "dlq list --re: --reason \n");
  tb_assert_contains(out, "tiers: critical high normal low background \n");
  tb_assert_contains(out, "domains: crm enrichment workspace ops workflow \n");
  tb_assert_contains(out, "events: WORKSPACE_REPO_ADDED WORKSPACE_REPO_REMOVED \n");
  tb_assert_contains(out, "workflows: subscriber-enrichment \n");
  free(out);
}

int main(void) {
  tb_h_watchdog(170);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_help_everywhere, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_read_only_never_create, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_usage_errors_write_nothing, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_publish_file_duplicates, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_tables_and_json, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_bash_completion, tb_h_setup, tb_h_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
