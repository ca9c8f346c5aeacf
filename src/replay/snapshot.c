/* Snapshots: the stream positions read before the copy, the snapshot directory with its lock and
 * its pruning, and the periodic thread. See snapshot.h for the contracts. */
#define _GNU_SOURCE
#include "replay/snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "core/bgthread.h"
#include "core/clock.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/status.h"

/* snapshot-20261205T101502.123Z.db: UTC to the millisecond, so that names sort in time order and
 * two snapshots a second apart never share one. */
#define NAME_PREFIX "snapshot-"
#define NAME_LEN (sizeof("snapshot-20261205T101502.123Z.db") - 1)
/* The periodic copy: 2 MiB (with 4 KiB pages) per step, then a pause, at a lower priority. */
#define PERIODIC_STEP_PAGES 512
#define PERIODIC_PAUSE_MS 2
/* A tick this close to its due time takes the snapshot rather than sleeping the rest. */
#define DUE_SLACK_MS 500
/* After a failure (NATS away, disk full) the next attempt comes this soon, or an interval later
 * if that is sooner. */
#define RETRY_MS 60000

tb_status tb_snapshot_dir(const tb_config_t *cfg, char *buf, size_t cap) {
  if ((size_t)snprintf(buf, cap, "%s/snapshots", cfg->data_dir) >= cap)
    return tb__fail(TB_ERR_INVALID, "snapshots: data_dir '%.64s...' is too long", cfg->data_dir);
  return TB_OK;
}

