"""Deployment files: docker-compose validated by docker-compose itself, the
Kubernetes manifests parsed and checked against the configuration table,
and the Dockerfile's runtime packages checked against what the binaries
actually link (no Docker engine runs here)."""

import os
import re
import shutil
import subprocess

import yaml

from harness import INGEST_BIN, SOURCE_DIR, WORKER_BIN

K8S = SOURCE_DIR / "deploy/k8s"


def known_variables():
    table = subprocess.run([str(INGEST_BIN), "--config-markdown"], capture_output=True, text=True,
                           check=True).stdout
    return set(re.findall(r"^\| `(HOOKD_[A-Z0-9_]+)`", table, re.M))


def check_env_names(names, where):
    known = known_variables()
    for name in names:
        if name.startswith("HOOKD_KAFKA_") and name not in known:
            continue  # librdkafka passthrough
        assert name in known, f"{where}: {name} is not a hookd setting"


def test_docker_compose_is_valid():
    compose = shutil.which("docker-compose")
    assert compose, "docker-compose (Debian package) is installed by tests/run"
    out = subprocess.run([compose, "-f", str(SOURCE_DIR / "docker-compose.yml"), "config"],
                         capture_output=True, text=True, cwd=SOURCE_DIR)
    assert out.returncode == 0, out.stderr
    cfg = yaml.safe_load(out.stdout)
    services = cfg["services"]
    assert {"kafka", "postgres", "migrate", "ingest", "worker", "receiver"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka")
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft
    assert services["migrate"]["command"] == ["hookd-ingest", "--migrate"]
    for name, port in (("ingest", 8080), ("worker", 8090)):
        svc = services[name]
        check_env_names(svc["environment"], f"compose {name}")
        assert any(str(port) in str(p) for p in svc["ports"])
        assert svc["environment"]["HOOKD_PROBE_ADDR"] == f"0.0.0.0:{port + 1}"
        assert f"127.0.0.1:{port + 1}/readyz" in " ".join(svc["healthcheck"]["test"])
        assert svc["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["ingest"]["environment"]["HOOKD_AUTO_MIGRATE"] == "false"


def load_k8s():
    docs = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.setdefault(doc["kind"], []).append((path.name, doc))
    return docs


def test_kustomization_lists_existing_files():
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for res in kust["resources"]:
        assert (K8S / res).exists(), res
    assert "secret.example.yaml" not in kust["resources"]


def test_deployments_probes_ports_env_and_security():
    docs = load_k8s()
    deployments = {d["metadata"]["name"]: d for _, d in docs["Deployment"]}
    assert set(deployments) == {"hookd-ingest", "hookd-worker"}
    config_maps = {d["metadata"]["name"]: d for _, d in docs["ConfigMap"]}
    check_env_names(config_maps["hookd-config"]["data"], "ConfigMap")
    secret = docs["Secret"][0][1]
    check_env_names(secret["stringData"], "Secret example")
    for name, port, addr_var, binary in (("hookd-ingest", 8080, "HOOKD_HTTP_ADDR", INGEST_BIN),
                                         ("hookd-worker", 8090, "HOOKD_WORKER_HTTP_ADDR", WORKER_BIN)):
        dep = deployments[name]
        pod = dep["spec"]["template"]
        spec = pod["spec"]
        assert spec["enableServiceLinks"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["terminationGracePeriodSeconds"] > int(config_maps["hookd-config"]["data"]["HOOKD_SHUTDOWN_TIMEOUT_S"])
        (c,) = spec["containers"]
        assert c["command"] == [binary.name]
        assert c["image"].split(":")[0] == "hookd"
        assert c["ports"][0]["containerPort"] == port
        env = {e["name"]: e.get("value") for e in c["env"]}
        check_env_names(env, name)
        assert env[addr_var] == f"0.0.0.0:{port}"
        assert {r["configMapRef"]["name"] for r in c["envFrom"] if "configMapRef" in r} == {"hookd-config"}
        assert {r["secretRef"]["name"] for r in c["envFrom"] if "secretRef" in r} == {"hookd-secrets"}
        # probes go to HOOKD_PROBE_ADDR (a thread of its own), declared as port 'probe'
        assert env["HOOKD_PROBE_ADDR"] == f"0.0.0.0:{port + 1}"
        assert {"name": "probe", "containerPort": port + 1} in c["ports"]
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"),
                            ("startupProbe", "/healthz")):
            assert c[probe]["httpGet"] == {"path": path, "port": "probe"}, (name, probe)
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"][kind])
        ann = pod["metadata"]["annotations"]
        assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/port"] == str(port)
        assert ann["prometheus.io/path"] == "/metrics"
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert dep["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()


def test_services_pdbs_hpas_and_job_target_real_objects():
    docs = load_k8s()
    deployments = {d["metadata"]["name"]: d for _, d in docs["Deployment"]}
    labels = {n: d["spec"]["template"]["metadata"]["labels"] for n, d in deployments.items()}
    for _, svc in docs["Service"]:
        sel = svc["spec"]["selector"]
        assert any(sel.items() <= l.items() for l in labels.values()), svc["metadata"]["name"]
    for _, pdb in docs["PodDisruptionBudget"]:
        sel = pdb["spec"]["selector"]["matchLabels"]
        assert any(sel.items() <= l.items() for l in labels.values())
    for _, hpa in docs["HorizontalPodAutoscaler"]:
        assert hpa["spec"]["scaleTargetRef"]["name"] in deployments
        assert hpa["spec"]["minReplicas"] >= 2
    (_, job), = docs["Job"]
    (c,) = job["spec"]["template"]["spec"]["containers"]
    assert c["command"] == ["hookd-ingest", "--migrate"]


def needed_packages(binary):
    """Debian packages of the libraries the binary links directly (DT_NEEDED)."""
    dyn = subprocess.run(["readelf", "-d", str(binary)], capture_output=True, text=True, check=True).stdout
    ldd = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True).stdout
    paths = dict(re.findall(r"^\s*(\S+) => (/\S+)", ldd, re.M))
    packages = set()
    for soname in re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", dyn):
        if soname.startswith(("libasan", "libubsan")):
            continue  # the sanitizer build used by the tests
        path = paths[soname]
        real = os.path.realpath(path)
        # merged /usr: dpkg may know either spelling
        candidates = {path, real}
        for p in list(candidates):
            if p.startswith("/usr/lib/"):
                candidates.add(p[4:])
            elif p.startswith("/lib/"):
                candidates.add("/usr" + p)
        owner = None
        for p in sorted(candidates):
            owner = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True)
            if owner.returncode == 0:
                break
        assert owner.returncode == 0, f"no package owns {path}"
        packages.add(owner.stdout.split(":")[0])
    return packages - {"libc6", "libgcc-s1"}


def test_dockerfile_runtime_has_every_linked_library():
    text = (SOURCE_DIR / "deploy/docker/Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.M)
    assert len(stages) == 2 and stages[1] == "debian:bookworm-slim"
    assert re.search(r"^USER 10001", text, re.M)
    runtime = text.split("FROM debian:bookworm-slim", 1)[1]
    installed = set(re.findall(r"[a-z0-9][a-z0-9.+-]+", runtime.split("apt-get install", 1)[1].split("&&", 1)[0]))
    for binary in (INGEST_BIN, WORKER_BIN):
        assert f"/services/{binary.parent.name}/{binary.name}" in runtime
        pkgs = needed_packages(binary)
        assert "librdkafka1" in pkgs and "libpq5" in pkgs  # sanity: the lookup works
        missing = pkgs - installed
        assert not missing, f"{binary.name} links libraries from {missing}, not installed in the runtime stage"
