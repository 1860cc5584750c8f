"""gRPC: the only code that imports grpc and the generated protobuf. ``server`` (the grpc.server with
health, reflection and tracing), ``servicer`` (a few lines per RPC over the Guard facade), and the
message converters (``converters``, ``feedback_converters``)."""
