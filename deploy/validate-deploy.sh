#!/usr/bin/env bash
# Checks the deployment files (make test runs it):
# - deploy/k8s/*.yaml against the Kubernetes API schemas (PyPI `kubernetes-validate`, pinned, in a
#   venv under the tools folder; strict: unknown fields are errors);
# - deploy/compose.yaml and the manifests against the engine itself: every engine setting they
#   set is one `winnerr serve` reads, roles are real roles, the container port is the one the
#   engine listens on, probes and health checks hit /healthz or /readyz, and the files they
#   mount exist. (No compose validator installs here without a container runtime.)
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=1.37.0
KUBERNETES=1.33
TOOLS="${WINNERR_TOOLS_DIR:-${HOME:-/root}/.cache/winnerr/tools}"
VENV="$TOOLS/kubernetes-validate-$VERSION"
if [ ! -x "$VENV/bin/kubernetes-validate" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$VERSION"
fi
"$VENV/bin/kubernetes-validate" --strict --kubernetes-version "$KUBERNETES" deploy/k8s/*.yaml

cargo build -q --bin winnerr
"${CARGO_TARGET_DIR:-target}/debug/winnerr" serve --help >"$TOOLS/serve-help.txt"
"$VENV/bin/python" - "$TOOLS/serve-help.txt" <<'PY'
import re, sys, pathlib, yaml

help_text = open(sys.argv[1]).read()
settings = set(re.findall(r"env: ([A-Z_]+)", help_text))
roles = {"voice", "gateway", "store", "scoring"}
problems = []

def check_env(where, env):
    for name, value in env.items():
        if name.startswith(("WINNERR_", "KAFKA_", "DATABASE_", "TWILIO_")) and name not in settings:
            problems.append(f"{where}: {name} is not a setting of winnerr serve")
        if name == "WINNERR_ROLES":
            unknown = set(str(value).split(",")) - roles
            if unknown:
                problems.append(f"{where}: unknown roles {sorted(unknown)}")
        if name == "WINNERR_LISTEN" and not str(value).endswith(":8080"):
            problems.append(f"{where}: listens on {value}, the files expect 8080")

compose = yaml.safe_load(open("deploy/compose.yaml"))
engines = 0
for name, service in compose["services"].items():
    if service.get("image") != "winnerr:local":
        continue
    env = service.get("environment", {})
    check_env(f"compose {name}", env)
    if "WINNERR_ROLES" in env:
        engines += 1
        test = " ".join(service.get("healthcheck", {}).get("test", []))
        if "/readyz" not in test:
            problems.append(f"compose {name}: its health check should ask /readyz")
    for port in service.get("ports", []):
        if not str(port).endswith(":8080"):
            problems.append(f"compose {name}: port {port} is not the engine's 8080")
for name, service in compose["services"].items():
    for volume in service.get("volumes", []):
        source = str(volume).split(":")[0]
        if source.startswith("./") and not (pathlib.Path("deploy") / source).exists():
            problems.append(f"compose {name}: mounts {source}, which does not exist")
if engines != 4:
    problems.append(f"compose: {engines} engine roles, expected voice, gateway, store, scoring")

manifests = [d for d in yaml.safe_load_all(open("deploy/k8s/winnerr.yaml")) if d]
for doc in manifests:
    kind, name = doc["kind"], doc["metadata"]["name"]
    if kind == "ConfigMap":
        check_env(f"k8s {name}", doc["data"])
    if kind == "Secret":
        check_env(f"k8s {name}", doc["stringData"])
    if kind == "Deployment":
        pod = doc["spec"]["template"]["spec"]
        for container in pod["containers"]:
            check_env(f"k8s {name}", {e["name"]: e.get("value") for e in container.get("env", [])})
            ports = {p["containerPort"] for p in container.get("ports", [])}
            if ports != {8080}:
                problems.append(f"k8s {name}: ports {ports}, expected 8080")
            for probe, path in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]:
                got = container.get(probe, {}).get("httpGet", {}).get("path")
                if got != path:
                    problems.append(f"k8s {name}: {probe} asks {got}, expected {path}")
kinds = [d["kind"] for d in manifests]
for kind, count in [("Deployment", 4), ("PodDisruptionBudget", 4), ("HorizontalPodAutoscaler", 1)]:
    if kinds.count(kind) != count:
        problems.append(f"k8s: {kinds.count(kind)} {kind}, expected {count}")

if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f"deployment files: {len(manifests)} manifests and {len(compose['services'])} compose services agree with the engine")
PY
