/* The HTTP API's dead-letter routes: the entries with `tierbus dlq list`'s filters, and the
 * replay of one entry (api/dlq.h, which `tierbus dlq replay` calls too). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/dlq.h"
#include "core/clock.h"
#include "core/status.h"
#include "http/internal.h"

#define LIST_DEFAULT 100
#define LIST_MAX 1000

typedef struct list_ctx {
  json_t *arr;
  int oom;
} list_ctx_t;

static int add_entry(void *arg, const tb_dlq_entry_t *e) {
  list_ctx_t *lc = arg;
  json_t *v = tb_dlq_entry_json(e, 0);
  if (v == NULL || json_array_append_new(lc->arr, v) != 0) lc->oom = 1;
  return lc->oom;
}

/* GET /api/dlq?reason=&tier=&since=&limit=: the entries, oldest first, as `dlq list --json`;
 * since is RFC 3339 or an age (2h), limit defaults to 100 (at most 1000). */
void tb__http_get_dlq(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp) {
  static const char *const allowed[] = {"reason", "tier", "since", "limit", NULL};
  if (tb__http_args_check(req, resp, allowed) != 0) return;
  tb_dlq_filter_t f = {.reason_class = tb__http_arg(req, "reason"),
                       .tier = tb__http_arg(req, "tier")};
  const char *since = tb__http_arg(req, "since");
  if (tb__http_arg_int(req, resp, "limit", 1, LIST_MAX, LIST_DEFAULT, &f.limit) != 0) return;
  if (f.reason_class != NULL && tb_dlq_class_parse(f.reason_class) < 0) {
    char names[256];
    tb_dlq_class_list(names, sizeof(names));
    tb__http_error(resp, 400, "reason", "reason: unknown reason '%.64s' (%s)", f.reason_class,
                   names);
    return;
  }
  int ti = f.tier != NULL ? tb_config_tier_index(h->o.cfg, f.tier) : -1;
  if (f.tier != NULL && ti < 0) {
    tb__http_error(resp, 400, "tier", "tier: unknown tier '%.64s'", f.tier);
    return;
  }
  if (ti >= 0) f.tier = h->o.cfg->tiers[ti].name; /* an alias or a job priority number */
  if (since != NULL && tb_time_parse_us(since, tb_wall_us(), &f.since_us) != TB_OK) {
    tb__http_error(resp, 400, "since", "since: %s", tb_errdetail());
    return;
  }
  list_ctx_t lc = {.arr = json_array()};
  pthread_mutex_lock(&h->store_mu);
  tb_status st = lc.arr ? tb_store_dlq_list(h->o.store, &f, add_entry, &lc)
                        : tb__fail(TB_ERR_NOMEM, "dead letters");
  pthread_mutex_unlock(&h->store_mu);
  if (st == TB_OK && lc.oom) st = tb__fail(TB_ERR_NOMEM, "dead letters");
  if (st != TB_OK) {
    json_decref(lc.arr);
    tb__http_fail(resp, st, NULL, "listing dead letters");
    return;
  }
  tb__http_json(
      resp, 200,
      json_pack("{s:I,s:o}", "count", (json_int_t)json_array_size(lc.arr), "entries", lc.arr));
}

void tb__http_dlq_replay(tb_http_t *h, const char *key, const char *tier, const char *not_found,
                         tb_http_resp_t *resp) {
  tb_dlq_replay_result_t r;
  pthread_mutex_lock(&h->store_mu);
  tb_status st = tb_dlq_replay(h->o.bus, h->o.store, h->o.cfg, key, tier, &r);
  pthread_mutex_unlock(&h->store_mu);
  if (st == TB_ERR_NOT_FOUND && not_found != NULL)
    tb__http_error(resp, 404, NULL, "%s", not_found);
  else if (st == TB_ERR_INVALID && tier == NULL) /* the entry's own tier left the config */
    tb__http_error(resp, 409, NULL, "cannot replay: %s", tb_errdetail());
  else if (st != TB_OK)
    tb__http_fail(resp, st, "priority", "replay");
  else if (r.outcome == TB_DLQ_SKIPPED)
    tb__http_error(resp, 409, NULL,
                   "cannot replay dead letter %lld: %s cannot apply unchanged (the same bytes "
                   "would fail again)",
                   (long long)r.no, r.reason_class);
  else if (r.outcome == TB_DLQ_ALREADY_APPLIED)
    tb__http_json(resp, 200,
                  json_pack("{s:s,s:s,s:I,s:s}", "id", r.msg_id, "kind", "dead_letter", "no",
                            (json_int_t)r.no, "outcome", "already_applied"));
  else
    tb__http_json(resp, 202,
                  json_pack("{s:s,s:s,s:I,s:s,s:s,s:s,s:I,s:I,s:b}", "id", r.msg_id, "kind",
                            "dead_letter", "no", (json_int_t)r.no, "outcome", "replayed", "tier",
                            r.tier, "subject", r.subject, "round", (json_int_t)r.round,
                            "stream_seq", (json_int_t)r.seq, "duplicate", r.duplicate));
  tb_dlq_replay_result_clear(&r);
}

/* POST /api/dlq/{id}/replay {priority?}: 202 with where the copy went, 200 when an earlier
 * replay already applied it, 404 for no entry, 409 for an entry that cannot apply unchanged. */
void tb__http_post_dlq_replay(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp) {
  json_t *body = tb__http_body_object(req, resp, 1);
  if (body == NULL) return;
  const char *priority = NULL;
  const tb_http_field_t fields[] = {{"priority", TB_F_STRING, 0, &priority}};
  if (tb__http_fields(resp, body, NULL, fields, 1) == 0) {
    if (priority != NULL && tb_config_tier_index(h->o.cfg, priority) < 0)
      tb__http_error(resp, 400, "priority", "priority: unknown tier '%.64s'", priority);
    else
      tb__http_dlq_replay(h, req->params[0], priority, NULL, resp);
  }
  json_decref(body);
}
