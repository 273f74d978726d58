"""What a training run writes besides the model: the loss log, TensorBoard, the summary, the loss plot.

``model_dir/train_log.csv`` has one row per logged loss (``step, split, loss``), written by
:class:`LossLog` as training goes (so a killed run keeps its log) and read back by
:func:`read_log`; ``model_dir/train_summary.json`` is written once at the end
(:func:`summarize` reads it).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

LOG_CSV = "train_log.csv"
SUMMARY_JSON = "train_summary.json"
TENSORBOARD = "tensorboard"


class LossLog:
    """``train_log.csv`` (``step, split, loss``) and TensorBoard scalars; main process only.

    On resume from step N, rows after N (written by the interrupted run after its last
    checkpoint, and about to be redone) are dropped, and TensorBoard purges them too.

    :param model_dir: the run's output folder.
    :param start_step: the step training starts from (0, or the resumed checkpoint's).
    :param enabled: whether this process writes (only the main process does).
    """

    def __init__(self, model_dir: str | Path, start_step: int, enabled: bool) -> None:
        self.path, self.enabled, self.writer = Path(model_dir) / LOG_CSV, enabled, None
        if not enabled:
            return
        rows = []
        if self.path.exists() and start_step > 0:
            rows = [r for r in csv.DictReader(self.path.open()) if int(r["step"]) <= start_step]
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["step", "split", "loss"])
            writer.writeheader()
            writer.writerows(rows)
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(Path(model_dir) / TENSORBOARD), purge_step=start_step + 1 if start_step else None)

    def loss(self, step: int, split: str, value: float) -> None:
        """Log the loss of ``split`` at ``step`` (a CSV row and a TensorBoard scalar)."""
        if self.enabled:
            with self.path.open("a", newline="") as f:
                csv.writer(f).writerow([step, split, f"{value:.6f}"])
            self.writer.add_scalar(f"loss/{split}", value, step)

    def scalar(self, name: str, value: float, step: int) -> None:
        """Log another scalar (learning rate, throughput) to TensorBoard only."""
        if self.enabled:
            self.writer.add_scalar(name, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def write_summary(model_dir: str | Path, summary: dict[str, Any]) -> Path:
    """Write ``train_summary.json`` into ``model_dir``; return its path."""
    path = Path(model_dir) / SUMMARY_JSON
    path.write_text(json.dumps(summary, indent=2))
    return path


def summarize(model_dir: str | Path) -> dict[str, Any]:
    """The summary a finished run wrote (``train_summary.json``).

    :param model_dir: the run's output folder.
    :return: step, preset, parameters, initial and final valid loss, time, device.
    """
    return json.loads((Path(model_dir) / SUMMARY_JSON).read_text())


def read_log(model_dir: str | Path) -> pd.DataFrame:
    """``train_log.csv`` as a table.

    :param model_dir: the run's output folder.
    :return: columns ``step, split, loss`` (split ``train`` or ``valid``).
    """
    import pandas as pd

    return pd.read_csv(Path(model_dir) / LOG_CSV)


def plot_loss_curves(log: pd.DataFrame, path: str | Path | None = None) -> Figure:
    """Train and valid loss against step (seaborn), saved as PNG when ``path`` is given.

    :param log: the table of :func:`read_log`.
    :param path: where to save the figure, or ``None``.
    :return: the figure.
    """
    # (no backend forced: scripts fall back to Agg without a display, notebooks stay inline)
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(7, 4))
    sns.lineplot(data=log, x="step", y="loss", hue="split", hue_order=["train", "valid"], marker="o", markersize=3, ax=ax)
    ax.set(title="Loss per predicted token", ylabel="cross-entropy (nats)")
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig
