#!/usr/bin/env python
"""A tiny training loop that survives spot reclaims: it resumes from the newest verified checkpoint,
saves every N steps, and saves at the next step boundary when SIGTERM/SIGUSR1 (or, with
--guard-source, a metadata notice) arrives.

    python examples/train_resumable.py --checkpoint-uri /tmp/ckpt --steps 2000 --save-every 100
    python examples/train_resumable.py --checkpoint-uri s3://bucket/run1 ...     # with spotplan[aws]

Pair it with the node agent:  spotplan watch --signal SIGUSR1 --process train_resumable.py \
    --checkpoint-uri /tmp/ckpt

The model is linear regression by SGD in numpy (torch is used for the same model when installed and
--backend torch is given). Batches are drawn from a generator seeded by the step, so a resumed run
produces exactly the same weights as an uninterrupted one.
"""

from __future__ import annotations

import argparse
import io
import sys
import time

import numpy as np

from spotplan.checkpoint import CheckpointStore, PreemptionGuard

DIM = 16


def batch(step: int, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(step)
    true_w = np.arange(1, DIM + 1, dtype=np.float64) / DIM
    x = rng.normal(size=(size, DIM))
    return x, x @ true_w + rng.normal(scale=0.01, size=size)


class NumpyModel:
    def __init__(self) -> None:
        self.w = np.zeros(DIM)

    def step(self, step: int, lr: float) -> float:
        x, y = batch(step)
        err = x @ self.w - y
        self.w -= lr * (x.T @ err) / len(y)
        return float((err**2).mean())

    def dump(self) -> bytes:
        buf = io.BytesIO()
        np.save(buf, self.w)
        return buf.getvalue()

    def load(self, data: bytes) -> None:
        self.w = np.load(io.BytesIO(data))


class TorchModel(NumpyModel):
    def __init__(self) -> None:
        import torch

        self.torch = torch
        self.w = torch.zeros(DIM, dtype=torch.float64)

    def step(self, step: int, lr: float) -> float:
        x, y = (self.torch.from_numpy(a) for a in batch(step))
        err = x @ self.w - y
        self.w -= lr * (x.T @ err) / len(y)
        return float((err**2).mean())

    def dump(self) -> bytes:
        buf = io.BytesIO()
        self.torch.save(self.w, buf)
        return buf.getvalue()

    def load(self, data: bytes) -> None:
        self.w = self.torch.load(io.BytesIO(data))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint-uri", required=True, help="local path or fsspec URL of the checkpoint store")
    ap.add_argument("--steps", type=int, default=1000, help="train until this step")
    ap.add_argument("--save-every", type=int, default=100, help="periodic checkpoint every N steps (0: never)")
    ap.add_argument("--keep", type=int, default=3, help="checkpoints to keep")
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--step-seconds", type=float, default=0.0, help="extra time per step (simulates a GPU)")
    ap.add_argument("--backend", choices=["numpy", "torch"], default="numpy")
    ap.add_argument("--guard-source", default=None, help="also poll this metadata source (aws, gcp, azure, eci, url)")
    ap.add_argument("--guard-endpoint", default=None, help="endpoint of --guard-source (e.g. a local emulator)")
    args = ap.parse_args(argv)

    model = TorchModel() if args.backend == "torch" else NumpyModel()
    store = CheckpointStore(args.checkpoint_uri, keep=args.keep)
    start = 0
    latest = store.latest()
    if latest is not None:
        model.load(store.load(latest, "model.bin"))
        start = latest.step
        print(f"resumed from step {start} ({latest.uri})", file=sys.stderr, flush=True)

    loss = float("nan")
    saved = start if latest is not None else None  # the step the store already holds
    with PreemptionGuard(source=args.guard_source, endpoint=args.guard_endpoint) as guard:
        print(f"training from step {start} to {args.steps}", file=sys.stderr, flush=True)
        step = start
        while step < args.steps:
            loss = model.step(step, args.lr)
            step += 1
            if args.step_seconds:
                time.sleep(args.step_seconds)
            if guard.should_stop:
                info = store.save(step, {"model.bin": model.dump()}, {"loss": loss, "reason": guard.reason})
                print(f"preempted ({guard.reason}): saved step {step} to {info.uri}", file=sys.stderr, flush=True)
                return 0
            if args.save_every and step % args.save_every == 0:
                store.save(step, {"model.bin": model.dump()}, {"loss": loss, "reason": "periodic"})
                saved = step
    if saved != step:  # not twice for one step: a duplicate would take one of the `keep` places
        store.save(step, {"model.bin": model.dump()}, {"loss": loss, "reason": "done"})
    print(f"done at step {step}, loss {loss:.6f}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
