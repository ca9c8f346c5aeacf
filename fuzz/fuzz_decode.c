/* Fuzzes the decoder every worker runs on every message body: the envelope, the catalogue lookup
 * of its type, the payload as that event's message, and the ordering key. A malformed body must
 * come back as a status (it is then dead-lettered), never crash or leak. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "codec/catalogue.h"
#include "codec/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static tb_catalogue_t *cat;
  if (cat == NULL && tb_catalogue_load(&cat) != TB_OK) abort();
  tb_decoded_t d;
  if (tb_codec_decode(cat, data, size, &d) == TB_OK) {
    char key[256];
    tb_codec_ordering_key(&d, key, sizeof(key));
    json_t *j = NULL;
    if (tb_codec_payload_to_json(d.payload, &j) == TB_OK) json_decref(j);
    tb_decoded_free(&d);
  }
  return 0;
}
