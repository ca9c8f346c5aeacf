/* Integration: the locked bus (issue 11). `tierbus dev` starts nats-server with a generated secret
 * (0600 in its data directory, reused on restart) or configured credentials; a client without
 * them can neither publish to a tier nor read a stream, while `tierbus publish` given the data
 * directory gets through and the event is processed. Bad credential settings exit 2 naming the
 * key. TLS to a server that requires it, with a CA and a client certificate made by openssl here,
 * is a config option that reaches cnats. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "support/itest.h"

#define RUN_MS 30000

/* ---------------------------------------------------------------- helpers */

/* Starts `tierbus dev` as child |name| on a reserved port (h->url) with data directory
 * <tmp>/|dir_name| (path into |dir|) and h->db as its database, plus |extra| arguments
 * (NULL-terminated list, may be NULL); waits for its ready line and records its nats-server's pid
 * for teardown. A second run needs a new child |name|: the ready line is looked for in its
 * output files. */
static pid_t start_dev(tb_h_t *h, tb_h_child_t *dev, const char *name, const char *dir_name,
                       char *dir, size_t cap, const char *const *extra) {
  char port[16];
  assert_true(tb_h_reserve_port(h) > 0);
  snprintf(port, sizeof(port), "%d", h->port);
  tb_h_path(h, dir_name, dir, cap);
  const char *a[8] = {NULL};
  for (int i = 0; extra != NULL && extra[i] != NULL && i < 7; i++) a[i] = extra[i];
  tb_assert_ok(tb_h_spawn_raw(h, dev, name, "dev", "--nats-port", port, "--data-dir", dir, "--db",
                              h->db, "--config", h->config, "--http-port", "0", "--log-level",
                              "info", a[0], a[1], a[2], a[3], a[4], a[5], a[6], NULL));
  pid_t pid = 0;
  for (int i = 0; i < 400 && pid == 0; i++) {
    char *out = tb_h_read_file(dev->out_path);
    char *err = tb_h_child_stderr(dev);
    const char *p = strstr(err, "started nats-server pid ");
    if (p != NULL && out != NULL && strstr(out, "tierbus dev ready") != NULL)
      pid = (pid_t)atoi(p + strlen("started nats-server pid "));
    free(out);
    free(err);
    if (pid == 0) {
      if (!tb_h_child_alive(dev)) break;
      tb_h_sleep_ms(50);
    }
  }
  if (pid == 0) {
    tb_h_dump_logs(h, 30);
    fail_msg("dev never became ready");
  }
  tb_h_track_pid(pid);
  return pid;
}

/* Reads a whole small file into a fresh string with the trailing newline removed. */
static char *read_trimmed(const char *path) {
  char *text = tb_h_read_file(path);
  assert_non_null(text);
  size_t n = strlen(text);
  while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r')) text[--n] = '\0';
  return text;
}

static unsigned file_mode(const char *path) {
  struct stat sb;
  assert_int_equal(stat(path, &sb), 0);
  return (unsigned)(sb.st_mode & 07777);
}

/* A raw cnats connection to h->url, as another service would open one: |user|/|pass| or |token|
 * when non-NULL, none otherwise. Returns cnats' status; *out is the connection on NATS_OK. No
 * reconnects: a refused connect must come back at once. */
static natsStatus raw_connect(tb_h_t *h, natsConnection **out, const char *user, const char *pass,
                              const char *token) {
  natsOptions *opts = NULL;
  natsStatus s = natsOptions_Create(&opts);
  if (s == NATS_OK) s = natsOptions_SetURL(opts, h->url);
  if (s == NATS_OK) s = natsOptions_SetTimeout(opts, 2000);
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(opts, 0);
  if (s == NATS_OK && user != NULL) s = natsOptions_SetUserInfo(opts, user, pass);
  if (s == NATS_OK && token != NULL) s = natsOptions_SetToken(opts, token);
  if (s == NATS_OK) s = natsConnection_Connect(out, opts);
  natsOptions_Destroy(opts);
  return s;
}

/* Every way a client without the credentials could try: none, the right user with a wrong
 * password, a guessed token. Each must be refused at CONNECT, before it can publish, subscribe
 * or call the JetStream API (which is how a stream is read). */
