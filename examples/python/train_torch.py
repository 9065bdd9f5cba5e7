"""train_torch trains a small PyTorch model on the CPU and checkpoints it with ckp:
the model's state_dict tensors, the optimizer's momentum buffers and the step
counter are registered as regions (no copies: ckp reads and writes the tensors'
memory), and save_all saves them all atomically every few steps. Killed at any
moment (kill -9 included) and started again with the same arguments, it resumes
from the newest checkpoint and ends with exactly the weights of an uninterrupted run.

    python3 examples/python/train_torch.py --ckpt /tmp/train.ckp --steps 2000 --every 50

The data of step s comes from a generator seeded with s, and torch runs on one
thread, so a run is deterministic and a resumed one can be compared bit for bit.
"""

from __future__ import annotations

import argparse
import hashlib
import sys

import numpy as np
import torch
from torch import nn

import ckp


def batch(step: int, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Step's batch: inputs and the targets of a fixed nonlinear function."""
    g = torch.Generator().manual_seed(step)
    x = torch.randn(size, 16, generator=g)
    y = torch.sin(x[:, :1] * 2) + x[:, 1:2] * x[:, 2:3] + 0.1 * x[:, 3:4]
    return x, y


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", default="train.ckp", help="checkpoint file")
    p.add_argument("--steps", type=int, default=2000, help="training steps in all")
    p.add_argument("--every", type=int, default=50, help="checkpoint every this many steps")
    p.add_argument("--keep", type=int, default=2, help="checkpoints kept")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    # SGD creates its momentum buffers at the first step; create them now (zeros give
    # the same first step) so that they can be registered before it.
    for prm in model.parameters():
        opt.state[prm]["momentum_buffer"] = torch.zeros_like(prm)
    step = np.zeros(1, dtype=np.int64)
    loss = float("nan")

    with ckp.open(a.ckpt, keep=a.keep) as f:
        # state_dict's tensors share the parameters' memory: training updates them in
        # place, and a restore writes into them.
        for name, t in model.state_dict().items():
            f.register("model/" + name, t)
        for i, prm in enumerate(model.parameters()):
            f.register(f"optim/{i}/momentum", opt.state[prm]["momentum_buffer"])
        f.register("step", step)
        if f.newest("step") > 0:
            f.restore_all()
            print(f"resumed at step {step[0]}", flush=True)
        lossf = nn.MSELoss()
        while step[0] < a.steps:
            x, y = batch(int(step[0]))
            opt.zero_grad()
            out = lossf(model(x), y)
            out.backward()
            opt.step()
            loss = out.item()
            step[0] += 1
            if step[0] % a.every == 0 or step[0] == a.steps:
                f.save_all()
                print(f"checkpoint at step {step[0]}", flush=True)
        h = hashlib.sha256()
        for t in model.state_dict().values():
            h.update(t.numpy().tobytes())
    print(f"done: step {step[0]}, weights {h.hexdigest()[:16]}, last loss {loss:.6g}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
