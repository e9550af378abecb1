"""Datasets: COCO-format loading and the synthetic shapes world."""