static void assert_locked(tb_h_t *h) {
  static const char *const tries[][3] = {
      {NULL, NULL, NULL}, {"tierbus", "wrong", NULL}, {NULL, NULL, "guess"}};
  for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
    natsConnection *nc = NULL;
    natsStatus s = raw_connect(h, &nc, tries[i][0], tries[i][1], tries[i][2]);
    print_message("connect %s: %s\n",
                  i == 0   ? "without credentials"
                  : i == 1 ? "wrong password"
                           : "guessed token",
                  natsStatus_GetText(s));
    if (s == NATS_OK) {
      /* Refused at CONNECT is the design; if a future server let it in, it must still not be
       * able to publish: make the failure say which. */
      natsConnection_Destroy(nc);
      fail_msg("an unauthenticated client connected to dev's nats-server");
    }
    assert_int_equal(s, NATS_CONNECTION_AUTH_FAILED);
  }
}

/* Messages in |stream| seen through an authenticated connection: the positive control showing
 * that the refusals above are the lock, not a wrong URL or a dead server. */
static int64_t stream_msgs(natsConnection *nc, const char *stream) {
  jsCtx *js = NULL;
  jsStreamInfo *si = NULL;
  int64_t n = -1;
  if (natsConnection_JetStream(&js, nc, NULL) == NATS_OK &&
      js_GetStreamInfo(&si, js, stream, NULL, NULL) == NATS_OK)
    n = (int64_t)si->State.Msgs;
  jsStreamInfo_Destroy(si);
  jsCtx_Destroy(js);
  return n;
}

/* ---------------------------------------------------------------- dev's generated secret */

