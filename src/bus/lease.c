/* Leases in a JetStream key-value bucket: compare-and-set on the revision, renewal by heartbeat,
 * takeover after the ttl on the contender's own clock (lease.h). */
#include "bus/lease.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/status.h"

struct tb_lease {
  kvStore *kv;
  char name[64], holder[128];
  char value[256]; /* this holder's value: {"holder":..., "ttl_ms":...} */
  int64_t ttl_ms;
  /* Held: the revision this holder wrote last, and until when (monotonic) it may act. */
  uint64_t rev;
  int64_t held_until_us;
  /* Not held: the other holder's revision last seen, and since when (monotonic). */
  uint64_t seen_rev;
  int64_t seen_since_us;
};

static int by_text(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int valid_name(const char *s) {
  if (s == NULL || *s == '\0' || strlen(s) >= 64) return 0;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
          *s == '-' || *s == '_' || *s == '.'))
      return 0;
  return 1;
}

tb_status tb_lease_open(tb_lease_t **out, tb_bus_t *bus, const tb_config_t *cfg, const char *name,
                        const char *holder, int64_t ttl_ms) {
  *out = NULL;
  if (!valid_name(name))
    return tb__fail(TB_ERR_INVALID, "lease name '%s': letters, digits, '-', '_' and '.' only",
                    name ? name : "");
  if (holder == NULL || *holder == '\0' || strlen(holder) >= 128)
    return tb__fail(TB_ERR_INVALID, "lease %s: a holder name of 1 to 127 characters", name);
  if (ttl_ms < 300)
    return tb__fail(TB_ERR_INVALID, "lease %s: ttl %lld ms (at least 300)", name,
                    (long long)ttl_ms);
  tb_lease_t *l = calloc(1, sizeof(*l));
  if (l == NULL) return tb__fail(TB_ERR_NOMEM, "lease");
  snprintf(l->name, sizeof(l->name), "%s", name);
  snprintf(l->holder, sizeof(l->holder), "%s", holder);
  l->ttl_ms = ttl_ms;
  json_t *v = json_pack("{s:s, s:I}", "holder", holder, "ttl_ms", (json_int_t)ttl_ms);
  char *text = v ? json_dumps(v, JSON_COMPACT) : NULL;
  json_decref(v);
  if (text == NULL || strlen(text) >= sizeof(l->value)) {
    free(text);
    free(l);
    return tb__fail(TB_ERR_NOMEM, "lease %s: value", name);
  }
  snprintf(l->value, sizeof(l->value), "%s", text);
  free(text);
  tb_status st = tb_bus_kv_open(&l->kv, bus, cfg, TB_BUS_KV_LEASES, 1);
  if (st != TB_OK) {
    free(l);
    return st;
  }
  *out = l;
  return TB_OK;
}

int tb_lease_held(const tb_lease_t *l) {
  return l != NULL && l->held_until_us > tb_mono_us();
}

/* Writes this holder's value over revision |last| (0: the key must not exist). On success the
 * deadline counts from |sent_us|, taken before the request went out, never from the answer.
 * Another writer's revision (the server refuses the compare-and-set) means not held: TB_OK. No
 * answer keeps a renewal's old deadline, since the write may have landed: the lease then runs out
 * on its own unless the next renewal gets through. */
static tb_status put(tb_lease_t *l, uint64_t last) {
  int64_t sent_us = tb_mono_us();
  uint64_t rev = 0;
  natsStatus s = last == 0
                     ? kvStore_Create(&rev, l->kv, l->name, l->value, (int)strlen(l->value))
                     : kvStore_Update(&rev, l->kv, l->name, l->value, (int)strlen(l->value), last);
  if (s == NATS_OK) {
    l->rev = rev;
    l->held_until_us = sent_us + (l->ttl_ms - l->ttl_ms / TB_LEASE_MARGIN_DIV) * 1000;
    return TB_OK;
  }
  if (s == NATS_ERR) { /* JetStream's "wrong last sequence": someone else wrote it */
    l->rev = 0;
    l->held_until_us = 0;
    return TB_OK;
  }
  return tb__nats_fail(s, 0, "write lease");
}

