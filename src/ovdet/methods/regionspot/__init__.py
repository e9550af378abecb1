"""RegionSpot, Recognize Any Regions (ICLR 2024): model, recognizer and detector fronts, trainer."""
