"""HTTP plumbing shared by every route: bodies, ETags, conditional requests, middleware."""
