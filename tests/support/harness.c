/* Integration test harness: temp dirs, nats-server and tierbus child processes tracked by PID,
 * SQLite polling and raw cnats helpers. See harness.h for the contracts. */
#define _GNU_SOURCE
#include "support/harness.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <ftw.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bus/bus.h"
#include "bus/cluster.h"

#define MAX_ARGS 96
#define MAX_PIDS 64

/* ---------------------------------------------------------------- child registry */

/* Every live child by PID, so that teardown and the watchdog can kill them without knowing the
 * structs they live in (a failed assertion longjmps past the test's locals). Signal handlers read
 * it, hence the volatile sig_atomic-sized slots. */
static volatile pid_t live_pids[MAX_PIDS];
/* Background children, for tb_h_dump_logs(). Borrowed pointers into the test's structs. */
static tb_h_child_t *bg_children[MAX_PIDS];

static void pid_add(pid_t pid) {
  for (int i = 0; i < MAX_PIDS; i++)
    if (live_pids[i] == 0) {
      live_pids[i] = pid;
      return;
    }
}

static void pid_del(pid_t pid) {
  for (int i = 0; i < MAX_PIDS; i++)
    if (live_pids[i] == pid) live_pids[i] = 0;
}

static void bg_add(tb_h_child_t *c) {
  for (int i = 0; i < MAX_PIDS; i++)
    if (bg_children[i] == NULL || bg_children[i] == c) {
      bg_children[i] = c;
      return;
    }
}

static void bg_forget_all(void) {
  for (int i = 0; i < MAX_PIDS; i++) bg_children[i] = NULL;
}

static int reap(tb_h_child_t *c, int block);

/* 1 (after printing which and how) if a background child that nobody stopped has exited: a
 * crashed worker should fail the wait at once, not at its deadline. */
static int bg_child_died(void) {
  for (int i = 0; i < MAX_PIDS; i++) {
    tb_h_child_t *c = bg_children[i];
    if (c == NULL || c->pid <= 0) continue;
    pid_t pid = c->pid;
    if (reap(c, 0)) {
      fprintf(stderr, "harness: %s (pid %d) exited unexpectedly with status %d\n", c->name,
              (int)pid, c->status);
      return 1;
    }
  }
  return 0;
}

/* Async-signal-safe: kill(2) and waitpid(2) only. */
static void kill_all_children(void) {
  for (int i = 0; i < MAX_PIDS; i++) {
    pid_t pid = live_pids[i];
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, NULL, 0);
      live_pids[i] = 0;
    }
  }
}

static void on_fatal_signal(int sig) {
  static const char msg[] = "harness: watchdog or signal: killing every child process\n";
  ssize_t ignored = write(2, msg, sizeof(msg) - 1);
  (void)ignored;
  kill_all_children();
  _exit(sig == SIGALRM ? 3 : 128 + sig);
}

void tb_h_watchdog(int seconds) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_fatal_signal;
  sigaction(SIGALRM, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  alarm((unsigned)seconds);
}

/* ---------------------------------------------------------------- time, files */

/* snprintf that refuses to truncate: a cut path would send a test to the wrong file, so the
 * harness stops the test instead. */
static void bprintf(char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void bprintf(char *buf, size_t cap, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, cap, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= cap) {
    fprintf(stderr, "harness: path too long: %s...\n", buf);
    abort();
  }
}

int64_t tb_h_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void tb_h_sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

void tb_h_path(const tb_h_t *h, const char *name, char *buf, size_t cap) {
  bprintf(buf, cap, "%s/%s", h->dir, name);
}

tb_status tb_h_write_file(const tb_h_t *h, const char *name, const char *text, char *path,
                          size_t cap) {
  char p[TB_H_PATH];
  tb_h_path(h, name, p, sizeof(p));
  FILE *f = fopen(p, "w");
  if (f == NULL) {
    fprintf(stderr, "harness: cannot write %s: %s\n", p, strerror(errno));
    return TB_ERR_IO;
  }
  size_t n = strlen(text);
  int ok = fwrite(text, 1, n, f) == n;
  ok = (fclose(f) == 0) && ok;
  if (!ok) {
    fprintf(stderr, "harness: short write to %s\n", p);
    return TB_ERR_IO;
  }
  if (path != NULL) snprintf(path, cap, "%s", p);
  return TB_OK;
}

tb_status tb_h_use_config(tb_h_t *h, const char *name, const char *yaml) {
  return tb_h_write_file(h, name, yaml, h->config, sizeof(h->config));
}

