/* Webhook target URLs: parsing and validation (https, length, userinfo) and
 * the SSRF rules on resolved addresses, used when a subscription is created
 * and again by the worker at send time. */
#ifndef HOOKD_TARGET_H
#define HOOKD_TARGET_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#define TARGET_URL_MAX 2048
#define TARGET_MAX_ADDRS 16

typedef struct target_url {
    bool https;
    char host[256]; /* without brackets for IPv6 literals, lower-cased */
    int port;       /* explicit or 443/80 */
} target_url_t;

/* Parses and validates 'url': http(s) scheme (https only when
 * 'require_https'), a host, optional port 1..65535, no userinfo, no
 * whitespace or control characters, at most TARGET_URL_MAX bytes.
 * Returns 0, or -1 with a reason in 'err' fit for an API error message. */
int target_parse(const char *url, bool require_https, target_url_t *out, char *err,
                 size_t err_size);

/* True when the address may be contacted: not loopback, private (RFC 1918),
 * link-local, CGNAT (100.64/10), unspecified, multicast, broadcast,
 * reserved, cloud metadata (169.254.169.254, fd00:ec2::254), IPv6 ULA
 * (fc00::/7), link-local (fe80::/10), or IPv4-mapped/-compatible/NAT64/6to4
 * forms of those. Always true when 'allow_private'. */
bool target_addr_allowed(const struct sockaddr *sa, bool allow_private);

/* Resolves host:port and checks every address. Blocks for at most
 * 'timeout_ms' (a lookup still running then is given up: refused as not
 * resolving). Stores up to TARGET_MAX_ADDRS allowed addresses in 'out' (may
 * be NULL). Returns the number stored (> 0), or -1 with 'err' when
 * resolution fails or any address is refused (a name that resolves to both
 * public and private addresses is refused). */
int target_resolve(const char *host, int port, bool allow_private, int timeout_ms,
                   struct sockaddr_storage *out, int max_out, char *err, size_t err_size);

/* Formats an address as text ("10.0.0.1" or "::1"). */
void target_addr_text(const struct sockaddr *sa, char *out, size_t out_size);

#endif
