"""A procedural GIFGIF look-alike: cartoon-face GIFs whose emotions are visible, with simulated votes.

Ground truth. Each GIF has an 8-d latent ``z ~ N(0, I)`` (valence, arousal, dominance,
surprise, self-consciousness, disgust, sadness, calm). Each emotion's true Bradley-Terry
strength is a fixed linear combination of ``z`` (weights in ``EMOTION_WEIGHTS``) plus a little
independent noise, standardised over the dataset to mean 0 and standard deviation 1 (logits).
Emotions are therefore correlated through the latent, as real ones are.

Pixels. Every latent dimension drives one visible trait of a cartoon face, so the emotions
are (up to the noise) functions of what an image encoder sees:

    valence -> mouth curve (smile / frown) and background hue (cool blue .. warm orange)
    arousal -> motion (bounce amplitude and speed, shaking) and mouth opening
    dominance -> brow slant (angry V .. worried) and face size
    surprise -> eye size and brow height
    self-consciousness -> blush on the cheeks
    disgust -> green face tint
    sadness -> tears (size)
    calm -> drooping eyelids and a paler background

Motion and timing. Part of each emotion lives only in how the GIF moves, never in one
frame. Four more latents ``zt ~ N(0, I)`` drive motion on the GIF's own timeline
(tau = t / duration, the axis the sampler spreads segments over):

    energy  -> the face travels in a straight line from a random start and pulses in size
               (zooms in and out); path length and pulse amplitude grow with energy (one
               frame shows a face of some size somewhere; only several show how it moves)
    jolt    -> at a random moment the face jumps to another place and changes size (grows
               or shrinks at random): the size of the sudden change
    release -> the face is squeezed (tense) and relaxes at a late random moment (> 0:
               tension released late, relief) or the other way round (< 0: tension
               building up); the squeeze amount is the same either way, only the order tells
    droop   -> mouth corners and eyelids drift over the timeline: down (> 0, drooping:
               sadness, guilt) or up (< 0, lifting: pride); their mean over time is neutral

Each emotion's strength is ``sqrt(1 - share) * static + sqrt(share) * temporal + noise``,
both parts standardised, where ``share = min(1, temporal_share * emphasis)``: the knob
(default 0.5; 0 gives the old data where every frame shows everything) times a per-emotion
emphasis (``TEMPORAL_EMPHASIS``: 1.5 for excitement, surprise, relief, fear and sadness,
0.5 for contempt, disgust, pride and embarrassment, 1 otherwise). ``demo.json`` records per emotion the measured
share of the true strength's variance that is temporal, static and noise.

Some GIFs (``moment_share``, default 0.3) show their static expression only during a short
window (a fifth of the timeline, at a random place) and a nearly neutral face elsewhere: the
emotional moment is short, as a reaction GIF's punchline is. The moment carries the expression
(``MOMENT_LATENTS``): mouth curve, brows, eyes and tears, and since version 3 also its colours
(background hue, blush, green tint), which outside the moment fade to MOMENT_REST of their
strength as the shapes do. Motion, arousal and calm show throughout. ``moment_emotions`` tells
which emotions a moment carries: those whose true strength its expression raises most. Every GIF also has a
distractor, a ball moving across the background at a random speed and direction, which
carries no emotion.

Votes. For each emotion, ``n_gifs * comparisons_per_gif / 2`` comparisons between uniformly
drawn pairs, so each GIF takes part in about ``comparisons_per_gif`` votes per emotion
(undecided ones included). The left GIF wins with probability sigmoid(s_left - s_right);
with probability ``non_decisive * 2 * sigmoid(-|s_left - s_right|)`` the voter does not
decide ("neither"), more often for similar GIFs. Rows of all emotions are shuffled together,
and a few corrupt rows (an empty id) are sprinkled in, as in GIFGIF's file.

Files (in ``out``): ``votes.csv.gz`` (GIFGIF's format, header ``metric,left,right,choice``),
``gifs/<id>.gif`` (13-character alphanumeric ids), ``truth.csv`` (id, the 17 true
strengths, and for moment GIFs ``moment_start``/``moment_end``/``duration`` in seconds on the
GIF's clamped-delay timeline and ``moment_emotions``, the emotions it carries, so a timeline
can be judged; read with ``read_moments`` and ``read_moment_emotions``), ``demo.json`` (parameters and counts). Deterministic by seed.
"""

from __future__ import annotations

import colorsys
import csv
import gzip
import io
import json
import math
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from gifsent_infer.contract import EMOTIONS
from gifsent_infer.files import atomic_open
from gifsent_infer.writing.gifsave import save_gif

LATENTS = (
    "valence",
    "arousal",
    "dominance",
    "surprise",
    "self_conscious",
    "disgust",
    "sadness",
    "calm",
)

