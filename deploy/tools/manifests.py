#!/usr/bin/env python3
"""Checks on rendered Kubernetes manifests for Portcullis (used by validate.sh).

  manifests.py policy RENDERED.yaml...
      Every container hardened (non-root 65532, read-only root filesystem, no
      privilege escalation, all capabilities dropped, RuntimeDefault seccomp,
      resource requests and limits); every Portcullis container probed on
      /ping (startup, liveness) and /ready (readiness) on its own port, with
      its config mounted read-only; pods without a service account token or
      service-link variables, and with a grace period longer than Portcullis's drain; Services aimed at
      Portcullis; no secret inside a ConfigMap; a PodDisruptionBudget for
      multi-replica gateways; the loopback upstream in sidecar pods.

  manifests.py compare A.yaml B.yaml
      Whether two renders hold the same objects, ignoring the hash suffix of
      generated ConfigMap/Secret names (kubectl kustomize vs render.py).

  manifests.py check-config RENDERED.yaml TEST_PORTCULLIS_BIN
      Runs `portcullis check-config` for every Portcullis container exactly as
      the pod would start: the ConfigMap and Secret volumes are written to a
      temporary directory standing in for their mount paths, and the
      container's environment is passed with those paths rewritten.
"""

import base64
import os
import re
import subprocess
import sys
import tempfile
import tomllib

import yaml

HARDENED_UID = 65532
# Portcullis drains for at most 25 s after SIGTERM (server.rs ServerLimits).
DRAIN_SECONDS = 25
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet"}
SECRET_TOML_KEYS = {("oidc", "client_secret"), ("session", "secret")}


def load(paths):
    documents = []
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            documents += [doc for doc in yaml.safe_load_all(handle) if doc]
    return documents


def ident(obj):
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def is_portcullis(container):
    image = container.get("image", "")
    return container.get("name") == "portcullis" or "/portcullis:" in image or image.startswith("portcullis")


def pod_spec(obj):
    if obj.get("kind") in WORKLOAD_KINDS:
        return obj["spec"]["template"]["spec"]
    return None


def effective(container, pod, key):
    """A securityContext field, from the container or else the pod."""
    value = container.get("securityContext", {}).get(key)
    return pod.get("securityContext", {}).get(key) if value is None else value


