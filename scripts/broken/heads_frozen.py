"""ViLD's trainer also freezes the text head: the frozen-backbone test must fail."""

from ovdet.methods.vild import train

real = train._frozen
train._frozen = lambda n, cfg: real(n, cfg) or n.startswith("text_head.")
