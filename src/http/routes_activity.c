/* The HTTP API's activity route: the activity log with `tierbus activity`'s filters, each
 * payload rendered as JSON (api/activity.h, which the command calls too). */
#include "api/activity.h"
#include "core/clock.h"
#include "core/status.h"
#include "http/internal.h"

#define LIST_DEFAULT 100
#define LIST_MAX 1000

typedef struct list_ctx {
  const tb_catalogue_t *cat;
  json_t *arr;
  int oom;
} list_ctx_t;

static int add_row(void *arg, const tb_activity_t *a) {
  list_ctx_t *lc = arg;
  json_t *v = tb_activity_json(lc->cat, a);
  if (v == NULL || json_array_append_new(lc->arr, v) != 0) lc->oom = 1;
  return lc->oom;
}

/* GET /api/activity?key=&correlationId=&event=&since=&limit=: the rows, newest first, as
 * `tierbus activity --json`; since is RFC 3339 or an age (2h), limit defaults to 100 (at most
 * 1000). */
void tb__http_get_activity(tb_http_t *h, const tb_http_req_t *req, tb_http_resp_t *resp) {
  static const char *const allowed[] = {"key", "correlationId", "event", "since", "limit", NULL};
  if (tb__http_args_check(req, resp, allowed) != 0) return;
  tb_activity_filter_t f = {.key = tb__http_arg(req, "key"),
                            .correlation_id = tb__http_arg(req, "correlationId"),
                            .event_type = tb__http_arg(req, "event")};
  const char *since = tb__http_arg(req, "since");
  if (tb__http_arg_int(req, resp, "limit", 1, LIST_MAX, LIST_DEFAULT, &f.limit) != 0) return;
  if (f.event_type != NULL && tb_catalogue_find(h->o.cat, f.event_type) == NULL) {
    tb__http_error(resp, 400, "event", "event: unknown event type '%.64s'", f.event_type);
    return;
  }
  if (since != NULL && tb_time_parse_us(since, tb_wall_us(), &f.since_us) != TB_OK) {
    tb__http_error(resp, 400, "since", "since: %s", tb_errdetail());
    return;
  }
  list_ctx_t lc = {.cat = h->o.cat, .arr = json_array()};
  pthread_mutex_lock(&h->store_mu);
  tb_status st = lc.arr ? tb_store_activity_list(h->o.store, &f, add_row, &lc)
                        : tb__fail(TB_ERR_NOMEM, "activity");
  pthread_mutex_unlock(&h->store_mu);
  if (st == TB_OK && lc.oom) st = tb__fail(TB_ERR_NOMEM, "activity");
  if (st != TB_OK) {
    json_decref(lc.arr);
    tb__http_fail(resp, st, NULL, "listing the activity log");
    return;
  }
  tb__http_json(
      resp, 200,
      json_pack("{s:I,s:o}", "count", (json_int_t)json_array_size(lc.arr), "rows", lc.arr));
}