class Policy:
    def __init__(self, documents):
        self.documents = documents
        self.problems = []

    def fail(self, where, problem):
        self.problems.append(f"{where}: {problem}")

    def run(self):
        workloads = [obj for obj in self.documents if pod_spec(obj) is not None]
        if not workloads:
            self.fail("render", "no Deployment found")
        for obj in workloads:
            self.check_workload(obj)
        for obj in self.documents:
            if obj.get("kind") == "Service":
                self.check_service(obj, workloads)
            if obj.get("kind") == "ConfigMap":
                self.check_configmap(obj)
        return self.problems

    def check_workload(self, obj):
        where = ident(obj)
        pod = pod_spec(obj)
        if pod.get("automountServiceAccountToken") is not False:
            self.fail(where, "automountServiceAccountToken must be false")
        if pod.get("enableServiceLinks") is not False:
            # Service links inject PORTCULLIS_SERVICE_HOST, PORTCULLIS_PORT... for a
            # Service named portcullis, which Portcullis reads as unknown keys.
            self.fail(where, "enableServiceLinks must be false")
        if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
            self.fail(where, "must not use host namespaces")
        all_containers = pod.get("initContainers", []) + pod.get("containers", [])
        gateways = [c for c in all_containers if is_portcullis(c)]
        if not gateways:
            self.fail(where, "has no Portcullis container")
        for container in all_containers:
            self.check_container(f"{where} container {container.get('name')}", container, pod)
        for container in gateways:
            self.check_gateway(f"{where} container {container.get('name')}", container, pod)
        replicas = obj.get("spec", {}).get("replicas", 1)
        if gateways and replicas > 1 and not self.has_pdb(obj):
            self.fail(where, f"{replicas} replicas but no PodDisruptionBudget selects them")
        if gateways and len(pod.get("containers", [])) > 1:
            # Sidecar layout: the app shares the pod, so the upstream is loopback.
            for toml in self.gateway_configs(pod, gateways[0]):
                upstream = toml.get("upstream", "")
                if not re.match(r"^http://(127\.0\.0\.1|\[::1\]|localhost):\d+", upstream):
                    self.fail(where, f"sidecar upstream must be on loopback, found {upstream!r}")

    def check_container(self, where, container, pod):
        context = container.get("securityContext", {})
        if effective(container, pod, "runAsNonRoot") is not True:
            self.fail(where, "runAsNonRoot must be true")
        if effective(container, pod, "runAsUser") != HARDENED_UID:
            self.fail(where, f"runAsUser must be {HARDENED_UID}")
        if context.get("readOnlyRootFilesystem") is not True:
            self.fail(where, "readOnlyRootFilesystem must be true")
        if context.get("allowPrivilegeEscalation") is not False:
            self.fail(where, "allowPrivilegeEscalation must be false")
        if context.get("privileged"):
            self.fail(where, "must not be privileged")
        if "ALL" not in context.get("capabilities", {}).get("drop", []):
            self.fail(where, "capabilities.drop must include ALL")
        if context.get("capabilities", {}).get("add"):
            self.fail(where, "must not add capabilities")
        seccomp = effective(container, pod, "seccompProfile") or {}
        if seccomp.get("type") != "RuntimeDefault":
            self.fail(where, "seccompProfile must be RuntimeDefault")
        resources = container.get("resources", {})
        for section in ("requests", "limits"):
            if "memory" not in resources.get(section, {}):
                self.fail(where, f"resources.{section}.memory must be set")
        if "cpu" not in resources.get("requests", {}):
            self.fail(where, "resources.requests.cpu must be set")

    def check_gateway(self, where, container, pod):
        ports = container.get("ports", [])
        port_refs = {p.get("name") for p in ports} | {p.get("containerPort") for p in ports}
        if not any(p.get("containerPort") == 4180 for p in ports):
            self.fail(where, "must expose containerPort 4180")
        expected = {"startupProbe": "/ping", "livenessProbe": "/ping", "readinessProbe": "/ready"}
        for probe_name, path in expected.items():
            probe = container.get(probe_name)
            if not probe:
                self.fail(where, f"{probe_name} is missing")
                continue
            http_get = probe.get("httpGet", {})
            if http_get.get("path") != path:
                self.fail(where, f"{probe_name} must be httpGet {path}, found {http_get.get('path')!r}")
            if http_get.get("port") not in port_refs:
                self.fail(where, f"{probe_name} port {http_get.get('port')!r} is not one of the container's ports")
        grace = pod.get("terminationGracePeriodSeconds", 30)
        pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        if grace <= pre_stop + DRAIN_SECONDS:
            self.fail(where, f"terminationGracePeriodSeconds {grace} must exceed preStop {pre_stop} s + drain {DRAIN_SECONDS} s")
        mounts = {m["name"]: m for m in container.get("volumeMounts", [])}
        for volume in pod.get("volumes", []):
            if ("configMap" in volume or "secret" in volume) and volume["name"] in mounts:
                if mounts[volume["name"]].get("readOnly") is not True:
                    self.fail(where, f"volume {volume['name']} must be mounted readOnly")
        if not self.gateway_configs(pod, container):
            self.fail(where, "no configuration file from a ConfigMap (PORTCULLIS_CONFIG)")
        for env in container.get("env", []):
            if env.get("name") in ("PORTCULLIS_SESSION__SECRET", "PORTCULLIS_OIDC__CLIENT_SECRET") and "value" in env:
                self.fail(where, f"{env['name']} must come from a Secret, not a literal value")

    def gateway_configs(self, pod, container):
        """The parsed TOML files PORTCULLIS_CONFIG points at, via a ConfigMap mount."""
        config_path = next((e.get("value") for e in container.get("env", []) if e.get("name") == "PORTCULLIS_CONFIG"), None)
        if not config_path:
            return []
        found = []
        for mount_path, source in mounted_files(self.documents, pod, container).items():
            if mount_path == config_path and source[0] == "ConfigMap":
                found.append(tomllib.loads(source[1].decode("utf-8")))
        return found

    def has_pdb(self, obj):
        labels = obj["spec"]["template"]["metadata"].get("labels", {})
        namespace = obj.get("metadata", {}).get("namespace")
        for pdb in self.documents:
            if pdb.get("kind") != "PodDisruptionBudget" or pdb.get("metadata", {}).get("namespace") != namespace:
                continue
            selector = pdb.get("spec", {}).get("selector", {}).get("matchLabels", {})
            if selector and all(labels.get(k) == v for k, v in selector.items()):
                return True
        return False

    def check_service(self, service, workloads):
        selector = service.get("spec", {}).get("selector", {})
        for obj in workloads:
            labels = obj["spec"]["template"]["metadata"].get("labels", {})
            if not selector or not all(labels.get(k) == v for k, v in selector.items()):
                continue
            pod = pod_spec(obj)
            gateway_ports = set()
            for container in pod.get("containers", []):
                if is_portcullis(container):
                    for port in container.get("ports", []):
                        gateway_ports |= {port.get("name"), port.get("containerPort")}
            for port in service["spec"].get("ports", []):
                target = port.get("targetPort", port.get("port"))
                if target not in gateway_ports:
                    self.fail(ident(service), f"targetPort {target!r} is not a Portcullis port of {ident(obj)}")

    def check_configmap(self, configmap):
        for key, text in configmap.get("data", {}).items():
            if not key.endswith(".toml"):
                continue
            try:
                toml = tomllib.loads(text)
            except tomllib.TOMLDecodeError as error:
                self.fail(ident(configmap), f"{key} is not valid TOML: {error}")
                continue
            for section, name in SECRET_TOML_KEYS:
                if name in toml.get(section, {}):
                    self.fail(ident(configmap), f"{key} holds {section}.{name}; secrets belong in a Secret")
            if not str(toml.get("listen", "")).startswith("0.0.0.0:"):
                self.fail(ident(configmap), f"{key}: listen must be 0.0.0.0:PORT in a pod (default is loopback)")


