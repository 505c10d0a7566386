/* hookd-kafka-embedded: a single-process Kafka cluster on librdkafka's mock
 * brokers for local runs and tests, with a fault-injection control interface. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/un.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "control.h"
#include "server.h"

#ifndef HOOKD_VERSION
#define HOOKD_VERSION "0.0.0"
#endif

#define PROG "hookd-kafka-embedded"
#define BROKERS_MAX 16
#define PARTITIONS_MAX 1024
#define TOPICS_MAX 256

typedef struct topic_arg {
    char name[250];
    int partitions;
} topic_arg_t;

typedef struct args {
    int brokers;
    int topic_cnt;
    topic_arg_t topics[TOPICS_MAX];
    const char *bootstrap_file; /* NULL: stdout only */
    const char *control_path;   /* NULL: no control socket */
} args_t;

/* The command line, one row per option: drives getopt_long and --help. */
static const struct option_def {
    const char *name;
    const char *metavar; /* NULL: takes no value */
    const char *help;
} option_defs[] = {
    {"brokers", "N", "number of brokers, ids 1..N (1..16, default 3)"},
    {"topic", "NAME:PARTITIONS",
     "create a topic (1..1024 partitions, replication min(3,N)); "
     "repeatable"},
    {"bootstrap-file", "PATH",
     "also write the bootstrap list to PATH (atomically); "
     "removed at exit"},
    {"control", "PATH", "serve the control protocol on a Unix stream socket at PATH"},
    {"help", NULL, "print this help and exit"},
    {"version", NULL, "print the version and exit"},
};

#define OPTION_CNT ((int)(sizeof(option_defs) / sizeof(option_defs[0])))

static void usage(FILE *out)
{
    int i;

    fprintf(out, "usage: " PROG " [options]\n\n"
                 "Runs a Kafka cluster (librdkafka mock brokers on 127.0.0.1) until SIGTERM or\n"
                 "SIGINT. Prints the bootstrap list as the first line on stdout. Control\n"
                 "commands (\"help\" lists them) are read from stdin and from --control.\n\n");
    for (i = 0; i < OPTION_CNT; i++)
        fprintf(out, "  --%s %-*s %s\n", option_defs[i].name,
                (int)(24 - strlen(option_defs[i].name)),
                option_defs[i].metavar ? option_defs[i].metavar : "", option_defs[i].help);
}

/* Parses "NAME:PARTITIONS" into 'out'. Returns 0 or -1. */
static int parse_topic(const char *s, topic_arg_t *out)
{
    const char *colon = strrchr(s, ':');
    char *end;
    long partitions;

    if (!colon || (size_t)(colon - s) >= sizeof(out->name)) return -1;
    memcpy(out->name, s, (size_t)(colon - s));
    out->name[colon - s] = '\0';
    errno = 0;
    partitions = strtol(colon + 1, &end, 10);
    if (!control_valid_topic_name(out->name) || errno || end == colon + 1 || *end ||
        partitions < 1 || partitions > PARTITIONS_MAX)
        return -1;
    out->partitions = (int)partitions;
    return 0;
}

/* Fills 'args' from argv. Returns 0 to run, 1 to exit 0 (--help,
 * --version), -1 to exit 2 (one line naming the bad argument printed). */
