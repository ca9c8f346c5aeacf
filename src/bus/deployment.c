/* The server side of deployment ownership: a key-value bucket holding one id. */
#include "bus/deployment.h"

#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "core/clock.h"
#include "core/status.h"

#define KEY "id"

static tb_status open_bucket(kvStore **out, tb_bus_t *bus, const tb_config_t *cfg) {
  /* Read first by every process that starts: it may start while a cluster elects leaders. */
  char stream[96];
  snprintf(stream, sizeof(stream), "KV_%s_%s", cfg->stream_prefix, TB_BUS_KV_DEPLOYMENT);
  tb_bus_await_stream(bus, stream);
  return tb_bus_kv_open(out, bus, cfg, TB_BUS_KV_DEPLOYMENT, 1);
}

static tb_status read_id(kvStore *kv, char *id, size_t cap, int *found) {
  kvEntry *e = NULL;
  natsStatus s = kvStore_Get(&e, kv, KEY);
  *found = 0;
  id[0] = '\0';
  if (s == NATS_NOT_FOUND) return TB_OK;
  if (s != NATS_OK) return tb__nats_fail(s, 0, "read the deployment id");
  snprintf(id, cap, "%s", kvEntry_ValueString(e));
  *found = id[0] != '\0';
  kvEntry_Destroy(e);
  return TB_OK;
}

tb_status tb_bus_deployment_get(tb_bus_t *bus, const tb_config_t *cfg, char *id, size_t cap,
                                int *found) {
  kvStore *kv = NULL;
  tb_status st = open_bucket(&kv, bus, cfg);
  if (st == TB_OK) st = read_id(kv, id, cap, found);
  kvStore_Destroy(kv);
  return st;
}

tb_status tb_bus_deployment_claim(tb_bus_t *bus, const tb_config_t *cfg, const char *id, char *have,
                                  size_t cap) {
  kvStore *kv = NULL;
  tb_status st = open_bucket(&kv, bus, cfg);
  if (st == TB_OK) {
    /* Create fails when the key exists: then the id read back is the one that won. */
    uint64_t rev = 0;
    (void)kvStore_Create(&rev, kv, KEY, id, (int)strlen(id));
    int found = 0;
    st = read_id(kv, have, cap, &found);
    if (st == TB_OK && !found)
      st = tb__fail(TB_ERR_NATS, "deployment id: written, but not found when read back");
  }
  kvStore_Destroy(kv);
  return st;
}

tb_status tb_bus_acked_history(tb_bus_t *bus, const tb_config_t *cfg, uint64_t *acked) {
  *acked = 0;
  for (int t = 0; t < cfg->n_tiers; t++)
    for (int d = 0; d < cfg->n_domains; d++) {
      char stream[64], durable[64];
      tb_bus_stream_name(cfg, cfg->tiers[t].name, cfg->domains[d], stream, sizeof(stream));
      tb_bus_consumer_name(cfg->tiers[t].name, cfg->domains[d], durable, sizeof(durable));
      jsConsumerInfo *ci = NULL;
      jsErrCode jerr = 0;
      natsStatus s = js_GetConsumerInfo(&ci, tb_bus_js(bus), stream, durable, NULL, &jerr);
      if (tb_bus_js_missing(s, jerr)) continue; /* not provisioned yet: no history */
      if (s != NATS_OK) {
        char what[160];
        snprintf(what, sizeof(what), "consumer info %s on %s", durable, stream);
        return tb__nats_fail(s, jerr, what);
      }
      *acked += ci->AckFloor.Consumer;
      jsConsumerInfo_Destroy(ci);
    }
  return TB_OK;
}

void tb_deployment_new_id(char *buf, size_t cap) {
  unsigned char r[12];
  if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
    uint64_t t = (uint64_t)tb_wall_us() ^ (uint64_t)tb_mono_us() << 20;
    for (size_t i = 0; i < sizeof(r); i++)
      r[i] = (unsigned char)(t >> (i % 8 * 8)) ^ (unsigned char)i;
  }
  int off = snprintf(buf, cap, "dep-");
  for (size_t i = 0; i < sizeof(r) && off + 2 < (int)cap; i++)
    off += snprintf(buf + off, cap - (size_t)off, "%02x", r[i]);
}
