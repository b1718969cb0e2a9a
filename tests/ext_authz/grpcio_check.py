#!/usr/bin/env python3
"""A second, independent ext_authz client: Python's grpcio asks Check.

Usage: grpcio_check.py PROTO_ROOT < spec.json

PROTO_ROOT is the `proto` directory the envoy-types crate ships (the published Envoy protos and their imports).
protoc (from grpcio-tools) compiles envoy/service/auth/v3/external_auth.proto into a descriptor set in a temporary
directory; the message classes come from that descriptor set at run time, so nothing generated is kept or committed.

spec.json: {"target": "127.0.0.1:PORT", "checks": [CheckRequest as JSON (proto3 JSON mapping), ...]}
Prints one JSON line per check: {"response": CheckResponse as JSON} or {"error": "<gRPC status code name>"}.
"""

import json
import os
import sys
import tempfile

import grpc
import grpc_tools
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from grpc_tools import protoc

CHECK = "/envoy.service.auth.v3.Authorization/Check"
INCLUDES = ["data-plane-api", "xds", "protoc-gen-validate", "googleapis", "cel-spec", "opentelemetry-proto"]


def message_classes(proto_root):
    with tempfile.TemporaryDirectory() as scratch:
        descriptor_set = os.path.join(scratch, "external_auth.pb")
        well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
        arguments = ["protoc", f"-I{well_known}"]
        arguments += [f"-I{os.path.join(proto_root, include)}" for include in INCLUDES]
        arguments += ["--include_imports", f"--descriptor_set_out={descriptor_set}"]
        arguments += ["envoy/service/auth/v3/external_auth.proto"]
        if protoc.main(arguments) != 0:
            sys.exit("protoc could not compile external_auth.proto")
        files = descriptor_pb2.FileDescriptorSet()
        with open(descriptor_set, "rb") as handle:
            files.ParseFromString(handle.read())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)

    def message(name):
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))

    return message("envoy.service.auth.v3.CheckRequest"), message("envoy.service.auth.v3.CheckResponse")


def main():
    check_request, check_response = message_classes(sys.argv[1])
    spec = json.load(sys.stdin)
    with grpc.insecure_channel(spec["target"]) as channel:
        check = channel.unary_unary(
            CHECK,
            request_serializer=lambda message: message.SerializeToString(),
            response_deserializer=check_response.FromString,
        )
        for request in spec["checks"]:
            try:
                response = check(json_format.ParseDict(request, check_request()), timeout=10)
                answer = {"response": json_format.MessageToDict(response, preserving_proto_field_name=True)}
            except grpc.RpcError as error:
                answer = {"error": error.code().name}
            print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
