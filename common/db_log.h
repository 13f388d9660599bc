/*
 * Minimal leveled logging to stderr (or db_log_set_fd), one line per event.
 *
 * The level comes from CARGO_DISTBUILD_LOG (quiet|error|warn|info|debug),
 * read once on first use; the default is info.
 */
#ifndef DB_LOG_H
#define DB_LOG_H

enum { DB_LOG_ERROR = 0, DB_LOG_WARN = 1, DB_LOG_INFO = 2, DB_LOG_DEBUG = 3 };

/* Set the level explicitly (overrides the environment). */
void db_log_set_level(int level);
/* Current level; DB_LOG_ERROR - 1 means quiet. */
int db_log_level(void);

/* Forget the level, so the next call reads CARGO_DISTBUILD_LOG again (for
 * a forked child that was handed a different environment). */
void db_log_reset_level(void);

/* Write log lines to fd (borrowed; default STDERR_FILENO). */
void db_log_set_fd(int fd);

/* Log a printf-style message tagged with a component name ("cas", ...).
 * Thread-safe: each call writes one line with a single write(2). */
void db_log(int level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define DB_ERROR(comp, ...) db_log(DB_LOG_ERROR, comp, __VA_ARGS__)
#define DB_WARN(comp, ...) db_log(DB_LOG_WARN, comp, __VA_ARGS__)
#define DB_INFO(comp, ...) db_log(DB_LOG_INFO, comp, __VA_ARGS__)
#define DB_DEBUG(comp, ...) db_log(DB_LOG_DEBUG, comp, __VA_ARGS__)

#endif
