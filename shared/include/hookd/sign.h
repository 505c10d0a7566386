/* Hashing and signing: deterministic job ids, Standard Webhooks signatures,
 * subscription secrets and API tokens (stored only as SHA-256). */
#ifndef HOOKD_SIGN_H
#define HOOKD_SIGN_H

#include <stddef.h>

#define SIGN_JOB_ID_LEN 32    /* hex chars of a job id (128 bits) */
#define SIGN_SECRET_MAX 128   /* "whsec_" + base64 */
#define SIGN_SIGNATURE_MAX 64 /* "v1," + base64(32 bytes) */
#define SIGN_TOKEN_LEN 52     /* "hkd_" + 48 hex */

/* Job id of (event id, subscription id): the first 128 bits of
 * SHA-256("<len(event_id)>:<event_id><subscription_id>"), lower-case hex.
 * 'out' gets SIGN_JOB_ID_LEN + 1 bytes. It doubles as the webhook-id. */
void sign_job_id(const char *event_id, size_t event_id_len, const char *sub_id, size_t sub_id_len,
                 char *out);

/* webhook-id of a request carrying 'n' jobs whose ids (SIGN_JOB_ID_LEN hex
 * chars each) are 'ids', in body order: the job id when n == 1, else the
 * first 128 bits of SHA-256("<id1>,<id2>,...,<idn>"), lower-case hex. The
 * same jobs always give the same id, different jobs never share one. */
void sign_request_id(const char *const *ids, int n, char *out);

/* Standard Webhooks signature "v1,<base64(HMAC-SHA256(key, id.timestamp.body))>"
 * where key is the base64 part of "whsec_<base64>" (or the raw secret when it
 * has no such prefix). Returns 0, or -1 if the secret does not decode. */
int sign_webhook(const char *secret, const char *msg_id, long long timestamp, const char *body,
                 size_t body_len, char out[SIGN_SIGNATURE_MAX]);

/* New subscription secret "whsec_" + base64(24 random bytes). Returns 0/-1. */
int sign_generate_secret(char out[SIGN_SECRET_MAX]);

/* New API token "hkd_" + 48 hex chars. Returns 0/-1. */
int sign_generate_token(char out[SIGN_TOKEN_LEN + 1]);

/* SHA-256 hex (64 chars + NUL) of 'len' bytes; used for api_tokens.token_hash. */
void sign_sha256_hex(const char *data, size_t len, char out[65]);

#endif
