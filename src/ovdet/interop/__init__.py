"""Bridges to the tools users already have (optional extras, imported when called)."""