# Emotion -> {latent: weight}: the true strength is z @ weights + noise, then standardised.
EMOTION_WEIGHTS: dict[str, dict[str, float]] = {
    "amusement": {"valence": 0.7, "arousal": 0.5},
    "anger": {"valence": -0.6, "arousal": 0.5, "dominance": 0.8},
    "contempt": {"valence": -0.4, "dominance": 0.6, "disgust": 0.5},
    "contentment": {"valence": 0.6, "arousal": -0.5, "calm": 0.8},
    "disgust": {"valence": -0.5, "disgust": 1.0},
    "embarrassment": {"self_conscious": 0.9, "valence": -0.2, "surprise": 0.2},
    "excitement": {"arousal": 1.0, "valence": 0.5},
    "fear": {"valence": -0.6, "arousal": 0.6, "dominance": -0.7, "surprise": 0.5},
    "guilt": {"self_conscious": 0.5, "sadness": 0.5, "dominance": -0.4},
    "happiness": {"valence": 1.0, "arousal": 0.3},
    "pleasure": {"valence": 0.7, "calm": 0.5},
    "pride": {"dominance": 0.9, "valence": 0.5},
    "relief": {"calm": 0.7, "valence": 0.5, "arousal": -0.3},
    "sadness": {"sadness": 1.0, "valence": -0.6, "arousal": -0.4},
    "satisfaction": {"valence": 0.7, "calm": 0.4, "dominance": 0.3},
    "shame": {"self_conscious": 0.8, "dominance": -0.6, "sadness": 0.3},
    "surprise": {"surprise": 1.0, "arousal": 0.5},
}
# Motion latents: visible only across frames (see the module docstring).
TEMPORAL_LATENTS = ("energy", "jolt", "release", "droop")

# Emotion -> {temporal latent: weight}: the temporal part of the true strength.
TEMPORAL_WEIGHTS: dict[str, dict[str, float]] = {
    "amusement": {"energy": 0.6, "jolt": 0.4},
    "anger": {"energy": 0.6, "release": -0.6},
    "contempt": {"energy": -0.6, "droop": 0.4},
    "contentment": {"energy": -0.5, "release": 0.6},
    "disgust": {"jolt": 0.6, "droop": 0.4},
    "embarrassment": {"jolt": 0.5, "droop": 0.5},
    "excitement": {"energy": 1.0, "jolt": 0.3},
    "fear": {"jolt": 0.7, "release": -0.7},
    "guilt": {"droop": 0.9, "energy": -0.3},
    "happiness": {"energy": 0.5, "droop": -0.6},
    "pleasure": {"release": 0.6, "energy": -0.3},
    "pride": {"droop": -0.9, "energy": 0.3},
    "relief": {"release": 1.0},
    "sadness": {"droop": 1.0, "energy": -0.4},
    "satisfaction": {"release": 0.5, "droop": -0.5},
    "shame": {"droop": 0.8, "release": -0.3},
    "surprise": {"jolt": 1.0, "energy": 0.3},
}
# How much of each emotion lives in motion, relative to the temporal_share knob: an
# emotion's temporal share is min(1, temporal_share * emphasis). Emotions that are mostly
# about movement and change (excitement, surprise, relief, fear, sadness) lean on motion;
# those read from a face at rest (contempt, disgust, pride, embarrassment) less.
TEMPORAL_EMPHASIS: dict[str, float] = {
    **{e: 1.0 for e in EMOTIONS},
    **{e: 1.5 for e in ("excitement", "surprise", "relief", "fear", "sadness")},
    **{e: 0.5 for e in ("contempt", "disgust", "pride", "embarrassment")},
}
NOISE = 0.3  # independent per-emotion noise (before standardising): the part pixels cannot show
DEFAULT_TEMPORAL_SHARE = 0.5  # of the pixel-visible signal, per emotion
DEFAULT_MOMENT_SHARE = 0.3  # GIFs whose static expression shows only in a short window
MOMENT_WIDTH = 0.2  # of the timeline
# The latents a moment GIF shows only in its moment (its facial expression and colours);
# elsewhere they show at MOMENT_REST of their value (a nearly neutral face).
MOMENT_LATENTS = ("valence", "dominance", "surprise", "self_conscious", "disgust", "sadness")
MOMENT_REST = 0.15
MOMENT_EMOTIONS = 3  # emotions recorded per moment: the ones its expression raises most
ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
ID_LENGTH = 13
UNDECIDED = "neither"


def _matrix(latents, weights) -> np.ndarray:
    """float64 [latents, 17 emotions] from {emotion: {latent: weight}}."""
    a = np.zeros((len(latents), len(EMOTIONS)))
    for k, e in enumerate(EMOTIONS):
        for name, wgt in weights[e].items():
            a[latents.index(name), k] = wgt
    return a


def weight_matrix() -> np.ndarray:
    """float64 [8 latents, 17 emotions]."""
    return _matrix(LATENTS, EMOTION_WEIGHTS)


