/* librdkafka configuration from the hookd config table and passthrough. */
#include "hookd/kafka.h"
#include "hookd/log.h"
#include "hookd/util.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

int hookd_kafka_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *err,
                    size_t err_size)
{
    char why[512];
    if (rd_kafka_conf_set(conf, name, value, why, sizeof(why)) != RD_KAFKA_CONF_OK) {
        snprintf(err, err_size, "%s", why);
        return -1;
    }
    return 0;
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    /* syslog levels: 0-3 error, 4 warning, 5-6 info, 7 debug */
    int l = level <= 3 ? HOOKD_LOG_ERROR : level == 4 ? HOOKD_LOG_WARN
            : level <= 6                             ? HOOKD_LOG_INFO
                                                     : HOOKD_LOG_DEBUG;
    /* the HOOKD_KAFKA_* passthrough goes to every client of the service, so
     * a consumer property given to its producer (and the reverse) is
     * expected, not a misconfiguration */
    if (l == HOOKD_LOG_WARN && strcmp(fac, "CONFWARN") == 0 &&
        (strstr(buf, "consumer property and will be ignored by this producer") ||
         strstr(buf, "producer property and will be ignored by this consumer")))
        l = HOOKD_LOG_DEBUG;
    HOOKD_LOG_AT(l, "kafka facility=%s detail=\"%s\"", fac, buf);
}

rd_kafka_conf_t *hookd_kafka_conf(const hookd_config_t *cfg, const char *service, char *err,
                                  size_t err_size)
{
    char why[512];
    char client_id[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (cfg->kafka_client_id[0]) {
        snprintf(client_id, sizeof(client_id), "%s", cfg->kafka_client_id);
    } else {
        char host[128] = "unknown";
        gethostname(host, sizeof(host) - 1);
        snprintf(client_id, sizeof(client_id), "%s-%s", service, host);
    }
    if (hookd_kafka_set(conf, "bootstrap.servers", cfg->kafka_brokers, why, sizeof(why)) < 0) {
        snprintf(err, err_size, "invalid HOOKD_KAFKA_BROKERS=%s: %s", cfg->kafka_brokers, why);
        goto fail;
    }
    if (hookd_kafka_set(conf, "client.id", client_id, why, sizeof(why)) < 0) {
        snprintf(err, err_size, "invalid HOOKD_KAFKA_CLIENT_ID=%s: %s", client_id, why);
        goto fail;
    }
    rd_kafka_conf_set_log_cb(conf, log_cb);
    for (int i = 0; i < cfg->kafka_props_len; i++) {
        const hookd_kafka_prop_t *p = &cfg->kafka_props[i];
        if (hookd_kafka_set(conf, p->name, p->value, why, sizeof(why)) < 0) {
            snprintf(err, err_size, "invalid %s=%s: %s", p->var, p->secret ? "***" : p->value,
                     why);
            goto fail;
        }
    }
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

static void silent_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    (void)level;
    (void)fac;
    (void)buf;
}

int hookd_kafka_check_config(const hookd_config_t *cfg, char *err, size_t err_size)
{
    char why[512];
    rd_kafka_conf_t *conf = hookd_kafka_conf(cfg, "check", err, err_size);
    if (!conf) return -1;
    /* Some properties are only validated when a client is created: create
     * one that talks to nobody. */
    rd_kafka_conf_set_log_cb(conf, silent_log);
    if (hookd_kafka_set(conf, "bootstrap.servers", "", why, sizeof(why)) < 0) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, err_size, "invalid Kafka configuration: %s", why);
        return -1;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why));
    if (rk) {
        rd_kafka_destroy(rk);
        return 0;
    }
    rd_kafka_conf_destroy(conf);
    /* name the variable whose value the error mentions, else all of them */
    strbuf_t names;
    strbuf_init(&names, 64);
    for (int i = 0; i < cfg->kafka_props_len; i++) {
        const hookd_kafka_prop_t *p = &cfg->kafka_props[i];
        if (!p->secret && p->value[0] && strstr(why, p->value)) {
            strbuf_reset(&names);
            strbuf_puts(&names, p->var);
            break;
        }
        if (names.len) strbuf_puts(&names, ", ");
        strbuf_puts(&names, p->var);
    }
    snprintf(err, err_size, "invalid Kafka configuration (%s): %s",
             names.len ? names.data : "HOOKD_KAFKA_BROKERS", why);
    strbuf_free(&names);
    return -1;
}

bool hookd_kafka_ping(rd_kafka_t *rk, int timeout_ms)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, NULL, &md, timeout_ms);
    bool ok = e == RD_KAFKA_RESP_ERR_NO_ERROR && md && md->broker_cnt > 0;
    if (md) rd_kafka_metadata_destroy(md);
    return ok;
}

rd_kafka_topic_partition_list_t *hookd_kafka_topic_list(const char *topics)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(4);
    if (topics[0] == '^') { /* one regex; it may itself contain commas */
        rd_kafka_topic_partition_list_add(l, topics, RD_KAFKA_PARTITION_UA);
        return l;
    }
    const char *p = topics;
    while (*p) {
        size_t n = strcspn(p, ",");
        while (n > 0 && p[0] == ' ') {
            p++;
            n--;
        }
        char name[256];
        size_t k = n < sizeof(name) - 1 ? n : sizeof(name) - 1;
        memcpy(name, p, k);
        name[k] = '\0';
        while (k > 0 && name[k - 1] == ' ') name[--k] = '\0';
        if (k > 0) rd_kafka_topic_partition_list_add(l, name, RD_KAFKA_PARTITION_UA);
        p += n;
        if (*p == ',') p++;
    }
    return l;
}

void hookd_kafka_consumer_destroy(rd_kafka_t *rk, bool ever_assigned)
{
    static rd_kafka_t *left_to_exit[4]; /* one consumer per process; kept reachable */
    static int n_left;
    if (!rk) return;
    if (!ever_assigned && n_left < (int)HOOKD_ARRAY_LEN(left_to_exit)) {
        log_info("kafka_consumer_left_to_exit reason=\"no assignment yet, librdkafka issue 4312\"");
        left_to_exit[n_left++] = rk;
        return;
    }
    rd_kafka_destroy(rk);
}
