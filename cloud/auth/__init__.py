"""Users, roles, passwords, API tokens, sessions, CSRF and login rate limiting for the cloud API.

Pure pieces (roles, signing, rate limiting) have no I/O; `service.AuthService` is the one place that
touches the database.
"""