tb_status tb_h_config_edit(tb_h_t *h, const char *name, const char *from, const char *to) {
  char *text = tb_h_read_file(h->config);
  if (text == NULL) {
    fprintf(stderr, "harness: cannot read %s\n", h->config);
    return TB_ERR_IO;
  }
  char *at = strstr(text, from);
  if (at == NULL) {
    fprintf(stderr, "harness: '%s' is not in %s\n", from, h->config);
    free(text);
    return TB_ERR_INVALID;
  }
  size_t head = (size_t)(at - text), n = strlen(text) - strlen(from) + strlen(to) + 1;
  char *out = malloc(n);
  if (out == NULL) {
    free(text);
    return TB_ERR_NOMEM;
  }
  snprintf(out, n, "%.*s%s%s", (int)head, text, to, at + strlen(from));
  tb_status s = tb_h_use_config(h, name, out);
  free(out);
  free(text);
  return s;
}

FILE *tb_h_fopen(const tb_h_t *h, const char *name, char *path, size_t cap) {
  tb_h_path(h, name, path, cap);
  FILE *f = fopen(path, "w");
  if (f == NULL) fprintf(stderr, "harness: cannot write %s: %s\n", path, strerror(errno));
  return f;
}

tb_status tb_h_write_events(const tb_h_t *h, const char *name, const char *prefix, int first,
                            int count, const char *tier, char *path, size_t cap) {
  FILE *f = tb_h_fopen(h, name, path, cap);
  if (f == NULL) return TB_ERR_IO;
  for (int i = first; i < first + count; i++) {
    fprintf(f,
            "{\"type\": \"capture/repository.sync\", \"id\": \"%s-%05d\", \"priority\": \"%s\", "
            "\"payload\": {\"repository_id\": \"%s-r%d\", \"repository_name\": \"org/repo-%d\"}}\n",
            prefix, i, tier ? tier : "high", prefix, i, i);
  }
  if (fclose(f) != 0) {
    fprintf(stderr, "harness: write %s: %s\n", path, strerror(errno));
    return TB_ERR_IO;
  }
  return TB_OK;
}

char *tb_h_read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return NULL;
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  while (buf != NULL) {
    if (n + 1 >= cap) {
      char *grown = realloc(buf, cap * 2);
      if (grown == NULL) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = grown;
      cap *= 2;
    }
    size_t got = fread(buf + n, 1, cap - n - 1, f);
    n += got;
    if (got == 0) break;
  }
  fclose(f);
  if (buf != NULL) buf[n] = '\0';
  return buf;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  remove(path);
  return 0;
}

/* ---------------------------------------------------------------- lifecycle */

tb_h_t *tb_h_create(void) {
  tb_h_t *h = calloc(1, sizeof(*h));
  if (h == NULL) return NULL;
  snprintf(h->dir, sizeof(h->dir), "/tmp/tierbus-it-XXXXXX");
  if (mkdtemp(h->dir) == NULL) {
    fprintf(stderr, "harness: mkdtemp: %s\n", strerror(errno));
    free(h);
    return NULL;
  }
  const char *bin = getenv("TB_BINARY");
  const char *src = getenv("TB_SOURCE_DIR");
  snprintf(h->binary, sizeof(h->binary), "%s", bin && *bin ? bin : TB_IT_BINARY);
  snprintf(h->source_dir, sizeof(h->source_dir), "%s", src && *src ? src : TB_SOURCE_DIR);
  bprintf(h->config, sizeof(h->config), "%s/config/tierbus.yaml", h->source_dir);
  tb_h_path(h, "tierbus.db", h->db, sizeof(h->db));
  unsetenv("TIERBUS_CONFIG");
  unsetenv("TIERBUS_NATS_URL");
  unsetenv("TIERBUS_DB");
  unsetenv("TIERBUS_DATA_DIR");
  return h;
}

static void close_nats(tb_h_t *h) {
  jsCtx_Destroy(h->js);
  h->js = NULL;
  natsConnection_Destroy(h->nc);
  h->nc = NULL;
}

/* Prints every sanitizer report found in the captured stderr of the test's processes; returns how
 * many files held one. A report in a child otherwise goes unseen when the child still exits
 * with the status the test expects (UBSan in a recovered check, ASan in a killed worker). */
