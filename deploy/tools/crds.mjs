#!/usr/bin/env node
// Checks the custom resources of the Gateway API recipes offline (used by
// deploy/validate.sh):
//
//   node crds.mjs [--core-out DIR] FILE.yaml...
//
// Every object of every file is one of:
//   - a core Kubernetes object (v1, apps/v1, policy/v1, networking.k8s.io/v1,
//     ...): not judged here; with --core-out, written to DIR/<n>-<file> for
//     kubernetes-validate, which holds those schemas;
//   - a custom resource that a @kubernetes-models package knows (Gateway API,
//     Envoy Gateway, Istio, Traefik): checked twice,
//       1. by the package's generated validator (types, enums, patterns,
//          required fields; it accepts unknown fields), and
//       2. strictly, by the TypeScript compiler against the package's
//          generated types: every object becomes a typed object literal, and
//          an unknown field at any depth (a misspelt `pathPrefix` for
//          `path`) is an excess-property error, a wrong type a type error;
//   - anything else: an unknown kind, refused.
// Istio's mesh configuration has no CRD schema (IstioOperator's `spec` is
// open): its `extensionProviders` are checked against istio-mesh.d.ts, here,
// both in an IstioOperator and in the `mesh` key of the `istio` ConfigMap.
//
// Prints one line per problem; exit 1 when there is any, 2 on usage errors.

import { readFileSync, mkdirSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import YAML from "yaml";

const toolsDir = dirname(fileURLToPath(import.meta.url));

// API groups whose schemas kubernetes-validate ships.
const CORE_GROUPS = new Set(["", "apps", "policy", "batch", "autoscaling", "networking.k8s.io", "rbac.authorization.k8s.io"]);

// API group -> the @kubernetes-models package generated from its CRDs.
function modelPackage(group) {
  if (group === "gateway.networking.k8s.io" || group === "gateway.networking.x-k8s.io") return "@kubernetes-models/gateway-api";
  if (group === "gateway.envoyproxy.io") return "@kubernetes-models/envoy-gateway";
  if (group.endsWith(".istio.io")) return "@kubernetes-models/istio";
  if (group === "traefik.io") return "@kubernetes-models/traefik";
  return null;
}

function splitApiVersion(apiVersion) {
  const slash = apiVersion.lastIndexOf("/");
  return slash < 0 ? ["", apiVersion] : [apiVersion.slice(0, slash), apiVersion.slice(slash + 1)];
}

function describe(source, obj) {
  return `${source}: ${obj?.kind ?? "?"}/${obj?.metadata?.name ?? "?"}`;
}

function loadDocuments(path) {
  const documents = YAML.parseAllDocuments(readFileSync(path, "utf8"), { prettyErrors: true });
  const objects = [];
  for (const document of documents) {
    if (document.errors.length > 0) {
      throw new Error(`${path}: ${document.errors.map((e) => e.message).join("; ")}`);
    }
    const value = document.toJS();
    if (value !== null && value !== undefined) objects.push(value);
  }
  return objects;
}

// What istio-mesh.d.ts checks, given an object holding mesh configuration.
function meshChecks(obj) {
  if (obj.apiVersion === "install.istio.io/v1alpha1" && obj.kind === "IstioOperator") {
    return [{ value: obj, type: "IstioOperatorWithMeshConfig" }];
  }
  if (obj.apiVersion === "v1" && obj.kind === "ConfigMap" && obj.metadata?.name === "istio" && obj.data?.mesh !== undefined) {
    return [{ value: YAML.parse(obj.data.mesh), type: "MeshConfig", what: "data.mesh" }];
  }
  return [];
}

async function main(argv) {
  let coreOut = null;
  const files = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--core-out") coreOut = argv[++i];
    else files.push(argv[i]);
  }
  if (files.length === 0 || (argv.includes("--core-out") && !coreOut)) {
    console.error("usage: node crds.mjs [--core-out DIR] FILE.yaml...");
    return 2;
  }

  const problems = [];
  // Typed literals for the compiler: [source text, description of the object].
  const typed = [];
  const imports = new Map();
  let checked = 0;

  const typeOf = (specifier, name) => {
    const key = `${specifier}#${name}`;
    if (!imports.has(key)) imports.set(key, `T${imports.size}`);
    return { alias: imports.get(key) };
  };
  let meshes = 0;

  for (const [index, file] of files.entries()) {
    let objects;
    try {
      objects = loadDocuments(file);
    } catch (error) {
      problems.push(`${file}: not YAML: ${error.message}`);
      continue;
    }
    const core = [];
    for (const obj of objects) {
      if (typeof obj !== "object" || typeof obj.apiVersion !== "string" || typeof obj.kind !== "string") {
        problems.push(`${describe(file, obj)}: no apiVersion/kind`);
        continue;
      }
      let meshesOfObject;
      try {
        meshesOfObject = meshChecks(obj);
      } catch (error) {
        problems.push(`${describe(file, obj)}: mesh configuration is not YAML: ${error.message}`);
        continue;
      }
      for (const mesh of meshesOfObject) {
        const { alias } = typeOf("./istio-mesh.js", mesh.type);
        meshes += 1;
        typed.push({ alias, value: mesh.value, where: `${describe(file, obj)}${mesh.what ? ` ${mesh.what}` : ""}` });
      }
      const [group, version] = splitApiVersion(obj.apiVersion);
      if (CORE_GROUPS.has(group)) {
        core.push(obj);
        continue;
      }
      // Names only as Kubernetes spells them, so that they can only select a
      // model module of the package, never another path.
      const wellFormed = /^v[0-9]+((alpha|beta)[0-9]+)?$/.test(version) && /^[A-Z][A-Za-z0-9]*$/.test(obj.kind);
      const pkg = wellFormed ? modelPackage(group) : null;
      const specifier = pkg && `${pkg}/${group}/${version}/${obj.kind}`;
      let model;
      try {
        model = specifier && (await import(specifier))[obj.kind];
      } catch {
        model = undefined;
      }
      if (typeof model !== "function") {
        problems.push(`${describe(file, obj)}: unknown kind ${obj.kind} in ${obj.apiVersion} (no schema: refused)`);
        continue;
      }
      checked += 1;
      try {
        new model(obj).validate();
      } catch (error) {
        problems.push(`${describe(file, obj)}: ${error.message}`);
      }
      if (obj.kind === "IstioOperator") continue; // its spec is checked against istio-mesh.d.ts above
      const { alias } = typeOf(specifier, `I${obj.kind}`);
      typed.push({ alias, value: obj, where: describe(file, obj) });
    }
    if (coreOut && core.length > 0) {
      mkdirSync(coreOut, { recursive: true });
      const text = core.map((obj) => YAML.stringify(obj)).join("---\n");
      writeFileSync(join(coreOut, `${index}-${basename(file)}`), text);
    }
  }

  problems.push(...strictCheck(typed, imports));
  for (const problem of problems) console.log(`     ${problem}`);
  if (problems.length === 0) console.log(`     ${checked} custom resources and ${meshes} Istio mesh configurations valid`);
  return problems.length === 0 ? 0 : 1;
}

