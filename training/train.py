"""Fine-tuning, top to bottom: config -> data -> model -> loop -> evaluate -> (export + artifact).

`train_and_export(config)` is what `finsent train` and `make train-export` run. The loop keeps the
weights of the epoch with the best validation score (mean of the two heads' macro-F1) and stops
when that score has not improved for `patience` epochs.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from models.artifact import new_version
from models.batching import pad
from models.errors import ConfigError, DataError
from training.checkpoint import save_checkpoint
from training.config import POOLINGS, EpochRecord, TrainConfig, TrainResult
from training.data import MISSING, Dataset, load_dataset, resolve_topics, stratified_split
from training.export import ExportOptions
from training.inference import bar_interval, head_reports, predict_probs, tokenize
from training.metrics import summarize
from training.package import PackageInput, package_artifact
from training.prior import fit_bias_shift, prior_shift, read_feed_prior, shift_head_bias
from training.text import strip_urls

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_data(config: TrainConfig) -> tuple[Dataset, Dataset]:
    topics = resolve_topics(config.topics)
    train = load_dataset(config.data, columns=config.columns, topics=topics, label_map=config.label_map)
    if config.valid:
        # the validation file must use the training label set, so both share one output order
        valid = load_dataset(
            config.valid, columns=config.columns, topics=train.topic_labels, label_map=config.label_map
        )
        return train, valid
    return stratified_split(train, config.valid_fraction, config.seed)


def used_topics(train: Dataset, valid: Dataset) -> tuple[str, ...]:
    """Drop taxonomy topics that no row uses: a head cannot learn a class it never sees."""
    used = set(train.topics[train.topics != MISSING].tolist()) | set(
        valid.topics[valid.topics != MISSING].tolist()
    )
    return tuple(label for i, label in enumerate(train.topic_labels) if i in used)


def relabel(data: Dataset, topics: tuple[str, ...]) -> Dataset:
    """Re-index `data`'s topic ids onto the label list `topics` (a subset of its own)."""
    remap = np.full(len(data.topic_labels), MISSING, dtype=np.int64)
    for new, label in enumerate(topics):
        remap[data.topic_labels.index(label)] = new
    ids = np.where(data.topics == MISSING, MISSING, remap[np.maximum(data.topics, 0)])
    return Dataset(
        texts=data.texts,
        topics=ids,
        sentiments=data.sentiments,
        topic_labels=topics,
        sentiment_labels=data.sentiment_labels,
        source=data.source,
        rows=data.rows,
    )


