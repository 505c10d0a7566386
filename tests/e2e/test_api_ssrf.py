"""Target URL validation with the production defaults (HOOKD_REQUIRE_HTTPS=true,
HOOKD_ALLOW_PRIVATE_TARGETS=false) through every API that takes a URL:
http, loopback, private, link-local/metadata, CGNAT, IPv6 loopback/ULA/
mapped forms, names resolving to loopback, userinfo and overlong URLs are
all refused with the reason; public https addresses are accepted."""

from api_helpers import ApiEnv, NameServer

REFUSED = [
    ("http://93.184.216.34/hook", "must use https"),
    ("https://127.0.0.1/hook", "127.0.0.1"),
    ("https://127.1:8443/hook", "127.0.0.1"),
    ("https://2130706433/hook", "127.0.0.1"),
    ("https://localhost/hook", "localhost resolves to"),
    ("https://10.0.0.1/hook", "10.0.0.1"),
    ("https://172.16.5.4/hook", "172.16.5.4"),
    ("https://192.168.1.1/hook", "192.168.1.1"),
    ("https://100.64.0.1/hook", "100.64.0.1"),
    ("https://169.254.169.254/latest/meta-data/", "169.254.169.254"),
    ("https://0.0.0.0/hook", "0.0.0.0"),
    ("https://[::1]/hook", "::1"),
    ("https://[fd00:ec2::254]/hook", "fd00:ec2::254"),
    ("https://[fe80::1]/hook", "fe80::1"),
    ("https://[::ffff:127.0.0.1]/hook", "127.0.0.1"),
    ("https://[::ffff:10.0.0.1]/hook", "10.0.0.1"),
    ("https://user:pass@93.184.216.34/hook", "credentials"),
    ("https://93.184.216.34/" + "a" * 2048, "longer than 2048"),
    ("https://93.184.216.34:0/hook", "invalid port"),
    ("javascript:alert(1)", "https"),
]
PUBLIC = "https://93.184.216.34/hook"


def test_every_api_refuses_private_and_plain_http_targets(services, db):
    env = ApiEnv(services, db, HOOKD_REQUIRE_HTTPS="true", HOOKD_ALLOW_PRIVATE_TARGETS="false")
    c = env.client("account:acct_1")

    # accepted: a public address over https (nothing is contacted at creation)
    status, w = c.post("/v1/webhooks", {"event_types": ["client/created"], "target_url": PUBLIC})
    assert status == 201, w
    status, hook = c.post("/hooks", {"action": "event.created", "target_url": PUBLIC})
    assert status == 201, hook
    assert c.post("/v1/subscriptions/standard/subscribe",
                  {"event": "client/created", "target_url": PUBLIC}) == (200, {"response": "Subscribed"})
    before = env.db.query("SELECT id, target_url, version FROM subscriptions ORDER BY id")

    for url, why in REFUSED:
        status, err = c.post("/v1/webhooks", {"event_types": ["client/created"], "target_url": url})
        assert status == 400 and err["error"] == "invalid_target_url" and err["field"] == "target_url", (url, err)
        assert why in err["message"], (url, err)
        status, err = c.patch("/v1/webhooks/" + w["id"], {"target_url": url})
        assert status == 400 and why in err["message"], (url, err)
        status, err = c.post("/hooks", {"action": "event.created", "target_url": url})
        assert status == 400 and err["error"] == "invalid_target_url" and why in err["message"], (url, err)
        status, err = c.put("/hooks/" + hook["_id"], {"target_url": url})
        assert status == 400 and why in err["message"], (url, err)
        status, err = c.post("/v1/subscriptions/standard/subscribe", {"event": "client/created", "target_url": url})
        assert status == 500 and err["response"] == "Not Subscribed" and why in err["error"], (url, err)

    assert env.db.query("SELECT id, target_url, version FROM subscriptions ORDER BY id") == before


def test_private_targets_are_allowed_when_configured(services, db, receiver, tmp_path):
    with NameServer(tmp_path) as ns:  # answers NXDOMAIN: no lookup leaves the machine
        env = ApiEnv(services, db, HOOKD_REQUIRE_HTTPS="false", HOOKD_ALLOW_PRIVATE_TARGETS="true",
                     wrapper=ns.wrapper)
        c = env.client("account:acct_1")
        for url in (receiver.url("/x"), "http://localhost:9/x", "https://10.0.0.1/x", "http://[::1]:9/x"):
            status, w = c.post("/v1/webhooks", {"event_types": ["*"], "target_url": url})
            assert status == 201 and w["target_url"] == url, (url, w)
        # but never userinfo, other schemes or unresolvable names
        for url, why in (("http://u@127.0.0.1/x", "credentials"), ("gopher://127.0.0.1/", "http or https"),
                         ("http://no-such-host.invalid/x", "cannot resolve")):
            status, err = c.post("/v1/webhooks", {"event_types": ["*"], "target_url": url})
            assert status == 400 and why in err["message"], (url, err)
        assert ns.names and set(ns.names) == {"no-such-host.invalid"}


def test_a_silent_name_server_costs_a_bounded_wait(services, db, tmp_path, receiver):
    """Target names are resolved when a subscription is written. A name
    server that never answers (the resolver's own schedule here: 5 s, 2
    attempts) gets the request refused after 3 s with the reason, instead
    of holding the API for the resolver's whole schedule, and the API goes
    on working."""
    with NameServer(tmp_path, answer=False) as ns:
        env = ApiEnv(services, db, HOOKD_REQUIRE_HTTPS="false", wrapper=ns.wrapper)
        c = env.client("account:acct_1")
        status, err = c.post("/v1/webhooks", {"event_types": ["*"], "target_url": "http://hooks.silent.test/x"})
        assert status == 400 and err["error"] == "invalid_target_url", err
        assert "cannot resolve host hooks.silent.test: no answer within 3000 ms" in err["message"], err
        assert "hooks.silent.test" in ns.names

        # a literal address needs no lookup; the same name again is refused the same way
        status, w = c.post("/v1/webhooks", {"event_types": ["*"], "target_url": receiver.url("/x")})
        assert status == 201, w
        status, err = c.post("/hooks", {"action": "event.created", "target_url": "http://hooks.silent.test/y"})
        assert status == 400 and "no answer within 3000 ms" in err["message"], err
        assert [s["target_url"] for s in env.subscriptions()] == [receiver.url("/x")]
        assert env.alive()