static int scan_sanitizer_reports(const tb_h_t *h) {
  static const char *const marks[] = {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                                      "runtime error:", "WARNING: ThreadSanitizer"};
  DIR *d = opendir(h->dir);
  if (d == NULL) return 0;
  int found = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    size_t n = strlen(e->d_name);
    if (n < 4 || strcmp(e->d_name + n - 4, ".err") != 0) continue;
    char path[TB_H_PATH];
    tb_h_path(h, e->d_name, path, sizeof(path));
    char *text = tb_h_read_file(path);
    if (text == NULL) continue;
    for (size_t i = 0; i < sizeof(marks) / sizeof(marks[0]); i++) {
      const char *at = strstr(text, marks[i]);
      if (at == NULL) continue;
      fprintf(stderr, "harness: sanitizer report in %s:\n%.4000s\n", e->d_name, at);
      found++;
      break;
    }
    free(text);
  }
  closedir(d);
  return found;
}

void tb_h_destroy(tb_h_t *h) {
  tb_h_finish(h);
}

int tb_h_finish(tb_h_t *h) {
  if (h == NULL) return 0;
  close_nats(h);
  kill_all_children(); /* the server too: it is in the registry */
  h->srv.pid = 0;
  bg_forget_all();
  int reports = scan_sanitizer_reports(h);
  const char *keep = getenv("TB_KEEP_TMP");
  if (keep != NULL && *keep != '\0' && strcmp(keep, "0") != 0)
    fprintf(stderr, "harness: keeping %s\n", h->dir);
  else
    nftw(h->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  free(h);
  return reports > 0 ? -1 : 0;
}

int tb_h_setup(void **state) {
  tb_h_t *h = tb_h_create();
  if (h == NULL) return -1;
  *state = h;
  return 0;
}

int tb_h_teardown(void **state) {
  int rc = tb_h_finish(*state);
  *state = NULL;
  return rc;
}

/* ---------------------------------------------------------------- nats-server */

int tb_h_reserve_port(tb_h_t *h) {
  if (h->port <= 0) h->port = tb_free_port();
  if (h->port <= 0) return -1;
  snprintf(h->url, sizeof(h->url), "nats://127.0.0.1:%d", h->port);
  return h->port;
}

tb_status tb_h_server_start(tb_h_t *h) {
  if (tb_h_reserve_port(h) < 0) {
    fprintf(stderr, "harness: no free port\n");
    return TB_ERR_IO;
  }
  char data[TB_H_PATH];
  tb_h_path(h, "nats", data, sizeof(data));
  /* A restart right after a stop can find the port still held for a moment. */
  tb_status st = TB_ERR_IO;
  for (int attempt = 0; attempt < 50; attempt++) {
    st = tb_server_start(&h->srv, data, h->port, NULL, 10000);
    if (st == TB_OK || strstr(tb_errdetail(), "already in use") == NULL) break;
    tb_h_sleep_ms(100);
  }
  if (st != TB_OK) {
    fprintf(stderr, "harness: nats-server: %s\n", tb_errdetail());
    char log[TB_H_PATH];
    tb_h_path(h, "nats/nats-server.log", log, sizeof(log));
    char *text = tb_h_read_file(log);
    if (text != NULL) fprintf(stderr, "--- nats-server.log ---\n%s\n", text);
    free(text);
    return st;
  }
  pid_add(h->srv.pid);
  return TB_OK;
}

void tb_h_server_stop(tb_h_t *h) {
  close_nats(h);
  pid_t pid = h->srv.pid;
  tb_server_stop(&h->srv, 5000);
  pid_del(pid);
}

void tb_h_server_kill(tb_h_t *h) {
  close_nats(h);
  pid_t pid = h->srv.pid;
  tb_server_kill(&h->srv);
  pid_del(pid);
}

/* ---------------------------------------------------------------- processes */

static int decode_status(int wstatus) {
  if (WIFEXITED(wstatus)) return WEXITSTATUS(wstatus);
  if (WIFSIGNALED(wstatus)) return 128 + WTERMSIG(wstatus);
  return -1;
}

/* fork + exec with stdin from /dev/null and stdout/stderr to the given files. The child dies
 * with the test (PR_SET_PDEATHSIG), so even a test killed by ctest leaves no worker behind.
 * Only async-signal-safe calls run between fork and exec: cnats threads exist in the parent. */
static pid_t start_child(const char *const *argv, const char *out_path, const char *err_path) {
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    fprintf(stderr, "harness: fork: %s\n", strerror(errno));
    return -1;
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    int in = open("/dev/null", O_RDONLY);
    int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (in < 0 || out < 0 || err < 0) _exit(126);
    dup2(in, 0);
    dup2(out, 1);
    dup2(err, 2);
    close(in);
    close(out);
    close(err);
    execv(argv[0], (char *const *)argv);
    static const char msg[] = "harness: exec failed\n";
    ssize_t ignored = write(2, msg, sizeof(msg) - 1);
    (void)ignored;
    _exit(127);
  }
  pid_add(pid);
  return pid;
}

