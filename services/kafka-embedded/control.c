/* Fault-injection commands of hookd-kafka-embedded: one table of commands,
 * each parsing its arguments and calling the librdkafka mock API. */
#include "control.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Most whitespace-separated words a line can have (a 4 KiB line has at most
 * 2048 one-letter words). */
#define CONTROL_MAX_WORDS (CONTROL_LINE_MAX / 2 + 1)

#define TOPIC_PARTITIONS_MAX 1024
#define RTT_MS_MAX 3600000

/* Kafka protocol request names, indexed by ApiKey (as numbered by Kafka and
 * by librdkafka 2.0.2's rdkafka_protocol.h). */
static const char *const apikey_names[] = {
    "Produce",
    "Fetch",
    "ListOffsets",
    "Metadata",
    "LeaderAndIsr",
    "StopReplica",
    "UpdateMetadata",
    "ControlledShutdown",
    "OffsetCommit",
    "OffsetFetch",
    "FindCoordinator",
    "JoinGroup",
    "Heartbeat",
    "LeaveGroup",
    "SyncGroup",
    "DescribeGroups",
    "ListGroups",
    "SaslHandshake",
    "ApiVersions",
    "CreateTopics",
    "DeleteTopics",
    "DeleteRecords",
    "InitProducerId",
    "OffsetForLeaderEpoch",
    "AddPartitionsToTxn",
    "AddOffsetsToTxn",
    "EndTxn",
    "WriteTxnMarkers",
    "TxnOffsetCommit",
    "DescribeAcls",
    "CreateAcls",
    "DeleteAcls",
    "DescribeConfigs",
    "AlterConfigs",
    "AlterReplicaLogDirs",
    "DescribeLogDirs",
    "SaslAuthenticate",
    "CreatePartitions",
    "CreateDelegationToken",
    "RenewDelegationToken",
    "ExpireDelegationToken",
    "DescribeDelegationToken",
    "DeleteGroups",
    "ElectLeaders",
    "IncrementalAlterConfigs",
    "AlterPartitionReassignments",
    "ListPartitionReassignments",
    "OffsetDelete",
    "DescribeClientQuotas",
    "AlterClientQuotas",
    "DescribeUserScramCredentials",
    "AlterUserScramCredentials",
    "Vote",
    "BeginQuorumEpoch",
    "EndQuorumEpoch",
    "DescribeQuorum",
    "AlterIsr",
    "UpdateFeatures",
    "Envelope",
};

#define APIKEY_CNT ((int)(sizeof(apikey_names) / sizeof(apikey_names[0])))

/* A command handler gets the words after the command name. It writes the
 * reply and returns 0 (ok) or -1 (error). */
typedef int(command_fn)(control_cluster_t *cc, int argc, char **argv, char *reply,
                        size_t reply_size);

typedef struct command {
    const char *name;
    const char *sub; /* second word of two-word commands, or NULL */
    int min_args;    /* number of words after name (and sub) */
    int max_args;
    command_fn *fn;
    const char *usage; /* arguments, shown in errors and by "help" */
} command_t;

