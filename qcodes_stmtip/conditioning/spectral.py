"""The spectroscopic tip check on Au(111)/Cu(111): a good tip shows a sharp surface-state step.

Labs judge a metal tip by its spectrum as much as by its image (Barker & Sweetman,
Beilstein J. Nanotechnol. 16, 99, 2025): at a clean site a sharp, clean apex shows the
Shockley surface-state onset (−0.50 V on Au(111), −0.44 V on Cu(111)) as one sharp step
up in dI/dV; a double apex splits or smears it, an adsorbate on the apex weakens it and
adds features, an unstable apex makes it jump.

* :class:`SurfaceStateJudge` reads one dI/dV spectrum: the step's contrast, its onset (the
  half-height crossing) and its 10–90 % width, and calls the spectrum ``good`` when all
  three are within limits.
* :class:`SpectroscopicTipCheck` wraps an image classifier (a
  :class:`~qcodes_stmtip.classify.protocol.TipClassifier`) so that the conditioning loop
  can use the spectrum as evidence: when the image verdict is a good tip, a spectrum is
  taken (``stm.spectrum`` with the lock-in) at the flattest spot of the frame, and a
  spectrum without a good step turns the frame's result into a bad tip: the image's last
  bad class (the spectrum adds no news about the class, and a changed class would restart
  the escalating policy's ladder), else the class the spectrum points to (``double_tip``
  for a split or shifted step of full contrast, else ``corruption``). The image
  classifier's own result is stored as always; the spectral verdict, onset, width,
  contrast and site are stored beside it per frame (``tip_spectrum_*``), and the
  experiment's ``frame_verdict`` is the combined verdict.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from qcodes.parameters import Parameter
from qcodes.validators import Numbers, Strings

from qcodes_stmtip.taxonomy import GOOD_CLASSES, SURFACE_STATE_ONSET_V, check_surface

if TYPE_CHECKING:
    from qcodes.dataset import DataSaver, Measurement

    from qcodes_stmtip.classify.protocol import TipClassifier
    from qcodes_stmtip.drivers.nanonis_stm import NanonisSTM
    from qcodes_stmtip.monitor.results import TipStateResult

__all__ = ["SPECTRAL_METADATA_KEY", "SpectralVerdict", "SpectroscopicTipCheck", "SurfaceStateJudge"]

#: Run-metadata key of the spectroscopic check's settings.
SPECTRAL_METADATA_KEY = "stmtip_spectral_check"
#: The class a frame gets when its image looked good but its spectrum did not, unless the
#: spectrum points to another bad class (:attr:`SpectralVerdict.state`).
SPECTRUM_BAD_STATE = "corruption"
#: The P(bad) a frame carries into the conditioning loop's running belief when its spectrum
#: overruled a good image (a spectrum without the surface-state step is strong evidence).
SPECTRUM_BAD_P = 0.99


@dataclass(frozen=True)
class SpectralVerdict:
    """What one spectrum says: ``good``, the step's ``onset_V``, ``width_V`` (10–90 %),
    ``contrast`` (step height over the level below it) and ``reason`` when not good."""

    good: bool
    onset_V: float
    width_V: float
    contrast: float
    reason: str = ""
    jitter: float = math.nan

    @property
    def state(self) -> str:
        """The bad-tip class the spectrum points to: a step of full contrast but split,
        shifted or smeared is a second apex (``double_tip``); a weak or jumping step is an
        adsorbate or an unstable apex (``corruption``). Meaningless when ``good``."""
        if not self.reason or "contrast" in self.reason or "jitter" in self.reason:
            return "corruption"
        return "double_tip"


@dataclass(frozen=True)
class SurfaceStateJudge:
    """Limits on the surface-state step of one surface (V; contrast dimensionless).

    ``expected_onset_V``: where the step must be (±``onset_tolerance_V``);
    ``max_width_V``: its 10–90 % rise; ``min_contrast``: (level above − level below) /
    level below, each the median over ``plateau_V`` beyond ``gap_V`` from the onset;
    ``max_jitter``: the 90th percentile of the point-to-point change of dI/dV on those
    plateaus over the level above (an unstable apex makes dI/dV jump).
    """

    expected_onset_V: float
    onset_tolerance_V: float = 0.03
    max_width_V: float = 0.05
    min_contrast: float = 0.25
    max_jitter: float = 0.075
    gap_V: float = 0.08
    plateau_V: float = 0.15

    @classmethod
    def for_surface(cls, surface: str, **overrides: float) -> SurfaceStateJudge:
        """The judge of ``surface`` (Au(111) or Cu(111): the surfaces with a surface state)."""
        check_surface(surface)
        if surface not in SURFACE_STATE_ONSET_V:
            raise ValueError(f"no surface-state check for {surface!r} (only "
                             f"{sorted(SURFACE_STATE_ONSET_V)})")
        return cls(SURFACE_STATE_ONSET_V[surface], **overrides)

    def sweep(self) -> tuple[float, float]:
        """The bias range (V) a spectrum must cover for this judge."""
        reach = self.gap_V + self.plateau_V + self.onset_tolerance_V
        return self.expected_onset_V - reach, self.expected_onset_V + reach

    def judge(self, bias_V: np.ndarray, didv: np.ndarray) -> SpectralVerdict:
        """Judge one dI/dV spectrum (any units) over ``bias_V`` (V, increasing or not)."""
        bias = np.asarray(bias_V, dtype=np.float64)
        values = np.asarray(didv, dtype=np.float64)
        if bias.ndim != 1 or bias.shape != values.shape or bias.size < 16:
            raise ValueError(f"need two 1-D arrays of the same length >= 16, got {bias.shape} "
                             f"and {values.shape}")
        order = np.argsort(bias)
        bias, values = bias[order], values[order]
        low_edge, high_edge = self.sweep()
        if bias[0] > low_edge or bias[-1] < high_edge:
            raise ValueError(f"the spectrum covers {bias[0]:.3f}..{bias[-1]:.3f} V; the check needs "
                             f"{low_edge:.3f}..{high_edge:.3f} V")
        e0 = self.expected_onset_V
        smooth = np.convolve(values, np.ones(5) / 5, mode="same")
        below = (bias >= e0 - self.gap_V - self.plateau_V) & (bias <= e0 - self.gap_V)
        above = (bias >= e0 + self.gap_V) & (bias <= e0 + self.gap_V + self.plateau_V)
        lo, hi = float(np.median(values[below])), float(np.median(values[above]))
        contrast = (hi - lo) / abs(lo) if lo != 0 else math.inf
        plateaus = below | above
        steps = np.abs(np.diff(values))[plateaus[1:] & plateaus[:-1]]
        jitter = float(np.percentile(steps, 90)) / abs(hi) if hi != 0 else math.inf
        window = (bias >= e0 - self.gap_V - self.onset_tolerance_V) & \
                 (bias <= e0 + self.gap_V + self.onset_tolerance_V)
        b, v = bias[window], smooth[window]
        onset, width = math.nan, math.nan
        if hi > lo:
            frac = (v - lo) / (hi - lo)
            onset = _crossing(b, frac, 0.5)
            width = _crossing(b, frac, 0.9, last=True) - _crossing(b, frac, 0.1)
        reasons = []
        if not contrast >= self.min_contrast:
            reasons.append(f"step contrast {contrast:.2f} < {self.min_contrast}")
        if not abs(onset - e0) <= self.onset_tolerance_V:
            reasons.append(f"onset {onset:.3f} V not within {self.onset_tolerance_V} V of {e0} V")
        if not width <= self.max_width_V:
            reasons.append(f"step width {width:.3f} V > {self.max_width_V} V")
        if not jitter <= self.max_jitter:
            reasons.append(f"jitter {jitter:.3f} > {self.max_jitter}")
        return SpectralVerdict(not reasons, onset, width, contrast, "; ".join(reasons), jitter)


def _crossing(bias: np.ndarray, frac: np.ndarray, level: float, last: bool = False) -> float:
    """Bias where ``frac`` first (``last``: last) crosses ``level`` upwards; NaN if never."""
    up = np.nonzero((frac[:-1] < level) & (frac[1:] >= level))[0]
    if up.size == 0:
        return math.nan
    i = int(up[-1] if last else up[0])
    a, b = frac[i], frac[i + 1]
    return float(bias[i] + (level - a) / (b - a) * (bias[i + 1] - bias[i]))


def flattest_site(stm: NanonisSTM, image: np.ndarray) -> tuple[float, float]:
    """Piezo ``(x, y)`` (m) of the flattest spot of ``image`` (bottom row first), away from
    the edges: where a spectrum sees the clean surface, not a step edge or an adsorbate."""
    from scipy.ndimage import uniform_filter

    data = np.nan_to_num(np.asarray(image, dtype=np.float64))
    gy, gx = np.gradient(data)
    roughness = uniform_filter(np.hypot(gx, gy), size=max(3, min(data.shape) // 8))
    margin = max(1, min(data.shape) // 8)
    inner = roughness[margin:-margin, margin:-margin]
    row, col = np.unravel_index(int(np.argmin(inner)), inner.shape)
    row, col = row + margin, col + margin
    lines, pixels = data.shape
    width, height = float(stm.scan_width.cache.get()), float(stm.scan_height.cache.get())
    dx = (col + 0.5) * width / pixels - width / 2
    dy = (row + 0.5) * height / lines - height / 2
    angle = math.radians(float(stm.scan_angle.cache.get()))  # clockwise
    x = dx * math.cos(angle) + dy * math.sin(angle)
    y = -dx * math.sin(angle) + dy * math.cos(angle)
    return (float(stm.scan_centre_x.cache.get()) + x, float(stm.scan_centre_y.cache.get()) + y)


class SpectroscopicTipCheck:
    """An image classifier plus the spectroscopic check (see module doc).

    Args:
        image_classifier: the image :class:`TipClassifier` (monitor or oracle).
        stm: the driver the spectra are taken with (its envelope bounds the sweep).
        surface: ``"au111"`` or ``"cu111"``.
        judge: the spectrum limits (default :meth:`SurfaceStateJudge.for_surface`).
        points: points per sweep; ``lockin_amplitude_V``: the bias modulation.

    Side effects of a check: the tip moves (Follow Me) to the flattest spot of the frame
    and one bias sweep runs there (bias restored, feedback held during it).
    """

    def __init__(self, image_classifier: TipClassifier, stm: NanonisSTM, surface: str, *,
                 judge: SurfaceStateJudge | None = None, points: int = 200,
                 lockin_amplitude_V: float = 0.01) -> None:
        self.inner = image_classifier
        self.stm = stm
        self.surface = surface
        self.judge = judge or SurfaceStateJudge.for_surface(surface)
        self.points = int(points)
        self.lockin_amplitude_V = float(lockin_amplitude_V)
        self.good_classes = GOOD_CLASSES[surface]
        self.results: dict[int, TipStateResult] = {}
        self.verdicts: dict[int, SpectralVerdict] = {}
        self.spectra_taken = 0
        self.frame_index: Parameter | None = None
        self._latest: dict[str, object] = {}
        self._last_bad_state: str | None = None  # the image's last bad class

        def make(name: str, label: str, unit: str, text: bool = False) -> Parameter:
            return Parameter(name, label=label, unit=unit, get_cmd=lambda: self._latest[name],
                             set_cmd=False, vals=Strings() if text else Numbers())

        self.spectral_parameters: list[Parameter] = [
            make("tip_spectrum_verdict", "Spectroscopic verdict", "", text=True),
            make("tip_spectrum_onset", "Surface-state onset", "V"),
            make("tip_spectrum_width", "Surface-state step width (10-90 %)", "V"),
            make("tip_spectrum_contrast", "Surface-state step contrast", ""),
            make("tip_spectrum_x", "Spectrum site x", "m"),
            make("tip_spectrum_y", "Spectrum site y", "m"),
        ]

    # ---- the TipClassifier protocol: the image classifier's, plus the spectra -------------
    @property
    def classes(self) -> tuple[str, ...]:
        return self.inner.classes

    @property
    def parameters(self) -> list[Parameter]:
        return [*self.inner.parameters, *self.spectral_parameters]

    def register(self, meas: Measurement, frame_index: Parameter, **kwargs: Any) -> list[Parameter]:
        """Register the image classifier's parameters and the ``tip_spectrum_*`` ones."""
        registered = list(self.inner.register(meas, frame_index, **kwargs))
        for p in self.spectral_parameters:
            meas.register_parameter(p, setpoints=(frame_index,))
        self.frame_index = frame_index
        return registered + self.spectral_parameters

    def submit(self, frame_index: int, frame: np.ndarray, datasaver: DataSaver | None = None, *,
               timestamp: float | None = None) -> None:
        """Classify the image; when it shows a good tip, take and judge a spectrum."""
        self.inner.submit(frame_index, frame, datasaver, timestamp=timestamp)
        result = self.inner.result(frame_index)
        if result.quality != "good" or result.state not in self.good_classes:
            if result.quality == "bad" and result.state in self.classes:
                self._last_bad_state = result.state
            self.results[frame_index] = result
            return
        verdict, site = self._check(frame)
        self.verdicts[frame_index] = verdict
        if not verdict.good:
            bad = self._last_bad_state or verdict.state
            if bad not in result.probabilities:
                bad = SPECTRUM_BAD_STATE
            probabilities = {c: float(c == bad) for c in result.probabilities}
            result = dataclasses.replace(
                result, state=bad, quality="bad", probabilities=probabilities,
                reason=f"image {result.state}, spectrum bad: {verdict.reason}",
                p_bad=SPECTRUM_BAD_P if math.isfinite(result.p_bad) else result.p_bad)
        self.results[frame_index] = result
        self._latest = {"tip_spectrum_verdict": "good" if verdict.good else "bad",
                        "tip_spectrum_onset": verdict.onset_V,
                        "tip_spectrum_width": verdict.width_V,
                        "tip_spectrum_contrast": verdict.contrast,
                        "tip_spectrum_x": site[0], "tip_spectrum_y": site[1]}
        if datasaver is not None:
            if self.frame_index is None:
                raise ValueError("call register(meas, frame_index) before writing to a datasaver")
            datasaver.add_result((self.frame_index, frame_index),
                                 *((p, self._latest[p.name]) for p in self.spectral_parameters))

    def _check(self, frame: np.ndarray) -> tuple[SpectralVerdict, tuple[float, float]]:
        stm = self.stm
        site = flattest_site(stm, frame)
        stm.move_tip(*site)
        low, high = self.judge.sweep()
        stm.spectrum_didv_source("lockin")
        stm.lockin_amplitude(self.lockin_amplitude_V)
        stm.spectrum_start(low - 0.05)
        stm.spectrum_end(high + 0.05)
        stm.spectrum_points(self.points)
        didv = stm.spectrum_didv()
        self.spectra_taken += 1
        return self.judge.judge(stm.spectrum_bias(), didv), site

    def result(self, frame_index: int, timeout: float | None = None) -> TipStateResult:
        """The combined result of ``frame_index`` (the image's unless a spectrum overruled it)."""
        if frame_index in self.results:
            return self.results[frame_index]
        return self.inner.result(frame_index, timeout)

    def flush(self, datasaver: DataSaver | None = None) -> list[TipStateResult]:
        return self.inner.flush(datasaver)

    def finish(self, datasaver: DataSaver | None = None, **kwargs: Any) -> list[TipStateResult]:
        """Finish the image classifier's run, add the check's settings to the run metadata."""
        if datasaver is not None:
            datasaver.dataset.add_metadata(SPECTRAL_METADATA_KEY, json.dumps(self.metadata()))
        self.inner.finish(datasaver, **kwargs)
        results = [self.results[i] for i in sorted(self.results)]
        self.results, self.verdicts, self._last_bad_state = {}, {}, None
        return results

    def metadata(self) -> dict[str, object]:
        return {**self.inner.metadata(), "spectral_check": {
            **dataclasses.asdict(self.judge), "points": self.points,
            "lockin_amplitude_V": self.lockin_amplitude_V, "bad_state": SPECTRUM_BAD_STATE}}

    def close(self) -> None:
        self.inner.close()
