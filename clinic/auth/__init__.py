"""Staff accounts, roles, sign-in, sessions, second factor and API tokens."""
