"""The simulated controller against the vendor's client and the vendor's documented semantics.

Every command of the table (``nanonis/protocol.py``) is sent through ``nanonis_spm`` (the
vendor's Python client) to ``stmtip sim serve``'s simulator, and what comes back is
checked against the vendor's docstrings: Set-then-Get round trips, flag encodings (Set's
0 no change / 1 / 2 against Get's 0 / 1) and side effects. Two commands that the vendor
client itself cannot parse (``Util_VersionGet``: a broken format string;
``Scan_PropsGet``: it indexes a list as a number) are sent through the client's own
``send`` and their raw bytes checked against the documented layout, so the vendor's
bugs are not part of the pass criteria (docs/simulator.md).
"""

from __future__ import annotations

import math
import socket
import struct
from pathlib import Path

import numpy as np
import pytest

from qcodes_stmtip.nanonis.protocol import COMMANDS
from qcodes_stmtip.sim.controller import serve_simulator
from qcodes_stmtip.sim.physics import KAPPA

nanonis_spm = pytest.importorskip("nanonis_spm")

#: Commands the vendor client cannot parse: checked from the raw reply bytes instead.
VENDOR_BROKEN = ("Util.VersionGet", "Scan.PropsGet")


@pytest.fixture
def server():
    srv = serve_simulator("au111", seed=5, time_acceleration=1000.0, initial_tip="individual_atoms")
    yield srv
    srv.stop()


@pytest.fixture
def vendor(server):
    conn = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    yield nanonis_spm.Nanonis(conn)
    conn.close()


def ok(result) -> list:
    """The values of a vendor call that must succeed (its error string must be empty)."""
    error, _raw, values = result
    assert error == "", error
    return values


def refused(result, fragment: str) -> None:
    """A vendor call the controller must answer with an error naming ``fragment``."""
    error, _raw, _values = result
    assert fragment in error, error


def raw_body(vendor, command: str) -> bytes:
    """The reply body of an argument-less command, through the vendor client's ``send``."""
    body = vendor.send(command, [], [])
    assert body != [], f"{command}: wrong command echoed"
    return bytes(body)


class Reader:
    """Reads the documented layout from a reply body, independently of the project's codec."""

    def __init__(self, body: bytes) -> None:
        self.body, self.at = body, 0

    def take(self, fmt: str):
        values = struct.unpack_from(">" + fmt, self.body, self.at)
        self.at += struct.calcsize(">" + fmt)
        return values[0] if len(values) == 1 else values

    def text(self) -> str:
        n = self.take("i")
        out = self.body[self.at:self.at + n].decode()
        self.at += n
        return out

    def strings(self) -> list[str]:
        size, count = self.take("ii")
        start = self.at
        items = [self.text() for _ in range(count)]
        assert self.at - start == size, "string-array byte size must equal its elements' bytes"
        return items

    def error_section(self) -> tuple[int, str]:
        status = self.take("I")
        message = self.text()
        assert self.at == len(self.body), "nothing may follow the error section"
        return status, message


# ---------------------------------------------------------------- bias, current, Z controller
def test_bias_current_and_setpoint(vendor) -> None:
    ok(vendor.Bias_Set(0.25))
    assert ok(vendor.Bias_Get())[0] == pytest.approx(0.25)
    ok(vendor.ZCtrl_SetpntSet(2e-9))
    assert ok(vendor.ZCtrl_SetpntGet())[0] == pytest.approx(2e-9)
    assert ok(vendor.Current_Get())[0] == pytest.approx(2e-9, rel=0.15)
    # pulse: 0 no change / 1 hold / 2 don't for Z; 1 relative / 2 absolute; the bias returns after it
    ok(vendor.Bias_Pulse(1, 0.01, 0.5, 1, 1))
    ok(vendor.Bias_Pulse(1, 0.01, 1.0, 2, 2))
    assert ok(vendor.Bias_Get())[0] == pytest.approx(0.25)
    refused(vendor.Bias_Pulse(1, 0.01, 1.0, 3, 2), "must be 0, 1 or 2")


