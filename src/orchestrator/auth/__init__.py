"""Users, passwords, tokens, the current-user dependency and the login route."""
