"""Edges of the library: files in and out (images, JSON, atomic writes)."""