def test_z_controller(vendor) -> None:
    assert ok(vendor.ZCtrl_OnOffGet())[0] == 1
    assert ok(vendor.ZCtrl_StatusGet())[0] == 2  # 1 off, 2 on
    z = ok(vendor.ZCtrl_ZPosGet())[0]
    ok(vendor.ZCtrl_OnOffSet(0))
    assert ok(vendor.ZCtrl_OnOffGet())[0] == 0 and ok(vendor.ZCtrl_StatusGet())[0] == 1
    ok(vendor.ZCtrl_ZPosSet(z + 3e-10))
    assert ok(vendor.ZCtrl_ZPosGet())[0] == pytest.approx(z + 3e-10, abs=1e-13)
    ok(vendor.ZCtrl_OnOffSet(1))
    p_gain, time_constant, i_gain = ok(vendor.ZCtrl_GainGet())
    assert p_gain > 0 and time_constant > 0 and i_gain == pytest.approx(p_gain / time_constant)
    high, low = ok(vendor.ZCtrl_LimitsGet())
    assert low < z < high  # limits not enabled: the piezo range
    ok(vendor.ZCtrl_Home())
    assert ok(vendor.ZCtrl_OnOffGet())[0] == 0
    ok(vendor.ZCtrl_Withdraw(1, 2000))
    assert ok(vendor.ZCtrl_ZPosGet())[0] == pytest.approx(high)
    assert ok(vendor.Current_Get())[0] == 0.0
    ok(vendor.AutoApproach_OnOffSet(1))
    assert ok(vendor.AutoApproach_OnOffGet())[0] == 1
    ok(vendor.AutoApproach_OnOffSet(0))
    assert ok(vendor.AutoApproach_OnOffGet())[0] == 0


def test_current_gains(vendor) -> None:
    size, n_gains, gains, gain_index, fsize, n_filters, filters, filter_index = ok(
        vendor.Current_GainsGet())
    assert n_gains == len(gains) >= 1 and 0 <= gain_index < n_gains
    assert size == sum(4 + len(g) for g in gains)
    assert n_filters == len(filters) >= 1 and 0 <= filter_index < n_filters


# ---------------------------------------------------------------- SafeTip
def _trip_safe_tip(vendor, threshold: float) -> None:
    """Drive the tip towards the sample with the feedback off until the current passes ``threshold``."""
    z = ok(vendor.ZCtrl_ZPosGet())[0]
    ok(vendor.ZCtrl_OnOffSet(0))
    setpoint = ok(vendor.ZCtrl_SetpntGet())[0]
    closer = math.log(4 * threshold / setpoint) / (2 * KAPPA)  # a current of 4 × threshold
    ok(vendor.ZCtrl_ZPosSet(z - closer))


def test_safe_tip_flags_are_0_off_1_on(vendor, server) -> None:
    """Vendor: auto-recovery and auto-pause are 0 = Off, 1 = On (the old simulator read 0 as no change)."""
    ok(vendor.Scan_BufferSet([0, 14], 64, 32))
    ok(vendor.Scan_SpeedSet(0, 0, 0.5, 0.5, 2, 1.0))
    ok(vendor.SafeTip_PropsSet(1, 1, 3e-9))
    ok(vendor.SafeTip_PropsSet(0, 0, 3e-9))
    ok(vendor.Scan_Action(0, 1))
    _trip_safe_tip(vendor, 3e-9)
    assert ok(vendor.ZCtrl_StatusGet())[0] == 5  # a Safe Tip event occurred
    assert server.microscope.scanner.state == "running"  # auto-pause off: the scan goes on
    assert ok(vendor.ZCtrl_OnOffGet())[0] == 0  # auto-recovery off: the feedback stays off
    ok(vendor.Scan_Action(1, 1))
    assert ok(vendor.SafeTip_PropsGet()) == pytest.approx([0, 0, 3e-9])


