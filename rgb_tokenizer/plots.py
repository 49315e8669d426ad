"""Pictures of sampled tile sequences and of each model's place against the exact frontier."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display is needed or assumed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

from rgb_tokenizer.frontier import OptimalPolicy  # noqa: E402
from rgb_tokenizer.grammar import TILES  # noqa: E402

TILE_COLORS = {"R": "#d62728", "G": "#2ca02c", "B": "#1f77b4"}
_EMPTY_COLOR = "#ffffff"


def tile_grid(samples: Sequence[str], width: int) -> np.ndarray:
    """Return a (len(samples), width) array of tile indices, -1 where a sample is shorter than ``width``."""
    grid = np.full((len(samples), width), -1, dtype=int)
    for row, sample in enumerate(samples):
        for column, tile in enumerate(sample[:width]):
            grid[row, column] = TILES.index(tile)
    return grid


def draw_tile_grids(samples_by_model: Mapping[str, Sequence[str]], width: int, path: str | Path) -> None:
    """Draw each model's samples as rows of coloured tiles, the models side by side, into a PNG."""
    colormap = ListedColormap([_EMPTY_COLOR] + [TILE_COLORS[tile] for tile in TILES])
    num_rows = max(len(samples) for samples in samples_by_model.values())
    panel_width = 4.6  # inches; square tiles make the panel's height follow from rows / width
    figure, axes = plt.subplots(
        1,
        len(samples_by_model),
        figsize=(panel_width * len(samples_by_model), panel_width * num_rows / width + 0.7),
        squeeze=False,
    )
    for axis, (name, samples) in zip(axes[0], samples_by_model.items()):
        # Shift by one so that -1 (no tile) maps to the first, white colour.
        axis.imshow(tile_grid(samples, width) + 1, cmap=colormap, vmin=0, vmax=len(TILES), aspect="equal")
        axis.set_xticks(np.arange(-0.5, width, 1), minor=True)
        axis.set_yticks(np.arange(-0.5, len(samples), 1), minor=True)
        axis.grid(which="minor", color="white", linewidth=0.6)
        axis.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
        axis.set_title(name.upper())
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def draw_frontier(
    frontier: Sequence[OptimalPolicy],
    reference: OptimalPolicy,
    points: Mapping[str, Mapping[str, float]],
    path: str | Path,
) -> None:
    """Plot preference against KL and against sequence entropy, with the exact frontier and each model.

    ``points`` maps a model name to its ``preference_score``,
    ``kl_to_base_nats`` and ``sequence_entropy_bits``.
    """
    figure, (kl_axis, entropy_axis) = plt.subplots(1, 2, figsize=(11, 4.4))
    kl = [policy.kl_nats for policy in frontier]
    entropy = [policy.entropy_bits for policy in frontier]
    preference = [policy.expected_preference for policy in frontier]
    kl_axis.plot(kl, preference, color="black", label="exact optimum (β sweep)")
    entropy_axis.plot(entropy, preference, color="black", label="exact optimum (β sweep)")
    kl_axis.scatter([0.0], [reference.expected_preference], marker="*", s=160, color="gray", label="reference chain")
    entropy_axis.scatter(
        [reference.entropy_bits], [reference.expected_preference], marker="*", s=160, color="gray", label="reference chain"
    )
    for name, values in points.items():
        kl_axis.scatter([values["kl_to_base_nats"]], [values["preference_score"]], s=60, label=name.upper())
        entropy_axis.scatter([values["sequence_entropy_bits"]], [values["preference_score"]], s=60, label=name.upper())
    kl_axis.set_xlabel("KL from the base model (nats)")
    entropy_axis.set_xlabel("sequence entropy (bits)")
    for axis in (kl_axis, entropy_axis):
        axis.set_ylabel("preference score")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(f"Preference against divergence, sequences of {reference.length} tiles")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