static int reply_ok(char *reply, size_t reply_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int reply_error(char *reply, size_t reply_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes "ok" or "ok <fmt...>" (fmt may be NULL). Returns 0. */
static int reply_ok(char *reply, size_t reply_size, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(reply, reply_size, "ok");

    if (fmt && n >= 0 && (size_t)n + 1 < reply_size) {
        reply[n++] = ' ';
        va_start(ap, fmt);
        vsnprintf(reply + n, reply_size - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return 0;
}

/* Writes "error <fmt...>". Returns -1. */
static int reply_error(char *reply, size_t reply_size, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(reply, reply_size, "error ");

    if (n >= 0 && (size_t)n < reply_size) {
        va_start(ap, fmt);
        vsnprintf(reply + n, reply_size - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Replies with a librdkafka error unless 'err' is NO_ERROR. */
static int reply_rderr(char *reply, size_t reply_size, rd_kafka_resp_err_t err, const char *what)
{
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return reply_ok(reply, reply_size, NULL);
    return reply_error(reply, reply_size, "%s: %s (%s)", what, rd_kafka_err2name(err),
                       rd_kafka_err2str(err));
}

/* Parses a whole decimal number in [min, max]. Returns 0 or -1. */
static int parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    long v;

    if (!*s) return -1;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || v < min || v > max) return -1;
    *out = v;
    return 0;
}

/* Parses a broker id 1..broker_cnt, or "all" (-1) when 'allow_all'. */
static int parse_broker(const control_cluster_t *cc, const char *s, int allow_all, int32_t *out)
{
    long v;

    if (allow_all && !strcasecmp(s, "all")) {
        *out = -1;
        return 0;
    }
    if (parse_long(s, 1, cc->broker_cnt, &v)) return -1;
    *out = (int32_t)v;
    return 0;
}

int control_valid_topic_name(const char *name)
{
    size_t len = strlen(name);

    if (len == 0 || len > 249 || !strcmp(name, ".") || !strcmp(name, "..")) return 0;
    return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == len;
}

int control_parse_apikey(const char *s)
{
    long v;
    int i;

    if (!parse_long(s, 0, APIKEY_CNT - 1, &v)) return (int)v;
    for (i = 0; i < APIKEY_CNT; i++)
        if (!strcasecmp(s, apikey_names[i])) return i;
    if (!strcasecmp(s, "ApiVersion")) /* librdkafka's spelling */
        return 18;
    return -1;
}

int control_parse_error(const char *s, rd_kafka_resp_err_t *errp)
{
    static const char prefix[] = "RD_KAFKA_RESP_ERR_";
    const struct rd_kafka_err_desc *descs;
    size_t cnt, i;
    long v;

    rd_kafka_get_err_descs(&descs, &cnt);

    if (!parse_long(s, -1000, 32767, &v)) {
        /* Any wire code a broker could send; internal (negative) codes
         * only if librdkafka knows them. */
        if (v >= 0) {
            *errp = (rd_kafka_resp_err_t)v;
            return 0;
        }
        for (i = 0; i < cnt; i++) {
            if (descs[i].name && descs[i].code == (rd_kafka_resp_err_t)v) {
                *errp = descs[i].code;
                return 0;
            }
        }
        return -1;
    }

    if (!strncasecmp(s, prefix, sizeof(prefix) - 1)) s += sizeof(prefix) - 1;
    for (i = 0; i < cnt; i++) {
        if (!descs[i].name) continue;
        /* Internal errors are named "_TRANSPORT" but spelled
         * RD_KAFKA_RESP_ERR__TRANSPORT in C: accept "__TRANSPORT" too. */
        if (!strcasecmp(s, descs[i].name) || (s[0] == '_' && !strcasecmp(s + 1, descs[i].name))) {
            *errp = descs[i].code;
            return 0;
        }
    }
    return -1;
}

static int cmd_ping(control_cluster_t *cc, int argc, char **argv, char *reply, size_t reply_size)
{
    (void)cc, (void)argc, (void)argv;
    return reply_ok(reply, reply_size, NULL);
}

static int cmd_info(control_cluster_t *cc, int argc, char **argv, char *reply, size_t reply_size)
{
    (void)argc, (void)argv;
    return reply_ok(reply, reply_size, "bootstrap=%s brokers=%d", cc->bootstraps, cc->broker_cnt);
}

static int cmd_help(control_cluster_t *cc, int argc, char **argv, char *reply, size_t reply_size);

static int cmd_broker_updown(control_cluster_t *cc, const char *id, int up, char *reply,
                             size_t reply_size)
{
    int32_t broker;

    if (parse_broker(cc, id, 1, &broker))
        return reply_error(reply, reply_size, "bad broker id '%s' (1..%d or all)", id,
                           cc->broker_cnt);
    if (up)
        return reply_rderr(reply, reply_size, rd_kafka_mock_broker_set_up(cc->mcluster, broker),
                           "broker up");
    return reply_rderr(reply, reply_size, rd_kafka_mock_broker_set_down(cc->mcluster, broker),
                       "broker down");
}

static int cmd_broker_down(control_cluster_t *cc, int argc, char **argv, char *reply,
                           size_t reply_size)
{
    (void)argc;
    return cmd_broker_updown(cc, argv[0], 0, reply, reply_size);
}

static int cmd_broker_up(control_cluster_t *cc, int argc, char **argv, char *reply,
                         size_t reply_size)
{
    (void)argc;
    return cmd_broker_updown(cc, argv[0], 1, reply, reply_size);
}

static int cmd_broker_rtt(control_cluster_t *cc, int argc, char **argv, char *reply,
                          size_t reply_size)
{
    int32_t broker;
    long rtt_ms;

    (void)argc;
    if (parse_broker(cc, argv[0], 1, &broker))
        return reply_error(reply, reply_size, "bad broker id '%s' (1..%d or all)", argv[0],
                           cc->broker_cnt);
    if (parse_long(argv[1], 0, RTT_MS_MAX, &rtt_ms))
        return reply_error(reply, reply_size, "bad rtt '%s' (0..%d ms)", argv[1], RTT_MS_MAX);
    return reply_rderr(reply, reply_size,
                       rd_kafka_mock_broker_set_rtt(cc->mcluster, broker, (int)rtt_ms),
                       "broker rtt");
}

static int cmd_request_errors(control_cluster_t *cc, int argc, char **argv, char *reply,
                              size_t reply_size)
{
    rd_kafka_resp_err_t errs[CONTROL_MAX_WORDS];
    int apikey = control_parse_apikey(argv[0]);
    int i;

    if (apikey < 0) return reply_error(reply, reply_size, "unknown ApiKey '%s'", argv[0]);
    for (i = 1; i < argc; i++)
        if (control_parse_error(argv[i], &errs[i - 1]))
            return reply_error(reply, reply_size, "unknown error '%s'", argv[i]);
    rd_kafka_mock_push_request_errors_array(cc->mcluster, (int16_t)apikey, (size_t)(argc - 1),
                                            errs);
    return reply_ok(reply, reply_size, NULL);
}

static int cmd_broker_request_errors(control_cluster_t *cc, int argc, char **argv, char *reply,
                                     size_t reply_size)
{
    rd_kafka_resp_err_t errs[CONTROL_MAX_WORDS];
    int rtts[CONTROL_MAX_WORDS];
    int32_t broker;
    int apikey, i;

    if (parse_broker(cc, argv[0], 0, &broker))
        return reply_error(reply, reply_size, "bad broker id '%s' (1..%d)", argv[0],
                           cc->broker_cnt);
    if ((apikey = control_parse_apikey(argv[1])) < 0)
        return reply_error(reply, reply_size, "unknown ApiKey '%s'", argv[1]);

    /* Parse everything first so a bad entry pushes nothing. */
    for (i = 2; i < argc; i++) {
        char *colon = strrchr(argv[i], ':');
        long rtt_ms = 0;

        if (colon) {
            *colon = '\0';
            if (parse_long(colon + 1, 0, RTT_MS_MAX, &rtt_ms))
                return reply_error(reply, reply_size, "bad rtt '%s' (0..%d ms)", colon + 1,
                                   RTT_MS_MAX);
        }
        if (control_parse_error(argv[i], &errs[i - 2]))
            return reply_error(reply, reply_size, "unknown error '%s'", argv[i]);
        rtts[i - 2] = (int)rtt_ms;
    }
    for (i = 0; i < argc - 2; i++) {
        rd_kafka_resp_err_t err = rd_kafka_mock_broker_push_request_error_rtts(
            cc->mcluster, broker, (int16_t)apikey, 1, errs[i], rtts[i]);
        if (err) return reply_rderr(reply, reply_size, err, "broker-request-errors");
    }
    return reply_ok(reply, reply_size, NULL);
}

static int cmd_clear_errors(control_cluster_t *cc, int argc, char **argv, char *reply,
                            size_t reply_size)
{
    int apikey = control_parse_apikey(argv[0]);

    (void)argc;
    if (apikey < 0) return reply_error(reply, reply_size, "unknown ApiKey '%s'", argv[0]);
    rd_kafka_mock_clear_request_errors(cc->mcluster, (int16_t)apikey);
    return reply_ok(reply, reply_size, NULL);
}

static int cmd_topic_create(control_cluster_t *cc, int argc, char **argv, char *reply,
                            size_t reply_size)
{
    long partitions, replication = cc->broker_cnt < 3 ? cc->broker_cnt : 3;

    if (!control_valid_topic_name(argv[0]))
        return reply_error(reply, reply_size, "bad topic name '%s'", argv[0]);
    if (parse_long(argv[1], 1, TOPIC_PARTITIONS_MAX, &partitions))
        return reply_error(reply, reply_size, "bad partition count '%s' (1..%d)", argv[1],
                           TOPIC_PARTITIONS_MAX);
    if (argc > 2 && parse_long(argv[2], 1, cc->broker_cnt, &replication))
        return reply_error(reply, reply_size, "bad replication factor '%s' (1..%d)", argv[2],
                           cc->broker_cnt);
    return reply_rderr(
        reply, reply_size,
        rd_kafka_mock_topic_create(cc->mcluster, argv[0], (int)partitions, (int)replication),
        "topic create");
}

static int cmd_topic_error(control_cluster_t *cc, int argc, char **argv, char *reply,
                           size_t reply_size)
{
    rd_kafka_resp_err_t err;

    (void)argc;
    if (!control_valid_topic_name(argv[0]))
        return reply_error(reply, reply_size, "bad topic name '%s'", argv[0]);
    if (control_parse_error(argv[1], &err))
        return reply_error(reply, reply_size, "unknown error '%s'", argv[1]);
    rd_kafka_mock_topic_set_error(cc->mcluster, argv[0], err);
    return reply_ok(reply, reply_size, NULL);
}

static int cmd_partition_leader(control_cluster_t *cc, int argc, char **argv, char *reply,
                                size_t reply_size)
{
    long partition;
    int32_t broker;

    (void)argc;
    if (!control_valid_topic_name(argv[0]))
        return reply_error(reply, reply_size, "bad topic name '%s'", argv[0]);
    if (parse_long(argv[1], 0, TOPIC_PARTITIONS_MAX - 1, &partition))
        return reply_error(reply, reply_size, "bad partition '%s' (0..%d)", argv[1],
                           TOPIC_PARTITIONS_MAX - 1);
    if (!strcmp(argv[2], "-1") || !strcasecmp(argv[2], "none"))
        broker = -1; /* leader-less */
    else if (parse_broker(cc, argv[2], 0, &broker))
        return reply_error(reply, reply_size, "bad broker id '%s' (1..%d or none)", argv[2],
                           cc->broker_cnt);
    return reply_rderr(
        reply, reply_size,
        rd_kafka_mock_partition_set_leader(cc->mcluster, argv[0], (int32_t)partition, broker),
        "partition leader");
}

static int cmd_coordinator(control_cluster_t *cc, int argc, char **argv, char *reply,
                           size_t reply_size)
{
    const char *key_type;
    int32_t broker;

    (void)argc;
    if (!strcasecmp(argv[0], "group"))
        key_type = "group";
    else if (!strcasecmp(argv[0], "txn") || !strcasecmp(argv[0], "transaction"))
        key_type = "transaction";
    else
        return reply_error(reply, reply_size, "bad coordinator type '%s' (group or txn)", argv[0]);
    if (parse_broker(cc, argv[2], 0, &broker))
        return reply_error(reply, reply_size, "bad broker id '%s' (1..%d)", argv[2],
                           cc->broker_cnt);
    return reply_rderr(reply, reply_size,
                       rd_kafka_mock_coordinator_set(cc->mcluster, key_type, argv[1], broker),
                       "coordinator");
}

static const command_t commands[] = {
    {"ping", NULL, 0, 0, cmd_ping, ""},
    {"info", NULL, 0, 0, cmd_info, ""},
    {"help", NULL, 0, 0, cmd_help, ""},
    {"broker", "down", 1, 1, cmd_broker_down, "<id|all>"},
    {"broker", "up", 1, 1, cmd_broker_up, "<id|all>"},
    {"broker", "rtt", 2, 2, cmd_broker_rtt, "<id|all> <ms>"},
    {"request-errors", NULL, 2, CONTROL_MAX_WORDS, cmd_request_errors,
     "<ApiKey> <Error> [<Error>...]"},
    {"broker-request-errors", NULL, 3, CONTROL_MAX_WORDS, cmd_broker_request_errors,
     "<id> <ApiKey> <Error>[:<rtt_ms>] [...]"},
    {"clear-errors", NULL, 1, 1, cmd_clear_errors, "<ApiKey>"},
    {"topic", "create", 2, 3, cmd_topic_create, "<name> <partitions> [<replication>]"},
    {"topic", "error", 2, 2, cmd_topic_error, "<name> <Error>"},
    {"partition", "leader", 3, 3, cmd_partition_leader, "<topic> <partition> <broker-id|none>"},
    {"coordinator", NULL, 3, 3, cmd_coordinator, "group|txn <key> <broker-id>"},
};

#define COMMAND_CNT (sizeof(commands) / sizeof(commands[0]))

static int cmd_help(control_cluster_t *cc, int argc, char **argv, char *reply, size_t reply_size)
{
    size_t i, n = 0;

    (void)cc, (void)argc, (void)argv;
    reply_ok(reply, reply_size, NULL);
    for (i = 0; i < COMMAND_CNT; i++) {
        const command_t *c = &commands[i];

        n = strlen(reply); /* snprintf truncates; strlen keeps n in bounds */
        snprintf(reply + n, reply_size - n, "%s %s%s%s%s%s", i ? ";" : "", c->name,
                 c->sub ? " " : "", c->sub ? c->sub : "", *c->usage ? " " : "", c->usage);
    }
    return 0;
}

/* Replaces bytes that would break a one-line reply (control characters). */
static void sanitize(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f) *s = '?';
}

int control_exec(control_cluster_t *cc, const char *line, char *reply, size_t reply_size)
{
    static const char spaces[] = " \t\r\v\f";
    char buf[CONTROL_LINE_MAX + 1];
    char *words[CONTROL_MAX_WORDS + 1];
    char *save = NULL, *w;
    size_t len = strlen(line), i;
    int wordc = 0, rc;

    if (reply_size == 0) return -1;
    if (len > CONTROL_LINE_MAX) {
        rc = reply_error(reply, reply_size, "line longer than %d bytes", CONTROL_LINE_MAX);
        goto done;
    }
    memcpy(buf, line, len + 1);
    for (w = strtok_r(buf, spaces, &save); w && wordc <= CONTROL_MAX_WORDS;
         w = strtok_r(NULL, spaces, &save))
        words[wordc++] = w;
    if (wordc == 0) {
        rc = reply_error(reply, reply_size, "empty command (try: help)");
        goto done;
    }

    for (i = 0; i < COMMAND_CNT; i++) {
        const command_t *c = &commands[i];
        int skip = c->sub ? 2 : 1;

        if (strcasecmp(words[0], c->name)) continue;
        if (c->sub && (wordc < 2 || strcasecmp(words[1], c->sub))) continue;
        if (wordc - skip < c->min_args || wordc - skip > c->max_args) {
            rc = reply_error(reply, reply_size, "usage: %s%s%s %s", c->name, c->sub ? " " : "",
                             c->sub ? c->sub : "", c->usage);
            goto done;
        }
        rc = c->fn(cc, wordc - skip, words + skip, reply, reply_size);
        goto done;
    }
    rc = reply_error(reply, reply_size, "unknown command '%s' (try: help)", words[0]);

done:
    sanitize(reply);
    return rc;
}