int tb_h_execv(tb_h_t *h, tb_h_result_t *r, int timeout_ms, const char *const *argv) {
  memset(r, 0, sizeof(*r));
  r->status = -1;
  char out_path[TB_H_PATH], err_path[TB_H_PATH], name[64];
  int n = ++h->runs;
  snprintf(name, sizeof(name), "run-%03d.out", n);
  tb_h_path(h, name, out_path, sizeof(out_path));
  snprintf(name, sizeof(name), "run-%03d.err", n);
  tb_h_path(h, name, err_path, sizeof(err_path));
  int64_t t0 = tb_h_now_ms();
  pid_t pid = start_child(argv, out_path, err_path);
  if (pid > 0) {
    int wstatus = 0;
    for (;;) {
      pid_t got = waitpid(pid, &wstatus, WNOHANG);
      if (got == pid) {
        r->status = decode_status(wstatus);
        break;
      }
      if (got < 0 && errno != EINTR) break;
      if (tb_h_now_ms() - t0 > timeout_ms) {
        kill(pid, SIGKILL);
        waitpid(pid, &wstatus, 0);
        r->status = decode_status(wstatus);
        r->timed_out = 1;
        break;
      }
      tb_h_sleep_ms(5);
    }
    pid_del(pid);
  }
  r->elapsed_ms = tb_h_now_ms() - t0;
  r->out = tb_h_read_file(out_path);
  r->err = tb_h_read_file(err_path);
  if (r->out == NULL) r->out = strdup("");
  if (r->err == NULL) r->err = strdup("");
  if (r->timed_out)
    fprintf(stderr, "harness: `%s %s` killed after %d ms\n", argv[0], argv[1] ? argv[1] : "",
            timeout_ms);
  return r->status;
}

void tb_h_result_free(tb_h_result_t *r) {
  free(r->out);
  free(r->err);
  r->out = r->err = NULL;
}

/* Builds `tierbus [cmd common-options] args...` into argv; |cmd| NULL means no common options. */
static int build_argv(tb_h_t *h, const char **argv, const char *cmd, const char *log_level,
                      va_list ap) {
  int n = 0;
  argv[n++] = h->binary;
  if (cmd != NULL) {
    argv[n++] = cmd;
    if (h->url[0] != '\0') {
      argv[n++] = "--nats-url";
      argv[n++] = h->url;
    }
    argv[n++] = "--db";
    argv[n++] = h->db;
    argv[n++] = "--config";
    argv[n++] = h->config;
    if (log_level != NULL) {
      argv[n++] = "--log-level";
      argv[n++] = log_level;
    }
  }
  const char *a;
  while ((a = va_arg(ap, const char *)) != NULL) {
    if (n >= MAX_ARGS - 1) {
      fprintf(stderr, "harness: too many arguments\n");
      return -1;
    }
    argv[n++] = a;
  }
  argv[n] = NULL;
  return n;
}

int tb_h_tierbus_raw(tb_h_t *h, tb_h_result_t *r, int timeout_ms, ...) {
  const char *argv[MAX_ARGS];
  va_list ap;
  va_start(ap, timeout_ms);
  int n = build_argv(h, argv, NULL, NULL, ap);
  va_end(ap);
  if (n < 0) {
    memset(r, 0, sizeof(*r));
    r->status = -1;
    return -1;
  }
  return tb_h_execv(h, r, timeout_ms, argv);
}

int tb_h_tierbus(tb_h_t *h, tb_h_result_t *r, int timeout_ms, const char *cmd, ...) {
  const char *argv[MAX_ARGS];
  va_list ap;
  va_start(ap, cmd);
  int n = build_argv(h, argv, cmd, NULL, ap);
  va_end(ap);
  if (n < 0) {
    memset(r, 0, sizeof(*r));
    r->status = -1;
    return -1;
  }
  return tb_h_execv(h, r, timeout_ms, argv);
}

/* A child not yet started: its name and its output files <dir>/<name>.out and .err. */
static void child_init(tb_h_t *h, tb_h_child_t *c, const char *name) {
  memset(c, 0, sizeof(*c));
  c->status = -1;
  snprintf(c->name, sizeof(c->name), "%s", name);
  char file[96];
  snprintf(file, sizeof(file), "%s.out", name);
  tb_h_path(h, file, c->out_path, sizeof(c->out_path));
  snprintf(file, sizeof(file), "%s.err", name);
  tb_h_path(h, file, c->err_path, sizeof(c->err_path));
}

