"""``FaceScorer``: the ensemble behind one call, loaded once and warmed, for the scoring service and the CLI.

Every member runs exactly one forward pass per batch (flipped copies ride in the same batch); crops are cut from the
chips by ``services.scoring.crops``; ``services.scoring.ensemble`` turns the members' outputs into a ``FaceScore``.
Performance choices: ``torch.inference_mode``; channels-last tensors (measured ~1.7× faster for the WRN on these
CPUs); bf16 autocast on CUDA for every member and on CPU for the WRN only, when the CPU has native bf16
(``libs.common.precision``; 2× faster there, mean |Δage| 0.08 years on 96 UTKFace chips; emulated bf16 gains nothing,
and the CC0 nets are too small to gain); optional ``torch.compile``.
Wire it into asyncio through ``libs.common.batching.MicroBatcher(scorer.score_items, max_batch, max_wait_ms)``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from libs.common.chips import CHIP_SIZE, CHIP_TEMPLATE
from libs.common.precision import bf16_worthwhile, resolve_device
from services.scoring.beauty.features import HOOKS, feature_hooks, output_blocks, pooled_blocks
from services.scoring.ensemble import EnsembleCalibration, combine, load_calibration
from services.scoring.members import MemberOutput, member_crops, run_member
from services.scoring.models.registry import create_model, pretrained_config

log = logging.getLogger(__name__)

CPU_BF16_MEMBERS = frozenset({"wrn16_8_imdbwiki"})  # the only member whose CPU cost matters (6.2 GMAC per face)
WARMUP_BATCH = 2  # one small batch builds oneDNN kernels / CUDA graphs before the first real request
# Compiled members: Dynamo specialises on batch 1, and a second batch size above 1 makes it recompile once with a
# dynamic batch dimension; one more recompile was seen at the service's batch of 8 (CPU), so the largest batch is
# warmed up too. (``dynamic=True`` from the start was tried: on the CPU the first batch had not compiled after 15 min.)
COMPILED_WARMUP_BATCHES = (1, WARMUP_BATCH, WARMUP_BATCH + 1)
FEMALE_THRESHOLD = 0.5


@dataclass
class FaceScore:
    """The ensemble's answer for one face, with every member's own answer for transparency."""

    age: float
    age_low: float  # central 80 % interval of the combined age distribution
    age_high: float
    age_std: float  # spread of the combined distribution: the age uncertainty
    p_female: float
    gender: str  # "female" | "male"
    members: dict[str, dict[str, float | None]] = field(default_factory=dict)  # name → {age, p_female}
    model_versions: dict[str, str] = field(default_factory=dict)
    profile: str = "default"
    age_probs: np.ndarray | None = field(default=None, repr=False)  # [101] combined distribution (minor checks)
    features: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # tapped feature blocks, one row each

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("age_probs")
        out.pop("features")
        return out


def mirrors_itself(model: torch.nn.Module) -> bool:
    """A member that mirrors every face itself (``DexHeadMember(mirror=True)``, also inside torch.compile's wrapper)."""
    return bool(getattr(getattr(model, "_orig_mod", model), "mirror", False))


class FaceScorer:
    """Loads a profile's members once and scores batches of chips."""

    def __init__(
        self,
        models_dir: Path | None = None,
        profile: str = "default",
        device: str = "auto",
        calibration: EnsembleCalibration | None = None,
        compile: bool = False,
        cpu_bf16: bool = True,
        warmup: bool = True,
        pretrained: bool = True,
    ) -> None:
        """``pretrained=False`` builds the same networks with untrained weights: same FLOPs and speed, no model cache
        (speed checks on a machine the converted weights cannot reach, e.g. a lent GPU)."""
        if models_dir is None and pretrained:
            from libs.common.settings import Settings

            models_dir = Settings().models_dir
        self.profile = profile
        self.device = resolve_device(device)
        self.calibration = calibration or load_calibration(profile)
        if self.calibration.profile != profile:
            raise ValueError(f"calibration is for profile {self.calibration.profile!r}, not {profile!r}")
        self.configs = {n: pretrained_config(n) for n in self.calibration.members}
        self.compiled = compile
        if compile:
            # The feature taps are forward hooks, added and removed around each tapped batch. By default Dynamo does
            # not guard on hooks, so a graph traced without them silently skips them later (KeyError on the first
            # tapped batch after an untapped one); guarding makes it trace a tapped and an untapped variant.
            torch._dynamo.config.skip_nnmodule_hook_guards = False
        self.models: dict[str, torch.nn.Module] = {}
        for name in self.configs:
            model = create_model(name, models_dir, pretrained).to(self.device, memory_format=torch.channels_last)
            self.models[name] = torch.compile(model) if compile else model
        use_bf16 = bf16_worthwhile(self.device)  # CUDA, or a CPU with native bf16 (emulated bf16 gains nothing)
        self.autocast: dict[str, torch.dtype | None] = {
            n: torch.bfloat16 if use_bf16 and (self.device.type == "cuda" or (cpu_bf16 and n in CPU_BF16_MEMBERS))
            else None
            for n in self.configs
        }
        if warmup:
            self.warmup()

    def warmup(self, score: Callable[[list[np.ndarray], list[np.ndarray]], object] | None = None,
               max_batch: int = WARMUP_BATCH) -> None:
        """Run tiny batches through every member so the first request does not pay for kernel selection (or, for
        compiled members, for compilation). ``score(chips, landmarks)``: the path live batches take (default
        ``score_batch``); a compiled graph is traced with the forward hooks that path installs, so the service warms
        up through its own path, and up to its own ``max_batch``."""
        started = time.perf_counter()
        score = score or self.score_batch
        chip = np.full((CHIP_SIZE, CHIP_SIZE, 3), 128, dtype=np.uint8)
        for size in sorted({*COMPILED_WARMUP_BATCHES, max_batch}) if self.compiled else (WARMUP_BATCH,):
            score([chip] * size, [CHIP_TEMPLATE] * size)
        log.info("scorer warmed up in %.2fs on %s%s", time.perf_counter() - started, self.device,
                 " (compiled)" if self.compiled else "")

    def member_outputs(
        self, chips: Sequence[np.ndarray], landmarks: Sequence[np.ndarray], tap: Mapping[str, bool] | None = None,
    ) -> tuple[dict[str, MemberOutput], dict[str, np.ndarray]]:
        """Every member's raw outputs for the batch (one forward pass each), plus feature blocks of the ``tap``
        members (name → the flip setting the features were trained with) read in that same pass where its flip
        setting matches the ensemble's; the others are skipped (the caller computes them itself)."""
        outputs: dict[str, MemberOutput] = {}
        blocks: dict[str, np.ndarray] = {}
        flips = set(self.calibration.flip_members)
        for name, cfg in self.configs.items():
            crops = member_crops(cfg, chips, landmarks)
            flip = name in flips
            mirrored = flip or mirrors_itself(self.models[name])  # maps hold faces, then mirrors: taps average them
            tapped = tap is not None and tap.get(name) == mirrored and name in HOOKS
            with feature_hooks(name, self.models[name]) if tapped else nullcontext({}) as captured:
                outputs[name] = run_member(cfg, self.models[name], crops, flip=flip, device=self.device,
                                           autocast_dtype=self.autocast[name])
            if tapped:
                blocks.update(pooled_blocks(name, captured, len(crops), mirrored))
                blocks.update(output_blocks(outputs[name]))
        return outputs, blocks

    def score_batch(
        self, chips: Sequence[np.ndarray], landmarks: Sequence[np.ndarray], tap: Mapping[str, bool] | None = None,
    ) -> list[FaceScore]:
        """Scores for a batch of 256×256 RGB uint8 chips and their [5, 2] chip landmarks, in input order.

        With ``tap`` (member → flip), each FaceScore also carries that member's feature blocks for its face
        (``features``), read during the ensemble's own forward pass (see ``member_outputs``).
        """
        if len(chips) != len(landmarks):
            raise ValueError(f"{len(chips)} chips but {len(landmarks)} landmark sets")
        if not chips:
            return []
        for chip in chips:
            if chip.dtype != np.uint8 or chip.ndim != 3 or chip.shape[2] != 3:
                raise ValueError(f"chips must be HxWx3 uint8 RGB, got {chip.shape} {chip.dtype}")
        outputs, blocks = self.member_outputs(chips, landmarks, tap)
        result = combine(outputs, self.calibration)
        versions = {n: cfg.version for n, cfg in self.configs.items()}
        scores = []
        for i in range(len(chips)):
            members = {
                n: {
                    "age": float(result.member_age[n][i]) if n in result.member_age else None,
                    "p_female": float(result.member_p_female[n][i]) if n in result.member_p_female else None,
                }
                for n in self.configs
            }
            p_female = float(result.p_female[i])
            scores.append(FaceScore(
                age=float(result.age[i]), age_low=float(result.age_low[i]), age_high=float(result.age_high[i]),
                age_std=float(result.age_std[i]), p_female=p_female,
                gender="female" if p_female > FEMALE_THRESHOLD else "male", members=members,
                model_versions=versions, profile=self.profile, age_probs=result.age_probs[i],
                features={k: v[i] for k, v in blocks.items()},
            ))
        return scores

    def score_items(
        self, items: Sequence[tuple[np.ndarray, np.ndarray]], tap: Mapping[str, bool] | None = None,
    ) -> list[FaceScore]:
        """``score_batch`` over (chip, landmarks) pairs: the shape ``MicroBatcher`` hands a batch function."""
        return self.score_batch([c for c, _ in items], [lm for _, lm in items], tap)