def test_safe_tip_on_pauses_and_recovers(vendor, server) -> None:
    ok(vendor.Scan_BufferSet([0, 14], 64, 32))
    ok(vendor.Scan_SpeedSet(0, 0, 0.5, 0.5, 2, 1.0))
    ok(vendor.SafeTip_PropsSet(1, 1, 3e-9))
    assert ok(vendor.SafeTip_PropsGet()) == pytest.approx([1, 1, 3e-9])
    ok(vendor.Scan_Action(0, 1))
    _trip_safe_tip(vendor, 3e-9)
    assert server.microscope.scanner.state == "paused"
    assert ok(vendor.ZCtrl_OnOffGet())[0] == 1
    refused(vendor.SafeTip_PropsSet(2, 1, 3e-9), "must be 0 (Off) or 1 (On)")


# ---------------------------------------------------------------- scan
def test_scan_settings_round_trip(vendor, server) -> None:
    ok(vendor.Scan_FrameSet(1e-9, -2e-9, 25e-9, 20e-9, 30.0))
    assert ok(vendor.Scan_FrameGet()) == pytest.approx([1e-9, -2e-9, 25e-9, 20e-9, 30.0])
    ok(vendor.Scan_BufferSet([0, 14, 23], 64, 32))
    n, channels, pixels, lines = ok(vendor.Scan_BufferGet())
    assert (n, [c[0] for c in channels], pixels, lines) == (3, [0, 14, 23], 64, 32)
    ok(vendor.Scan_SpeedSet(0.0, 0.0, 0.2, 0.2, 2, 2.0))  # keep: 0 no change, 1 speed, 2 time
    fwd_speed, bwd_speed, fwd_time, bwd_time, keep, ratio = ok(vendor.Scan_SpeedGet())
    assert (fwd_time, bwd_time, ratio) == pytest.approx((0.2, 0.1, 2.0))
    assert keep == 1 and fwd_speed == pytest.approx(25e-9 / 0.2)  # Get: 0 speed, 1 time
    ok(vendor.Scan_PropsSet(1, 1, 2, "conf_", "a comment", ["Z-Controller", "Bias"], 2))
    ok(vendor.Scan_PropsSet(0, 0, 0, "", "a comment", ["Z-Controller", "Bias"], 0))  # no change
    r = Reader(raw_body(vendor, "Scan.PropsGet"))
    continuous, bouncy, autosave = r.take("III")
    assert (continuous, bouncy, autosave) == (1, 1, 1)  # Get: 0 off / 1 on; autosave 0 all, 1 next
    assert (r.text(), r.text()) == ("conf_", "a comment")
    assert r.strings() == ["Z-Controller", "Bias"]
    n_counts = r.take("i")
    counts = [r.take("i") for _ in range(n_counts)]
    rows, cols = r.take("ii")
    assert n_counts == 2 and rows == 2 and all(c <= cols for c in counts)
    for _ in range(rows * cols):
        r.text()
    assert r.take("I") == 2  # autopaste as set: 2 next
    assert r.error_section() == (0, "")
    ok(vendor.Scan_PropsSet(2, 2, 3, "", "", [], 0))


def test_scan_cycle_grab_and_save(vendor, server) -> None:
    ok(vendor.Scan_FrameSet(0.0, 0.0, 10e-9, 10e-9, 0.0))
    ok(vendor.Scan_BufferSet([0, 14], 32, 16))
    ok(vendor.Scan_SpeedSet(0.0, 0.0, 0.5, 0.5, 2, 1.0))
    ok(vendor.Scan_PropsSet(2, 2, 1, "cyc_", "", [], 0))
    refused(vendor.Scan_Save(1, 1000), "scan buffer is empty")
    ok(vendor.Scan_Action(0, 1))  # 0 start, direction 1 up
    assert ok(vendor.Scan_StatusGet())[0] == 1
    x, y = ok(vendor.Scan_XYPosGet(0))
    assert abs(x) <= 5e-9 + 1e-12 and abs(y) <= 5e-9 + 1e-12  # on the frame while scanning
    timed_out, length, path = ok(vendor.Scan_WaitEndOfScan(20000))
    assert timed_out == 0 and path.endswith("cyc_00001.sxm") and length == len(path)
    assert ok(vendor.Scan_StatusGet())[0] == 0
    name_len, name, rows, cols, data, up = ok(vendor.Scan_FrameDataGrab(14, 1))
    assert (name, rows, cols, up) == ("Z (m)", 16, 32, 1) and name_len == len(name)
    assert np.all(np.isfinite(np.asarray(data, dtype=np.float64)))
    assert ok(vendor.Scan_Save(1, 5000)) == [0]  # timed out? 0
    assert server.microscope.scanner.last_path.endswith("cyc_00002.sxm")


