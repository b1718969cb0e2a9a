// The part of Istio's mesh configuration (MeshConfig, istio.mesh.v1alpha1)
// the Istio recipe sets: `extensionProviders` of the two ext_authz kinds.
// Istio publishes no CRD schema for it (IstioOperator's `spec` is open, the
// `istio` ConfigMap holds it as text), so crds.mjs checks it against these
// types, written from the field list of MeshConfig.ExtensionProvider in
// istio/api mesh/v1alpha1/config.proto (Istio 1.29); JSON names as istiod reads them.
// Strict on purpose: any other key (another provider kind, a misspelt field)
// is refused, so extend these types when a recipe needs more.

/** google.protobuf.Duration in JSON: "2s", "0.5s". */
type Duration = `${number}s`;

/** EnvoyExternalAuthorizationRequestBody. */
export interface RequestBody {
  maxRequestBytes?: number;
  allowPartialMessage?: boolean;
  packAsBytes?: boolean;
}

/** MeshConfig.ExtensionProvider.EnvoyExternalAuthorizationHttpProvider. */
export interface EnvoyExtAuthzHttp {
  service: string;
  port: number;
  timeout?: Duration;
  pathPrefix?: string;
  failOpen?: boolean;
  statusOnError?: string;
  includeRequestHeadersInCheck?: string[];
  includeAdditionalHeadersInCheck?: Record<string, string>;
  includeRequestBodyInCheck?: RequestBody;
  headersToUpstreamOnAllow?: string[];
  headersToDownstreamOnDeny?: string[];
  headersToDownstreamOnAllow?: string[];
}

/** MeshConfig.ExtensionProvider.EnvoyExternalAuthorizationGrpcProvider. */
export interface EnvoyExtAuthzGrpc {
  service: string;
  port: number;
  timeout?: Duration;
  failOpen?: boolean;
  statusOnError?: string;
  includeRequestBodyInCheck?: RequestBody;
}

/** One entry of MeshConfig.extensionProviders (a oneof: exactly one kind). */
export type ExtensionProvider =
  | { name: string; envoyExtAuthzHttp: EnvoyExtAuthzHttp; envoyExtAuthzGrpc?: never }
  | { name: string; envoyExtAuthzGrpc: EnvoyExtAuthzGrpc; envoyExtAuthzHttp?: never };

export interface MeshConfig {
  extensionProviders: ExtensionProvider[];
}

/** An IstioOperator (istioctl install -f) setting only the mesh configuration. */
export interface IstioOperatorWithMeshConfig {
  apiVersion: "install.istio.io/v1alpha1";
  kind: "IstioOperator";
  metadata?: { name?: string; namespace?: string };
  spec: { meshConfig: MeshConfig };
}
