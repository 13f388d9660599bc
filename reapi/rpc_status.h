/*
 * gRPC status codes (google.rpc.Code; the same numbers as grpc-status) and
 * a small owned status value used by the client and the services.
 */
#ifndef RPC_STATUS_H
#define RPC_STATUS_H

#include <stddef.h>
#include <stdint.h>

typedef enum rpc_code {
  RPC_OK = 0,
  RPC_CANCELLED = 1,
  RPC_UNKNOWN = 2,
  RPC_INVALID_ARGUMENT = 3,
  RPC_DEADLINE_EXCEEDED = 4,
  RPC_NOT_FOUND = 5,
  RPC_ALREADY_EXISTS = 6,
  RPC_PERMISSION_DENIED = 7,
  RPC_RESOURCE_EXHAUSTED = 8,
  RPC_FAILED_PRECONDITION = 9,
  RPC_ABORTED = 10,
  RPC_OUT_OF_RANGE = 11,
  RPC_UNIMPLEMENTED = 12,
  RPC_INTERNAL = 13,
  RPC_UNAVAILABLE = 14,
  RPC_DATA_LOSS = 15,
  RPC_UNAUTHENTICATED = 16,
} rpc_code;

/* Upper-case name such as "NOT_FOUND"; "UNKNOWN_CODE" if out of range. */
const char *rpc_code_name(int code);

/* Map a DB_E* error to the gRPC code a server should answer with. */
int rpc_code_from_err(int db_err);

/*
 * A call's final status. message and details are heap-owned by the struct
 * (either may be NULL); rpc_status_clear() frees them and resets to OK.
 * details is the serialized google.rpc.Status from grpc-status-details-bin.
 */
typedef struct rpc_status {
  int code;
  char *message;
  uint8_t *details;
  size_t details_len;
} rpc_status;

void rpc_status_clear(rpc_status *st);
/* Set code and a printf-formatted message (replacing any previous one). */
void rpc_status_setf(rpc_status *st, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Percent-encode a grpc-message value (gRPC spec: bytes outside
 * 0x20-0x7E and '%' become %XX). Returns malloc'd string or NULL on OOM. */
char *rpc_message_encode(const char *msg);
/* Decode percent-encoding; never fails on bad input (copies it through).
 * Returns malloc'd string or NULL on OOM. */
char *rpc_message_decode(const char *s, size_t len);

/* Parse a grpc-timeout header value ("100m", "5S", ...) into milliseconds
 * (rounded up). Returns 0 on success, DB_EINVAL if malformed. */
int rpc_timeout_parse(const char *s, int64_t *ms_out);
/* Format milliseconds as a grpc-timeout value into buf (>= 16 bytes). */
void rpc_timeout_format(int64_t ms, char *buf, size_t buflen);

/* Base64 for -bin metadata. Encoding emits unpadded standard base64;
 * decoding accepts padded or unpadded input. Both return malloc'd buffers
 * (caller frees) and 0, or DB_EINVAL / DB_ENOMEM. */
int rpc_b64_encode(const uint8_t *in, size_t len, char **out);
int rpc_b64_decode(const char *in, size_t len, uint8_t **out, size_t *outlen);

/* Monotonic clock in milliseconds. */
int64_t rpc_now_ms(void);

#endif
