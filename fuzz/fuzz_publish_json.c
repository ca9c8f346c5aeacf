/* Fuzzes the JSON -> protobuf path of `publish`: a JSON document is read as an event request
 * ({"type", "payload", "priority", "id"}; a document without a known type is tried as the payload
 * of the event its first byte picks) and prepared as `publish` prepares it: field mapping by the
 * catalogue's schema, tier resolution, id checks, envelope packing. Every refusal must be a
 * status with a detail, never a crash or a leak. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "api/publish.h"
#include "fuzz_env.h"

static const char *str(json_t *obj, const char *key) {
  return json_string_value(json_object_get(obj, key));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static tb_catalogue_t *cat;
  static tb_config_t cfg;
  fuzz_env(&cat, &cfg);
  if (size == 0) return 0;
  json_t *doc = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
  if (doc == NULL) return 0;
  tb_publish_req_t req = {0};
  req.event = str(doc, "type");
  req.tier = str(doc, "priority");
  req.id = str(doc, "id");
  req.correlation_id = str(doc, "correlation_id");
  req.payload = json_object_get(doc, "payload");
  if (req.event == NULL || tb_catalogue_find(cat, req.event) == NULL) {
    req.event = tb_catalogue_at(cat, data[0] % tb_catalogue_count(cat))->name;
    req.payload = doc;
  }
  if (!json_is_object(req.payload)) req.payload = NULL;
  json_t *empty = json_object();
  if (req.payload == NULL) req.payload = empty;
  tb_prepared_t p;
  if (tb_publish_prepare(&cfg, cat, &req, &p) == TB_OK) tb_prepared_free(&p);
  json_decref(empty);
  json_decref(doc);
  return 0;
}
