"""Cloud state: the registry of sites, gateways and devices (SQLAlchemy 2: SQLite or PostgreSQL)."""