static void test_dev_generated_secret(void **state) {
  tb_h_t *h = *state;
  tb_h_child_t dev;
  tb_h_result_t r;
  char dir[TB_H_PATH], secret_path[TB_H_PATH + 32], conf_path[TB_H_PATH + 32];
  pid_t server = start_dev(h, &dev, "dev", "dev", dir, sizeof(dir), NULL);
  snprintf(secret_path, sizeof(secret_path), "%s/nats-password", dir);
  snprintf(conf_path, sizeof(conf_path), "%s/nats-server.conf", dir);

  /* The secret: 64 hex digits, readable by the owner only; so is the server config holding it. */
  char *secret = read_trimmed(secret_path);
  assert_int_equal(strlen(secret), 64);
  assert_int_equal(strspn(secret, "0123456789abcdef"), 64);
  assert_int_equal(file_mode(secret_path), 0600);
  assert_int_equal(file_mode(conf_path), 0600);
  char *conf = tb_h_read_file(conf_path);
  tb_assert_contains(conf, "authorization");
  tb_assert_contains(conf, secret);
  free(conf);
  /* Never on the command line, where `ps` shows it to every user. */
  char proc[64];
  snprintf(proc, sizeof(proc), "/proc/%d/cmdline", (int)server);
  FILE *f = fopen(proc, "r");
  assert_non_null(f);
  char cmdline[4096] = {0};
  size_t n = fread(cmdline, 1, sizeof(cmdline) - 1, f);
  fclose(f);
  for (size_t i = 0; i < n; i++)
    if (cmdline[i] == '\0') cmdline[i] = ' ';
  tb_assert_contains(cmdline, "nats-server.conf");
  tb_assert_not_contains(cmdline, secret);
  char *out = tb_h_read_file(dev.out_path);
  tb_assert_contains(out, secret_path); /* the ready output says where the secret is */
  free(out);

  assert_locked(h);

  /* tierbus itself without the data directory: refused, and told where the secret would be. */
  tb_h_tierbus(h, &r, RUN_MS, "publish", "capture/repository.sync", "--json",
               "{\"repository_id\":\"r-locked\"}", "--id", "locked-1", NULL);
  tb_assert_exit(r, 1);
  tb_assert_contains(r.err, "refused the connection");
  tb_assert_contains(r.err, "Authorization Violation");
  tb_assert_contains(r.err, "credentials: none");
  tb_assert_contains(r.err, "--data-dir");
  tb_h_result_free(&r);

  /* With the data directory, publish finds the secret, and dev's workers process the event. */
  tb_h_tierbus(h, &r, RUN_MS, "publish", "capture/repository.sync", "--json",
               "{\"repository_id\":\"r-open\"}", "--id", "auth-1", "--data-dir", dir, NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  assert_int_equal(
      tb_h_wait_sql(h, 1, 20000, "SELECT count(*) FROM processed WHERE msg_id = 'auth-1'"), 1);
  assert_int_equal(tb_h_sql_int(h, "SELECT count(*) FROM processed WHERE msg_id = 'locked-1'"), 0);

  /* The same secret opens a plain cnats connection, as another service would use it, and the
   * stream holds the one event. */
  natsConnection *nc = NULL;
  assert_int_equal(raw_connect(h, &nc, "tierbus", secret, NULL), NATS_OK);
  assert_int_equal(stream_msgs(nc, "TB_NORMAL_WORKSPACE"), 1); /* its default tier */
  natsConnection_Destroy(nc);

  /* A restarted dev keeps the secret: the file is not rewritten and the old secret still opens
   * the server (the supervisor's restarts rely on the same: test_dev_supervise). */
  assert_int_equal(tb_h_child_term(&dev, 20000), 0);
  start_dev(h, &dev, "dev-again", "dev", dir, sizeof(dir), NULL);
  char *again = read_trimmed(secret_path);
  assert_string_equal(again, secret);
  free(again);
  assert_locked(h);
  assert_int_equal(raw_connect(h, &nc, "tierbus", secret, NULL), NATS_OK);
  natsConnection_Destroy(nc);
  setenv("TIERBUS_DATA_DIR", dir, 1); /* the environment resolves like the flag */
  tb_h_tierbus(h, &r, RUN_MS, "publish", "capture/repository.sync", "--json",
               "{\"repository_id\":\"r-env\"}", "--id", "auth-2", NULL);
  unsetenv("TIERBUS_DATA_DIR");
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  assert_int_equal(
      tb_h_wait_sql(h, 1, 20000, "SELECT count(*) FROM processed WHERE msg_id = 'auth-2'"), 1);
  assert_int_equal(tb_h_child_term(&dev, 20000), 0);
  free(secret);
}

/* A secret that group or others may read is refused, naming the file, rather than used. */
static void test_secret_mode_checked(void **state) {
  tb_h_t *h = *state;
  tb_h_result_t r;
  char dir[TB_H_PATH], path[TB_H_PATH + 32];
  tb_h_path(h, "loose", dir, sizeof(dir));
  assert_int_equal(mkdir(dir, 0700), 0);
  snprintf(path, sizeof(path), "%s/nats-password", dir);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs("0123456789abcdef\n", f);
  fclose(f);
  assert_int_equal(chmod(path, 0644), 0);
  tb_h_tierbus_raw(h, &r, RUN_MS, "publish", "capture/repository.sync", "--json",
                   "{\"repository_id\":\"r\"}", "--config", h->config, "--nats-url",
                   "nats://127.0.0.1:1", "--data-dir", dir, NULL);
  tb_assert_exit(r, 1);
  tb_assert_contains(r.err, path);
  tb_assert_contains(r.err, "mode 0644");
  tb_assert_contains(r.err, "chmod 600");
  tb_h_result_free(&r);
}

/* ---------------------------------------------------------------- configured credentials */

static void test_dev_configured_token(void **state) {
  tb_h_t *h = *state;
  tb_h_child_t dev;
  tb_h_result_t r;
  char dir[TB_H_PATH], secret_path[TB_H_PATH + 32];
  static const char token[] = "tok-3f9a0c1b7e6d5a4f";
  setenv("TIERBUS_NATS_TOKEN", token, 1);
  start_dev(h, &dev, "devtok", "devtok", dir, sizeof(dir), NULL);
  unsetenv("TIERBUS_NATS_TOKEN");
  /* Configured credentials replace the generated secret: none is made. */
  snprintf(secret_path, sizeof(secret_path), "%s/nats-password", dir);
  assert_int_equal(access(secret_path, F_OK), -1);
  assert_locked(h);
  natsConnection *nc = NULL;
  assert_int_equal(raw_connect(h, &nc, NULL, NULL, token), NATS_OK);
  natsConnection_Destroy(nc);

  tb_h_tierbus(h, &r, RUN_MS, "publish", "capture/repository.sync", "--json",
               "{\"repository_id\":\"r-tok\"}", "--id", "tok-1", "--set", "nats_token=wrong", NULL);
  tb_assert_exit(r, 1);
  tb_assert_contains(r.err, "credentials: nats_token");
  tb_h_result_free(&r);
  tb_h_tierbus(h, &r, RUN_MS, "publish", "capture/repository.sync", "--json",
               "{\"repository_id\":\"r-tok\"}", "--id", "tok-1", "--set",
               "nats_token=tok-3f9a0c1b7e6d5a4f", NULL);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  assert_int_equal(
      tb_h_wait_sql(h, 1, 20000, "SELECT count(*) FROM processed WHERE msg_id = 'tok-1'"), 1);
  assert_int_equal(tb_h_child_term(&dev, 20000), 0);
}

/* ---------------------------------------------------------------- bad settings */

/* `tierbus ARGS...` with h's config must exit 2 and name |key|. */
static void expect_config_error(tb_h_t *h, const char *key, const char *const *args) {
  tb_h_result_t r;
  const char *a[10] = {NULL};
  for (int i = 0; args[i] != NULL && i < 9; i++) a[i] = args[i];
  tb_h_tierbus_raw(h, &r, RUN_MS, a[0], "--config", h->config, "--nats-url", "nats://127.0.0.1:1",
                   "--set", "nats_connect_timeout=0s", a[1], a[2], a[3], a[4], a[5], a[6], a[7],
                   a[8], NULL);
  print_message("%s: exit %d: %s", key, r.status, r.err);
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, key);
  tb_h_result_free(&r);
}

