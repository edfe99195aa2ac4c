"""Notifications: people and channels (apprise), escalation, signed acknowledge links."""