def test_follow_me_and_motor(vendor, server) -> None:
    ok(vendor.FolMe_XYPosSet(4e-9, -5e-9, 1))
    assert ok(vendor.FolMe_XYPosGet(1)) == pytest.approx([4e-9, -5e-9])
    ok(vendor.Motor_StartMove(2, 1, 0, 1))  # 2 = Y+, group 0 = Group 1
    assert server.microscope.coarse_y > 0
    refused(vendor.Motor_StartMove(6, 1, 0, 1), "must be 0..5")


# ---------------------------------------------------------------- tip shaper
def _shaper(vendor, change_bias: int, restore: int, bias: float = 0.8,
            bias_lift: float = 1.2) -> None:
    ok(vendor.TipShaper_PropsSet(0.01, change_bias, bias, 0.5e-9, 0.01, bias_lift, 0.01,
                                 1e-9, 0.01, 0.01, restore))


def test_tip_shaper_get_returns_0_false_1_true(vendor) -> None:
    """Vendor: PropsSet takes 0 no change / 1 True / 2 False, PropsGet returns 0 False / 1 True."""
    _shaper(vendor, 2, 2)
    props = ok(vendor.TipShaper_PropsGet())
    assert (props[1], props[10]) == (0, 0)
    _shaper(vendor, 0, 1)  # 0: change_bias unchanged (False)
    props = ok(vendor.TipShaper_PropsGet())
    assert (props[1], props[10]) == (0, 1)
    assert props[2:10] == pytest.approx([0.8, 0.5e-9, 0.01, 1.2, 0.01, 1e-9, 0.01, 0.01])
    refused(vendor.TipShaper_PropsSet(0.01, 3, 0.8, 0.5e-9, 0.01, 1.2, 0.01, 1e-9, 0.01, 0.01, 1),
            "must be 0 (no change)")


def test_tip_shaper_restores_the_initial_bias(vendor) -> None:
    """Vendor: the initial bias is restored after the second ramp, before the end wait."""
    ok(vendor.Bias_Set(0.3))
    _shaper(vendor, 1, 1, bias=0.8, bias_lift=1.2)
    ok(vendor.TipShaper_Start(1, 10000))
    assert ok(vendor.Bias_Get())[0] == pytest.approx(0.3)
    assert ok(vendor.ZCtrl_OnOffGet())[0] == 1  # restore: the initial status (on)


def test_tip_shaper_restore_feedback_false_leaves_it_off(vendor) -> None:
    _shaper(vendor, 2, 2)
    ok(vendor.TipShaper_Start(1, 10000))
    assert ok(vendor.ZCtrl_OnOffGet())[0] == 0
    ok(vendor.ZCtrl_OnOffSet(1))


