"""Integrations of rexec with other frameworks."""
