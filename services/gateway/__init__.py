"""The JSON-RPC 2.0 gateway: HTTP + JSON in front of the gRPC services.

Stateless and generic: every method comes from the generated protobuf
descriptors, so a new RPC in a .proto works here without gateway code.
"""
