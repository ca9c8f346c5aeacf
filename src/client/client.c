/* The public publisher API of include/tierbus.h (libtierbus): the config, catalogue and bus
 * connection of `tierbus publish`, behind an opaque handle, for C services that publish events
 * without going through the CLI or the HTTP API. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/publish.h"
#include "bus/auth.h"
#include "bus/bus.h"
#include "codec/catalogue.h"
#include "config/config.h"
#include "core/status.h"
#include "tierbus.h"

struct tb_client {
  tb_config_t cfg;
  tb_catalogue_t *cat; /* owned */
  tb_bus_t *bus;       /* owned */
};

/* Loads the config the way every command does (file, environment, then the caller's
 * overrides), validates it and binds the catalogue's domains to it. */
static tb_status load(tb_client_t *c, const tb_client_opts_t *o) {
  tb_config_init(&c->cfg);
  const char *path = tb_config_default_path(o ? o->config_path : NULL);
  tb_status st = tb_config_load_file(&c->cfg, path);
  if (st == TB_OK) st = tb_config_apply_env(&c->cfg);
  if (st == TB_OK && o && o->nats_url) st = tb_config_set(&c->cfg, "nats_url", o->nats_url);
  if (st == TB_OK && o && o->data_dir) st = tb_config_set(&c->cfg, "data_dir", o->data_dir);
  if (st == TB_OK) st = tb_config_validate(&c->cfg);
  if (st != TB_OK) return tb__fail(TB_ERR_CONFIG, "config: %s", tb_errdetail());
  st = tb_catalogue_load(&c->cat);
  if (st != TB_OK) return st;
  const char *domains[TB_MAX_DOMAINS];
  int n = tb_catalogue_domains(c->cat, domains, TB_MAX_DOMAINS);
  return tb_config_set_domains(&c->cfg, domains, n);
}

tb_status tb_client_connect(tb_client_t **out, const tb_client_opts_t *opts) {
  tb_client_t *c = calloc(1, sizeof(*c));
  if (c == NULL) return tb__fail(TB_ERR_NOMEM, "tb_client_connect: out of memory");
  tb_bus_auth_t auth;
  tb_status st = load(c, opts);
  /* The same credentials as every command: configured ones, else the data directory's secret;
   * never a new secret (that is for the server `tierbus dev` starts). */
  if (st == TB_OK) st = tb_bus_auth_resolve(&c->cfg, 0, &auth);
  if (st == TB_OK) st = tb_bus_connect_auth(&c->bus, c->cfg.nats_url, "tierbus-client", &auth);
  memset(&auth, 0, sizeof(auth)); /* the secret lives no longer than it must */
  if (st != TB_OK) {
    tb_client_close(c);
    return st;
  }
  *out = c;
  return TB_OK;
}

tb_status tb_client_publish(tb_client_t *c, const tb_client_event_t *ev, tb_client_ack_t *ack) {
  if (c == NULL || ev == NULL || ev->type == NULL)
    return tb__fail(TB_ERR_INVALID, "tb_client_publish: no client, event or event type");
  json_error_t jerr;
  json_t *payload = json_loads(ev->payload_json ? ev->payload_json : "{}", 0, &jerr);
  if (payload == NULL)
    return tb__fail(TB_ERR_JSON, "%s: payload: bad JSON at column %d: %s", ev->type, jerr.column,
                    jerr.text);
  if (!json_is_object(payload)) {
    json_decref(payload);
    return tb__fail(TB_ERR_JSON, "%s: payload: expected a JSON object with the event's fields",
                    ev->type);
  }
  tb_publish_req_t req = {.event = ev->type,
                          .payload = payload,
                          .tier = ev->priority,
                          .id = ev->id,
                          .correlation_id = ev->correlation_id,
                          .source = "tierbus-client"};
  tb_prepared_t p;
  tb_status st = tb_publish_prepare(&c->cfg, c->cat, &req, &p);
  json_decref(payload);
  if (st != TB_OK) return st;
  uint64_t seq = 0;
  int dup = 0;
  st = tb_publish_send(c->bus, &p, &seq, &dup);
  if (st == TB_OK && ack != NULL) {
    memset(ack, 0, sizeof(*ack));
    snprintf(ack->id, sizeof(ack->id), "%s", p.id);
    snprintf(ack->tier, sizeof(ack->tier), "%s", p.tier);
    snprintf(ack->subject, sizeof(ack->subject), "%s", p.subject);
    ack->seq = seq;
    ack->duplicate = dup;
  }
  tb_prepared_free(&p);
  return st;
}

void tb_client_close(tb_client_t *c) {
  if (c == NULL) return;
  tb_bus_destroy(c->bus);
  tb_catalogue_destroy(c->cat);
  memset(&c->cfg, 0, sizeof(c->cfg)); /* it holds the NATS password or token */
  free(c);
}
