"""Shapes-world reproductions of the papers' tables: they train, evaluate and tabulate methods."""
