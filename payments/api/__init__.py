"""The user-facing REST API of the payments app."""