tb_status tb_h_spawn(tb_h_t *h, tb_h_child_t *c, const char *name, const char *cmd, ...) {
  child_init(h, c, name);
  const char *argv[MAX_ARGS];
  va_list ap;
  va_start(ap, cmd);
  int n = build_argv(h, argv, cmd, "info", ap);
  va_end(ap);
  if (n < 0) return TB_ERR_INVALID;
  pid_t pid = start_child(argv, c->out_path, c->err_path);
  if (pid <= 0) return TB_ERR_IO;
  c->pid = pid;
  bg_add(c);
  return TB_OK;
}

tb_status tb_h_spawn_raw(tb_h_t *h, tb_h_child_t *c, const char *name, ...) {
  child_init(h, c, name);
  const char *argv[MAX_ARGS];
  int n = 0;
  argv[n++] = h->binary;
  va_list ap;
  va_start(ap, name);
  for (const char *a; n < MAX_ARGS - 1 && (a = va_arg(ap, const char *)) != NULL;) argv[n++] = a;
  va_end(ap);
  argv[n] = NULL;
  pid_t pid = start_child(argv, c->out_path, c->err_path);
  if (pid <= 0) return TB_ERR_IO;
  c->pid = pid;
  bg_add(c);
  return TB_OK;
}

void tb_h_track_pid(pid_t pid) {
  if (pid > 0) pid_add(pid);
}

/* Reaps the child if it has exited; |block| waits for it. */
static int reap(tb_h_child_t *c, int block) {
  if (c->pid <= 0) return 1;
  int wstatus = 0;
  pid_t got = waitpid(c->pid, &wstatus, block ? 0 : WNOHANG);
  if (got == c->pid) {
    c->status = decode_status(wstatus);
    pid_del(c->pid);
    c->pid = 0;
    return 1;
  }
  if (got < 0 && errno == ECHILD) { /* reaped elsewhere (teardown) */
    pid_del(c->pid);
    c->pid = 0;
    return 1;
  }
  return 0;
}

int tb_h_child_alive(tb_h_child_t *c) {
  return !reap(c, 0);
}

int tb_h_child_wait(tb_h_child_t *c, int timeout_ms) {
  int64_t deadline = tb_h_now_ms() + timeout_ms;
  while (!reap(c, 0)) {
    if (tb_h_now_ms() > deadline) return -1;
    tb_h_sleep_ms(5);
  }
  return c->status;
}

int tb_h_child_term(tb_h_child_t *c, int timeout_ms) {
  if (c->pid <= 0) return c->status;
  kill(c->pid, SIGTERM);
  if (tb_h_child_wait(c, timeout_ms) >= 0) return c->status;
  fprintf(stderr, "harness: %s (pid %d) ignored SIGTERM for %d ms; killing it\n", c->name,
          (int)c->pid, timeout_ms);
  tb_h_child_kill(c);
  return c->status;
}

void tb_h_child_kill(tb_h_child_t *c) {
  if (c->pid <= 0) return;
  kill(c->pid, SIGKILL);
  reap(c, 1);
}

char *tb_h_child_stderr(const tb_h_child_t *c) {
  char *text = tb_h_read_file(c->err_path);
  return text != NULL ? text : strdup("");
}

static void print_tail(const char *title, const char *path, int lines) {
  char *text = tb_h_read_file(path);
  if (text == NULL) return;
  size_t len = strlen(text);
  const char *start = text + len;
  int seen = 0;
  while (start > text) {
    if (start[-1] == '\n' && start != text + len && ++seen > lines) break;
    start--;
  }
  fprintf(stderr, "--- %s (last %d lines) ---\n%s%s", title, lines, start,
          len > 0 && text[len - 1] != '\n' ? "\n" : "");
  free(text);
}

void tb_h_dump_logs(const tb_h_t *h, int lines) {
  for (int i = 0; i < MAX_PIDS; i++)
    if (bg_children[i] != NULL) print_tail(bg_children[i]->name, bg_children[i]->err_path, lines);
  char log[TB_H_PATH];
  tb_h_path(h, "nats/nats-server.log", log, sizeof(log));
  print_tail("nats-server.log", log, lines);
}

/* ---------------------------------------------------------------- SQLite */

