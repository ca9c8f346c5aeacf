/* Publishes one event to a tierbus deployment through libtierbus, as another C service would:
 *
 *   cc publish_event.c $(pkg-config --cflags --libs tierbus) -o publish_event
 *   TIERBUS_CONFIG=/etc/tierbus.yaml ./publish_event CLIENT_CREATED '{"client_id": "c1"}' \
 *       [--priority critical] [--id ID]
 *
 * The config (TIERBUS_CONFIG) gives the tiers and the NATS URL and credentials;
 * TIERBUS_NATS_URL and TIERBUS_DATA_DIR override it as for every tierbus command. Exit status:
 * 0 published (or already in the stream), 1 the bus failed, 2 the event was refused. */
#include <stdio.h>
#include <string.h>

#include <tierbus.h>

int main(int argc, char **argv) {
  tb_client_event_t ev = {0};
  int positional = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--priority") == 0 && i + 1 < argc)
      ev.priority = argv[++i];
    else if (strcmp(argv[i], "--id") == 0 && i + 1 < argc)
      ev.id = argv[++i];
    else if (positional == 0 && ++positional)
      ev.type = argv[i];
    else if (positional == 1 && ++positional)
      ev.payload_json = argv[i];
    else {
      fprintf(stderr, "usage: %s EVENT PAYLOAD_JSON [--priority TIER] [--id ID]\n", argv[0]);
      return 2;
    }
  }
  if (positional != 2) {
    fprintf(stderr, "usage: %s EVENT PAYLOAD_JSON [--priority TIER] [--id ID]\n", argv[0]);
    return 2;
  }

  tb_client_t *client = NULL;
  tb_status st = tb_client_connect(&client, NULL); /* NULL: the config and environment decide */
  if (st != TB_OK) {
    fprintf(stderr, "connect: %s: %s\n", tb_strerror(st), tb_errdetail());
    return st == TB_ERR_CONFIG ? 2 : 1;
  }
  tb_client_ack_t ack;
  st = tb_client_publish(client, &ev, &ack);
  if (st == TB_OK)
    printf("published id=%s tier=%s subject=%s seq=%llu%s\n", ack.id, ack.tier, ack.subject,
           (unsigned long long)ack.seq, ack.duplicate ? " duplicate" : "");
  else
    fprintf(stderr, "publish: %s (%s): %s\n", tb_strerror(st), tb_err_name(st), tb_errdetail());
  tb_client_close(client);
  if (st == TB_OK) return 0;
  return st == TB_ERR_NATS || st == TB_ERR_UNAVAILABLE || st == TB_ERR_TIMEOUT ? 1 : 2;
}
