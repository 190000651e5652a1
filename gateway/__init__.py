"""HTTP gateway: validates and preprocesses images, then asks the model server over gRPC."""