def temporal_weight_matrix() -> np.ndarray:
    """float64 [4 temporal latents, 17 emotions]."""
    return _matrix(TEMPORAL_LATENTS, TEMPORAL_WEIGHTS)


def strength_parts(
    n: int, rng: np.random.Generator, temporal_share: float = DEFAULT_TEMPORAL_SHARE
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(latent [n, 8 + 4], parts): the static, temporal and noise parts [n, 17] of the strengths.

    Static and temporal parts are each scaled to unit variance in expectation (by their
    weight columns' norms), then mixed as sqrt(1 - share_e) and sqrt(share_e), where
    share_e = min(1, temporal_share * TEMPORAL_EMPHASIS[e]).
    """
    if not 0.0 <= temporal_share <= 1.0:
        raise ValueError(f"temporal_share must be in [0, 1], got {temporal_share}")
    z = rng.standard_normal((n, len(LATENTS)))
    noise = NOISE * rng.standard_normal((n, len(EMOTIONS)))
    zt = rng.standard_normal((n, len(TEMPORAL_LATENTS)))
    ws, wt = weight_matrix(), temporal_weight_matrix()
    static = z @ (ws / np.linalg.norm(ws, axis=0))
    temporal = zt @ (wt / np.linalg.norm(wt, axis=0))
    share = np.minimum(1.0, temporal_share * np.array([TEMPORAL_EMPHASIS[e] for e in EMOTIONS]))
    parts = {
        "static": np.sqrt(1.0 - share) * static,
        "temporal": np.sqrt(share) * temporal,
        "noise": noise,
    }
    return np.concatenate([z, zt], axis=1), parts


def true_strengths(
    n: int, rng: np.random.Generator, temporal_share: float = DEFAULT_TEMPORAL_SHARE
) -> tuple[np.ndarray, np.ndarray]:
    """(latent [n, 12]: 8 static then 4 temporal, strengths [n, 17]); each strength column
    has mean 0 and std 1."""
    z, parts = strength_parts(n, rng, temporal_share)
    s = parts["static"] + parts["temporal"] + parts["noise"]
    s -= s.mean(axis=0)
    s /= s.std(axis=0)
    return z, s


def signal_shares(parts: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per emotion, the share of the true strength's variance in each part: var(part) over
    the sum of the parts' variances, measured on the data (the parts are independent)."""
    var = {k: v.var(axis=0) for k, v in parts.items()}
    total = sum(var.values())
    return {
        e: {k: round(float(var[k][j] / total[j]), 4) for k in parts} for j, e in enumerate(EMOTIONS)
    }


def simulate_votes(
    strength: np.ndarray, n_comparisons: int, rng: np.random.Generator, non_decisive: float = 0.15
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Votes for one emotion from a Bradley-Terry model.

    Returns (left [m] int64, right [m] int64, outcome [m] int8: 0 left won, 1 right won,
    2 undecided).
    """
    n = len(strength)
    left = rng.integers(0, n, n_comparisons)
    right = (left + rng.integers(1, n, n_comparisons)) % n  # never the same GIF
    diff = strength[left] - strength[right]
    left_wins = rng.random(n_comparisons) < 1.0 / (1.0 + np.exp(-diff))
    undecided = rng.random(n_comparisons) < non_decisive * 2.0 / (1.0 + np.exp(np.abs(diff)))
    outcome = np.where(undecided, 2, np.where(left_wins, 0, 1)).astype(np.int8)
    return left, right, outcome


def make_ids(n: int, rng: np.random.Generator) -> list[str]:
    """n distinct Giphy-like ids: 13 alphanumeric characters."""
    ids: list[str] = []
    seen: set[str] = set()
    alphabet = np.array(list(ID_ALPHABET))
    while len(ids) < n:
        for row in rng.integers(0, len(ID_ALPHABET), (n - len(ids), ID_LENGTH)):
            gif_id = "".join(alphabet[row])
            if gif_id not in seen:
                seen.add(gif_id)
                ids.append(gif_id)
    return ids


# ----------------------------------------------------------------------------- pixels


def _mix(a: Sequence[float], b: Sequence[float], t: float) -> tuple[int, int, int]:
    t = min(max(t, 0.0), 1.0)
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


def _unit(x: float) -> float:
    """A latent value (about N(0,1)) squashed to (0, 1)."""
    return 1.0 / (1.0 + math.exp(-1.2 * x))


# palette indices; each GIF has its own palette, so frames are drawn in "P" mode
BG, FACE, INK, CHEEK, TEAR, MOUTH, WHITE, OUTLINE, BALL = range(9)


def _palette(z: np.ndarray, k: float = 1.0) -> list[int]:
    """The GIF's colours; k scales the expression's colours (valence hue, blush, tint): a moment
    GIF's frames outside its moment use k = MOMENT_REST."""
    val, aro, _dom, _sur, selfc, disg, _sad, calm = (
        _unit(v * (k if name in MOMENT_LATENTS else 1.0))
        for name, v in zip(LATENTS, z[: len(LATENTS)], strict=True)
    )
    hue = 0.62 - 0.55 * val  # blue (sad) .. orange (happy)
    sat = 0.25 + 0.6 * aro * (1.0 - 0.5 * calm)
    bg = tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue % 1.0, sat, 0.92))
    face = _mix((255, 214, 90), (130, 200, 80), disg)
    cheek = _mix(face, (235, 40, 60), selfc)
    colours = [
        bg,
        face,
        (40, 30, 30),
        cheek,
        (60, 140, 255),
        (150, 20, 40),
        (255, 255, 255),
        (90, 60, 20),
        (120, 110, 130),  # the distractor ball: the same grey-violet in every GIF
    ]
    flat = [c for rgb in colours for c in rgb]
    return flat + [0] * (768 - len(flat))


@dataclass(frozen=True)
class Motion:
    """One GIF's motion plan on its timeline tau in [0, 1); positions in units of min(w, h)."""

    start: tuple[float, float]  # face centre offset at tau = 0 (before any jolt)
    path: tuple[float, float]  # displacement over the whole timeline (energy)
    base_scale: float  # the GIF's face size factor (random: one frame's size says little)
    pulse: float  # energy: relative amplitude of the face's size pulsing (zooming in and out)
    pulse_cycles: float  # pulses over the timeline
    pulse_phase: float
    jolt_at: float  # tau of the sudden change
    jump: tuple[float, float]  # face displacement at the jolt
    jolt_scale: float  # face size factor after the jolt
    squeeze: float  # tension: horizontal squeeze of the face while tense (0 .. 0.3)
    tense_first: bool  # True: tense, then released at switch_at (relief); False: the reverse
    switch_at: float
    droop: float  # drift of mouth corners and eyelids over the timeline (> 0 downwards)
    moment: tuple[float, float] | None  # (start, end) tau of a short emotional moment, or None
    ball_start: tuple[float, float]  # distractor, in [0, 1)^2 of the frame
    ball_path: tuple[float, float]  # distractor travel over the timeline (wraps around)

    def centre(self, tau: float) -> tuple[float, float, float]:
        """(dx, dy, size factor) of the face at tau."""
        dx = self.start[0] + self.path[0] * tau
        dy = self.start[1] + self.path[1] * tau
        angle = 2 * math.pi * self.pulse_cycles * tau + self.pulse_phase
        scale = self.base_scale * (1.0 + self.pulse * math.sin(angle))
        if tau >= self.jolt_at:
            dx, dy, scale = dx + self.jump[0], dy + self.jump[1], scale * self.jolt_scale
        lim = 0.2  # keep the face mostly inside the frame
        return min(max(dx, -lim), lim), min(max(dy, -lim), lim), scale

    def tension(self, tau: float) -> float:
        tense = tau < self.switch_at if self.tense_first else tau >= self.switch_at
        return self.squeeze if tense else 0.0

    def expression(self, tau: float) -> float:
        """How much of the static expression shows at tau (1 everywhere but in moment GIFs)."""
        if self.moment is None:
            return 1.0
        a, b = self.moment
        return 1.0 if a <= tau < b else MOMENT_REST


def plan_motion(zt: np.ndarray, rng: np.random.Generator, moment_share: float) -> Motion:
    """The motion plan of a GIF with temporal latents zt [4] (energy, jolt, release, droop)."""
    energy, jolt, release, droop = (float(v) for v in zt)

    def direction() -> np.ndarray:
        a = rng.uniform(0, 2 * math.pi)
        return np.array([math.cos(a), math.sin(a)])

    path = direction() * 0.3 * _unit(1.5 * energy)
    # start so that the straight path stays inside the +-0.2 box where it can
    # a uniform start in the box [-0.2, 0.2]^2 from which the path stays inside it
    lo, hi = -0.2 - np.minimum(path, 0.0), 0.2 - np.maximum(path, 0.0)
    start = rng.uniform(np.minimum(lo, hi), np.maximum(lo, hi))
    jump = direction() * 0.25 * _unit(1.5 * jolt) ** 2
    jolt_scale = 1.0 + (1 if rng.random() < 0.5 else -1) * 0.3 * _unit(1.5 * jolt) ** 2
    tense_first = release > 0
    switch_at = rng.uniform(0.55, 0.85) if tense_first else rng.uniform(0.15, 0.45)
    moment = None
    if rng.random() < moment_share:
        a = rng.uniform(0.0, 1.0 - MOMENT_WIDTH)
        moment = (a, a + MOMENT_WIDTH)
    return Motion(
        start=(float(start[0]), float(start[1])),
        path=(float(path[0]), float(path[1])),
        base_scale=float(rng.uniform(0.8, 1.2)),
        pulse=0.3 * _unit(1.5 * energy) ** 2,
        pulse_cycles=float(rng.uniform(1.0, 2.0)),
        pulse_phase=float(rng.uniform(0, 2 * math.pi)),
        jolt_at=float(rng.uniform(0.3, 0.75)),
        jump=(float(jump[0]), float(jump[1])),
        jolt_scale=float(jolt_scale),
        squeeze=0.3 * math.tanh(abs(release)),
        tense_first=bool(tense_first),
        switch_at=float(switch_at),
        droop=float(math.tanh(droop)),
        moment=moment,
        ball_start=(float(rng.random()), float(rng.random())),
        ball_path=tuple(float(v) for v in direction() * rng.uniform(0.0, 1.5)),
    )


def _frame(
    width: int,
    height: int,
    z: np.ndarray,
    t: float,
    palette: list[int],
    motion: Motion | None = None,
    tau: float = 0.0,
) -> Image.Image:
    """One frame at time t seconds, tau = t / duration on the GIF's timeline."""
    # blush and face tint live in the palette (see _palette); the rest is geometry
    val, aro, dom, sur, _selfc, _disg, sad, calm = (float(v) for v in z[: len(LATENTS)])
    k = motion.expression(tau) if motion else 1.0  # a short emotional moment scales these
    val, dom, sur, sad = k * val, k * dom, k * sur, k * sad
    u_aro, u_sur, u_sad, u_calm = _unit(aro), _unit(sur), _unit(sad), _unit(calm)
    img = Image.new("P", (width, height), BG)
    img.putpalette(palette)
    d = ImageDraw.Draw(img)
    m = min(width, height)
    dx, dy, scale = motion.centre(tau) if motion else (0.0, 0.0, 1.0)
    if motion:  # distractor: a ball crossing the background, wrapping around the frame
        bx = (motion.ball_start[0] + motion.ball_path[0] * tau) % 1.0 * width
        by = (motion.ball_start[1] + motion.ball_path[1] * tau) % 1.0 * height
        br = 0.07 * m
        d.ellipse([bx - br, by - br, bx + br, by + br], fill=BALL)
    r = m * (0.22 + 0.04 * math.tanh(dom)) * scale
    squeeze = motion.tension(tau) if motion else 0.0
    rx, ry = r * (1.0 - squeeze), r * (1.0 + 0.3 * squeeze)
    # drift of mouth corners and lids over the timeline: -1 .. 1 times the droop
    drift = (motion.droop * (2.0 * tau - 1.0)) if motion else 0.0
    # motion: bounce (amplitude and rate grow with arousal) plus a fast shake when aroused
    amp = r * 0.35 * u_aro
    rate = 0.4 + 2.6 * u_aro  # Hz
    cx = width / 2 + dx * m + r * 0.12 * u_aro**2 * math.sin(2 * math.pi * 3 * rate * t)
    cy = height / 2 + dy * m + amp * math.sin(2 * math.pi * rate * t)
    d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=FACE, outline=OUTLINE, width=2)
    # cheeks (blush colour is in the palette; invisible when the GIF is not self-conscious)
    for side in (-1, 1):
        ch_x, ch_y = cx + side * rx * 0.55, cy + r * 0.2
        d.ellipse([ch_x - r * 0.18, ch_y - r * 0.1, ch_x + r * 0.18, ch_y + r * 0.1], fill=CHEEK)
    # eyes: size from surprise, lids droop with calm (and drift with the droop latent)
    ex, ey = rx * 0.38, cy - r * 0.22
    erx = r * (0.10 + 0.10 * u_sur)
    ery = erx * (1.25 - 0.95 * u_calm) * (1.0 - 0.45 * drift)
    for side in (-1, 1):
        x = cx + side * ex
        d.ellipse([x - erx, ey - ery, x + erx, ey + ery], fill=WHITE, outline=INK)
        pr = max(1.0, min(erx, ery) * 0.55)
        d.ellipse([x - pr, ey - pr, x + pr, ey + pr], fill=INK)
        # brows: slant from dominance (inner end down = angry), height from surprise
        by = ey - ery - r * (0.08 + 0.22 * u_sur)
        slant = r * 0.12 * math.tanh(dom)
        inner, outer = x - side * erx * 1.2, x + side * erx * 1.2
        d.line([(outer, by - slant), (inner, by + slant)], fill=INK, width=max(2, int(r * 0.07)))
        # tears: grow with sadness and run down over time
        if u_sad > 0.35:
            tl = r * 0.5 * (u_sad - 0.35)
            ty = ey + ery + ((t * 40.0) % (r * 0.4))
            tw = r * 0.05 + r * 0.08 * (u_sad - 0.35)
            d.ellipse([x - tw, ty, x + tw, ty + tl + tw], fill=TEAR)
    # mouth: curve from valence (smile / frown) minus the droop drift, opening from arousal
    mw, my = rx * 0.45, cy + r * 0.45
    bend = r * 0.28 * math.tanh(val) - r * 0.3 * drift
    opening = r * 0.35 * u_aro * (0.75 + 0.25 * math.sin(2 * math.pi * rate * t))
    xs = np.linspace(-1.0, 1.0, 9)
    upper = [(cx + mw * x, my + bend * (1 - x * x) - bend * 0.5) for x in xs]
    lower = [(cx + mw * x, y + opening * (1 - x * x)) for x, (_, y) in zip(xs, upper, strict=True)]
    if opening > 1.5:
        d.polygon(upper + lower[::-1], fill=MOUTH, outline=INK)
    else:
        d.line(upper, fill=INK, width=max(2, int(r * 0.06)))
    return img


