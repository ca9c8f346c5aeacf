/* Fuzzes the NDJSON batch of `publish --file` and `trigger --batch` as far as it goes without a
 * server: the input split into lines, each line parsed, read as an event request
 * (tb_publish_req_from_json, shared with POST /api/events) and prepared. A bad line must be a
 * status naming the problem, never a crash or a leak. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/publish.h"
#include "fuzz_env.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static tb_catalogue_t *cat;
  static tb_config_t cfg;
  fuzz_env(&cat, &cfg);
  size_t start = 0;
  while (start < size) {
    const uint8_t *nl = memchr(data + start, '\n', size - start);
    size_t end = nl ? (size_t)(nl - data) : size;
    json_t *line = json_loadb((const char *)data + start, end - start, 0, NULL);
    tb_publish_req_t req;
    tb_prepared_t p;
    if (line != NULL && tb_publish_req_from_json(line, &req, NULL) == TB_OK &&
        tb_publish_prepare(&cfg, cat, &req, &p) == TB_OK)
      tb_prepared_free(&p);
    json_decref(line);
    start = end + 1;
  }
  return 0;
}
