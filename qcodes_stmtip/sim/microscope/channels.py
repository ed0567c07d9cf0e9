"""The data generator: a frame's heights from the physics renderer, and every recorded
channel derived from them.

Pure functions of a :class:`~qcodes_stmtip.sim.microscope.state.Frame` (no lock, no
clock): :func:`render` fills its forward/backward heights from
:func:`~qcodes_stmtip.sim.frames.render_scan`; :func:`channel_data` turns them into a
signal (Z, Current with feedback lag, Bias, Setpoint, X/Y, ADC noise); :func:`mask_unacquired`
blanks what the scan has not reached yet. Noise is seeded per frame, channel and
direction, so reading a channel twice gives the same data.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from qcodes_stmtip.sim.microscope.state import BIAS, CURRENT, SETPOINT, Frame, X, Y, Z
from qcodes_stmtip.sim.physics import KAPPA


def render(scan: Frame, surface: str, sample_seed: int) -> None:
    """Render ``scan``'s heights (whole frame, its tip changes included) into it."""
    from qcodes_stmtip.sim.frames import render_scan

    g = scan.geometry
    sample_geometry = replace(g, centre_x=g.centre_x + scan.coarse[0],
                              centre_y=g.centre_y + scan.coarse[1])
    sim = render_scan(
        surface, scan.start_tip, sample_geometry, np.random.default_rng(scan.seed),
        sample_seed=sample_seed, scan_up=scan.up, seconds_per_line=scan.fwd_time,
        tip_changes=tuple(scan.tip_changes), t0=scan.t0, instrument=scan.instrument,
    )
    scan.instrument = sim.instrument
    scan.tip_change_lines = tuple(sim.tip_change_lines)
    scan.forward = np.asarray(sim.forward, dtype=np.float64)
    scan.backward = np.asarray(sim.backward, dtype=np.float64)
    scan.label = sim.label


def channel_data(scan: Frame, channel: int, forward: bool) -> np.ndarray:
    """Signal ``channel`` over the whole frame (float64, ``(lines, pixels)``)."""
    heights = scan.forward if forward else scan.backward
    if heights is None:
        raise RuntimeError("channel_data: the frame has not been rendered yet")
    rng = np.random.default_rng([scan.seed, channel, int(forward)])
    if channel == Z:
        if scan.feedback:
            return heights.copy()
        return np.full_like(heights, scan.z_hold)
    if channel == CURRENT:
        if scan.feedback:
            # Feedback lag along the fast axis: error signal ∝ local slope.
            from scipy.signal import lfilter

            sweep = heights if forward else heights[:, ::-1]
            lag = lfilter([0.4], [1.0, -0.6], sweep - sweep[:, :1], axis=1) + sweep[:, :1]
            error = lag - sweep
            error -= np.median(error, axis=1, keepdims=True)  # integral action: no offset
            if not forward:
                error = error[:, ::-1]
            current = scan.setpoint * np.exp(np.clip(-2 * KAPPA * error, -50, 50))
        else:
            topo = heights - np.median(heights)
            gap = scan.z_hold - (-scan.start_tip.apex_z_m) - topo
            current = scan.setpoint * np.exp(np.clip(-2 * KAPPA * gap, -700, 50))
        return current * (1 + 0.02 * rng.standard_normal(current.shape))
    if channel == BIAS:
        return np.full_like(heights, scan.bias)
    if channel == SETPOINT:
        return np.full_like(heights, scan.setpoint)
    if channel in (X, Y):
        g = scan.geometry
        xs, ys = np.meshgrid(g.x_setpoints() - g.centre_x, g.y_setpoints() - g.centre_y)
        sx, sy = g.to_sample(xs, ys)
        return sx if channel == X else sy
    # Unconnected inputs/outputs: ADC noise around 0 V.
    return 1e-4 * rng.standard_normal(heights.shape)


def mask_unacquired(scan: Frame, data: np.ndarray, forward: bool) -> np.ndarray:
    """``data`` as float32 with the pixels the scan has not reached yet set to NaN."""
    out = data.astype(np.float32)
    if scan.complete:
        return out
    lines, pixels = out.shape
    line = int(scan.elapsed / scan.line_period + 1e-9)
    into = scan.elapsed - line * scan.line_period
    if forward:
        done = pixels if into >= scan.fwd_time else int(pixels * into / scan.fwd_time + 1e-6)
    else:
        done = 0 if into <= scan.fwd_time else int(
            pixels * (into - scan.fwd_time) / scan.bwd_time + 1e-6)
    rows_pending = [scan.row_of(a) for a in range(line + 1, lines)]
    if line < lines:
        row = scan.row_of(line)
        if forward:
            out[row, done:] = np.nan
        else:  # the backward sweep runs from the right end
            out[row, : pixels - done] = np.nan
    out[rows_pending] = np.nan
    return out