def _gif_bytes(
    z: np.ndarray,
    rng: np.random.Generator,
    size_range: tuple[int, int],
    moment_share: float = DEFAULT_MOMENT_SHARE,
) -> tuple[bytes, int, tuple[float, float, float] | None]:
    """One GIF for latent z [12]: varied size, frame count and delays; returns (bytes, frames,
    moment), moment = (start, end, duration) in seconds of its emotional moment, or None."""
    width = int(rng.integers(size_range[0], size_range[1] + 1))
    height = int(rng.integers(size_range[0], size_range[1] + 1))
    kind = rng.random()
    if kind < 0.08:
        n_frames = 1
    elif kind < 0.38:
        n_frames = int(rng.integers(2, 16))
    else:
        n_frames = int(rng.integers(16, 41))
    # GIF delays are centiseconds; 0 and 10 ms are shown as 100 ms by browsers (clamped)
    base = int(
        rng.choice(
            [0, 10, 20, 30, 40, 50, 60, 80, 100],
            p=[0.05, 0.07, 0.1, 0.1, 0.2, 0.15, 0.15, 0.1, 0.08],
        )
    )
    jitter = rng.random() < 0.2  # some GIFs vary their delays frame to frame
    delays = [base + (int(rng.integers(0, 4)) * 10 if jitter else 0) for _ in range(n_frames)]
    shown = [d if d >= 20 else 100 for d in delays]
    motion = plan_motion(z[len(LATENTS) :], rng, moment_share) if len(z) > len(LATENTS) else None
    duration = float(sum(shown)) / 1000.0
    frames, t = [], 0.0
    for k in range(n_frames):
        tau = t / duration  # a moment GIF's colours fade with its expression (local palettes)
        palette = _palette(z, motion.expression(tau) if motion else 1.0)
        frames.append(_frame(width, height, z, t, palette, motion, tau))
        t += shown[k] / 1000.0
    buf = io.BytesIO()
    if n_frames == 1:
        frames[0].save(buf, format="GIF")
    else:
        save_gif(frames, buf, delays, optimize=False)
    moment = None
    if motion is not None and motion.moment is not None and n_frames > 1:
        a, b = motion.moment
        moment = (a * duration, b * duration, duration)
    return buf.getvalue(), n_frames, moment


