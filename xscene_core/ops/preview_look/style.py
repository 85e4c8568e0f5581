"""What the preview depicts (Style) and the sun, sky and atmosphere it implies (Lighting)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ...types.scene import ENVIRONMENTS, TIMES_OF_DAY, WEATHERS, SceneDescription


# Style ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Style:
    """What the preview depicts: time_of_day (types.scene.TIMES_OF_DAY), weather (WEATHERS) and
    environment (ENVIRONMENTS)."""

    time_of_day: str = "noon"
    weather: str = "sunny"
    environment: str = "suburban"

    def __post_init__(self) -> None:
        for name, choices in (("time_of_day", TIMES_OF_DAY), ("weather", WEATHERS), ("environment", ENVIRONMENTS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"Style.{name}: {getattr(self, name)!r} is not one of {', '.join(choices)}")

    @classmethod
    def from_description(cls, description: SceneDescription | None) -> "Style":
        """The style a description names; values outside the known vocabularies fall back to the defaults
        (a free-text description may say "evening" or "drizzle")."""
        if description is None:
            return cls()
        d = cls()
        pick = lambda v, choices, default: v if v in choices else default  # noqa: E731
        return cls(pick(description.time_of_day.lower(), TIMES_OF_DAY, d.time_of_day),
                   pick(description.weather.lower(), WEATHERS, d.weather),
                   pick(description.environment.lower(), ENVIRONMENTS, d.environment))

    @property
    def night(self) -> bool:
        return self.time_of_day == "night"


# Sun elevation (degrees), sun colour (linear RGB), sky zenith / horizon colours (linear RGB) per time.
_TIME = {
    "dawn": (4.0, (1.0, 0.55, 0.32), (0.16, 0.22, 0.42), (0.95, 0.62, 0.45)),
    "morning": (26.0, (1.0, 0.90, 0.78), (0.16, 0.34, 0.80), (0.62, 0.74, 0.92)),
    "noon": (62.0, (1.0, 0.98, 0.94), (0.10, 0.26, 0.78), (0.50, 0.66, 0.92)),
    "afternoon": (36.0, (1.0, 0.90, 0.76), (0.14, 0.32, 0.78), (0.66, 0.74, 0.88)),
    "dusk": (5.0, (1.0, 0.45, 0.22), (0.10, 0.12, 0.32), (0.98, 0.48, 0.28)),
    "night": (35.0, (0.55, 0.65, 1.0), (0.004, 0.006, 0.018), (0.030, 0.032, 0.050)),
}
# Per weather: sun strength, sky light strength, sky desaturation (0..1, towards grey), sky grey level,
# fog distance (m: e-folding of the aerial perspective), wetness, snow cover.
_WEATHER = {
    "sunny": (1.0, 0.24, 0.0, 0.0, 700.0, 0.0, 0.0),
    "cloudy": (0.55, 0.42, 0.45, 0.62, 200.0, 0.0, 0.0),
    "overcast": (0.10, 0.62, 0.85, 0.55, 150.0, 0.15, 0.0),
    "rainy": (0.04, 0.50, 0.90, 0.36, 90.0, 1.0, 0.0),
    "foggy": (0.10, 0.60, 0.95, 0.62, 22.0, 0.3, 0.0),
    "snowy": (0.20, 0.66, 0.85, 0.70, 80.0, 0.2, 1.0),
}
NIGHT_LIGHT = 0.03  # sky light at night relative to day


@dataclass(frozen=True)
class Lighting:
    """Lights of a scene (linear RGB, world frame): unit sun direction (towards the sun), sun colour x
    strength, sky zenith and horizon colours, sky light strength, fog colour and distance (m), wetness and
    snow cover in [0, 1]."""

    sun_dir: torch.Tensor
    sun: torch.Tensor
    zenith: torch.Tensor
    horizon: torch.Tensor
    sky_light: float
    fog_color: torch.Tensor
    fog_distance: float
    wetness: float
    snow: float
    night: bool


def lighting(style: Style, seed: int) -> Lighting:
    """The sun, sky and atmosphere of a style; the sun's azimuth is drawn from the seed."""
    elev_deg, sun_col, zen, hor = _TIME[style.time_of_day]
    sun_k, sky_k, desat, grey, fog_d, wet, snow = _WEATHER[style.weather]
    azimuth = float(np.random.default_rng([seed, 7]).uniform(0, 2 * math.pi))
    e = math.radians(elev_deg)
    sun_dir = torch.tensor([math.cos(e) * math.cos(azimuth), math.cos(e) * math.sin(azimuth), math.sin(e)])
    t = lambda v: torch.tensor(v, dtype=torch.float32)  # noqa: E731
    zen_t, hor_t = t(zen), t(hor)
    level = grey * (NIGHT_LIGHT * 0.5 if style.night else (0.55 if style.time_of_day in ("dawn", "dusk") else 1.0))
    grey_t = torch.full((3,), level)
    zen_t = zen_t * (1 - desat) + grey_t * 0.85 * desat
    hor_t = hor_t * (1 - desat) + grey_t * desat
    sun = t(sun_col) * sun_k * (0.06 if style.night else 1.0)
    sky = sky_k * (NIGHT_LIGHT if style.night else 1.0)
    fog = hor_t.clone()
    return Lighting(sun_dir, sun, zen_t, hor_t, sky, fog, fog_d, wet, snow, style.night)
