"""Train the two tiny StarDist 3D models that the ImageJ/CLI 3D tests use.

They test the 3D plumbing (calibration, ROIs, tables, z+t, z+c), not quality:
a small U-Net (depth 2, 8 filters, head 16, 32 rays, grid (1, 2, 2), z divisor 4)
trained for a few hundred steps on the project's synthetic 3D nuclei
(:func:`ij_bridge.synthetic.synthetic_nuclei`), seeded. ``nuclei1c`` takes one
channel; ``nuclei2c`` two (the nuclei and a second, noisier view of them).

Usage::

    python scripts/make_tiny_stardist3d.py [OUT]    # default tests/fixtures/stardist3d_tiny

Prints the held-out F1 at IoU 0.5 of each model.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from ij_bridge.metrics import matching
from ij_bridge.stardist import StarDist3D, StarDistConfig
from ij_bridge.synthetic import synthetic_nuclei

SHAPE = (16, 64, 64)


def stacks(seeds, channels: int):
    X, Y = [], []
    for s in seeds:
        x, y = synthetic_nuclei(SHAPE, n_objects=12, radius=(5.0, 8.0), seed=s)
        x = x.astype(np.float32)
        if channels == 2:
            rng = np.random.default_rng(1000 + s)
            x = np.stack([x, 0.5 * x + rng.normal(0, 0.05, x.shape).astype(np.float32)], axis=-1)
        X.append(x)
        Y.append(y)
    return X, Y


def main(out: Path) -> int:
    for name, channels in (("nuclei1c", 1), ("nuclei2c", 2)):
        X, Y = stacks(range(6), channels)
        Xv, Yv = stacks([100, 101], channels)
        cfg = StarDistConfig(ndim=3, n_channels=channels, n_rays=32, grid=(1, 2, 2), anisotropy=(1, 1, 1),
                             unet_depth=2, unet_n_filters=8, head_channels=16, patch_size=(16, 32, 32),
                             epochs=4, steps_per_epoch=100, batch_size=2, augment=False, seed=0)
        model = StarDist3D(cfg, device="cpu")
        t = time.time()
        model.train(X, Y, validation_data=(Xv, Yv), optimize_thresholds=True)
        f1 = np.mean([matching(y, model.predict_instances(x)[0], thresh=0.5).f1 for x, y in zip(Xv, Yv)])
        model.save(out / name, half=True, overwrite=True)
        print(f"{name}: {time.time() - t:.0f} s, thresholds {model.thresholds}, held-out F1@0.5 {f1:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else
                  Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "stardist3d_tiny"))
