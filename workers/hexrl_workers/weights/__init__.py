"""Pull-based, versioned, verified, relay-capable weight distribution (see `server` and `client`)."""
