"""Test-leak check: crawled images that are near-duplicates of target evaluation images.

A crawled copy of a test image trains the model on the test set. Two signals, either one flags:
- a perceptual hash (pHash, the DCT hash of imagehash: 32x32 grey, 2-D DCT, the 8x8 low frequencies
  against their median) within `max_hamming` bits of a reference image, or of its mirror image
  (web copies are often flipped); exact and re-encoded copies land at a few bits;
- the encoder's cosine similarity to a reference image of at least `min_cos`: the semantic signal,
  which survives crops and re-colouring that move a hash.
Hashes are packed in uint64 and compared with XOR and popcount in numpy; cosines in chunks on the
encoder's device, so a crawl of 100k images against 50k references stays in memory.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.fft import dct

from ltkit.data import ImageSet

HASH_BITS = 64


def _grey32(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("L").resize((32, 32), Image.Resampling.LANCZOS), np.float64)


def phash(images: ImageSet, mirror: bool = False) -> np.ndarray:
    """pHash of every image as uint64 (N,); `mirror` hashes the left-right flipped images instead."""
    if not len(images):
        return np.zeros(0, np.uint64)
    grey = np.stack([_grey32(images.load(i)) for i in range(len(images))])
    if mirror:
        grey = grey[:, :, ::-1]
    low = dct(dct(grey, axis=1), axis=2)[:, :8, :8].reshape(len(grey), 64)
    bits = low > np.median(low, axis=1, keepdims=True)
    return (bits.astype(np.uint64) << np.arange(63, -1, -1, dtype=np.uint64)).sum(1, dtype=np.uint64)


def min_hamming(a: np.ndarray, b: np.ndarray, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """For each hash of `a`, the smallest Hamming distance to any hash of `b` and its index."""
    if not len(b):
        return np.full(len(a), HASH_BITS + 1, np.int64), np.full(len(a), -1, np.int64)
    dist, arg = np.empty(len(a), np.int64), np.empty(len(a), np.int64)
    for s in range(0, len(a), chunk):
        d = np.bitwise_count(a[s:s + chunk, None] ^ b[None, :])
        arg[s:s + chunk] = d.argmin(1)
        dist[s:s + chunk] = d.min(1)
    return dist, arg


def max_cosine(a: np.ndarray, b: np.ndarray, chunk: int = 4096,
               device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """For each row of `a`, the largest cosine similarity to any row of `b` and its index."""
    if not len(b):
        return np.full(len(a), -1.0, np.float32), np.full(len(a), -1, np.int64)
    bn = F.normalize(torch.as_tensor(b, dtype=torch.float32, device=device), dim=1)
    best, arg = [], []
    for s in range(0, len(a), chunk):
        an = F.normalize(torch.as_tensor(a[s:s + chunk], dtype=torch.float32, device=device), dim=1)
        v, i = (an @ bn.T).max(1)
        best.append(v.cpu().numpy())
        arg.append(i.cpu().numpy())
    return np.concatenate(best), np.concatenate(arg)


@dataclass
class LeakScores:
    """Per crawled image: nearest reference by hash and by feature (reference index into `ref_split`)."""

    hamming: np.ndarray        # (N,) bits to the closest reference hash (original or mirrored)
    hamming_ref: np.ndarray    # (N,) index of that reference
    cos: np.ndarray            # (N,) largest cosine to a reference feature
    cos_ref: np.ndarray        # (N,) index of that reference
    ref_split: np.ndarray      # (M,) split name of each reference image
    ref_index: np.ndarray      # (M,) its index within that split

    def flagged(self, max_hamming: int, min_cos: float) -> np.ndarray:
        """Near-duplicates under the thresholds: hash within `max_hamming` bits or cosine >= `min_cos`."""
        return (self.hamming <= max_hamming) | (self.cos >= min_cos)

    def split_of(self, max_hamming: int, min_cos: float) -> list[str]:
        """Which reference split each flagged image copies ('' when not flagged); the hash match wins."""
        out = []
        for h, hr, c, cr in zip(self.hamming, self.hamming_ref, self.cos, self.cos_ref):
            out.append(str(self.ref_split[hr]) if h <= max_hamming else str(self.ref_split[cr]) if c >= min_cos else "")
        return out


def leak_scores(hashes: np.ndarray, feats: np.ndarray, ref_hashes: np.ndarray, ref_mirror_hashes: np.ndarray,
                ref_feats: np.ndarray, ref_split: np.ndarray, ref_index: np.ndarray,
                device: str | torch.device = "cpu") -> LeakScores:
    """Nearest references of every crawled image, by pHash (either orientation) and by cosine."""
    d0, i0 = min_hamming(hashes, ref_hashes)
    d1, i1 = min_hamming(hashes, ref_mirror_hashes)
    mirrored = d1 < d0
    cos, ci = max_cosine(feats, ref_feats, device=device)
    return LeakScores(np.where(mirrored, d1, d0), np.where(mirrored, i1, i0), cos, ci, np.asarray(ref_split),
                      np.asarray(ref_index))
