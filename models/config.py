"""The parameters of a detection run (the ``ladsdin detect`` flags; the stream's settings map onto them)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from ladsdin.models.detector import COMMON_MODES
from ladsdin.models.tiling import DEFAULT_TILE
from ladsdin.models.training import TrainConfig


@dataclass(frozen=True)
class DetectConfig:
    """Parameters of a detection run (the ``ladsdin detect`` flags)."""

    nm: float = 6.0
    seismic_area_km2: float = 600.0
    downsample: int = 1
    train_fraction: float = 0.85
    gap_fill: str = "native"  # 'native' | 'knn'
    knn_k: int = 4
    connectivity: int = 4
    common_mode: str = "median"
    reanchor: bool = True
    #: how long a pixel of a seismic object stays in the post-event regime, days (0 = never)
    post_event_days: float = 365.0
    sign_split: bool = True
    #: tolerated null alerts per frame-year: seismic objects must be larger than the size the
    #: training epochs' null reaches at this rate (models/null_floor.py; 0 = N_a alone)
    false_alerts_per_year: float = 0.1
    min_coherence: float = 0.25
    min_valid_fraction: float = 0.5
    step_days: int = 12
    tile: int = DEFAULT_TILE  # tile edge, pixels: bounds memory and every stored value (models/tiling.py)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        if self.nm <= 0:
            raise ValueError(f"--nm must be > 0, got {self.nm}")
        if not 0.1 <= self.train_fraction < 1.0:
            raise ValueError(f"--train-fraction must be in [0.1, 1), got {self.train_fraction}")
        if self.gap_fill not in ("native", "knn"):
            raise ValueError(f"--gap-fill must be 'native' or 'knn', got '{self.gap_fill}'")
        if self.common_mode not in COMMON_MODES:
            raise ValueError(f"--common-mode must be one of {COMMON_MODES}, got '{self.common_mode}'")
        if self.tile < 8:
            raise ValueError(f"the tile size must be >= 8 pixels, got {self.tile}")
        if not 0 <= self.post_event_days <= 255 * self.step_days:
            raise ValueError(f"--post-event-days must be in [0, {255 * self.step_days}], got {self.post_event_days}")
        if not 0 <= self.false_alerts_per_year <= 100:
            raise ValueError(f"--false-alerts-per-year must be in [0, 100], got {self.false_alerts_per_year}")
        if self.connectivity not in (4, 8):
            raise ValueError(f"--connectivity must be 4 or 8, got {self.connectivity}")

    def digest(self) -> str:
        """Short hash of the configuration, for model versions. The tile size is left out: it
        changes how a frame is cut, never what is detected."""
        return hashlib.sha256(json.dumps({k: v for k, v in asdict(self).items() if k != "tile"}, sort_keys=True, default=str).encode()).hexdigest()[:10]