sqlite3 *tb_h_db_open(const tb_h_t *h) {
  if (access(h->db, F_OK) != 0) return NULL;
  sqlite3 *db = NULL;
  if (sqlite3_open_v2(h->db, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
    sqlite3_close(db);
    return NULL;
  }
  sqlite3_busy_timeout(db, 5000);
  return db;
}

/* Runs |sql| and hands the first row's first column to the caller: *ival, or a copy in *tval.
 * Returns 1 with a row, 0 without one, -1 on error. */
static int query_first(const tb_h_t *h, const char *sql, int64_t *ival, char **tval) {
  sqlite3 *db = tb_h_db_open(h);
  if (db == NULL) return -1;
  sqlite3_stmt *stmt = NULL;
  int rc = sqlite3_prepare_v2(db, sql, -1, &stmt, NULL);
  int result = -1;
  if (rc == SQLITE_OK) {
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
      if (ival) *ival = sqlite3_column_int64(stmt, 0);
      if (tval) {
        const unsigned char *t = sqlite3_column_text(stmt, 0);
        *tval = t ? strdup((const char *)t) : NULL;
      }
      result = 1;
    } else if (rc == SQLITE_DONE) {
      result = 0;
    }
  }
  if (result < 0 && strstr(sqlite3_errmsg(db), "no such table") == NULL)
    fprintf(stderr, "harness: sql `%s`: %s\n", sql, sqlite3_errmsg(db));
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return result;
}

int64_t tb_h_sql_int(const tb_h_t *h, const char *fmt, ...) {
  char *sql = NULL;
  va_list ap;
  va_start(ap, fmt);
  int n = vasprintf(&sql, fmt, ap);
  va_end(ap);
  if (n < 0) return -1;
  int64_t v = -1;
  int got = query_first(h, sql, &v, NULL);
  free(sql);
  return got == 1 ? v : -1;
}

char *tb_h_sql_text(const tb_h_t *h, const char *fmt, ...) {
  char *sql = NULL;
  va_list ap;
  va_start(ap, fmt);
  int n = vasprintf(&sql, fmt, ap);
  va_end(ap);
  if (n < 0) return NULL;
  char *t = NULL;
  if (query_first(h, sql, NULL, &t) != 1) t = NULL;
  free(sql);
  return t;
}

int64_t tb_h_wait_sql(const tb_h_t *h, int64_t min, int timeout_ms, const char *fmt, ...) {
  char *sql = NULL;
  va_list ap;
  va_start(ap, fmt);
  int n = vasprintf(&sql, fmt, ap);
  va_end(ap);
  if (n < 0) return -1;
  int64_t deadline = tb_h_now_ms() + timeout_ms, v = -1;
  for (;;) {
    v = -1;
    if (query_first(h, sql, &v, NULL) != 1) v = -1;
    if (v >= min) break;
    int died = bg_child_died();
    if (died || tb_h_now_ms() > deadline) {
      fprintf(stderr, "harness: `%s` = %lld after %d ms, wanted >= %lld\n", sql, (long long)v,
              timeout_ms, (long long)min);
      tb_h_dump_logs(h, 25);
      break;
    }
    tb_h_sleep_ms(10);
  }
  free(sql);
  return v;
}

/* ---------------------------------------------------------------- raw NATS */

jsCtx *tb_h_js(tb_h_t *h) {
  if (h->js != NULL) return h->js;
  natsOptions *opts = NULL;
  natsStatus s = natsOptions_Create(&opts);
  if (s == NATS_OK) s = tb_bus_set_servers(opts, h->url); /* one server, or a cluster's list */
  if (s == NATS_OK) s = natsOptions_SetTimeout(opts, 2000);
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(opts, -1);
  if (s == NATS_OK) s = natsConnection_Connect(&h->nc, opts);
  natsOptions_Destroy(opts);
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = 5000;
  if (s == NATS_OK) s = natsConnection_JetStream(&h->js, h->nc, &jo);
  if (s != NATS_OK) {
    fprintf(stderr, "harness: connect to %s: %s\n", h->url, natsStatus_GetText(s));
    close_nats(h);
    return NULL;
  }
  return h->js;
}

int tb_h_publish_raw(tb_h_t *h, const char *subject, const char *msg_id, const void *data,
                     size_t len) {
  jsCtx *js = tb_h_js(h);
  if (js == NULL) return -1;
  natsMsg *m = NULL;
  jsPubAck *ack = NULL;
  jsErrCode jerr = 0;
  natsStatus s = natsMsg_Create(&m, subject, NULL, (const char *)data, (int)len);
  if (s == NATS_OK && msg_id != NULL) s = natsMsgHeader_Set(m, "Nats-Msg-Id", msg_id);
  if (s == NATS_OK) s = js_PublishMsg(&ack, js, m, NULL, &jerr);
  if (s != NATS_OK)
    fprintf(stderr, "harness: publish %s: %s (js error %d)\n", subject, natsStatus_GetText(s),
            (int)jerr);
  jsPubAck_Destroy(ack);
  natsMsg_Destroy(m);
  return s == NATS_OK ? 0 : -1;
}