def length_bucketed_batches(
    lengths: Sequence[int], batch_size: int, generator: Any, bucket_batches: int = 50
) -> list[np.ndarray]:
    """Random batches of similar-length rows: less padding, still a different mix every epoch.

    The rows are shuffled, cut into pools of `bucket_batches` batches, each pool sorted by length
    and cut into batches; the batch order is then shuffled again.
    """
    import torch

    order = torch.randperm(len(lengths), generator=generator).numpy()
    lens = np.asarray(lengths)
    batches: list[np.ndarray] = []
    pool = batch_size * bucket_batches
    for start in range(0, len(order), pool):
        chunk = order[start : start + pool]
        chunk = chunk[np.argsort(lens[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    perm = torch.randperm(len(batches), generator=generator).numpy()
    return [batches[i] for i in perm]


def _lr_lambda(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Linear warm-up to the peak rate, then linear decay to zero at the last step."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


def build_tokenizer(base_model: str) -> Any:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(base_model, use_fast=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"base model {base_model!r}: cannot load its tokenizer: {exc}") from exc
    if not getattr(tok, "is_fast", False):
        raise ConfigError(f"base model {base_model!r}: needs a fast tokenizer (tokenizer.json)")
    if tok.pad_token_id is None:
        raise ConfigError(f"base model {base_model!r}: tokenizer defines no padding token")
    return tok


def build_two_head_model(config: TrainConfig, n_topics: int) -> Any:
    from training.model import HeadSpec, build_model

    base = config.resolved_base_model()
    try:
        model = build_model(base, HeadSpec(n_topics, 3, config.dropout, config.pooling))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"base model {base!r}: cannot load: {exc}") from exc
    if config.freeze_embeddings:
        encoder: Any = model.encoder  # a Hugging Face model; nn.Module's typing does not declare its methods
        encoder.get_input_embeddings().weight.requires_grad_(False)
    if config.lora:
        from peft import LoraConfig, get_peft_model

        # Adapters on the attention projections; the two heads stay fully trainable (outside peft).
        lora = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=["query", "key", "value"],
        )
        model.encoder = get_peft_model(model.encoder, lora)
    return model


def merge_lora(model: Any) -> Any:
    """Fold LoRA adapters into the encoder weights, so export sees a plain encoder."""
    if hasattr(model.encoder, "merge_and_unload"):
        model.encoder = model.encoder.merge_and_unload()
    return model


def prepare_data(config: TrainConfig) -> tuple[Dataset, Dataset]:
    """Read, validate and split; keep only topics some row uses, in taxonomy order."""
    train, valid = load_data(config)
    topics = used_topics(train, valid)
    if not topics:
        raise DataError(f"{config.data}: empty dataset: no row has a topic label")
    return relabel(train, topics), relabel(valid, topics)


# (topic logits, sentiment logits, the batch's row indices) -> (topic loss, sentiment loss)
BatchLoss = Callable[[Any, Any, np.ndarray], tuple[Any, Any]]


def make_optimizer(model: Any, config: TrainConfig) -> Any:
    """AdamW: no weight decay on biases and LayerNorm; the heads at their own (higher) rate."""
    import torch

    head_params = [p for n, p in model.named_parameters() if not n.startswith("encoder.") and p.requires_grad]
    enc_decay = [
        p
        for n, p in model.encoder.named_parameters()
        if p.requires_grad and p.ndim > 1 and "LayerNorm" not in n
    ]
    enc_no_decay = [
        p
        for n, p in model.encoder.named_parameters()
        if p.requires_grad and (p.ndim <= 1 or "LayerNorm" in n)
    ]
    return torch.optim.AdamW(
        [
            {"params": enc_decay, "lr": config.lr, "weight_decay": config.weight_decay},
            {"params": enc_no_decay, "lr": config.lr, "weight_decay": 0.0},
            {"params": head_params, "lr": config.head_lr, "weight_decay": config.weight_decay},
        ]
    )


def step_losses(
    model: Any, inputs: tuple[Any, Any], idx: np.ndarray, batch_loss: BatchLoss, rdrop: float
) -> tuple[Any, Any]:
    """One batch's (topic, sentiment) losses; with R-Drop (`rdrop` > 0) the mean over two dropout
    passes plus `rdrop` times the symmetric KL between them, per head, over every row (a row without
    a head's label still has a prediction to keep consistent)."""
    t_logits, s_logits = model(*inputs)
    loss_t, loss_s = batch_loss(t_logits, s_logits, idx)
    if rdrop <= 0:
        return loss_t, loss_s
    from training.regularize import symmetric_kl

    t2, s2 = model(*inputs)
    loss_t2, loss_s2 = batch_loss(t2, s2, idx)
    return (
        (loss_t + loss_t2) / 2 + rdrop * symmetric_kl(t_logits, t2),
        (loss_s + loss_s2) / 2 + rdrop * symmetric_kl(s_logits, s2),
    )


def train_epochs(
    model: Any,
    config: TrainConfig,
    train_ids: list[list[int]],
    valid: Dataset,
    valid_ids: list[list[int]],
    pad_id: int,
    batch_loss: BatchLoss,
    say: Callable[[str], None] = print,
    on_epoch: Callable[[int, Any], None] | None = None,
    mask_id: int | None = None,
) -> tuple[list[EpochRecord], int]:
    """The loop shared by `fit` and distillation: epochs of length-bucketed batches under
    `batch_loss`, validation macro-F1 after each, early stopping; leaves the best epoch's weights
    in `model` (LoRA merged, eval mode). Returns (history, best epoch)."""
    import torch
    from tqdm import tqdm

    optimizer = make_optimizer(model, config)
    steps_per_epoch = math.ceil(len(train_ids) / config.batch_size)
    total = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_lambda(total, int(total * config.warmup_ratio))
    )
    gen = torch.Generator().manual_seed(config.seed)
    train_lengths = [len(x) for x in train_ids]

    from training.regularize import EmbeddingAdversary, WeightAverage, mask_tokens

    w_t, w_s = config.head_weights
    adversary = EmbeddingAdversary(model.encoder.embeddings, config.fgm) if config.fgm > 0 else None
    average = WeightAverage(model, config.weight_average) if config.weight_average > 0 else None
    if config.token_mask > 0 and mask_id is None:
        raise ConfigError("--token-mask needs a tokenizer with a mask or unknown token")
    mask_rng = np.random.default_rng(config.seed)

    history: list[EpochRecord] = []
    best_score, best_epoch, best_state, stale = -1.0, 0, None, 0
    for epoch in range(1, config.epochs + 1):
        t0 = time.monotonic()
        model.train()
        batches = length_bucketed_batches(train_lengths, config.batch_size, gen)
        sums = np.zeros(2)
        bar = tqdm(
            total=steps_per_epoch,
            desc=f"epoch {epoch}/{config.epochs}",
            disable=not config.progress,
            mininterval=bar_interval(),
        )
        for idx in batches:
            ids, mask = pad([train_ids[i] for i in idx], pad_id)
            if config.token_mask > 0:
                assert mask_id is not None
                ids = mask_tokens(ids, mask, config.token_mask, mask_id, mask_rng)
            inputs = (torch.from_numpy(ids), torch.from_numpy(mask))
            loss_t, loss_s = step_losses(model, inputs, idx, batch_loss, config.rdrop)
            optimizer.zero_grad(set_to_none=True)
            (w_t * loss_t + w_s * loss_s).backward()
            if adversary is not None:
                with adversary.perturbed():
                    t_adv, s_adv = model(*inputs)
                    adv_t, adv_s = batch_loss(t_adv, s_adv, idx)
                    (w_t * adv_t + w_s * adv_s).backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            if average is not None:
                average.update()
            sums += (loss_t.item(), loss_s.item())
            bar.update(1)
            bar.set_postfix(topic=f"{loss_t.item():.3f}", sentiment=f"{loss_s.item():.3f}")
        bar.close()

        with average.swapped_in() if average is not None else nullcontext():
            # with weight averaging, the average is what is validated and what the best state keeps
            topic_p, sent_p = predict_probs(
                model, valid_ids, pad_id, config.eval_batch_size, progress=config.progress
            )
            summary = summarize(head_reports(valid, topic_p, sent_p))
            score = summary["mean_macro_f1"]
            if score > best_score:  # copied only when kept, while the validated weights are in place
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        rec = EpochRecord(
            epoch=epoch,
            train_loss_topic=float(sums[0] / steps_per_epoch),
            train_loss_sentiment=float(sums[1] / steps_per_epoch),
            valid_macro_f1_topic=summary.get("topic_macro_f1", float("nan")),
            valid_macro_f1_sentiment=summary.get("sentiment_macro_f1", float("nan")),
            score=score,
            seconds=time.monotonic() - t0,
        )
        history.append(rec)
        if on_epoch is not None:  # e.g. bench.transfer scoring other data with this epoch's weights
            on_epoch(epoch, model)
        say(
            f"epoch {epoch}/{config.epochs}  train loss topic {rec.train_loss_topic:.4f} "
            f"sentiment {rec.train_loss_sentiment:.4f}  valid macro-F1 topic {rec.valid_macro_f1_topic:.4f} "
            f"sentiment {rec.valid_macro_f1_sentiment:.4f} mean {score:.4f}  ({rec.seconds:.1f}s)"
        )
        if score > best_score:
            best_score, best_epoch, stale = score, epoch, 0
        else:
            stale += 1
            if stale >= config.patience:
                say(f"early stop: no improvement for {stale} epoch(s); best epoch {best_epoch}")
                break

    if adversary is not None:
        adversary.close()
    assert best_state is not None  # at least one epoch ran
    model.load_state_dict(best_state)
    merge_lora(model).eval()
    return history, best_epoch


def fit(
    config: TrainConfig,
    say: Callable[[str], None] = print,
    on_epoch: Callable[[int, Any], None] | None = None,
) -> TrainResult:
    """Load data, build the model, train with early stopping; return the best epoch's model."""
    started = time.monotonic()
    if config.epochs < 1:
        raise ConfigError(f"epochs must be at least 1, got {config.epochs}")
    if config.rdrop < 0 or config.fgm < 0:
        raise ConfigError(f"rdrop and fgm must be >= 0 (0 is off), got {config.rdrop} and {config.fgm}")
    if not 0 <= config.token_mask < 1:
        raise ConfigError(f"token-mask rate must be in [0, 1) (0 is off), got {config.token_mask}")
    if not 0 <= config.weight_average < 1:
        raise ConfigError(f"weight-average decay must be in [0, 1) (0 is off), got {config.weight_average}")
    if config.pooling not in POOLINGS:
        raise ConfigError(f"pooling must be one of {', '.join(POOLINGS)}, got {config.pooling!r}")
    train, valid = prepare_data(config)  # data errors surface before torch is even imported
    # the feed prior is read and checked against the data's labels now, not after the training
    shifts = feed_prior_shifts(train, config.feed_prior) if config.feed_prior else {}
    # read now, so a bad --bias-fit file stops the run before any training
    bias_rows = load_bias_fit_rows(config, train) if config.bias_fit else None
    # the teacher's soft targets, through ONNX Runtime: a bad --teacher fails before torch loads
    soft = teacher_targets(config, train, say) if config.teacher else None
    import torch

    from training.model import class_weights, masked_cross_entropy

    if config.threads:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    topics = train.topic_labels
    say(
        f"data: {len(train)} training rows, {len(valid)} validation rows, "
        f"{len(topics)} topics, fingerprint {train.fingerprint()[:19]}"
    )

    base = config.resolved_base_model()
    tokenizer = build_tokenizer(base)
    if config.strip_urls:
        strip_urls(tokenizer)
    model = build_two_head_model(config, len(topics))
    pad_id = int(tokenizer.pad_token_id)
    train_ids = tokenize(tokenizer, train.texts, config.max_length)
    valid_ids = tokenize(tokenizer, valid.texts, config.max_length)

    t_weight = s_weight = None
    t_all = torch.from_numpy(train.topics)
    s_all = torch.from_numpy(train.sentiments)
    if config.class_weighting:
        t_weight = class_weights(t_all, len(topics))
        s_weight = class_weights(s_all, 3)

    def hard_labels(t_logits: Any, s_logits: Any, idx: np.ndarray) -> tuple[Any, Any]:
        return (
            masked_cross_entropy(t_logits, t_all[idx], t_weight),
            masked_cross_entropy(s_logits, s_all[idx], s_weight),
        )

    batch_loss: BatchLoss = hard_labels
    if soft is not None:
        from training.teacher import distillation_loss

        t_soft, s_soft = torch.from_numpy(soft[0]), torch.from_numpy(soft[1])
        alpha, temperature = config.teacher_alpha, config.teacher_temperature

        def soft_and_hard(t_logits: Any, s_logits: Any, idx: np.ndarray) -> tuple[Any, Any]:
            return (
                distillation_loss(t_logits, t_soft[idx], t_all[idx], temperature, alpha),
                distillation_loss(s_logits, s_soft[idx], s_all[idx], temperature, alpha),
            )

        batch_loss = soft_and_hard

    special = tokenizer.mask_token_id if tokenizer.mask_token_id is not None else tokenizer.unk_token_id
    history, best_epoch = train_epochs(
        model, config, train_ids, valid, valid_ids, pad_id, batch_loss, say, on_epoch, mask_id=special
    )
    for head, shift in shifts.items():
        labels = train.topic_labels if head == "topic" else train.sentiment_labels
        shift_head_bias(model.topic_head if head == "topic" else model.sentiment_head, shift)
        lo, hi = int(shift.argmin()), int(shift.argmax())
        say(
            f"feed prior {config.feed_prior}: {head} logits shifted {shift[lo]:+.2f} ({labels[lo]}) .. "
            f"{shift[hi]:+.2f} ({labels[hi]})"
        )
    if bias_rows is not None:
        fit_head_biases(model, tokenizer, bias_rows, config, say)
    return evaluated(model, tokenizer, (train, valid), valid_ids, config, history, best_epoch, started)


def teacher_targets(
    config: TrainConfig, train: Dataset, say: Callable[[str], None]
) -> tuple[np.ndarray, np.ndarray]:
    """`--teacher`: its (topic, sentiment) logits on the training texts, in the training labels' order."""
    from tqdm import tqdm

    from training.teacher import artifact_soft_targets, check_distillation, load_teacher_artifact

    check_distillation(config.teacher_alpha, config.teacher_temperature)
    if config.class_weighting:
        raise ConfigError("--teacher with --class-weights: the soft targets carry no class weights; pick one")
    artifact = load_teacher_artifact(str(config.teacher))
    started = time.monotonic()

    def bar(chunks: Any) -> Any:
        return tqdm(chunks, desc="teacher", disable=not config.progress, mininterval=bar_interval())

    soft = artifact_soft_targets(artifact, train, bar)
    say(
        f"teacher {artifact.path} ({artifact.manifest.get('base_model')}): soft targets for {len(train)} rows "
        f"in {time.monotonic() - started:.0f}s"
    )
    return soft


def load_bias_fit_rows(config: TrainConfig, train: Dataset) -> Dataset:
    """The --bias-fit rows, in the trained model's label order (a topic it lacks is an error)."""
    assert config.bias_fit
    return load_dataset(
        config.bias_fit, columns=config.columns, topics=train.topic_labels, label_map=config.label_map
    )


def fit_head_biases(
    model: Any, tokenizer: Any, rows: Dataset, config: TrainConfig, say: Callable[[str], None]
) -> None:
    """Fit each head's bias on `rows` (training/prior.fit_bias_shift) and fold it into the head."""
    model.eval()
    ids = tokenize(tokenizer, rows.texts, config.max_length)
    topic_p, sent_p = predict_probs(model, ids, int(tokenizer.pad_token_id), config.eval_batch_size)
    for head in config.bias_fit_heads:
        probs, truth, labels = (
            (topic_p, rows.topics, rows.topic_labels)
            if head == "topic"
            else (sent_p, rows.sentiments, rows.sentiment_labels)
        )
        shift = fit_bias_shift(np.log(probs + 1e-12), truth)
        shift_head_bias(model.topic_head if head == "topic" else model.sentiment_head, shift)
        moved = ", ".join(f"{label} {value:+.2f}" for label, value in zip(labels, shift, strict=True))
        say(f"bias fitted on {config.bias_fit} ({int((truth >= 0).sum())} rows): {head} logits {moved}")


def feed_prior_shifts(train: Dataset, path: str) -> dict[str, np.ndarray]:
    """Per head named in the feed prior at `path`, the logit shift from the training mix to the
    feed's (training/prior.py); a label without a share is an error naming the file and head."""
    prior = read_feed_prior(path)
    counts = train.label_counts()
    labels = {"topic": train.topic_labels, "sentiment": train.sentiment_labels}
    return {
        head: prior_shift(labels[head], counts[head], shares, where=f"{path}: {head}")
        for head, shares in prior.items()
    }


def evaluated(
    model: Any,
    tokenizer: Any,
    data: tuple[Dataset, Dataset],
    valid_ids: list[list[int]],
    config: TrainConfig,
    history: list[EpochRecord],
    best_epoch: int,
    started: float,
) -> TrainResult:
    """The trained model with its validation reports (PyTorch): what `fit` and distillation return."""
    train, valid = data
    pad_id = int(tokenizer.pad_token_id)
    topic_p, sent_p = predict_probs(model, valid_ids, pad_id, config.eval_batch_size)
    return TrainResult(
        model=model,
        tokenizer=tokenizer,
        train=train,
        valid=valid,
        reports=head_reports(valid, topic_p, sent_p),
        history=history,
        best_epoch=best_epoch,
        seconds=time.monotonic() - started,
    )


def train_and_export(config: TrainConfig, say: Callable[[str], None] = print) -> Path:
    """`finsent train`: train -> evaluate -> export -> validate -> write the artifact; its path."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    version = new_version()
    result = fit(config, say)
    return publish_result(result, config, version, say)


def publish_result(
    result: TrainResult,
    config: TrainConfig,
    version: str,
    say: Callable[[str], None] = print,
    *,
    extra: dict[str, Any] | None = None,
) -> Path:
    """The checkpoint (with `config.checkpoint_dir`) and the validated artifact of a trained model;
    `extra` goes into the manifest. Shared by `finsent train` and `finsent distill`."""
    if config.checkpoint_dir:
        ckpt = save_checkpoint(result, config, Path(config.checkpoint_dir) / version)
        say(f"checkpoint: {ckpt}")
    return package_artifact(
        PackageInput(
            model=result.model,
            tokenizer=result.tokenizer,
            valid=result.valid,
            reports=result.reports,
            base_model=config.resolved_base_model(),
            data_fingerprint=result.train.fingerprint(),
            training_config=config.to_json(),
            max_length=config.max_length,
            extra={
                "best_epoch": result.best_epoch,
                "train_rows": len(result.train),
                "valid_rows": len(result.valid),
                "train_seconds": round(result.seconds, 1),
                "history": [asdict(h) for h in result.history],
                **(extra or {}),
            },
            calibration_texts=result.train.texts,
        ),
        Path(config.out),
        version=version,
        options=ExportOptions(int8=config.int8, calibration=config.calibration, int8_isa=config.int8_isa),
        say=say,
    )