/* The time of snapshot file |name| in wall-clock ms, or -1 when |name| is not one. */
static int64_t name_time_ms(const char *name) {
  if (strlen(name) != NAME_LEN || strncmp(name, NAME_PREFIX, strlen(NAME_PREFIX)) != 0 ||
      strcmp(name + NAME_LEN - 4, "Z.db") != 0)
    return -1;
  struct tm tm = {0};
  int ms = 0, used = 0;
  if (sscanf(name + strlen(NAME_PREFIX), "%4d%2d%2dT%2d%2d%2d.%3d%n", &tm.tm_year, &tm.tm_mon,
             &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms, &used) != 7 ||
      used != (int)(NAME_LEN - strlen(NAME_PREFIX) - 4))
    return -1;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  time_t t = timegm(&tm);
  return t < 0 ? -1 : (int64_t)t * 1000 + ms;
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The snapshot files of |dir| in time order (oldest first) into *names (caller frees each and
 * the array), and *parts, when not NULL, likewise for the <name>.part files a crash left. A
 * directory that does not exist holds none. TB_ERR_IO / TB_ERR_NOMEM otherwise. */
static tb_status list_dir(const char *dir, char ***names, int *n, char ***parts, int *n_parts) {
  *names = NULL;
  *n = 0;
  if (parts != NULL) {
    *parts = NULL;
    *n_parts = 0;
  }
  DIR *d = opendir(dir);
  if (d == NULL) {
    if (errno == ENOENT) return TB_OK;
    return tb__fail(TB_ERR_IO, "snapshots: open %s: %s", dir, strerror(errno));
  }
  tb_status s = TB_OK;
  int cap = 0, pcap = 0;
  struct dirent *e;
  while (s == TB_OK && (e = readdir(d)) != NULL) {
    size_t len = strlen(e->d_name);
    int is_part =
        parts != NULL && len == NAME_LEN + 5 && strcmp(e->d_name + NAME_LEN, ".part") == 0;
    char base[NAME_LEN + 1] = "";
    if (is_part) memcpy(base, e->d_name, NAME_LEN); /* the snapshot's name without ".part" */
    if (name_time_ms(is_part ? base : e->d_name) < 0) continue;
    char ***list = is_part ? parts : names;
    int *count = is_part ? n_parts : n, *lcap = is_part ? &pcap : &cap;
    if (*count == *lcap) {
      int grown_cap = *lcap ? *lcap * 2 : 16;
      char **grown = realloc(*list, (size_t)grown_cap * sizeof(**list));
      if (grown == NULL) {
        s = tb__fail(TB_ERR_NOMEM, "snapshots: listing %s", dir);
        break;
      }
      *list = grown;
      *lcap = grown_cap;
    }
    if (((*list)[*count] = strdup(e->d_name)) == NULL)
      s = tb__fail(TB_ERR_NOMEM, "snapshots: listing %s", dir);
    else
      (*count)++;
  }
  closedir(d);
  if (*n > 1) qsort(*names, (size_t)*n, sizeof(**names), cmp_names);
  return s;
}

static void free_names(char **names, int n) {
  for (int i = 0; i < n; i++) free(names[i]);
  free(names);
}

tb_status tb_snapshot_latest(const tb_config_t *cfg, char *path, size_t cap, int64_t *at_ms) {
  char dir[PATH_MAX];
  char **names = NULL;
  int n = 0;
  tb_status s = tb_snapshot_dir(cfg, dir, sizeof(dir));
  if (s == TB_OK) s = list_dir(dir, &names, &n, NULL, NULL);
  if (s == TB_OK && n == 0) s = tb__fail(TB_ERR_NOT_FOUND, "no snapshot in %s", dir);
  if (s == TB_OK) {
    snprintf(path, cap, "%s/%s", dir, names[n - 1]);
    if (at_ms != NULL) *at_ms = name_time_ms(names[n - 1]);
  }
  free_names(names, n);
  return s;
}

tb_status tb_snapshot_take(tb_bus_t *bus, const tb_config_t *cfg, const char *path,
                           const tb_snapshot_pace_t *pace, int *n_pos) {
  int n = cfg->n_tiers * cfg->n_domains;
  tb_snapshot_pos_t *pos = calloc(n > 0 ? (size_t)n : 1, sizeof(*pos));
  if (pos == NULL) return tb__fail(TB_ERR_NOMEM, "snapshot: %d stream positions", n);
  tb_status s = TB_OK;
  for (int i = 0; s == TB_OK && i < n; i++) {
    uint64_t floor = 0;
    s = tb_consumer_ack_floor(bus, cfg, cfg->tiers[i / cfg->n_domains].name,
                              cfg->domains[i % cfg->n_domains], pos[i].stream,
                              sizeof(pos[i].stream), &floor);
    pos[i].next_seq = floor + 1;
  }
  if (s == TB_OK) s = tb_store_snapshot(cfg->db_path, path, pos, n, pace);
  free(pos);
  if (s == TB_OK && n_pos != NULL) *n_pos = n;
  return s;
}

/* Deletes all but the newest |keep| snapshots of |dir| and every .part file (the caller holds the
 * directory's lock, so none is being written). Returns how many snapshots it deleted. */
static int prune(const char *dir, int keep) {
  char **names = NULL, **parts = NULL;
  int n = 0, n_parts = 0, deleted = 0;
  if (list_dir(dir, &names, &n, &parts, &n_parts) != TB_OK) return 0; /* pruned next time */
  char path[PATH_MAX + NAME_LEN + 8];
  for (int i = 0; i < n - keep; i++) {
    snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
    if (unlink(path) == 0) deleted++;
  }
  for (int i = 0; i < n_parts; i++) {
    snprintf(path, sizeof(path), "%s/%s", dir, parts[i]);
    unlink(path);
  }
  free_names(names, n);
  free_names(parts, n_parts);
  return deleted;
}

tb_status tb_snapshot_take_dir(tb_bus_t *bus, const tb_config_t *cfg, int64_t min_age_ms,
                               const tb_snapshot_pace_t *pace, char *path, size_t cap,
                               int *pruned) {
  char dir[PATH_MAX], lock[PATH_MAX + 8];
  path[0] = '\0';
  tb_status s = tb_snapshot_dir(cfg, dir, sizeof(dir));
  if (s != TB_OK) return s;
  snprintf(lock, sizeof(lock), "%s/.lock", dir);
  tb_mkdirs(dir, 1);
  int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return tb__fail(TB_ERR_IO, "snapshots: %s: %s", lock, strerror(errno));
  /* Held until the close below; the kernel drops it with a process that dies holding it. */
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    close(fd);
    if (err == EWOULDBLOCK)
      return tb__fail(TB_ERR_BUSY, "snapshots: another process is taking one in %s", dir);
    return tb__fail(TB_ERR_IO, "snapshots: lock %s: %s", lock, strerror(err));
  }
  int64_t now_ms = tb_wall_us() / 1000, newest_ms = 0;
  char newest[PATH_MAX];
  if (min_age_ms > 0 && tb_snapshot_latest(cfg, newest, sizeof(newest), &newest_ms) == TB_OK &&
      newest_ms <= now_ms && now_ms - newest_ms < min_age_ms) {
    close(fd);
    return TB_OK; /* taken by another process since the caller looked */
  }
  time_t secs = (time_t)(now_ms / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char name[NAME_LEN + 16];
  if ((size_t)snprintf(name, sizeof(name), NAME_PREFIX "%04d%02d%02dT%02d%02d%02d.%03dZ.db",
                       tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                       tm.tm_sec, (int)(now_ms % 1000)) != NAME_LEN)
    s = tb__fail(TB_ERR_INVALID, "snapshots: the clock's year %d has no name", tm.tm_year + 1900);
  if (s == TB_OK && (size_t)snprintf(path, cap, "%s/%s", dir, name) >= cap)
    s = tb__fail(TB_ERR_INVALID, "snapshots: path %s/%s is too long", dir, name);
  if (s == TB_OK) s = tb_snapshot_take(bus, cfg, path, pace, NULL);
  int deleted = s == TB_OK ? prune(dir, cfg->snapshot_keep) : 0;
  close(fd);
  if (s != TB_OK) path[0] = '\0';
  if (pruned != NULL) *pruned = deleted;
  return s;
}

/* ------------------------------------------------------------------------------------------------
 * The periodic thread
 * --------------------------------------------------------------------------------------------- */

struct tb_snapshotter {
  const tb_config_t *cfg; /* borrowed */
  tb_bus_t *bus;          /* borrowed */
  tb_bgthread_t *thread;  /* owned */
  atomic_int stop;        /* set by tb_snapshotter_stop: the copy under way gives up */
  tb_snapshot_pace_t pace;
  int64_t started_ms; /* wall clock: the first snapshot's base when the directory has none */
};

static int64_t snapshot_tick(void *arg, int stopping) {
  tb_snapshotter_t *s = arg;
  (void)stopping;
  const int64_t interval = s->cfg->snapshot_interval_ms;
  int64_t now = tb_wall_us() / 1000, newest = 0;
  char path[PATH_MAX + NAME_LEN + 8];
  if (tb_snapshot_latest(s->cfg, path, sizeof(path), &newest) != TB_OK) newest = 0;
  /* A snapshot "from the future" (the clock was set back) counts as taken now. */
  int64_t base = newest > now ? now : newest > 0 ? newest : s->started_ms;
  if (base + interval - now > DUE_SLACK_MS) return base + interval - now;
  int64_t t0 = tb_mono_us();
  int pruned = 0;
  tb_status st = tb_snapshot_take_dir(s->bus, s->cfg, interval - DUE_SLACK_MS, &s->pace, path,
                                      sizeof(path), &pruned);
  if (st == TB_OK && path[0] != '\0') {
    TB_LOG(TB_LOG_INFO, "snapshot",
           "snapshot %s taken in %.2f s (%d stream positions); %d older deleted, %d kept", path,
           (double)(tb_mono_us() - t0) / 1e6, s->cfg->n_tiers * s->cfg->n_domains, pruned,
           s->cfg->snapshot_keep);
    return interval;
  }
  if (st == TB_OK) return 0;          /* another process took it: the next tick waits from there */
  if (st == TB_ERR_BUSY) return 1000; /* another process is taking it */
  if (st == TB_ERR_STOPPED) return TB_BGTHREAD_PERIODIC; /* the loop ends anyway */
  int64_t retry = interval < RETRY_MS ? interval : RETRY_MS;
  TB_LOG(TB_LOG_WARN, "snapshot", "snapshot failed, trying again in %lld s: %s: %s",
         (long long)(retry / 1000), tb_strerror(st), tb_errdetail());
  return retry;
}

tb_status tb_snapshotter_start(tb_snapshotter_t **out, const tb_config_t *cfg, tb_bus_t *bus) {
  if (cfg->snapshot_interval_ms <= 0)
    return tb__fail(TB_ERR_INVALID, "snapshots: snapshot_interval is 0 (off)");
  tb_snapshotter_t *s = calloc(1, sizeof(*s));
  if (s == NULL) return tb__fail(TB_ERR_NOMEM, "snapshots: thread state");
  s->cfg = cfg;
  s->bus = bus;
  atomic_init(&s->stop, 0);
  s->pace = (tb_snapshot_pace_t){
      .step_pages = PERIODIC_STEP_PAGES, .pause_ms = PERIODIC_PAUSE_MS, .stop = &s->stop};
  s->started_ms = tb_wall_us() / 1000;
  /* Copying pages can wait; the dispatcher's threads cannot (as the checkpointer). */
  tb_status st =
      tb_bgthread_start(&s->thread, &(tb_bgthread_opts_t){.name = "snapshots",
                                                          .tick = snapshot_tick,
                                                          .arg = s,
                                                          .interval_ms = cfg->snapshot_interval_ms,
                                                          .nice = 10});
  if (st != TB_OK) {
    free(s);
    return st;
  }
  *out = s;
  return TB_OK;
}

void tb_snapshotter_stop(tb_snapshotter_t *s) {
  if (s == NULL) return;
  atomic_store(&s->stop, 1);
  tb_bgthread_stop(s->thread);
  free(s);
}