# ---------------------------------------------------------------- signals
def test_signals_names_are_the_128_of_a_controller_and_slots_consistent(vendor) -> None:
    size, count, names = ok(vendor.Signals_NamesGet())
    assert count == len(names) == 128 and size == sum(4 + len(s) for s in names)
    # slots: the 24 signals of the Signals Manager; channel indexes (0–23) are slot indexes
    n_names_size, n_slots, slot_names, n_indexes, indexes = ok(vendor.quickSend(
        "Signals.InSlotsGet", [], [], ["i", "i", "*+c", "i", "*i"]))
    indexes = [i[0] for i in indexes]
    assert n_slots == n_indexes == 24
    assert slot_names == [names[i] for i in indexes]
    ok(vendor.Scan_BufferSet(list(range(24)), 32, 16))
    refused(vendor.Scan_BufferSet([0, 24], 32, 16), "0..23")
    ok(vendor.Scan_BufferSet([0, 14, 23], 32, 16))
    ok(vendor.Scan_SpeedSet(0.0, 0.0, 0.2, 0.2, 2, 1.0))
    ok(vendor.Scan_Action(0, 1))
    ok(vendor.Scan_WaitEndOfScan(20000))
    for channel in (0, 14, 23):
        name = ok(vendor.Scan_FrameDataGrab(channel, 1))[1]
        assert name == slot_names[channel] == names[indexes[channel]]
    # Signals.ValGet/ValsGet take the 128-signal index
    ok(vendor.Bias_Set(0.4))
    bias = names.index("Bias (V)")
    assert ok(vendor.Signals_ValGet(bias, 1))[0] == pytest.approx(0.4)
    n, values = ok(vendor.Signals_ValsGet([bias, names.index("Setpoint (A)"), 127], 0))
    assert n == 3 and values[0][0] == pytest.approx(0.4)
    assert values[1][0] == pytest.approx(ok(vendor.ZCtrl_SetpntGet())[0])
    refused(vendor.Signals_ValGet(128, 1), "0..127")


def test_util_version_get_bytes_follow_the_documented_layout(vendor) -> None:
    """The vendor's Util_VersionGet cannot parse any reply (its format string is broken)."""
    r = Reader(raw_body(vendor, "Util.VersionGet"))
    product, version = r.text(), r.text()
    host, rt = r.take("II")
    assert product.startswith("Nanonis SPM Control Software") and version and host > 0 and rt > 0
    assert r.error_section() == (0, "")


# ---------------------------------------------------------------- bias spectroscopy, lock-in
def test_bias_spectroscopy_settings_round_trip(vendor) -> None:
    ok(vendor.BiasSpectr_Open())
    ok(vendor.BiasSpectr_ChsSet([0, 21]))
    n, chs, size, count, names = ok(vendor.BiasSpectr_ChsGet())
    assert (n, [c[0] for c in chs], names) == (2, [0, 21], ["Current (A)", "LI Demod 1 X (A)"])
    ok(vendor.BiasSpectr_PropsSet(1, 3, 1, 64, 1e-10, 2, 2))
    ok(vendor.BiasSpectr_PropsSet(0, 0, 0, 0, 1e-10, 0, 0))  # 0: no change
    props = ok(vendor.BiasSpectr_PropsGet())
    assert props[:4] == [1, 3, 1, 64]  # Get: 0 off / 1 on
    assert props[6] == names and props[9] == ["X (m)", "Y (m)", "Z (m)"]
    assert props[12] == ["Sweep Start (V)", "Sweep End (V)"]
    ok(vendor.BiasSpectr_PropsSet(2, 1, 2, 0, 0.0, 0, 0))
    assert ok(vendor.BiasSpectr_PropsGet())[:4] == [0, 1, 0, 64]
    ok(vendor.BiasSpectr_AdvPropsSet(2, 1, 1, 1))
    assert ok(vendor.BiasSpectr_AdvPropsGet()) == [0, 1, 1, 1]
    ok(vendor.BiasSpectr_AdvPropsSet(1, 0, 2, 0))
    assert ok(vendor.BiasSpectr_AdvPropsGet()) == [1, 1, 0, 1]
    ok(vendor.BiasSpectr_LimitsSet(-0.9, 0.3))
    assert ok(vendor.BiasSpectr_LimitsGet()) == pytest.approx([-0.9, 0.3])
    refused(vendor.BiasSpectr_LimitsSet(-12.0, 0.3), "±10 V")
    timing = [0.05, 1e-10, 0.01, 20.0, 0.001, 0.002, 0.02, 0.1]
    ok(vendor.BiasSpectr_TimingSet(*timing))
    assert ok(vendor.BiasSpectr_TimingGet()) == pytest.approx(timing)