static void test_bad_credential_settings(void **state) {
  tb_h_t *h = *state;
  char not_pem[TB_H_PATH], creds[TB_H_PATH], dir[TB_H_PATH];
  tb_assert_ok(tb_h_write_file(h, "not.pem", "this is no certificate\n", not_pem, sizeof(not_pem)));
  tb_assert_ok(
      tb_h_write_file(h, "user.creds", "-----BEGIN NATS USER JWT-----\nx\n", creds, sizeof(creds)));
  tb_h_path(h, "devbad", dir, sizeof(dir));
  expect_config_error(h, "nats_password: is required with nats_user",
                      (const char *[]){"config", "check", "--set", "nats_user=svc", NULL});
  expect_config_error(h, "nats_user: is required with nats_password",
                      (const char *[]){"config", "check", "--set", "nats_password=pw", NULL});
  expect_config_error(h, "nats_token: give nats_token or nats_user/nats_password",
                      (const char *[]){"config", "check", "--set", "nats_token=t", "--set",
                                       "nats_user=u", "--set", "nats_password=p", NULL});
  expect_config_error(h, "nats_creds: give nats_creds or nats_token",
                      (const char *[]){"config", "check", "--set", "nats_token=t", "--set",
                                       "nats_creds=/etc/hostname", NULL});
  expect_config_error(h, "nats_password: must contain only",
                      (const char *[]){"config", "check", "--set", "nats_user=u", "--set",
                                       "nats_password=a\"b", NULL});
  expect_config_error(
      h, "nats_tls_ca: cannot read '/nonexistent/ca.pem'",
      (const char *[]){"config", "check", "--set", "nats_tls_ca=/nonexistent/ca.pem", NULL});
  expect_config_error(
      h, "nats_tls_key: is required with nats_tls_cert",
      (const char *[]){"config", "check", "--set", "nats_tls_cert=/etc/hostname", NULL});
  expect_config_error(
      h, "nats_creds: cannot read '/nonexistent.creds'",
      (const char *[]){"config", "check", "--set", "nats_creds=/nonexistent.creds", NULL});
  /* A file that exists but is no PEM: cnats loads it at connect, and says which option. */
  char set_ca[TB_H_PATH + 16];
  snprintf(set_ca, sizeof(set_ca), "nats_tls_ca=%s", not_pem);
  expect_config_error(h, "nats_tls_ca: cannot use",
                      (const char *[]){"init", "--set", set_ca, NULL});
  /* The server dev starts takes neither a creds file nor TLS; it says so before starting one. */
  char set_creds[TB_H_PATH + 16], port[16];
  snprintf(set_creds, sizeof(set_creds), "nats_creds=%s", creds);
  snprintf(port, sizeof(port), "%d", tb_free_port());
  tb_h_result_t r;
  const char *sets[] = {set_creds, set_ca};
  const char *names[] = {"nats_creds: the nats-server `tierbus dev` starts", "nats_tls_ca"};
  for (int i = 0; i < 2; i++) {
    tb_h_tierbus_raw(h, &r, RUN_MS, "dev", "--config", h->config, "--nats-port", port, "--data-dir",
                     dir, "--http-port", "0", "--set", sets[i], NULL);
    print_message("dev --set %s: exit %d: %s", sets[i], r.status, r.err);
    tb_assert_exit(r, 2);
    tb_assert_contains(r.err, names[i]);
    tb_h_result_free(&r);
  }
  /* Refused before anything was made: no secret, no server config. */
  char made[TB_H_PATH + 32];
  snprintf(made, sizeof(made), "%s/nats-password", dir);
  assert_int_equal(access(made, F_OK), -1);
  snprintf(made, sizeof(made), "%s/nats-server.conf", dir);
  assert_int_equal(access(made, F_OK), -1);
  /* The environment is checked like the file, and a secret is never echoed. */
  setenv("TIERBUS_NATS_PASSWORD", "has space", 1);
  tb_h_tierbus_raw(h, &r, RUN_MS, "config", "check", "--config", h->config, "--set", "nats_user=u",
                   NULL);
  unsetenv("TIERBUS_NATS_PASSWORD");
  tb_assert_exit(r, 2);
  tb_assert_contains(r.err, "TIERBUS_NATS_PASSWORD");
  tb_assert_not_contains(r.err, "has space");
  tb_h_result_free(&r);
}