static int parse_args(int argc, char **argv, args_t *args)
{
    struct option longopts[OPTION_CNT + 1];
    int i, opt;

    memset(args, 0, sizeof(*args));
    args->brokers = 3;
    memset(longopts, 0, sizeof(longopts));
    for (i = 0; i < OPTION_CNT; i++)
        longopts[i] =
            (struct option){option_defs[i].name,
                            option_defs[i].metavar ? required_argument : no_argument, NULL, i + 1};
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        const char *name = opt > 0 && opt <= OPTION_CNT ? option_defs[opt - 1].name : "";

        if (opt == '?') {
            fprintf(stderr, PROG ": unknown option '%s' (see --help)\n", argv[optind - 1]);
            return -1;
        }
        if (opt == ':') {
            fprintf(stderr, PROG ": option '%s' needs a value\n", argv[optind - 1]);
            return -1;
        }
        if (!strcmp(name, "brokers")) {
            char *end;
            long v;

            errno = 0;
            v = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || v < 1 || v > BROKERS_MAX) {
                fprintf(stderr, PROG ": bad --brokers '%s' (1..%d)\n", optarg, BROKERS_MAX);
                return -1;
            }
            args->brokers = (int)v;
        } else if (!strcmp(name, "topic")) {
            if (args->topic_cnt == TOPICS_MAX) {
                fprintf(stderr, PROG ": too many --topic (max %d)\n", TOPICS_MAX);
                return -1;
            }
            if (parse_topic(optarg, &args->topics[args->topic_cnt])) {
                fprintf(stderr, PROG ": bad --topic '%s' (NAME:PARTITIONS, 1..%d partitions)\n",
                        optarg, PARTITIONS_MAX);
                return -1;
            }
            for (i = 0; i < args->topic_cnt; i++) {
                if (!strcmp(args->topics[i].name, args->topics[args->topic_cnt].name)) {
                    fprintf(stderr, PROG ": duplicate --topic '%s'\n", optarg);
                    return -1;
                }
            }
            args->topic_cnt++;
        } else if (!strcmp(name, "bootstrap-file")) {
            if (!*optarg) {
                fprintf(stderr, PROG ": bad --bootstrap-file '' (empty path)\n");
                return -1;
            }
            args->bootstrap_file = optarg;
        } else if (!strcmp(name, "control")) {
            if (!*optarg || strlen(optarg) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
                fprintf(stderr, PROG ": bad --control '%s' (empty or longer than %zu bytes)\n",
                        optarg, sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
                return -1;
            }
            args->control_path = optarg;
        } else if (!strcmp(name, "help")) {
            usage(stdout);
            return 1;
        } else if (!strcmp(name, "version")) {
            printf(PROG " " HOOKD_VERSION " (librdkafka %s)\n", rd_kafka_version_str());
            return 1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, PROG ": unexpected argument '%s' (see --help)\n", argv[optind]);
        return -1;
    }
    return 0;
}

/* librdkafka log lines go to stderr, one line each, with our prefix. */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    if (!strcmp(fac, "CONFWARN") && strstr(buf, "bootstrap.servers"))
        return; /* the host handle has none on purpose */
    fprintf(stderr, PROG ": rdkafka %d %s: %s\n", level, fac, buf);
}

/* Makes sure fds 0..2 are open so sockets never land on them. */
static void ensure_std_fds(void)
{
    int fd;

    for (fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_GETFD) == -1 && open("/dev/null", O_RDWR) == -1)
            fprintf(stderr, PROG ": cannot open /dev/null: %s\n", strerror(errno));
}

/* Blocks the stop signals in this (and every later) thread and returns a
 * signalfd for them, or -1. Job-control and pipe signals are ignored so a
 * closed stdout or a background tty never stops or kills the broker. */
