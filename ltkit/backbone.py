"""The timm model interface shared by ltkit's small CNNs: stem, then stages, then a `ClassifierHead`.

A subclass builds `self.stem`, `self.stages` (modules) and `self.head` (timm's ClassifierHead) and
sets `num_classes`; this base gives it what timm and ltkit call on every backbone: features
without pooling, the head with `pre_logits`, the classifier and its reset.
"""
from __future__ import annotations

import torch
import torch.nn as nn


class StemStagesNet(nn.Module):
    """stem -> stages -> pooled linear head, with timm's `forward_features` / `forward_head` / `reset_classifier`."""

    stem: nn.Module
    stages: nn.Module
    head: nn.Module
    num_classes: int

    def get_classifier(self) -> nn.Module:
        """The final linear layer."""
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the head with a fresh one of `num_classes` outputs (0: identity)."""
        self.num_classes = num_classes
        self.head.reset(num_classes, global_pool)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Unpooled feature map of the last stage."""
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool, then classify (or stop at the pooled features)."""
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
