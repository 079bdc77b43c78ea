"""Regularisers for fine-tuning on small or noisy labelled sets (issue 10's levers).

- **R-Drop** (Liang et al., 2021): each batch goes through the model twice, with independent dropout
  masks, and the two predictive distributions are pulled together by a symmetric KL term. It costs a
  second forward and backward pass per batch.
- **FGM** (Miyato et al., 2017): after the clean backward pass, the embedding layer's output is pushed a
  distance `epsilon` (L2, per row) along its loss gradient, the batch is run again and that loss's
  gradient is added. It too costs a second pass.
- **Weight averaging** (Polyak averaging, an exponential moving average of the weights): the model that
  is validated and kept is the running average of the trained weights rather than the last step's. It
  costs one multiply-add per trainable weight per step, no second pass.

- **Token masking** (a data augmentation): each step, each word piece of a training row (not its
  [CLS] or [SEP], not padding) is replaced by the mask token with probability `rate`, so the model
  cannot lean on any one word. No extra pass.

All four act on the training loop only (`training.train.train_epochs`); nothing here reaches the exported
graph.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def symmetric_kl(a_logits: torch.Tensor, b_logits: torch.Tensor) -> torch.Tensor:
    """Mean over rows of (KL(p_a || p_b) + KL(p_b || p_a)) / 2, from two passes' logits."""
    log_a = F.log_softmax(a_logits, dim=-1)
    log_b = F.log_softmax(b_logits, dim=-1)
    a_b = F.kl_div(log_b, log_a, log_target=True, reduction="batchmean")  # KL(a || b)
    b_a = F.kl_div(log_a, log_b, log_target=True, reduction="batchmean")
    return (a_b + b_a) / 2


class EmbeddingAdversary:
    """FGM on the output of `module` (the encoder's embedding layer), through a forward hook.

    Usage per batch: forward + `loss.backward()` (the hook keeps the embeddings' gradient), then
    `with adversary.perturbed(): adv_loss.backward()` on a second forward pass. Outside `perturbed`
    the hook only records; removing it (`close`) leaves the module as it was.
    """

    def __init__(self, module: torch.nn.Module, epsilon: float) -> None:
        if epsilon <= 0:
            raise ValueError(f"FGM epsilon must be positive, got {epsilon}")
        self.epsilon = epsilon
        self._output: torch.Tensor | None = None
        self._delta: torch.Tensor | None = None
        self._handle = module.register_forward_hook(self._hook)

    def _hook(self, _module: torch.nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        if self._delta is not None:
            return output + self._delta
        if not output.requires_grad:  # a fully frozen embedding layer: make its output a leaf we can probe
            output = output.detach().requires_grad_(True)
        output.retain_grad()
        self._output = output
        return output

    def delta(self) -> torch.Tensor:
        """The perturbation for the last clean pass: epsilon times its gradient's direction, per row."""
        if self._output is None or self._output.grad is None:
            raise RuntimeError("FGM: run a forward pass and backward() before asking for the perturbation")
        grad = self._output.grad.detach()
        norm = grad.flatten(1).norm(dim=1).clamp(min=1e-12)
        return self.epsilon * grad / norm.view(-1, *([1] * (grad.dim() - 1)))

    def perturbed(self) -> _Perturbed:
        return _Perturbed(self)

    def close(self) -> None:
        self._handle.remove()
        self._output = self._delta = None


class _Perturbed:
    def __init__(self, adversary: EmbeddingAdversary) -> None:
        self.adversary = adversary

    def __enter__(self) -> EmbeddingAdversary:
        self.adversary._delta = self.adversary.delta()
        return self.adversary

    def __exit__(self, *_exc: object) -> None:
        self.adversary._delta = None
        self.adversary._output = None


class WeightAverage:
    """An exponential moving average of `model`'s trainable weights (frozen ones never move).

    `update()` after each optimiser step; `swapped_in()` puts the average in the model for
    validation and puts the live weights back on exit. The first steps use a shorter memory,
    min(decay, (1 + n) / (10 + n)), so the average is not dominated by the initial weights.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"weight-average decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.steps = 0
        self._params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        self._average = {n: p.detach().clone() for n, p in self._params.items()}

    @torch.no_grad()
    def update(self) -> None:
        self.steps += 1
        d = min(self.decay, (1 + self.steps) / (10 + self.steps))
        for name, param in self._params.items():
            self._average[name].mul_(d).add_(param.detach(), alpha=1 - d)

    def swapped_in(self) -> _SwappedIn:
        return _SwappedIn(self)


class _SwappedIn:
    def __init__(self, average: WeightAverage) -> None:
        self.average = average
        self._live: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def __enter__(self) -> WeightAverage:
        for name, param in self.average._params.items():
            self._live[name] = param.detach().clone()
            param.copy_(self.average._average[name])
        return self.average

    @torch.no_grad()
    def __exit__(self, *_exc: object) -> None:
        for name, param in self.average._params.items():
            param.copy_(self._live.pop(name))


def mask_tokens(
    ids: np.ndarray, attention: np.ndarray, rate: float, mask_id: int, rng: np.random.Generator
) -> np.ndarray:
    """A copy of the padded batch `ids` with each real inner token replaced by `mask_id` with
    probability `rate`; the first and last real token of each row ([CLS], [SEP]) and padding stay."""
    if rate <= 0:
        return ids
    lengths = attention.sum(axis=1)
    pos = np.arange(ids.shape[1])[None, :]
    inner = (pos > 0) & (pos < lengths[:, None] - 1)
    hit = inner & (rng.random(ids.shape) < rate)
    return np.where(hit, mask_id, ids)
