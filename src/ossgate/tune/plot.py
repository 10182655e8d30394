"""The loss curve as a picture."""

from __future__ import annotations

from pathlib import Path


def save_loss_curve(history: list[dict], path: Path, title: str = "training loss") -> Path:
    """Per-step loss (faint) and its 50-step moving average against steps, on a log scale."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in history]
    losses = [r["loss"] for r in history]
    window = 50
    smooth = [
        sum(losses[max(0, i - window + 1) : i + 1]) / len(losses[max(0, i - window + 1) : i + 1])
        for i in range(len(losses))
    ]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot(steps, losses, alpha=0.3, linewidth=0.8, label="loss per step")
    ax.plot(steps, smooth, linewidth=1.8, label=f"{window}-step mean")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token, full 201088-id vocabulary)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
