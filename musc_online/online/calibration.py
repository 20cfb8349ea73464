"""Where the decision bands come from: scores of parts known to be good, not whatever the warm-up let in.

Two opinions are judged, each by its own band: the combined one (the frame against the window's voters and
its judges, as the paper scores it) and the judges' own (the frame against its judges alone). Both bands are
calibrated from known-good scores: the seed judges and the frames an operator confirmed good. Only when there are
too few of those (a line started without seed judges) do the scores of frames admitted during warm-up make up the
shortfall, and only scores made against the full reference set (see ``OnlineScorer._admit``). Once calibrated a
band is frozen until recalibrated.

A seed judge's combined known-good score is the one a steady frame would get: once the window is full the
scorer scores each seed judge against the voters and the judges most like it, itself left out (``pending`` lists
the seeds still waiting). Until then the seeds' mutual scores (batch MuSc among the seeds) stand in for a
provisional band only: with fewer, all-good references they spread less than steady frames' scores do
(``docs/online.md``, "The decision bands").
"""

from __future__ import annotations

from dataclasses import replace

from musc_online.online.settings import OnlineSettings
from musc_online.online.thresholds import ThresholdBand, ThresholdPolicy, calibrate, expected_per_1000


class Calibration:
    """The score pools, and the band of each opinion (the combined one, the judges' own)."""

    def __init__(self, settings: OnlineSettings) -> None:
        self.settings = settings
        self.admitted: list[float] = []  # scores of frames admitted to the window
        self.known_good: list[float] = []  # combined scores of seed judges (scored steady) and confirmed-good frames
        self.seeded: list[float] = []  # seed judges' mutual scores: a provisional stand-in while any is pending
        self.pending: list[str] = []  # seed judges still to be scored as a steady frame is
        self.waited = 0  # frames decided while seeds were pending (not saved: a restart waits afresh)
        self.known_good_judged: list[float] = []  # the judges' own scores of the same
        self.thresholds = ThresholdPolicy(settings.thresholds)
        self.judge_thresholds = ThresholdPolicy(settings.thresholds)

    def _good(self) -> list[float]:
        """Combined scores of parts known to be good; the seeds' mutual scores stand in while any seed is pending."""
        return self.known_good + (self.seeded if self.pending else [])

    def _pool(self) -> list[float]:
        """The scores the combined band is calibrated from."""
        good = self._good()
        return good + self.admitted[: max(0, self.settings.calibration_scores - len(good))]

    def band(self) -> ThresholdBand:
        """The combined opinion's band: frozen once calibrated; before that, provisional from the pool so far.
        Operators' corrections move either (see ``thresholds``)."""
        if self.thresholds.calibrated:
            return self.thresholds.band
        band = calibrate(self._pool(), self.settings.thresholds)
        return band if band.source == "unset" else self.thresholds.adjusted(replace(band, source="provisional"))

    def judge_band(self) -> ThresholdBand:
        """The judges' own opinion's band (unset until ``thresholds.min_scores`` known-good judge scores exist).

        It calibrates when first asked for, not as each score arrives: seeds arrive one by one, and calibrating at the
        eighth fitted the band to the first eight seeds' spread (on metal_plate ``rate10`` its high end sat below the
        good frames' 90th percentile, and 22 % of good parts were decided unsure)."""
        if not self.judge_thresholds.calibrated and len(self.known_good_judged) >= self.settings.thresholds.min_scores:
            self.judge_thresholds.calibrate(self.known_good_judged)
        return self.judge_thresholds.band

    def expected_per_1000(self) -> dict[str, float | None]:
        """Good parts per 1,000 the combined band flags and calls defective (fitted and observed; see thresholds)."""
        return expected_per_1000(self.band(), self._pool())

    def add_label(self, correction_id: str, score: float, judged: float | None, is_defect: bool) -> None:
        """An operator's verdict on a frame moves the combined band (see ``thresholds``); an ok verdict also lifts the
        judges' band by the frame's judges' score. Both lifts last while the frame votes in the window (the scorer
        ends them when it is pushed out): by then its look-alikes have been admitted and, as it is a judge, are
        judged by it. A lift lasting as long as the frame judges lasts for good: on metal_plate ``rate10`` with an
        operator such lifts took the judges' band from 0.68 to 0.94 and 12 of 34 defects passed as ok (3 with lifts
        ending with the vote). A defect verdict leaves the judges' band alone: a subtle defect the judges barely
        notice would otherwise make every part unsure (the known-defect guard names its look-alikes)."""
        self.thresholds.add_label(correction_id, score, is_defect)
        if judged is not None and not is_defect:
            self.judge_thresholds.add_label(correction_id, judged, is_defect)

    def remove_label(self, correction_id: str) -> None:
        """Forget a verdict's pull on the bands (undone, or an ok frame that no longer votes or judges)."""
        self.thresholds.remove_label(correction_id)
        self.judge_thresholds.remove_label(correction_id)

    def add_seed(self, judge_id: str, mutual: float, judged: float | None) -> None:
        """A seed judge: its mutual score stands in until ``add_steady`` gives its score as a steady frame."""
        self.seeded.append(mutual)
        self.pending.append(judge_id)
        if judged is not None:
            self.known_good_judged.append(judged)
        self.update()

    def seeds_due(self, frames: int, window_full: bool) -> bool:
        """Whether the scorer should score pending seeds after ``frames`` more decided frames: once its window is
        full, or after twice ``window`` frames in which it did not fill. Under ``ok`` admission a provisional band
        that flags most parts keeps the window young (the README demo at 256 px did), and waiting for it would never
        calibrate."""
        if not self.pending:
            return False
        self.waited += frames
        return window_full or self.waited >= 2 * self.settings.window

    def add_steady(self, judge_id: str, score: float | None) -> None:
        """A pending seed judge scored as a steady frame (None: it left the bank or votes, so it has no fair score)."""
        self.pending.remove(judge_id)
        if score is not None:
            self.known_good.append(score)
        self.update()

    def add_known_good(self, score: float, judged: float | None) -> None:
        """A frame an operator confirmed good: a part known to be good, scored as a frame."""
        self.known_good.append(score)
        if judged is not None:
            self.known_good_judged.append(judged)
        self.update()

    def remove_known_good(self, score: float, judged: float | None) -> None:
        """Undo ``add_known_good`` (an ok correction undone)."""
        if score in self.known_good:
            self.known_good.remove(score)
        if judged is not None and judged in self.known_good_judged:
            self.known_good_judged.remove(judged)

    def add_admitted(self, score: float) -> None:
        """A frame that joined the window (only the first ``calibration_scores`` are kept: enough for any pool)."""
        if len(self.admitted) < self.settings.calibration_scores:
            self.admitted.append(score)
            self.update()

    def update(self) -> None:
        """Calibrate the combined band once its pool is large enough and no seed is pending (then it stays frozen).

        The combined pool is large enough with ``calibration_scores`` scores, or, on a seeded line, once every seed
        was scored as a steady frame (at least ``thresholds.min_scores`` of them): a category with fewer good
        images than ``calibration_scores`` (bottle's and metal_plate's 30 here) otherwise waits for
        steady admitted frames, which a line whose window does not fill never gives (it stayed provisional for good).
        """
        if not self.thresholds.calibrated and not self.pending:
            pool = self._pool()
            seeds_scored = bool(self.seeded) and len(self.known_good) >= self.settings.thresholds.min_scores
            if len(pool) >= self.settings.calibration_scores or seeds_scored:
                self.thresholds.calibrate(pool)

    def recalibrate(self, voter_scores: list[float]) -> ThresholdBand:
        """Calibrate both bands again now (after a product change, or once operators confirmed more good parts).

        The voters' scores only make up a shortfall of known-good scores; seeds still pending count by their
        mutual scores (the scorer scores them first when its window is full).
        """
        good = self._good()
        pool = good + voter_scores[: max(0, self.settings.calibration_scores - len(good))]
        if len(pool) < self.settings.thresholds.min_scores:
            raise ValueError(
                f"recalibrating needs at least {self.settings.thresholds.min_scores} normal scores (judges, confirmed "
                f"good frames, voters); the line has {len(pool)}: add judges or let the window fill first"
            )
        if len(self.known_good_judged) >= self.settings.thresholds.min_scores:
            self.judge_thresholds.calibrate(self.known_good_judged)
        return self.thresholds.calibrate(pool)

    def state(self) -> dict[str, object]:
        """Plain data for saving."""
        return {
            "admitted": self.admitted,
            "known_good": self.known_good,
            "known_good_judged": self.known_good_judged,
            "seeded": self.seeded,
            "pending": self.pending,
            "thresholds": self.thresholds.state(),
            "judge_thresholds": self.judge_thresholds.state(),
        }

    def restore(self, state: dict) -> None:
        """Inverse of ``state``."""
        self.admitted = [float(s) for s in state["admitted"]]
        self.known_good = [float(s) for s in state["known_good"]]
        self.known_good_judged = [float(s) for s in state["known_good_judged"]]
        self.seeded = [float(s) for s in state.get("seeded", [])]  # snapshots before steady seed scores lack both
        self.pending = [str(judge_id) for judge_id in state.get("pending", [])]
        self.thresholds.restore(state["thresholds"])
        self.judge_thresholds.restore(state["judge_thresholds"])
        # Older snapshots kept the judges' lift of an ok verdict whose frame no longer votes: it ends with the vote.
        labels = self.judge_thresholds.labels
        self.judge_thresholds.labels = {cid: label for cid, label in labels.items() if cid in self.thresholds.labels}
