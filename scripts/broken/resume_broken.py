"""pytest -p resume_broken: replaces train.common.resume by a broken stand-in chosen by $BROKEN."""

import json
import os
from pathlib import Path

import torch

from ovdet.errors import OvdetError
from ovdet.train import common


def broken(folder, model, spec, opt, sched, same, precision=None):
    path = Path(folder) / common.STATE
    if not path.is_file():
        return 0
    state = torch.load(path, weights_only=True)
    prev, now = json.loads(state["spec"]), json.loads(json.dumps(spec))
    changed = [k for k in same if prev.get(k) != now.get(k)]
    if changed:
        raise OvdetError("another configuration")
    how = os.environ["BROKEN"]
    if how == "start-over":
        return 0
    model.load_state_dict(state["model"])
    if how != "no-optimizer":
        opt.load_state_dict(state["optimizer"])
    if how != "no-schedule":
        sched.load_state_dict(state["scheduler"])
    if precision is not None:
        precision.load_state_dict(state.get("scaler", {}))
    return int(state["step"])


common.resume = broken