def test_lock_in_round_trips(vendor) -> None:
    names = ok(vendor.Signals_NamesGet())[2]
    ok(vendor.LockIn_ModOnOffSet(1, 1))
    assert ok(vendor.LockIn_ModOnOffGet(1)) == [1]
    ok(vendor.LockIn_ModSignalSet(1, names.index("Bias (V)")))
    assert ok(vendor.LockIn_ModSignalGet(1)) == [names.index("Bias (V)")]
    ok(vendor.LockIn_ModAmpSet(1, 0.02))
    assert ok(vendor.LockIn_ModAmpGet(1))[0] == pytest.approx(0.02)
    ok(vendor.LockIn_ModPhasFreqSet(1, 1234.5))
    assert ok(vendor.LockIn_ModPhasFreqGet(1)) == [1234.5]  # float64
    ok(vendor.LockIn_DemodSignalSet(1, names.index("Current (A)")))
    assert ok(vendor.LockIn_DemodSignalGet(1)) == [names.index("Current (A)")]
    refused(vendor.LockIn_ModOnOffSet(0, 1), "must be in 1..8")
    ok(vendor.LockIn_ModOnOffSet(1, 0))
    assert ok(vendor.LockIn_ModOnOffGet(1)) == [0]


def test_bias_spectroscopy_start_data_and_side_effects(vendor) -> None:
    ok(vendor.Bias_Set(0.1))
    ok(vendor.BiasSpectr_ChsSet([0, 21]))
    ok(vendor.BiasSpectr_PropsSet(2, 1, 2, 201, 0.0, 2, 2))
    ok(vendor.BiasSpectr_LimitsSet(-1.0, 0.2))
    ok(vendor.BiasSpectr_AdvPropsSet(1, 1, 2, 1))  # reset bias, hold Z, lock-in runs
    ok(vendor.LockIn_ModAmpSet(1, 0.01))
    _size, n, names, rows, cols, data, n_par, params = ok(vendor.BiasSpectr_Start(1, ""))
    data = np.asarray(data, dtype=np.float64)
    assert names == ["Bias calc (V)", "Current (A)", "LI Demod 1 X (A)"] and n == 3
    assert (rows, cols) == data.shape == (3, 201)
    np.testing.assert_allclose(data[0], np.linspace(-1.0, 0.2, 201), atol=1e-6)
    assert n_par == 5 and [p[0] for p in params[:2]] == pytest.approx([-1.0, 0.2])
    # I(V) passes through zero at zero bias and has the stabilisation current at the setpoint bias
    current = np.interp([0.0, 0.1], data[0], data[1])
    setpoint = ok(vendor.ZCtrl_SetpntGet())[0]
    assert abs(current[0]) < 0.1 * setpoint and current[1] == pytest.approx(setpoint, rel=0.15)
    # the lock-in signal is dI/dV · A/√2: its mean over a window is the current's slope there
    a, b = 20, 180
    slope = (data[1][b] - data[1][a]) / (data[0][b] - data[0][a])
    assert data[2][a:b + 1].mean() == pytest.approx(slope * 0.01 / math.sqrt(2), rel=0.1)
    assert ok(vendor.Bias_Get())[0] == pytest.approx(0.1)  # reset bias on
    assert ok(vendor.ZCtrl_OnOffGet())[0] == 1  # the feedback is back
    ok(vendor.BiasSpectr_AdvPropsSet(2, 0, 0, 0))  # reset bias off: it stays at the end value
    ok(vendor.BiasSpectr_Start(0, "sts_"))
    assert ok(vendor.Bias_Get())[0] == pytest.approx(0.2)


# ---------------------------------------------------------------- coverage
def test_every_table_command_is_checked_here() -> None:
    source = Path(__file__).read_text()
    missing = [c for c in COMMANDS if f"{c.replace('.', '_')}(" not in source
               and f'"{c}"' not in source]
    assert not missing, f"table commands without a conformance check: {missing}"
