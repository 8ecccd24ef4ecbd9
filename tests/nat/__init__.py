"""NAT traversal tests: parties behind NATs built with network namespaces (issue 4)."""
