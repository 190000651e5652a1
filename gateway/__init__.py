"""HTTP gateway: validates and preprocesses images, then calls the model server over gRPC."""
