/* Levelled logging: TB_LOG checks the level before anything is formatted. Each line carries a UTC
 * timestamp, the level and the module. Only layers that decide something log; libraries return
 * statuses. */
#ifndef TB_CORE_LOG_H
#define TB_CORE_LOG_H

typedef enum tb_log_level {
  TB_LOG_DEBUG = 0,
  TB_LOG_INFO = 1,
  TB_LOG_WARN = 2,
  TB_LOG_ERROR = 3,
  TB_LOG_OFF = 4
} tb_log_level;

extern int tb__log_level;

void tb__log_write(int level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Parses "debug", "info", "warn", "error" or "off"; returns -1 for anything else. */
int tb_log_level_parse(const char *name);

#define TB_LOG(level, module, ...)                                                                 \
  do {                                                                                             \
    if ((level) >= tb__log_level) tb__log_write((level), (module), __VA_ARGS__);                   \
  } while (0)

#endif