/* ---------------------------------------------------------------- TLS */

/* The path of |prog| on $PATH into |buf|; fails the test when it is not installed. */
static void which(const char *prog, char *buf, size_t cap) {
  const char *path = getenv("PATH");
  char copy[4096];
  snprintf(copy, sizeof(copy), "%s", path ? path : "/usr/bin:/bin");
  char *save = NULL;
  for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
    snprintf(buf, cap, "%s/%s", d, prog);
    if (access(buf, X_OK) == 0) return;
  }
  fail_msg("%s is not installed (Debian package openssl; `make deps` installs it)", prog);
}

/* Runs openssl with |args| (NULL-terminated, after the program) and asserts it succeeded. */
static void openssl(tb_h_t *h, const char *bin, const char *const *args) {
  const char *argv[32];
  int n = 0;
  argv[n++] = bin;
  for (int i = 0; args[i] != NULL && n < 31; i++) argv[n++] = args[i];
  argv[n] = NULL;
  tb_h_result_t r;
  tb_h_execv(h, &r, RUN_MS, argv);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
}

/* A CA, a server certificate for localhost signed by it, and a client certificate signed by it,
 * under <tmp>/tls; EC keys, because they are made in milliseconds. */
static void make_certs(tb_h_t *h, char *dir, size_t cap) {
  char bin[TB_H_PATH];
  which("openssl", bin, sizeof(bin));
  tb_h_path(h, "tls", dir, cap);
  assert_int_equal(mkdir(dir, 0700), 0);
  char ca[TB_H_PATH + 16], ca_key[TB_H_PATH + 16], srv[TB_H_PATH + 16], srv_key[TB_H_PATH + 16],
      cli[TB_H_PATH + 16], cli_key[TB_H_PATH + 16];
  snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
  snprintf(ca_key, sizeof(ca_key), "%s/ca.key", dir);
  snprintf(srv, sizeof(srv), "%s/server.pem", dir);
  snprintf(srv_key, sizeof(srv_key), "%s/server.key", dir);
  snprintf(cli, sizeof(cli), "%s/client.pem", dir);
  snprintf(cli_key, sizeof(cli_key), "%s/client.key", dir);
  openssl(h, bin,
          (const char *[]){"req", "-x509", "-newkey", "ec", "-pkeyopt",
                           "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", ca_key, "-out", ca,
                           "-days", "2", "-subj", "/CN=tierbus test CA", NULL});
  openssl(h, bin,
          (const char *[]){"req",
                           "-x509",
                           "-newkey",
                           "ec",
                           "-pkeyopt",
                           "ec_paramgen_curve:prime256v1",
                           "-nodes",
                           "-keyout",
                           srv_key,
                           "-out",
                           srv,
                           "-days",
                           "2",
                           "-subj",
                           "/CN=localhost",
                           "-CA",
                           ca,
                           "-CAkey",
                           ca_key,
                           "-addext",
                           "subjectAltName=DNS:localhost,IP:127.0.0.1",
                           "-addext",
                           "basicConstraints=critical,CA:FALSE",
                           NULL});
  openssl(h, bin, (const char *[]){"req",    "-x509",    "-newkey",
                                   "ec",     "-pkeyopt", "ec_paramgen_curve:prime256v1",
                                   "-nodes", "-keyout",  cli_key,
                                   "-out",   cli,        "-days",
                                   "2",      "-subj",    "/CN=tierbus-client",
                                   "-CA",    ca,         "-CAkey",
                                   ca_key,   "-addext",  "basicConstraints=critical,CA:FALSE",
                                   NULL});
}