/* The holder named in |value| into |buf| ("" when free or unreadable), and its ttl into *ttl_ms
 * (may be NULL; 0 when unreadable). */
static void parse_value(const char *value, int len, char *buf, size_t cap, int64_t *ttl_ms) {
  buf[0] = '\0';
  if (ttl_ms != NULL) *ttl_ms = 0;
  if (value == NULL || len <= 0) return;
  json_error_t jerr;
  json_t *v = json_loadb(value, (size_t)len, 0, &jerr);
  const char *h = json_string_value(json_object_get(v, "holder"));
  if (h != NULL) snprintf(buf, cap, "%s", h);
  if (ttl_ms != NULL) *ttl_ms = (int64_t)json_integer_value(json_object_get(v, "ttl_ms"));
  json_decref(v);
}

tb_status tb_lease_tick(tb_lease_t *l, int *held) {
  int64_t now = tb_mono_us();
  tb_status st = TB_OK;
  if (l->rev != 0 && now < l->held_until_us) {
    st = put(l, l->rev); /* held: renew over our own revision */
  } else {
    l->rev = 0;
    l->held_until_us = 0;
    kvEntry *e = NULL;
    natsStatus s = kvStore_Get(&e, l->kv, l->name);
    if (s == NATS_NOT_FOUND) {
      st = put(l, 0);
    } else if (s != NATS_OK) {
      st = tb__nats_fail(s, 0, "read lease");
    } else {
      uint64_t rev = kvEntry_Revision(e);
      char who[128];
      parse_value(kvEntry_Value(e), kvEntry_ValueLen(e), who, sizeof(who), NULL);
      kvEntry_Destroy(e);
      if (who[0] == '\0' || strcmp(who, l->holder) == 0) {
        /* Free, or ours from before (this process lost its deadline but nobody took it). */
        st = put(l, rev);
      } else if (rev != l->seen_rev) {
        l->seen_rev = rev; /* its holder renewed: start watching again */
        l->seen_since_us = now;
      } else if (now - l->seen_since_us >= l->ttl_ms * 1000) {
        st = put(l, rev); /* unchanged for a whole ttl: lapsed */
      }
    }
  }
  if (held != NULL) *held = tb_lease_held(l);
  return st;
}

void tb_lease_release(tb_lease_t *l) {
  if (l == NULL || l->rev == 0) return;
  uint64_t rev = 0;
  (void)kvStore_UpdateString(&rev, l->kv, l->name, "", l->rev);
  l->rev = 0;
  l->held_until_us = 0;
}

void tb_lease_close(tb_lease_t *l) {
  if (l == NULL) return;
  tb_lease_release(l);
  kvStore_Destroy(l->kv);
  free(l);
}

/* How long a listing waits for the bucket's group to elect a leader. */
#define LEADERLESS_WAIT_MS 10000

/* The keys of |bucket|, sorted, from the stream's per-subject state. kvStore_Keys would start an
 * ordered consumer, which the server may place on a peer that is down: with one node of three
 * killed it timed out now and then, where the stream's leader answers this at once. Caller frees
 * *keys (each key and the array); none when the bucket does not exist yet. */