static int signals_setup(void)
{
    sigset_t set;
    int fd;

    signal(SIGPIPE, SIG_IGN);
    signal(SIGTTIN, SIG_IGN);
    signal(SIGTTOU, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    if ((errno = pthread_sigmask(SIG_BLOCK, &set, NULL)) != 0 ||
        (fd = signalfd(-1, &set, SFD_CLOEXEC)) == -1) {
        fprintf(stderr, PROG ": signals: %s\n", strerror(errno));
        return -1;
    }
    return fd;
}

/* Creates the rd_kafka_t that hosts the mock cluster. Returns NULL on error
 * (logged). The handle never connects anywhere itself. */
static rd_kafka_t *host_handle_new(void)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[512];
    rd_kafka_t *rk;

    rd_kafka_conf_set_log_cb(conf, log_cb);
    if (rd_kafka_conf_set(conf, "client.id", PROG, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "log_level", "5", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, PROG ": rdkafka config: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    /* conf now owned by rk on success only */
    if (!(rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr)))) {
        fprintf(stderr, PROG ": rd_kafka_new: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

/* Writes 'line' plus newline to 'path' via a temporary file and rename(),
 * so readers see all of it or nothing. Returns 0 or -1 (logged). */
static int write_file_atomic(const char *path, const char *line)
{
    char tmp[4096];
    FILE *f = NULL;

    if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp)) {
        fprintf(stderr, PROG ": --bootstrap-file path too long\n");
        return -1;
    }
    if (!(f = fopen(tmp, "w"))) goto fail;
    if (fprintf(f, "%s\n", line) < 0 || fflush(f) || fsync(fileno(f))) goto fail;
    if (fclose(f)) {
        f = NULL;
        goto fail;
    }
    f = NULL;
    if (rename(tmp, path)) goto fail;
    return 0;

fail:
    fprintf(stderr, PROG ": writing %s: %s\n", path, strerror(errno));
    if (f) fclose(f);
    unlink(tmp);
    return -1;
}

int main(int argc, char **argv)
{
    args_t args;
    rd_kafka_t *rk = NULL;
    rd_kafka_mock_cluster_t *mcluster = NULL;
    server_t *srv = NULL;
    control_cluster_t cc;
    struct signalfd_siginfo si;
    char errstr[512];
    int sig_fd = -1, rc = 1, i, wrote_file = 0;

    switch (parse_args(argc, argv, &args)) {
    case 1:
        return 0;
    case -1:
        return 2;
    }
    ensure_std_fds();
    if ((sig_fd = signals_setup()) == -1 || !(rk = host_handle_new())) goto fail;

    if (!(mcluster = rd_kafka_mock_cluster_new(rk, args.brokers))) {
        fprintf(stderr, PROG ": failed to create mock cluster of %d brokers\n", args.brokers);
        goto fail;
    }
    for (i = 0; i < args.topic_cnt; i++) {
        rd_kafka_resp_err_t err =
            rd_kafka_mock_topic_create(mcluster, args.topics[i].name, args.topics[i].partitions,
                                       args.brokers < 3 ? args.brokers : 3);
        if (err) {
            fprintf(stderr, PROG ": topic %s: %s\n", args.topics[i].name, rd_kafka_err2str(err));
            goto fail;
        }
    }

    cc = (control_cluster_t){mcluster, args.brokers, rd_kafka_mock_cluster_bootstraps(mcluster)};
    if (!(srv = server_new(&cc, args.control_path, 1, errstr, sizeof(errstr)))) {
        fprintf(stderr, PROG ": control: %s\n", errstr);
        goto fail;
    }
    if (args.bootstrap_file) {
        if (write_file_atomic(args.bootstrap_file, cc.bootstraps)) goto fail;
        wrote_file = 1;
    }
    /* The announcement comes last: when it is out, everything is ready. */
    if (printf("%s\n", cc.bootstraps) < 0 || fflush(stdout))
        fprintf(stderr, PROG ": writing bootstrap to stdout: %s\n", strerror(errno));
    fprintf(stderr, PROG ": ready brokers=%d topics=%d bootstrap=%s control=stdin%s%s\n",
            args.brokers, args.topic_cnt, cc.bootstraps, args.control_path ? "," : "",
            args.control_path ? args.control_path : "");

    if (server_run(srv, sig_fd)) goto fail;
    if (read(sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
        fprintf(stderr, PROG ": signal %s received, shutting down\n",
                si.ssi_signo == SIGTERM  ? "SIGTERM"
                : si.ssi_signo == SIGINT ? "SIGINT"
                                         : "SIGHUP");
    rc = 0;

fail:
    server_destroy(srv);
    if (wrote_file) unlink(args.bootstrap_file);
    if (mcluster) rd_kafka_mock_cluster_destroy(mcluster);
    if (rk) rd_kafka_destroy(rk);
    if (sig_fd != -1) close(sig_fd);
    return rc;
}
