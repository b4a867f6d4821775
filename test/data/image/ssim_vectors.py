#!/usr/bin/python3
"""Writes ssim_vectors.json: small image and tensor pairs with their SSIM and PSNR computed by
scikit-image, the independent reference for lib/image/metrics.ts (test/image-metrics.test.ts).

Depends only on numpy and scikit-image (Debian: python3-skimage). Run from anywhere:
    /usr/bin/python3 test/data/image/ssim_vectors.py
SSIM settings are Wang et al. 2004 as scikit-image documents them: an 11x11 Gaussian window
(sigma 1.5, truncate 3.5), K1 0.01, K2 0.03, population covariance, the mean over the valid region
(5 pixels cropped on every side), then the mean over channels.

Tensor pairs are float32 values; they are handed to scikit-image as float64, because scikit-image
0.19 computes float32 inputs in float32, and the library under test computes in float64.
A batch ([B, C, H, W]) has no scikit-image counterpart: its value is the mean over the batch of
scikit-image's per-image values (the library's documented definition).
"""
import json
import os

import numpy as np
import skimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

rng = np.random.default_rng(20240914)


def ssim(a, b, data_range, channel_axis=None):
    return float(structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        data_range=data_range, channel_axis=channel_axis))


def psnr(a, b, data_range):
    if np.array_equal(a, b):
        return None  # Infinity: JSON has no literal for it; tested separately
    return float(peak_signal_noise_ratio(a.astype(np.float64), b.astype(np.float64), data_range=data_range))


def noisy_u8(a, sd):
    return np.clip(np.rint(a.astype(np.float64) + rng.normal(0, sd, a.shape)), 0, 255).astype(np.uint8)


def smooth_u8(h, w, c):
    """A smooth picture (sums of a few sinusoids) so the structure term has something to see."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    out = np.zeros((h, w, c))
    for ch in range(c):
        fx, fy, ph = rng.uniform(0.1, 0.6), rng.uniform(0.1, 0.6), rng.uniform(0, 6.28)
        out[:, :, ch] = 127.5 + 110 * np.sin(fx * x + ph) * np.cos(fy * y)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def ring_u8(size):
    """A digit-like stroke on black: a thick ring."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    r = np.hypot(x - size / 2 + 0.5, y - size / 2 + 0.5)
    ring = np.clip(np.rint(255 * np.exp(-((r - size / 4) ** 2) / 6)), 0, 255).astype(np.uint8)
    return ring[:, :, None]


cases = []


def image_case(name, a, b):
    """a, b: uint8 [H, W, C]; stored row-major, channels interleaved (the library's Image)."""
    h, w, c = a.shape
    value = ssim(a[:, :, 0], b[:, :, 0], 255) if c == 1 else ssim(a, b, 255, channel_axis=2)
    cases.append({
        'name': name, 'kind': 'image', 'width': w, 'height': h, 'channels': c,
        'a': a.reshape(-1).tolist(), 'b': b.reshape(-1).tolist(),
        'dataRange': 255, 'ssim': value, 'psnr': psnr(a, b, 255),
    })


def tensor_case(name, a, b):
    """a, b: float32 [C, H, W] or [B, C, H, W] in [-1, 1]."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    if a.ndim == 3:
        value = ssim(a64, b64, 2, channel_axis=0)
    else:
        value = float(np.mean([ssim(a64[i], b64[i], 2, channel_axis=0) for i in range(a.shape[0])]))
    cases.append({
        'name': name, 'kind': 'tensor', 'shape': list(a.shape),
        'a': [float(v) for v in a.reshape(-1)], 'b': [float(v) for v in b.reshape(-1)],
        'dataRange': 2, 'ssim': value, 'psnr': psnr(a64, b64, 2),
    })


a = rng.integers(0, 256, (16, 16, 1), dtype=np.uint8)
image_case('gray 16x16 noise, b = a + noise', a, noisy_u8(a, 20))

a = ring_u8(28)
b = np.roll(noisy_u8(a, 8), 1, axis=1)
image_case('gray 28x28 ring, b shifted by 1 px + noise', a, b)

a = smooth_u8(11, 11, 1)
image_case('gray 11x11 (one valid window)', a, noisy_u8(a, 30))

a = smooth_u8(14, 14, 1)
image_case('gray 14x14 inverted', a, (255 - a).astype(np.uint8))

image_case('gray 12x12 constant 100 vs 120', np.full((12, 12, 1), 100, np.uint8), np.full((12, 12, 1), 120, np.uint8))

a = smooth_u8(13, 13, 1)
image_case('gray 13x13 identical', a, a.copy())

a = smooth_u8(13, 17, 3)
image_case('rgb 17x13 smooth, b = a + noise', a, noisy_u8(a, 12))

a = smooth_u8(11, 12, 4)
image_case('rgba 12x11 smooth, b = a + noise', a, noisy_u8(a, 25))

a = np.tanh(rng.normal(0, 0.8, (3, 14, 12))).astype(np.float32)
b = np.clip(a + rng.normal(0, 0.1, a.shape), -1, 1).astype(np.float32)
tensor_case('tensor [3, 14, 12], b = a + noise', a, b)

a = np.tanh(rng.normal(0, 0.8, (2, 1, 12, 16))).astype(np.float32)
b = np.clip(a + rng.normal(0, 0.2, a.shape), -1, 1).astype(np.float32)
tensor_case('tensor batch [2, 1, 12, 16], b = a + noise', a, b)

out = {
    'about': 'SSIM (Wang et al. 2004 settings) and PSNR by scikit-image; written by ssim_vectors.py',
    'skimage': skimage.__version__, 'numpy': np.__version__,
    'cases': cases,
}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'ssim_vectors.json')
with open(path, 'w') as f:
    json.dump(out, f, separators=(',', ':'))
    f.write('\n')
for c in cases:
    print(f"{c['name']}: ssim {c['ssim']:.12f} psnr {c['psnr']}")
