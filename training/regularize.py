"""Regularisers for fine-tuning on small or noisy labelled sets (issue 10's levers).

- **R-Drop** (Liang et al., 2021): each batch goes through the model twice, with independent dropout
  masks, and the two predictive distributions are pulled together by a symmetric KL term. It costs a
  second forward and backward pass per batch.
- **FGM** (Miyato et al., 2017): after the clean backward pass, the embedding layer's output is pushed a
  distance `epsilon` (L2, per row) along its loss gradient, the batch is run again and that loss's
  gradient is added. It too costs a second pass.

Both act on the training loop only (`training.train.train_epochs`); nothing here reaches the exported
graph.
"""

from __future__ import annotations

from typing import Any

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