static tb_status bucket_keys(tb_bus_t *bus, const char *bucket, char ***keys, int *n) {
  *keys = NULL;
  *n = 0;
  char stream[96], filter[96];
  snprintf(stream, sizeof(stream), "KV_%s", bucket);
  snprintf(filter, sizeof(filter), "$KV.%s.>", bucket);
  jsOptions o;
  jsOptions_Init(&o);
  o.Stream.Info.SubjectsFilter = filter;
  jsStreamInfo *si = NULL;
  jsErrCode jerr = 0;
  natsStatus s;
  /* While the bucket's group has no leader (an election after a lost node), nats-server 2.9 lets
   * any member answer with its own state, which may lag: such an answer names no leader, and is
   * asked again until one is elected. */
  for (int64_t until = tb_mono_us() + LEADERLESS_WAIT_MS * 1000;;) {
    s = js_GetStreamInfo(&si, tb_bus_js(bus), stream, &o, &jerr);
    int leaderless = s == NATS_OK && si->Cluster != NULL &&
                     (si->Cluster->Leader == NULL || si->Cluster->Leader[0] == '\0');
    if (!leaderless) break;
    jsStreamInfo_Destroy(si);
    si = NULL;
    if (tb_mono_us() >= until)
      return tb__fail(TB_ERR_UNAVAILABLE,
                      "list leases: stream %s has no leader yet (an election after a lost node?); "
                      "ask again in a few seconds",
                      stream);
    tb_sleep_us(250000);
  }
  if (tb_bus_js_missing(s, jerr)) return TB_OK; /* no bucket yet: no lease */
  if (s != NATS_OK) return tb__nats_fail(s, jerr, "list leases");
  const jsStreamStateSubjects *subs = si->State.Subjects;
  int count = subs ? subs->Count : 0;
  char **out = count > 0 ? calloc((size_t)count, sizeof(*out)) : NULL;
  size_t skip = strlen(filter) - 1; /* "$KV.<bucket>." */
  for (int i = 0; out != NULL && i < count; i++) {
    out[*n] = strdup(subs->List[i].Subject + skip);
    if (out[*n] != NULL) (*n)++;
  }
  jsStreamInfo_Destroy(si);
  if (count > 0 && out == NULL) return tb__fail(TB_ERR_NOMEM, "lease list");
  if (*n > 1) qsort(out, (size_t)*n, sizeof(*out), by_text); /* out is NULL when empty */
  *keys = out;
  return TB_OK;
}

/* Reads |key|'s last value into |li| from the bucket's stream leader, the one that just listed the
 * key. kvStore_Get would ask any replica (the bucket allows direct gets), and right after a node
 * died a replica still catching up answered "not found" for a lease that was there, so a listing
 * showed none. *found is 0 when the key was deleted or purged since the listing; any other failure
 * is returned, never taken for an absent lease. */
static tb_status read_last(tb_bus_t *bus, const char *bucket, const char *key, tb_lease_info_t *li,
                           int64_t now_ns, int *found) {
  char stream[96], subject[192];
  snprintf(stream, sizeof(stream), "KV_%s", bucket);
  snprintf(subject, sizeof(subject), "$KV.%s.%s", bucket, key);
  natsMsg *m = NULL;
  jsErrCode jerr = 0;
  natsStatus s = js_GetLastMsg(&m, tb_bus_js(bus), stream, subject, NULL, &jerr);
  *found = 0;
  if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr) return TB_OK;
  if (s != NATS_OK) {
    char what[160];
    snprintf(what, sizeof(what), "read lease %s", key);
    return tb__nats_fail(s, jerr, what);
  }
  const char *op = NULL;
  if (natsMsgHeader_Get(m, "KV-Operation", &op) == NATS_OK && op != NULL &&
      (strcmp(op, "DEL") == 0 || strcmp(op, "PURGE") == 0)) {
    natsMsg_Destroy(m);
    return TB_OK;
  }
  memset(li, 0, sizeof(*li));
  snprintf(li->name, sizeof(li->name), "%s", key);
  parse_value(natsMsg_GetData(m), natsMsg_GetDataLength(m), li->holder, sizeof(li->holder),
              &li->ttl_ms);
  li->revision = natsMsg_GetSequence(m);
  li->age_ms = (now_ns - natsMsg_GetTime(m)) / 1000000;
  natsMsg_Destroy(m);
  *found = 1;
  return TB_OK;
}

tb_status tb_lease_list(tb_bus_t *bus, const tb_config_t *cfg, tb_lease_info_t *out, int cap,
                        int *n) {
  *n = 0;
  char bucket[64];
  snprintf(bucket, sizeof(bucket), "%s_%s", cfg->stream_prefix, TB_BUS_KV_LEASES);
  char **keys = NULL;
  int n_keys = 0;
  tb_status st = bucket_keys(bus, bucket, &keys, &n_keys);
  int64_t now_ns = tb_wall_us() * 1000;
  for (int i = 0; st == TB_OK && i < n_keys && *n < cap; i++) {
    tb_lease_info_t *li = &out[*n];
    int found = 0;
    st = read_last(bus, bucket, keys[i], li, now_ns, &found);
    if (st == TB_OK && found) (*n)++;
  }
  for (int i = 0; i < n_keys; i++) free(keys[i]);
  free(keys);
  return st;
}
