#!/usr/bin/env python3
"""Renders a Kustomize overlay offline, for machines without `kubectl kustomize`.

Supports exactly the subset deploy/kubernetes uses, and refuses anything else
rather than rendering it wrongly:
  resources (files and directories), namespace, images (name/newName/newTag),
  configMapGenerator and secretGenerator (files, literals, type) with a
  content-hash name suffix, and the name references to generated objects from
  pod templates (volumes, env valueFrom, envFrom).

Usage: render.py OVERLAY_DIR [OUTPUT.yaml]   (stdout without OUTPUT)
"""

import base64
import hashlib
import json
import os
import sys

import yaml

SUPPORTED_KEYS = {
    "apiVersion",
    "kind",
    "namespace",
    "resources",
    "configMapGenerator",
    "secretGenerator",
    "images",
}
GENERATOR_KEYS = {"name", "files", "literals", "type"}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


class RenderError(Exception):
    """The kustomization uses something this renderer does not support."""


def content_hash(obj):
    """A 10-character name suffix from the object's kind, name, type and data, in
    Kustomize's alphabet. It changes whenever the content does, like Kustomize's,
    but is not byte-identical to it; validate.sh compares renders modulo suffix."""
    encoded = {"kind": obj["kind"], "name": obj["metadata"]["name"], "data": obj.get("data", {})}
    if obj["kind"] == "Secret":
        encoded["type"] = obj.get("type", "Opaque")
    text = json.dumps(encoded, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]
    return digest.translate(str.maketrans({"0": "g", "1": "h", "3": "k", "a": "m", "e": "t"}))


def generate(kind, spec, base_dir):
    unknown = set(spec) - GENERATOR_KEYS
    if unknown:
        raise RenderError(f"{kind} generator {spec.get('name')}: unsupported keys {sorted(unknown)}")
    data = {}
    for entry in spec.get("files", []):
        key, _, path = entry.partition("=") if "=" in entry else (os.path.basename(entry), "", entry)
        with open(os.path.join(base_dir, path), "rb") as handle:
            content = handle.read()
        data[key] = content
    for entry in spec.get("literals", []):
        key, _, value = entry.partition("=")
        data[key] = value.encode("utf-8")
    obj = {"apiVersion": "v1", "kind": kind, "metadata": {"name": spec["name"]}}
    if kind == "ConfigMap":
        obj["data"] = {key: value.decode("utf-8") for key, value in data.items()}
    else:
        obj["type"] = spec.get("type", "Opaque")
        obj["data"] = {key: base64.b64encode(value).decode("ascii") for key, value in data.items()}
    return obj


def load_kustomization(directory):
    """Returns (objects, generated) for a kustomization directory, recursively."""
    path = os.path.join(directory, "kustomization.yaml")
    with open(path, encoding="utf-8") as handle:
        kustomization = yaml.safe_load(handle) or {}
    unknown = set(kustomization) - SUPPORTED_KEYS
    if unknown:
        raise RenderError(f"{path}: unsupported keys {sorted(unknown)}; use kubectl kustomize")

    objects, generated = [], []
    for resource in kustomization.get("resources", []):
        target = os.path.normpath(os.path.join(directory, resource))
        if os.path.isdir(target):
            sub_objects, sub_generated = load_kustomization(target)
            objects += sub_objects
            generated += sub_generated
        else:
            with open(target, encoding="utf-8") as handle:
                objects += [doc for doc in yaml.safe_load_all(handle) if doc]
    for spec in kustomization.get("configMapGenerator", []):
        generated.append(generate("ConfigMap", spec, directory))
    for spec in kustomization.get("secretGenerator", []):
        generated.append(generate("Secret", spec, directory))

    namespace = kustomization.get("namespace")
    if namespace:
        for obj in objects + generated:
            obj.setdefault("metadata", {})["namespace"] = namespace
    for image in kustomization.get("images", []):
        set_image(objects, image)
    return objects, generated


def pod_spec(obj):
    if obj.get("kind") in WORKLOAD_KINDS:
        return obj.get("spec", {}).get("template", {}).get("spec", {})
    if obj.get("kind") == "Pod":
        return obj.get("spec", {})
    return None


def containers(spec):
    return spec.get("initContainers", []) + spec.get("containers", [])


def set_image(objects, image):
    for obj in objects:
        spec = pod_spec(obj)
        if spec is None:
            continue
        for container in containers(spec):
            name, tag = split_image(container.get("image", ""))
            if name != image["name"]:
                continue
            new_name = image.get("newName", name)
            new_tag = image.get("newTag", tag)
            container["image"] = f"{new_name}:{new_tag}" if new_tag else new_name


def split_image(reference):
    last = reference.rsplit("/", 1)[-1]
    if ":" in last and "@" not in last:
        return reference.rsplit(":", 1)[0], reference.rsplit(":", 1)[1]
    return reference, None


def rename_references(objects, renames):
    """Points pod templates at the hash-suffixed names of generated objects."""
    for obj in objects:
        spec = pod_spec(obj)
        if spec is None:
            continue
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                volume["configMap"]["name"] = renames["ConfigMap"].get(volume["configMap"]["name"], volume["configMap"]["name"])
            if "secret" in volume:
                old = volume["secret"].get("secretName")
                volume["secret"]["secretName"] = renames["Secret"].get(old, old)
        for container in containers(spec):
            for env in container.get("env", []):
                source = env.get("valueFrom", {})
                for key, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                    if key in source:
                        source[key]["name"] = renames[kind].get(source[key]["name"], source[key]["name"])
            for env_from in container.get("envFrom", []):
                for key, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                    if key in env_from:
                        env_from[key]["name"] = renames[kind].get(env_from[key]["name"], env_from[key]["name"])


def render(directory):
    objects, generated = load_kustomization(directory)
    renames = {"ConfigMap": {}, "Secret": {}}
    for obj in generated:
        name = obj["metadata"]["name"]
        hashed = f"{name}-{content_hash(obj)}"
        renames[obj["kind"]][name] = hashed
        obj["metadata"]["name"] = hashed
    rename_references(objects, renames)
    return generated + objects


def main(argv):
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        documents = render(argv[1])
    except (RenderError, OSError, yaml.YAMLError, KeyError) as error:
        print(f"render.py: {error}", file=sys.stderr)
        return 1
    if len(argv) == 3:
        with open(argv[2], "w", encoding="utf-8") as output:
            yaml.safe_dump_all(documents, output, sort_keys=False, default_flow_style=False)
    else:
        yaml.safe_dump_all(documents, sys.stdout, sort_keys=False, default_flow_style=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
