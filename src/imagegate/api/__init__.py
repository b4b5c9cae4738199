"""The HTTP edge: routes, auth, request parsing, wire schemas, and the one error → HTTP table."""
