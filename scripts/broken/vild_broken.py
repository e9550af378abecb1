"""BROKEN=one-class: every box is named category 14; BROKEN=untrained: every run trains 0 steps."""

import os
from dataclasses import replace

import torch

from ovdet.methods.vild import model as vm
from ovdet.methods.vild import train as vt

how = os.environ["BROKEN"]
if how == "one-class":
    real = vm.ViLD.score_regions

    def score_regions(self, *a, **k):
        p, e, d = real(self, *a, **k)
        q = torch.zeros_like(p)
        q[:, 13] = 1
        return q, e, d

    vm.ViLD.score_regions = score_regions
if how == "untrained":
    real_train = vt.train_vild

    def train_vild(gt, images, out, clip, name, base, vild, cfg, **kw):
        return real_train(gt, images, out, clip, name, base, vild, replace(cfg, steps=0), **kw)

    vt.train_vild = train_vild
