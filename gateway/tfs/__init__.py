"""Protobuf and gRPC stubs for the part of TensorFlow Serving's API the gateway calls.

The `.proto` files here declare the same packages, message names, field numbers
and types as TensorFlow Serving 2.21, so messages are wire-compatible, but they
leave out fields the gateway never reads or writes. `make stubs` compiles them
into `*_pb2.py` and `*_pb2_grpc.py`. Because the message full names equal
TensorFlow's, a process must not import these modules and `tensorflow` or
`tensorflow_serving` together: the default descriptor pool rejects the second
definition of a name.
"""