int64_t tb_h_stream_msgs(tb_h_t *h, const char *stream) {
  jsCtx *js = tb_h_js(h);
  if (js == NULL) return -1;
  jsStreamInfo *si = NULL;
  jsErrCode jerr = 0;
  natsStatus s = js_GetStreamInfo(&si, js, stream, NULL, &jerr);
  if (s != NATS_OK) return -1;
  int64_t n = (int64_t)si->State.Msgs;
  jsStreamInfo_Destroy(si);
  return n;
}

char *tb_h_stream_leader(tb_h_t *h, const char *stream) {
  char *name = NULL;
  for (int64_t until = tb_h_now_ms() + 20000; name == NULL && tb_h_now_ms() < until;) {
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    jsCtx *js = tb_h_js(h);
    if (js != NULL && js_GetStreamInfo(&si, js, stream, NULL, &jerr) == NATS_OK && si->Cluster &&
        si->Cluster->Leader)
      name = strdup(si->Cluster->Leader);
    jsStreamInfo_Destroy(si);
    if (name == NULL) tb_h_sleep_ms(250);
  }
  return name;
}

tb_status tb_h_cluster_up(tb_h_t *h, tb_cluster_t *c) {
  tb_h_result_t r;
  char cdir[TB_H_PATH];
  tb_h_path(h, "cluster", cdir, sizeof(cdir));
  tb_h_tierbus_raw(h, &r, 60000, "cluster", "up", "--nodes", "3", "--dir", cdir, NULL);
  tb_status loaded = tb_cluster_load(c, cdir);
  for (int i = 0; loaded == TB_OK && i < c->n_nodes; i++) tb_h_track_pid(c->nodes[i].pid);
  int up = r.status == 0 && r.out != NULL && strstr(r.out, "3 nodes up, JetStream ready") != NULL;
  if (!up || loaded != TB_OK || c->n_nodes != 3)
    fprintf(stderr, "cluster up: exit %d, %d node(s) read back\n%s%s\n", r.status,
            loaded == TB_OK ? c->n_nodes : 0, r.out ? r.out : "", r.err ? r.err : "");
  tb_h_result_free(&r);
  if (!up || loaded != TB_OK || c->n_nodes != 3) return TB_ERR_IO;
  tb_cluster_url(c, h->url, sizeof(h->url));
  return TB_OK;
}

/* 1 when every subject of |c| starts with |prefix|. */
static int subjects_under(const jsStreamConfig *c, const char *prefix) {
  if (c == NULL || c->SubjectsLen < 1) return 0;
  for (int i = 0; i < c->SubjectsLen; i++)
    if (strncmp(c->Subjects[i], prefix, strlen(prefix)) != 0) return 0;
  return 1;
}

int64_t tb_h_tier_msgs(tb_h_t *h, const char *tier) {
  jsCtx *js = tb_h_js(h);
  if (js == NULL) return -1;
  char prefix[96];
  bprintf(prefix, sizeof(prefix), "tb.evt.%s.", tier);
  jsStreamInfoList *list = NULL;
  jsErrCode jerr = 0;
  natsStatus s = js_Streams(&list, js, NULL, &jerr);
  if (s != NATS_OK) {
    if (s != NATS_NOT_FOUND) /* no stream at all */
      fprintf(stderr, "harness: stream list: %s (js error %d)\n", natsStatus_GetText(s), (int)jerr);
    return -1;
  }
  int64_t n = 0;
  int streams = 0;
  for (int i = 0; i < list->Count; i++) {
    if (!subjects_under(list->List[i]->Config, prefix)) continue;
    n += (int64_t)list->List[i]->State.Msgs;
    streams++;
  }
  jsStreamInfoList_Destroy(list);
  return streams > 0 ? n : -1;
}

int64_t tb_h_all_tier_msgs(tb_h_t *h) {
  static const char *const tiers[] = {"critical", "high", "normal", "low", "background"};
  int64_t sum = 0;
  for (size_t i = 0; i < sizeof(tiers) / sizeof(tiers[0]); i++) {
    int64_t n = tb_h_tier_msgs(h, tiers[i]);
    if (n > 0) sum += n;
  }
  return sum;
}

