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

Votes. For each emotion, ``n_gifs * comparisons_per_gif / 2`` comparisons between uniformly
drawn pairs, so each GIF takes part in about ``comparisons_per_gif`` votes per emotion
(undecided ones included). The left GIF wins with probability sigmoid(s_left - s_right);
with probability ``non_decisive * 2 * sigmoid(-|s_left - s_right|)`` the voter does not
decide ("neither"), more often for similar GIFs. Rows of all emotions are shuffled together,
and a few corrupt rows (an empty id) are sprinkled in, as in GIFGIF's file.

Files (in ``out``): ``votes.csv.gz`` (GIFGIF's format, header ``metric,left,right,choice``),
``gifs/<id>.gif`` (13-character alphanumeric ids), ``truth.csv`` (id and the 17 true
strengths), ``demo.json`` (parameters and counts). Deterministic by seed.
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
NOISE = 0.3  # independent per-emotion noise (before standardising): the part pixels cannot show
ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
ID_LENGTH = 13
UNDECIDED = "neither"


def weight_matrix() -> np.ndarray:
    """float64 [8 latents, 17 emotions]."""
    a = np.zeros((len(LATENTS), len(EMOTIONS)))
    for k, e in enumerate(EMOTIONS):
        for name, wgt in EMOTION_WEIGHTS[e].items():
            a[LATENTS.index(name), k] = wgt
    return a


def true_strengths(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(latent [n, 8], strengths [n, 17]); each strength column has mean 0 and std 1."""
    z = rng.standard_normal((n, len(LATENTS)))
    s = z @ weight_matrix() + NOISE * rng.standard_normal((n, len(EMOTIONS)))
    s -= s.mean(axis=0)
    s /= s.std(axis=0)
    return z, s


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


# palette indices; each GIF has its own 8-colour palette, so frames are drawn in "P" mode
BG, FACE, INK, CHEEK, TEAR, MOUTH, WHITE, OUTLINE = range(8)


def _palette(z: np.ndarray) -> list[int]:
    val, aro, _dom, _sur, selfc, disg, _sad, calm = (_unit(v) for v in z)
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
    ]
    flat = [c for rgb in colours for c in rgb]
    return flat + [0] * (768 - len(flat))


def _frame(width: int, height: int, z: np.ndarray, t: float, palette: list[int]) -> Image.Image:
    """One frame at time t seconds."""
    # blush and face tint live in the palette (see _palette); the rest is geometry
    val, aro, dom, sur, _selfc, _disg, sad, calm = (float(v) for v in z)
    u_aro, u_sur, u_sad, u_calm = _unit(aro), _unit(sur), _unit(sad), _unit(calm)
    img = Image.new("P", (width, height), BG)
    img.putpalette(palette)
    d = ImageDraw.Draw(img)
    r = min(width, height) * (0.30 + 0.06 * math.tanh(dom))
    # motion: bounce (amplitude and rate grow with arousal) plus a fast shake when aroused
    amp = r * 0.35 * u_aro
    rate = 0.4 + 2.6 * u_aro  # Hz
    cx = width / 2 + r * 0.12 * u_aro**2 * math.sin(2 * math.pi * 3 * rate * t)
    cy = height / 2 + amp * math.sin(2 * math.pi * rate * t)
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=FACE, outline=OUTLINE, width=2)
    # cheeks (blush colour is in the palette; invisible when the GIF is not self-conscious)
    for side in (-1, 1):
        ch_x, ch_y = cx + side * r * 0.55, cy + r * 0.2
        d.ellipse([ch_x - r * 0.18, ch_y - r * 0.1, ch_x + r * 0.18, ch_y + r * 0.1], fill=CHEEK)
    # eyes: size from surprise, lids droop with calm
    ex, ey = r * 0.38, cy - r * 0.22
    erx = r * (0.10 + 0.10 * u_sur)
    ery = erx * (1.25 - 0.95 * u_calm)
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
    # mouth: curve from valence (smile / frown), opening from arousal
    mw, my = r * 0.45, cy + r * 0.45
    bend = r * 0.28 * math.tanh(val)
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
    z: np.ndarray, rng: np.random.Generator, size_range: tuple[int, int]
) -> tuple[bytes, int]:
    """One GIF for latent z: varied size, frame count and delays; returns (bytes, frames)."""
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
    palette = _palette(z)
    frames, t = [], 0.0
    for k in range(n_frames):
        frames.append(_frame(width, height, z, t, palette))
        t += shown[k] / 1000.0
    buf = io.BytesIO()
    if n_frames == 1:
        frames[0].save(buf, format="GIF")
    else:
        frames[0].save(
            buf,
            format="GIF",
            save_all=True,
            append_images=frames[1:],
            duration=delays,
            loop=0,
            optimize=False,
        )
    return buf.getvalue(), n_frames


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
    progress: Callable[[str, int, int | None], None] | None = None,
) -> DemoDataset:
    """Write a demo dataset into ``out`` (created; an existing dataset there is replaced).

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
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = make_ids(n_gifs, rng)
    latent, strength = true_strengths(n_gifs, rng)
    missing_idx = sorted(rng.choice(n_gifs, size=min(missing_gifs, n_gifs), replace=False).tolist())

    # votes: all emotions interleaved in a random order, as a live site would log them
    metric_col, left_col, right_col, outcome_col = [], [], [], []
    for k, _e in enumerate(EMOTIONS):
        m = round(n_gifs * per_gif[k] / 2)
        left, right, outcome = simulate_votes(strength[:, k], m, rng, non_decisive)
        metric_col.append(np.full(m, k, dtype=np.int8))
        left_col.append(left)
        right_col.append(right)
        outcome_col.append(outcome)
    metric = np.concatenate(metric_col)
    left = np.concatenate(left_col)
    right = np.concatenate(right_col)
    outcome = np.concatenate(outcome_col)
    order = rng.permutation(len(metric))
    corrupt_at = set(rng.choice(len(metric) + 1, size=corrupt_rows, replace=False).tolist())
    metric_l, left_l, right_l, outcome_l = (
        a[order].tolist() for a in (metric, left, right, outcome)
    )
    choice_names = ("left", "right", UNDECIDED)
    votes_path = out / "votes.csv.gz"
    rows = 0
    with (
        atomic_open(votes_path, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
    ):
        text = io.TextIOWrapper(gz, encoding="utf-8", newline="")
        w = csv.writer(text, lineterminator="\n")
        w.writerow(["metric", "left", "right", "choice"])
        for pos in range(len(order)):
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
        if len(order) in corrupt_at:
            w.writerow(["happiness", "", ids[0], "right"])
            rows += 1
        text.flush()
        text.detach()

    # GIFs: each from its own generator, so a GIF depends only on (seed, index)
    gifs = out / "gifs"
    if gifs.exists():
        shutil.rmtree(gifs)
    gifs.mkdir()
    frame_counts = {}
    skip = set(missing_idx)
    for i, gif_id in enumerate(ids):
        if i not in skip:
            data, n_frames = _gif_bytes(latent[i], np.random.default_rng([seed, 1, i]), size_range)
            (gifs / f"{gif_id}.gif").write_bytes(data)
            frame_counts[gif_id] = n_frames
        if progress:
            progress("demo gifs", i + 1, n_gifs)

    truth_path = out / "truth.csv"
    with open(truth_path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["id", *EMOTIONS])
        for i, gif_id in enumerate(ids):
            w.writerow([gif_id, *(f"{v:.9g}" for v in strength[i])])

    meta = {
        "format": "gifsent-demo-data",
        "version": 1,
        "seed": seed,
        "n_gifs": n_gifs,
        "comparisons_per_gif": dict(zip(EMOTIONS, per_gif, strict=True)),
        "non_decisive": non_decisive,
        "corrupt_rows": len(corrupt_at),
        "rows": rows,
        "missing": [ids[i] for i in missing_idx],
        "latents": list(LATENTS),
        "emotion_weights": EMOTION_WEIGHTS,
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


def read_truth(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """truth.csv -> (ids, true strengths float64 [n, 17] in EMOTIONS order)."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        if header != ["id", *EMOTIONS]:
            raise ValueError(f"{path}: not a gifsent truth file")
        ids, values = [], []
        for row in reader:
            if row:
                ids.append(row[0])
                values.append([float(v) for v in row[1:]])
    return ids, np.array(values, dtype=np.float64).reshape(len(ids), len(EMOTIONS))