# ----------------------------------------------------------------------------- the dataset


@dataclass
class DemoDataset:
    root: Path
    votes: Path  # votes.csv.gz
    gifs: Path  # folder of <id>.gif
    truth: Path  # truth.csv: id + 17 true strengths
    ids: list[str]  # every GIF in the votes (including any left without a file)
    missing: list[str]  # ids whose GIF file was deliberately not written
    rows: int  # data rows in the votes file (corrupt ones included)


def make_demo_data(
    out: str | os.PathLike,
    n_gifs: int = 600,
    comparisons_per_gif: int | Sequence[int] = 100,
    seed: int = 0,
    *,
    non_decisive: float = 0.15,
    corrupt_rows: int = 5,
    missing_gifs: int = 0,
    size_range: tuple[int, int] = (96, 160),
    temporal_share: float = DEFAULT_TEMPORAL_SHARE,
    moment_share: float = DEFAULT_MOMENT_SHARE,
    progress: Callable[[str, int, int | None], None] | None = None,
) -> DemoDataset:
    """Write a demo dataset into ``out`` (created; an existing dataset there is replaced).

    ``temporal_share`` (0..1): share of each emotion's pixel-visible signal that lives only
    in motion and timing. ``moment_share`` (0..1): share of GIFs whose static expression
    shows only in a short part of the timeline.

    ``comparisons_per_gif``: votes each GIF takes part in per emotion (one number, or 17 in
    EMOTIONS order). ``missing_gifs``: that many voted-on GIFs get no file, like GIFGIF's
    27 lost GIFs. ``progress(label, done, total)`` is called per GIF.
    """
    if n_gifs < 2:
        raise ValueError("n_gifs must be at least 2")
    per_gif = (
        [int(comparisons_per_gif)] * len(EMOTIONS)
        if np.isscalar(comparisons_per_gif)
        else [int(c) for c in comparisons_per_gif]  # type: ignore[union-attr]
    )
    if len(per_gif) != len(EMOTIONS) or min(per_gif) < 0:
        raise ValueError("comparisons_per_gif must be a non-negative number or 17 of them")
    if not 0.0 <= moment_share <= 1.0:
        raise ValueError(f"moment_share must be in [0, 1], got {moment_share}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = make_ids(n_gifs, rng)
    latent, parts = strength_parts(n_gifs, rng, temporal_share)
    strength = parts["static"] + parts["temporal"] + parts["noise"]
    strength = (strength - strength.mean(axis=0)) / strength.std(axis=0)
    missing_idx = sorted(rng.choice(n_gifs, size=min(missing_gifs, n_gifs), replace=False).tolist())

    # votes: all emotions interleaved in a random order, as a live site would log them
    votes = _simulate_all_votes(strength, per_gif, rng, non_decisive)
    order = rng.permutation(len(votes[0]))
    corrupt_at = set(rng.choice(len(order) + 1, size=corrupt_rows, replace=False).tolist())
    votes_path = out / "votes.csv.gz"
    rows = _write_votes(votes_path, ids, [a[order].tolist() for a in votes], corrupt_at)
    gifs = out / "gifs"
    frame_counts, moments = _write_gifs(
        gifs, ids, latent, seed, set(missing_idx), (size_range, moment_share), progress
    )
    truth_path = out / "truth.csv"
    carried = moment_emotions(latent, temporal_share)
    _write_truth(truth_path, ids, strength, moments, carried)

    meta = {
        "format": "gifsent-demo-data",
        "version": 3,  # 3: a moment's colours fade with its expression; moment_emotions
        "seed": seed,
        "n_gifs": n_gifs,
        "comparisons_per_gif": dict(zip(EMOTIONS, per_gif, strict=True)),
        "non_decisive": non_decisive,
        "corrupt_rows": len(corrupt_at),
        "rows": rows,
        "missing": [ids[i] for i in missing_idx],
        "latents": list(LATENTS),
        "emotion_weights": EMOTION_WEIGHTS,
        "temporal_latents": list(TEMPORAL_LATENTS),
        "temporal_weights": TEMPORAL_WEIGHTS,
        "temporal_share": temporal_share,
        "moment_share": moment_share,
        # measured per emotion: the share of the true strength's variance that only motion
        # and timing show ("temporal"), that single frames show ("static"), and vote-level
        # noise that no pixel shows
        "signal_shares": signal_shares(parts),
        "noise": NOISE,
        "frames": {
            "single": sum(1 for v in frame_counts.values() if v == 1),
            "under_16": sum(1 for v in frame_counts.values() if v < 16),
            "total": sum(frame_counts.values()),
        },
    }
    (out / "demo.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return DemoDataset(
        root=out,
        votes=votes_path,
        gifs=gifs,
        truth=truth_path,
        ids=ids,
        missing=[ids[i] for i in missing_idx],
        rows=rows,
    )


def _simulate_all_votes(strength, per_gif: list[int], rng, non_decisive: float):
    """(metric, left, right, outcome) arrays of every emotion's votes, emotion by emotion."""
    cols: tuple[list, list, list, list] = ([], [], [], [])
    n_gifs = strength.shape[0]
    for k, _e in enumerate(EMOTIONS):
        m = round(n_gifs * per_gif[k] / 2)
        left, right, outcome = simulate_votes(strength[:, k], m, rng, non_decisive)
        for col, part in zip(
            cols, (np.full(m, k, dtype=np.int8), left, right, outcome), strict=True
        ):
            col.append(part)
    return tuple(np.concatenate(c) for c in cols)


def _write_votes(path: Path, ids: list[str], votes: list[list], corrupt_at: set[int]) -> int:
    """The votes CSV (gzip, no timestamp), with a corrupt row (an empty id) before each
    position in `corrupt_at`; returns the rows written."""
    metric_l, left_l, right_l, outcome_l = votes
    choice_names = ("left", "right", UNDECIDED)
    rows = 0
    with (
        atomic_open(path, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
    ):
        text = io.TextIOWrapper(gz, encoding="utf-8", newline="")
        w = csv.writer(text, lineterminator="\n")
        w.writerow(["metric", "left", "right", "choice"])
        for pos in range(len(metric_l)):
            if pos in corrupt_at:  # GIFGIF has rows with an empty id
                w.writerow([EMOTIONS[metric_l[pos]], ids[left_l[pos]], "", "left"])
                rows += 1
            w.writerow(
                [
                    EMOTIONS[metric_l[pos]],
                    ids[left_l[pos]],
                    ids[right_l[pos]],
                    choice_names[outcome_l[pos]],
                ]
            )
            rows += 1
        if len(metric_l) in corrupt_at:
            w.writerow(["happiness", "", ids[0], "right"])
            rows += 1
        text.flush()
        text.detach()
    return rows


def _write_gifs(gifs: Path, ids, latent, seed: int, skip: set[int], look, progress):
    """One GIF per id (but the `skip` indices), each from its own generator, so a GIF
    depends only on (seed, index); look: (size_range, moment_share). Returns (id -> frames,
    id -> (moment start, end, duration) in seconds for GIFs with a moment)."""
    size_range, moment_share = look
    if gifs.exists():
        shutil.rmtree(gifs)
    gifs.mkdir()
    frame_counts = {}
    moments: dict[str, tuple[float, float, float]] = {}
    for i, gif_id in enumerate(ids):
        if i not in skip:
            data, n_frames, moment = _gif_bytes(
                latent[i], np.random.default_rng([seed, 1, i]), size_range, moment_share
            )
            (gifs / f"{gif_id}.gif").write_bytes(data)
            frame_counts[gif_id] = n_frames
            if moment is not None:
                moments[gif_id] = moment
        if progress:
            progress("demo gifs", i + 1, len(ids))
    return frame_counts, moments


def _write_truth(path: Path, ids: list[str], strength, moments: dict, carried) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["id", *EMOTIONS, *MOMENT_COLUMNS, "moment_emotions"])
        for i, gif_id in enumerate(ids):
            m = moments.get(gif_id)
            when = [f"{v:.6g}" for v in m] if m else ["", "", ""]
            what = ";".join(carried[i]) if m else ""
            w.writerow([gif_id, *(f"{v:.9g}" for v in strength[i]), *when, what])


def moment_emotions(
    latent: np.ndarray, temporal_share: float = DEFAULT_TEMPORAL_SHARE
) -> list[tuple[str, ...]]:
    """Per GIF (latent [n, 12] or [n, 8]), the emotions a moment of its carries: the (up to)
    MOMENT_EMOTIONS emotions whose static strength part the moment's expression raises most,
    i.e. those with the largest positive sum over MOMENT_LATENTS of latent x normalised weight
    (see strength_parts; the part that outside the moment fades to MOMENT_REST). A moment with
    a frown carries sadness and anger, not happiness, whatever the GIF's strongest emotions."""
    ws = weight_matrix()
    rows = [LATENTS.index(n) for n in MOMENT_LATENTS]
    share = np.minimum(1.0, temporal_share * np.array([TEMPORAL_EMPHASIS[e] for e in EMOTIONS]))
    rise = (latent[:, rows] @ (ws / np.linalg.norm(ws, axis=0))[rows]) * np.sqrt(1.0 - share)
    out = []
    for r in rise:
        top = [j for j in np.argsort(-r, kind="stable")[:MOMENT_EMOTIONS] if r[j] > 0]
        out.append(tuple(EMOTIONS[j] for j in top))
    return out


# truth.csv's moment columns, in seconds: the GIF's short emotional moment [start, end) on its
# timeline of `duration` seconds (empty for GIFs without one: their expression shows throughout)
MOMENT_COLUMNS = ("moment_start", "moment_end", "duration")


def read_moments(path: str | os.PathLike) -> dict[str, tuple[float, float, float]]:
    """truth.csv -> id -> (moment start, end, GIF duration) in seconds, for GIFs with a moment
    (empty for truth files without the moment columns)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    out: dict[str, tuple[float, float, float]] = {}
    with opener(path, "rt", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if all(row.get(c) for c in MOMENT_COLUMNS):
                a, b, d = (float(row[c]) for c in MOMENT_COLUMNS)
                out[row["id"]] = (a, b, d)
    return out


def read_moment_emotions(path: str | os.PathLike) -> dict[str, tuple[str, ...]]:
    """truth.csv -> id -> the emotions each GIF's moment carries (see moment_emotions); empty
    for truth files without the column (demo data before version 3)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    out: dict[str, tuple[str, ...]] = {}
    with opener(path, "rt", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            names = tuple(n for n in (row.get("moment_emotions") or "").split(";") if n)
            if names:
                unknown = [n for n in names if n not in EMOTIONS]
                if unknown:
                    raise ValueError(f"{path}: unknown emotion(s) {unknown} in moment_emotions")
                out[row["id"]] = names
    return out


def read_truth(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """truth.csv (or .csv.gz) -> (ids, true strengths float64 [n, 17] in EMOTIONS order).

    The one rule for a truth file (the demo writes it; a user may pass their own with
    `--truth`): a header holding "id" and all 17 emotion names; columns are found by name,
    so their order does not matter and extra columns are ignored; blank rows are skipped.
    A file without those columns raises ValueError naming the missing ones.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        missing = [c for c in ("id", *EMOTIONS) if c not in header]
        if missing:
            raise ValueError(
                f"{path}: not a gifsent truth file (header lacks {', '.join(missing)}); "
                f"expected id and the 17 emotions: {', '.join(EMOTIONS)}"
            )
        cols = [header.index(c) for c in ("id", *EMOTIONS)]
        ids, values = [], []
        for row in reader:
            if row:
                ids.append(row[cols[0]])
                values.append([float(row[c]) for c in cols[1:]])
    return ids, np.array(values, dtype=np.float64).reshape(len(ids), len(EMOTIONS))
