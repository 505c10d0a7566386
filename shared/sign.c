/* Job ids, Standard Webhooks HMAC signatures, secrets and token hashes. */
#include "hookd/sign.h"
#include "hookd/util.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sign_job_id(const char *event_id, size_t event_id_len, const char *sub_id, size_t sub_id_len,
                 char *out)
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    char prefix[32];
    int n = snprintf(prefix, sizeof(prefix), "%zu:", event_id_len);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) ||
        !EVP_DigestUpdate(ctx, prefix, (size_t)n) ||
        !EVP_DigestUpdate(ctx, event_id, event_id_len) ||
        !EVP_DigestUpdate(ctx, sub_id, sub_id_len) || !EVP_DigestFinal_ex(ctx, md, NULL))
        abort(); /* only on OOM or a broken libcrypto */
    EVP_MD_CTX_free(ctx);
    hookd_hex(md, SIGN_JOB_ID_LEN / 2, out);
}

void sign_request_id(const char *const *ids, int n, char *out)
{
    if (n == 1) {
        memcpy(out, ids[0], SIGN_JOB_ID_LEN);
        out[SIGN_JOB_ID_LEN] = '\0';
        return;
    }
    unsigned char md[SHA256_DIGEST_LENGTH];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) abort();
    for (int i = 0; i < n; i++)
        if ((i > 0 && !EVP_DigestUpdate(ctx, ",", 1)) ||
            !EVP_DigestUpdate(ctx, ids[i], SIGN_JOB_ID_LEN))
            abort(); /* only on OOM or a broken libcrypto */
    if (!EVP_DigestFinal_ex(ctx, md, NULL)) abort();
    EVP_MD_CTX_free(ctx);
    hookd_hex(md, SIGN_JOB_ID_LEN / 2, out);
}

/* One HMAC context per thread, re-keyed per signature: creating a context
 * costs more than signing a small body. */
static EVP_MAC *hmac_alg;
static pthread_key_t hmac_key;
static pthread_once_t hmac_once = PTHREAD_ONCE_INIT;

static void hmac_ctx_free(void *ctx)
{
    EVP_MAC_CTX_free(ctx);
}

static void hmac_init(void)
{
    hmac_alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (pthread_key_create(&hmac_key, hmac_ctx_free) != 0) hmac_alg = NULL;
}

static EVP_MAC_CTX *hmac_ctx(void)
{
    pthread_once(&hmac_once, hmac_init);
    if (!hmac_alg) return NULL;
    EVP_MAC_CTX *h = pthread_getspecific(hmac_key);
    if (!h) {
        h = EVP_MAC_CTX_new(hmac_alg);
        if (h && pthread_setspecific(hmac_key, h) != 0) {
            EVP_MAC_CTX_free(h);
            h = NULL;
        }
    }
    return h;
}

int sign_webhook(const char *secret, const char *msg_id, long long timestamp, const char *body,
                 size_t body_len, char out[SIGN_SIGNATURE_MAX])
{
    unsigned char key[SIGN_SECRET_MAX];
    long key_len;
    if (strncmp(secret, "whsec_", 6) == 0) {
        key_len = hookd_base64_decode(secret + 6, strlen(secret + 6), key);
        if (key_len <= 0) return -1;
    } else {
        key_len = (long)strlen(secret);
        if (key_len == 0 || key_len > (long)sizeof(key)) return -1;
        memcpy(key, secret, (size_t)key_len);
    }
    char head[160];
    int n = snprintf(head, sizeof(head), "%s.%lld.", msg_id, timestamp);
    if (n < 0 || (size_t)n >= sizeof(head)) return -1;

    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t mac_len = 0;
    EVP_MAC_CTX *h = hmac_ctx();
    if (!h) return -1;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
                           OSSL_PARAM_construct_end()};
    int ok = EVP_MAC_init(h, key, (size_t)key_len, params) &&
             EVP_MAC_update(h, (const unsigned char *)head, (size_t)n) &&
             EVP_MAC_update(h, (const unsigned char *)body, body_len) &&
             EVP_MAC_final(h, mac, &mac_len, sizeof(mac));
    if (!ok) return -1;
    memcpy(out, "v1,", 3);
    hookd_base64(mac, mac_len, out + 3);
    return 0;
}

int sign_generate_secret(char out[SIGN_SECRET_MAX])
{
    unsigned char raw[24];
    if (hookd_random(raw, sizeof(raw)) < 0) return -1;
    memcpy(out, "whsec_", 6);
    hookd_base64(raw, sizeof(raw), out + 6);
    return 0;
}

int sign_generate_token(char out[SIGN_TOKEN_LEN + 1])
{
    unsigned char raw[24];
    if (hookd_random(raw, sizeof(raw)) < 0) return -1;
    memcpy(out, "hkd_", 4);
    hookd_hex(raw, sizeof(raw), out + 4);
    return 0;
}

void sign_sha256_hex(const char *data, size_t len, char out[65])
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)data, len, md);
    hookd_hex(md, sizeof(md), out);
}
