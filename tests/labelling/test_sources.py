"""Frame sources: folders of frame files and frames stored in QCoDeS runs."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from qcodes_stmtip.labelling.sources import dataset_frames, folder_frames
from tests.conftest import shared_data_missing

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
HSI100 = SHARED / "data" / "hsi100"


def test_folder_names_sessions_and_data(tmp_path):
    root = tmp_path / "scans"
    (root / "day2").mkdir(parents=True)
    a = np.random.default_rng(0).normal(size=(6, 9))
    np.save(root / "a.npy", a)
    np.save(root / "day2" / "b.npy", a * 2)
    Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4) * 20).save(root / "day2" / "b.png")
    (root / "notes.txt").write_text("not a frame")
    (root / "out" / "images").mkdir(parents=True)
    np.save(root / "out" / "images" / "a.npy", a)  # the labels folder itself: excluded

    refs = folder_frames(root, exclude=[root / "out"])
    assert [r.name for r in refs] == ["a.npy", "day2__b_npy.npy", "day2__b_png.npy"]
    assert [r.session for r in refs] == ["scans", "day2", "day2"]
    np.testing.assert_array_equal(refs[0].load(), a)
    np.testing.assert_array_equal(refs[1].load(), 2 * a)
    png = refs[2].load()
    assert png.shape == (3, 4)
    # PNG rows are flipped so that row 0 is the bottom line (the last image row).
    np.testing.assert_allclose(png[0], np.arange(8, 12) * 20 / 255)


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        folder_frames(tmp_path / "missing")
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(ValueError, match="holds no frame file"):
        folder_frames(tmp_path)
    with pytest.raises(ValueError, match="direction"):
        folder_frames(tmp_path, direction="sideways")


def test_real_hsi100_file_names_give_the_sheets_sessions(tmp_path):
    if not HSI100.is_dir():
        shared_data_missing(f"real H:Si(100) data not found at {HSI100} (shared data folder absent)")
    import csv

    with open(HSI100 / "labels.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))[::700][:5]
    for row in rows:
        (tmp_path / row["Name"]).symlink_to(HSI100 / "images" / row["Name"])
    refs = folder_frames(tmp_path)
    by_stem = {r.name[:-4]: r for r in refs}
    for row in rows:
        ref = by_stem[Path(row["Name"]).stem]
        assert ref.session == row["session"]
        assert ref.load().ndim == 2


def _database(tmp_path, frames_per_run):
    from qcodes.dataset import (
        Measurement,
        initialise_or_create_database_at,
        load_or_create_experiment,
    )
    from qcodes.parameters import Parameter, ParameterWithSetpoints
    from qcodes.validators import Arrays

    lines, pixels = 4, 6
    db = tmp_path / "scans.db"
    initialise_or_create_database_at(db)
    exp = load_or_create_experiment("tip test", sample_name="Au(111) #2")
    y = Parameter("stm_scan_y", unit="m", get_cmd=lambda: np.arange(lines) * 1e-9,
                  vals=Arrays(shape=(lines,)))
    x = Parameter("stm_scan_x", unit="m", get_cmd=lambda: np.arange(pixels) * 1e-9,
                  vals=Arrays(shape=(pixels,)))
    rng = np.random.default_rng(1)
    stored = []
    current = {"frame": None}
    image = ParameterWithSetpoints("stm_scan_image", unit="m", setpoints=(y, x),
                                   get_cmd=lambda: current["frame"],
                                   vals=Arrays(shape=(lines, pixels)))
    run_ids = []
    for n in frames_per_run:
        meas = Measurement(exp=exp, name="frames")
        meas.register_parameter(image)
        with meas.run() as saver:
            for _ in range(n):
                current["frame"] = rng.normal(size=(lines, pixels)) * 1e-10
                stored.append(current["frame"])
                saver.add_result((image, image()))
        run_ids.append(saver.run_id)
    return db, run_ids, stored


def test_frames_of_qcodes_runs(tmp_path):
    db, run_ids, stored = _database(tmp_path, [1, 2])
    refs = dataset_frames(db, run_ids)
    assert [r.name for r in refs] == [
        f"scans_run{run_ids[0]}_0.npy", f"scans_run{run_ids[1]}_0.npy", f"scans_run{run_ids[1]}_1.npy"]
    assert {r.session for r in refs} == {"tip_test_Au_111_2"}
    for ref, frame in zip(refs, stored, strict=True):
        np.testing.assert_array_equal(ref.load(), frame)
    assert refs[2].info == {"run_id": run_ids[1], "parameter": "stm_scan_image"}
    assert dataset_frames(db, run_ids[:1], parameter="stm_scan_image")[0].name == refs[0].name


def test_qcodes_errors(tmp_path):
    db, run_ids, _ = _database(tmp_path, [1])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        dataset_frames(tmp_path / "nope.db", [1])
    with pytest.raises(ValueError, match="at least one run"):
        dataset_frames(db, [])
    with pytest.raises(ValueError, match="run 99"):
        dataset_frames(db, [99])
    with pytest.raises(ValueError, match="no parameter 'other'"):
        dataset_frames(db, run_ids, parameter="other")


def test_unrolled_numeric_storage_is_put_back_on_its_grid():
    from qcodes_stmtip.labelling.sources import _frames_of_parameter

    frame = np.arange(12.0).reshape(3, 4)
    yy, xx = np.meshgrid(np.arange(3) * 1e-9, np.arange(4) * 1e-9, indexing="ij")
    order = np.random.default_rng(0).permutation(12)
    data = {"img": frame.ravel()[order], "y": yy.ravel()[order], "x": xx.ravel()[order]}
    (out,) = _frames_of_parameter(data, "img")
    np.testing.assert_array_equal(out, frame)
    with pytest.raises(ValueError, match="does not hold 2-D frames"):
        _frames_of_parameter({"img": np.arange(5.0)}, "img")


@pytest.mark.timeout(240)
def test_frames_of_a_measurement_through_the_real_driver(tmp_path):
    """Interop: frames acquired by NanonisSTM.scan_image from the simulator into a QCoDeS run."""
    from qcodes.dataset import (
        Measurement,
        initialise_or_create_database_at,
        load_or_create_experiment,
    )
    from qcodes.parameters import ManualParameter

    from qcodes_stmtip.drivers.nanonis_stm import NanonisSTM
    from qcodes_stmtip.sim.controller import serve_simulator

    db = tmp_path / "frames.db"
    initialise_or_create_database_at(db)
    exp = load_or_create_experiment("labelling_interop", sample_name="sim_hsi100")
    acquired = []
    with serve_simulator(surface="hsi100", seed=3, time_acceleration=1e4) as server:
        stm = NanonisSTM("stm_label_src", address="127.0.0.1", port=server.port)
        try:
            stm.pixels(32)
            stm.lines(32)
            frame_index = ManualParameter("frame", initial_value=0)
            meas = Measurement(exp=exp)
            meas.register_parameter(frame_index)
            meas.register_parameter(stm.scan_image, setpoints=(frame_index,))
            with meas.run() as saver:
                for i in range(2):
                    frame_index(i)
                    image = stm.scan_image()
                    acquired.append(image)
                    saver.add_result((frame_index, i), (stm.scan_image, image))
                run_id = saver.run_id
        finally:
            stm.close()

    refs = dataset_frames(db, [run_id])
    assert len(refs) == 2
    assert {r.session for r in refs} == {"labelling_interop_sim_hsi100"}  # exp:sample, file-name safe
    for ref, image in zip(refs, acquired, strict=True):
        frame = ref.load()
        assert frame.shape == (32, 32)
        np.testing.assert_array_equal(frame, image)  # heights in metres, bottom line first
        assert ref.info["parameter"].endswith("scan_image")
    assert not np.array_equal(refs[0].load(), refs[1].load())