def mounted_files(documents, pod, container):
    """{path inside the container: (kind, bytes)} for ConfigMap/Secret volume mounts."""
    by_name = {(o.get("kind"), o["metadata"]["name"]): o for o in documents if o.get("kind") in ("ConfigMap", "Secret")}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    files = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes.get(mount["name"], {})
        if "configMap" in volume:
            source = by_name.get(("ConfigMap", volume["configMap"]["name"]))
            data = {k: v.encode("utf-8") for k, v in (source or {}).get("data", {}).items()}
            kind = "ConfigMap"
        elif "secret" in volume:
            source = by_name.get(("Secret", volume["secret"]["secretName"]))
            data = {k: base64.b64decode(v) for k, v in (source or {}).get("data", {}).items()}
            kind = "Secret"
        else:
            continue
        for key, content in data.items():
            files[f"{mount['mountPath'].rstrip('/')}/{key}"] = (kind, content)
    return files


def check_config(documents, binary):
    failures = 0
    for obj in documents:
        pod = pod_spec(obj)
        if pod is None:
            continue
        for container in pod.get("containers", []):
            if not is_portcullis(container):
                continue
            with tempfile.TemporaryDirectory(prefix="portcullis-check-") as root:
                for path, (_, content) in mounted_files(documents, pod, container).items():
                    target = root + path
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    with open(target, "wb") as handle:
                        handle.write(content)
                env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
                for variable in container.get("env", []):
                    if "value" not in variable:
                        continue  # valueFrom: not resolvable offline, and none is used
                    value = variable["value"]
                    if value.startswith("/") and os.path.exists(root + value):
                        value = root + value
                    env[variable["name"]] = value
                result = subprocess.run(
                    [binary, "check-config"],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                )
                where = f"{ident(obj)} container {container['name']}"
                output = (result.stdout + result.stderr).strip().replace(root, "")
                if result.returncode == 0:
                    print(f"     {where}: {output}")
                else:
                    print(f"     {where} (exit {result.returncode}): {output}")
                    failures += 1
    return failures


def strip_suffixes(documents):
    """Renames generated objects (and references to them) to their base names."""
    text = yaml.safe_dump_all(documents, sort_keys=True)
    text = re.sub(r"\b(portcullis-(?:config|secrets))-[a-z0-9]{10}\b", r"\1", text)
    return sorted(yaml.safe_load_all(text), key=ident)


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    command = argv[1]
    if command == "policy":
        problems = Policy(load(argv[2:])).run()
        for problem in problems:
            print(f"     {problem}")
        return 1 if problems else 0
    if command == "compare" and len(argv) == 4:
        left, right = strip_suffixes(load([argv[2]])), strip_suffixes(load([argv[3]]))
        if left == right:
            return 0
        names = ({ident(o) for o in left}, {ident(o) for o in right})
        print(f"     renders differ: {argv[2]} vs {argv[3]}; objects {sorted(names[0] ^ names[1]) or 'same, contents differ'}")
        for a, b in zip(left, right):
            if a != b:
                print(f"     first differing object: {ident(a)}")
                break
        return 1
    if command == "check-config" and len(argv) == 4:
        return 1 if check_config(load([argv[2]]), argv[3]) else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