int tb_h_wait_settled(tb_h_t *h, int timeout_ms, int64_t *msgs, int64_t *done, int64_t *outbox) {
  int64_t deadline = tb_h_now_ms() + timeout_ms;
  for (;;) {
    int64_t before = tb_h_sql_int(h, "SELECT count(*) FROM outbox");
    *msgs = tb_h_all_tier_msgs(h);
    *done = tb_h_sql_int(h, "SELECT count(*) FROM processed");
    *outbox = tb_h_sql_int(h, "SELECT count(*) FROM outbox");
    if (before == 0 && *outbox == 0 && *done == *msgs && tb_h_all_tier_msgs(h) == *msgs) return 1;
    if (tb_h_now_ms() > deadline) return 0;
    tb_h_sleep_ms(50);
  }
}

int64_t tb_h_wait_stream(tb_h_t *h, const char *stream, int64_t min, int timeout_ms) {
  int64_t deadline = tb_h_now_ms() + timeout_ms, n = -1;
  for (;;) {
    n = tb_h_stream_msgs(h, stream);
    if (n >= min) break;
    int died = bg_child_died();
    if (died || tb_h_now_ms() > deadline) {
      fprintf(stderr, "harness: stream %s holds %lld messages after %d ms, wanted >= %lld\n",
              stream, (long long)n, timeout_ms, (long long)min);
      tb_h_dump_logs(h, 25);
      break;
    }
    tb_h_sleep_ms(10);
  }
  return n;
}

int tb_h_consumer_info(tb_h_t *h, const char *stream, const char *consumer, uint64_t *delivered,
                       uint64_t *pending, int64_t *ack_pending) {
  jsCtx *js = tb_h_js(h);
  if (js == NULL) return -1;
  jsConsumerInfoList *list = NULL;
  jsConsumerInfo *one = NULL;
  jsErrCode jerr = 0;
  natsStatus s = consumer != NULL ? js_GetConsumerInfo(&one, js, stream, consumer, NULL, &jerr)
                                  : js_Consumers(&list, js, stream, NULL, &jerr);
  if (s != NATS_OK) {
    fprintf(stderr, "harness: consumer %s on %s: %s (js error %d)\n", consumer ? consumer : "*",
            stream, natsStatus_GetText(s), (int)jerr);
    return -1;
  }
  jsConsumerInfo **infos = one != NULL ? &one : list->List;
  int n = one != NULL ? 1 : list->Count;
  uint64_t d = 0, p = 0;
  int64_t a = 0;
  for (int i = 0; i < n; i++) {
    d += infos[i]->Delivered.Consumer;
    p += infos[i]->NumPending;
    a += infos[i]->NumAckPending;
  }
  if (delivered) *delivered = d;
  if (pending) *pending = p;
  if (ack_pending) *ack_pending = a;
  jsConsumerInfo_Destroy(one);
  jsConsumerInfoList_Destroy(list);
  return 0;
}

natsMsg *tb_h_stream_get(tb_h_t *h, const char *stream, uint64_t seq) {
  jsCtx *js = tb_h_js(h);
  if (js == NULL) return NULL;
  natsMsg *m = NULL;
  jsErrCode jerr = 0;
  if (js_GetMsg(&m, js, stream, seq, NULL, &jerr) != NATS_OK) return NULL;
  return m;
}

const char *tb_h_header(natsMsg *m, const char *key) {
  const char *v = NULL;
  if (m == NULL || natsMsgHeader_Get(m, key, &v) != NATS_OK || v == NULL) return "";
  return v;
}

/* ---------------------------------------------------------------- config */

char *tb_h_event_tiers_yaml(const tb_h_t *h, const char *tier) {
  char path[TB_H_PATH];
  bprintf(path, sizeof(path), "%s/subjects/catalogue.json", h->source_dir);
  json_error_t jerr;
  json_t *root = json_load_file(path, 0, &jerr);
  if (root == NULL) {
    fprintf(stderr, "harness: %s:%d: %s\n", path, jerr.line, jerr.text);
    return NULL;
  }
  char *out = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&out, &len);
  if (f == NULL) {
    json_decref(root);
    return NULL;
  }
  fprintf(f, "event_tiers:\n");
  size_t i;
  json_t *ev;
  json_array_foreach(json_object_get(root, "events"), i, ev) {
    const char *name = json_string_value(json_object_get(ev, "name"));
    if (name == NULL || strpbrk(name, "/.") != NULL) continue;
    fprintf(f, "  %s: %s\n", name, tier);
  }
  fclose(f);
  json_decref(root);
  return out;
}
