"""ViLD (Gu et al., ICLR 2022): model, detector front, trainer."""
