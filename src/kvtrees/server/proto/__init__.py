"""etcd's v3 wire contract: our own .proto files and the stubs generated from them
(regenerate with `python -m kvtrees.server.proto._generate`)."""