// Compiles one virtual module with every object as a typed literal and maps
// each diagnostic back to the object it is about.
function strictCheck(typed, imports) {
  if (typed.length === 0) return [];
  const lines = [];
  for (const [key, alias] of imports) {
    const [specifier, name] = key.split("#");
    lines.push(`import type { ${name} as ${alias} } from ${JSON.stringify(specifier)};`);
  }
  const owners = []; // [first line, last line, where]
  typed.forEach((entry, i) => {
    const body = JSON.stringify(entry.value, null, 1).split("\n");
    const first = lines.length;
    lines.push(`export const o${i}: ${entry.alias} = ${body[0]}`, ...body.slice(1));
    lines[lines.length - 1] += ";";
    owners.push([first, lines.length - 1, entry.where]);
  });
  const virtualPath = join(toolsDir, "manifests.check.mts");
  const source = lines.join("\n");
  const options = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, languageVersion, ...rest) =>
    name === virtualPath ? ts.createSourceFile(name, source, languageVersion, true) : getSourceFile(name, languageVersion, ...rest);
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => name === virtualPath || fileExists(name);
  const readFile = host.readFile.bind(host);
  host.readFile = (name) => (name === virtualPath ? source : readFile(name));
  const program = ts.createProgram([virtualPath], options, host);
  const problems = [];
  for (const diagnostic of ts.getPreEmitDiagnostics(program)) {
    const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, "; ");
    if (!diagnostic.file || diagnostic.file.fileName !== virtualPath) {
      problems.push(`type checker: ${message}`);
      continue;
    }
    const { line } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start ?? 0);
    const owner = owners.find(([first, last]) => line >= first && line <= last);
    const near = lines[line].trim().slice(0, 80);
    problems.push(`${owner ? owner[2] : "imports"}: ${message} (at ${near})`);
  }
  return problems;
}

process.exitCode = await main(process.argv.slice(2));
