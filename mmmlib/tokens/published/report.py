"""What encoding or decoding had to drop or map, counted instead of raised."""

from __future__ import annotations

from collections import Counter


class Report(Counter):
    """Counts of problems by name (e.g. ``"time_signature_dropped"``); empty when all went well.

    Encoding and decoding never raise on odd input: they drop or map what the vocabulary
    lacks and count it here, so callers can log, warn or reject as they see fit.
    """

    def add(self, name: str, count: int = 1) -> None:
        """Count ``count`` more occurrences of ``name`` (zero counts are not stored).

        :param name: problem name.
        :param count: how many occurrences.
        """
        if count:
            self[name] += int(count)

    def summary(self) -> str:
        """One line, ``name=count`` sorted by name, or ``"ok"`` when empty.

        :return: the summary line.
        """
        return ", ".join(f"{k}={v}" for k, v in sorted(self.items())) or "ok"