static void test_tls_remote_server(void **state) {
  tb_h_t *h = *state;
  char tls[TB_H_PATH];
  make_certs(h, tls, sizeof(tls));
  /* A server that requires TLS and a client certificate signed by the CA. */
  char conf_text[4 * TB_H_PATH + 256], conf[TB_H_PATH], data[TB_H_PATH];
  snprintf(conf_text, sizeof(conf_text),
           "tls {\n  cert_file: \"%s/server.pem\"\n  key_file: \"%s/server.key\"\n"
           "  ca_file: \"%s/ca.pem\"\n  verify: true\n}\n",
           tls, tls, tls);
  tb_assert_ok(tb_h_write_file(h, "tls-server.conf", conf_text, conf, sizeof(conf)));
  tb_h_path(h, "tls-nats", data, sizeof(data));
  assert_true(tb_h_reserve_port(h) > 0);
  tb_assert_ok(tb_server_start(&h->srv, data, h->port, conf, 10000));
  tb_h_track_pid(h->srv.pid);
  char url[64], ca[TB_H_PATH + 32], cert[TB_H_PATH + 32], key[TB_H_PATH + 32];
  snprintf(url, sizeof(url), "nats://localhost:%d", h->port); /* the certificate's name */
  snprintf(ca, sizeof(ca), "nats_tls_ca=%s/ca.pem", tls);
  snprintf(cert, sizeof(cert), "nats_tls_cert=%s/client.pem", tls);
  snprintf(key, sizeof(key), "nats_tls_key=%s/client.key", tls);
  tb_h_result_t r;
#define TLS_RUN(...)                                                                               \
  tb_h_tierbus_raw(h, &r, RUN_MS, __VA_ARGS__, "--config", h->config, "--db", h->db, "--nats-url", \
                   url, "--set", "nats_connect_timeout=0s", NULL)

  /* Everything given: streams created, an event published and processed by a worker over TLS. */
  TLS_RUN("init", "--set", ca, "--set", cert, "--set", key);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  TLS_RUN("publish", "capture/repository.sync", "--json", "{\"repository_id\":\"r-tls\"}", "--id",
          "tls-1", "--set", ca, "--set", cert, "--set", key);
  tb_assert_exit(r, 0);
  tb_h_result_free(&r);
  tb_h_child_t worker;
  tb_assert_ok(tb_h_spawn_raw(h, &worker, "tls-worker", "worker", "--config", h->config, "--db",
                              h->db, "--nats-url", url, "--set", ca, "--set", cert, "--set", key,
                              NULL));
  assert_int_equal(
      tb_h_wait_sql(h, 1, 20000, "SELECT count(*) FROM processed WHERE msg_id = 'tls-1'"), 1);
  assert_int_equal(tb_h_child_term(&worker, 20000), 0);

  /* The server's certificate is checked: against the CA ... */
  TLS_RUN("publish", "capture/repository.sync", "--json", "{\"repository_id\":\"r\"}", "--set",
          cert, "--set", key);
  tb_assert_exit(r, 1);
  tb_assert_contains(r.err, "unable to get local issuer certificate");
  tb_h_result_free(&r);
  /* ... and for its name. */
  TLS_RUN("publish", "capture/repository.sync", "--json", "{\"repository_id\":\"r\"}", "--set", ca,
          "--set", cert, "--set", key, "--set", "nats_tls_hostname=other.example");
  tb_assert_exit(r, 1);
  tb_assert_contains(r.err, "hostname mismatch");
  tb_h_result_free(&r);
  /* The server wants a client certificate: without one the connection is dropped. */
  TLS_RUN("publish", "capture/repository.sync", "--json", "{\"repository_id\":\"r\"}", "--set", ca);
  tb_assert_exit(r, 1);
  tb_assert_contains(r.err, "nats_tls_cert");
  tb_h_result_free(&r);
#undef TLS_RUN
}

int main(void) {
  tb_h_watchdog(170);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_dev_generated_secret, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_secret_mode_checked, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_dev_configured_token, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_bad_credential_settings, tb_h_setup, tb_h_teardown),
      cmocka_unit_test_setup_teardown(test_tls_remote_server, tb_h_setup, tb_h_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
