"""A labelling session driven end to end in headless Chromium (selenium + Debian's chromium-driver).

Two labellers label the same five frames through the real page with the keyboard
and the mouse (toggle, submit, skip, undo), then the merged ``labels.csv`` is
checked value by value and read back by ``qcodes_stmtip.classify.labels``.
"""

import csv
import shutil

import numpy as np
import pytest

from qcodes_stmtip.classify.dataset_images import load_images
from qcodes_stmtip.classify.labels import load_labels
from qcodes_stmtip.labelling.server import LabellingServer, LabellingSession
from qcodes_stmtip.labelling.sources import folder_frames

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (test extra)")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="headless browser test needs Debian packages 'chromium' and 'chromium-driver' "
    "(apt-get install -y chromium chromium-driver)",
)

N_FRAMES = 5


@pytest.fixture(scope="module")
def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
def frames_dir(tmp_path):
    src = tmp_path / "frames"
    src.mkdir()
    rng = np.random.default_rng(4)
    for i in range(N_FRAMES):
        np.save(src / f"scan_{i}.npy", rng.normal(size=(16 + i, 24)) * 1e-10)
    return src


class Page:
    """The labelling page in the browser, with waits keyed on body[data-*]."""

    def __init__(self, driver, url):
        self.d = driver
        self.actions = 0
        driver.get(url)
        self.wait(lambda d: d.execute_script("return document.body.dataset.state") == "ready")

    def wait(self, condition, timeout=15):
        WebDriverWait(self.d, timeout).until(condition)

    def data(self, key):
        return self.d.execute_script(f"return document.body.dataset.{key}")

    @property
    def frame(self):
        return self.data("frame")

    def keys(self, *keys):
        self.d.find_element(By.TAG_NAME, "body").send_keys(*keys)

    def act(self, *keys, click=None):
        """Press ``keys`` (or click the element with id ``click``) and wait for the reply."""
        if click:
            self.d.find_element(By.ID, click).click()
        else:
            self.keys(*keys)
        self.actions += 1
        self.wait(lambda d: self.data("actions") == str(self.actions))
        self.wait(lambda d: self.data("state") in ("ready", "done"))

    def selected(self):
        return [b.get_attribute("data-category")
                for b in self.d.find_elements(By.CSS_SELECTOR, ".category.on")]

    def image_size(self):
        self.wait(lambda d: d.execute_script(
            "const i = document.getElementById('frame'); return i.complete && i.naturalWidth > 0"))
        return tuple(self.d.execute_script(
            "const i = document.getElementById('frame'); return [i.naturalHeight, i.naturalWidth]"))

    def text(self, element_id):
        return self.d.find_element(By.ID, element_id).text


def _sheet(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return {row["Name"]: row for row in csv.DictReader(fh)}


@pytest.mark.timeout(120)
def test_two_labellers_label_in_the_browser_and_votes_merge(browser, frames_dir, tmp_path):
    out = tmp_path / "labels"
    names = [f"scan_{i}.npy" for i in range(N_FRAMES)]

    # ---- alice: keyboard and mouse, with a skip, an undo and a refused empty submit ----------
    alice = LabellingSession(folder_frames(frames_dir), surface="hsi100", labeller="alice",
                             out_dir=out)
    with LabellingServer(alice) as server:
        page = Page(browser, server.url)
        assert page.frame == names[0]
        assert page.image_size() == (16, 24)  # the frame itself, lines × pixels
        buttons = [b.text.split("\n")[-1]
                   for b in browser.find_elements(By.CSS_SELECTOR, ".category")]
        assert buttons[2] == "Rows" and buttons[4] == "Tip Change"
        assert "0 / 5" in page.text("progress")

        page.keys("3", "5", "1", "1")  # rows, tip change; dimers toggled on and off again
        assert page.selected() == ["rows", "tip_change"]
        page.act(Keys.ENTER)
        assert page.frame == names[1] and page.selected() == []
        assert "1 / 5" in page.text("progress")
        assert "voted scan_0.npy: rows, tip_change" in page.text("status")

        browser.find_element(By.CSS_SELECTOR, '.category[data-category="generic_defect"]').click()
        assert page.selected() == ["generic_defect"]
        page.act(Keys.SPACE)
        assert page.frame == names[2]

        page.act("s")  # skip frame 2
        assert page.frame == names[3]
        assert "skipped scan_2.npy" in page.text("status")

        page.act("1", Keys.ENTER)
        assert page.frame == names[4]
        page.act("u")  # undo: frame 3 comes back with its classes ticked
        assert page.frame == names[3]
        assert page.selected() == ["dimers_asymmetries"]
        assert "undid vote on scan_3.npy" in page.text("status")
        page.keys("1", "2")  # change the vote to individual atoms
        page.act(Keys.ENTER)
        assert page.frame == names[4]

        page.keys(Keys.ENTER)  # nothing ticked: refused by the page, stays on the frame
        assert "tick at least one category" in page.text("status")
        assert page.frame == names[4] and page.data("actions") == str(page.actions)
        page.keys("4")
        page.act(Keys.ENTER)
        assert page.data("state") == "done"
        assert browser.find_element(By.ID, "done").is_displayed()
        assert "5 / 5" in page.text("progress")
        page.act(Keys.BACK_SPACE)  # Backspace undoes too
        assert page.frame == names[4] and page.selected() == ["generic_defect"]

    # A restarted server resumes from the vote log: only frame 4 is left.
    alice = LabellingSession(folder_frames(frames_dir), surface="hsi100", labeller="alice",
                             out_dir=out)
    with LabellingServer(alice) as server:
        page = Page(browser, server.url)
        assert page.frame == names[4]
        assert "4 / 5" in page.text("progress")
        page.keys("4")
        page.act(click="submit")
        assert page.data("state") == "done"

    # ---- bob: a second labeller on the same folder, his own vote file -------------------------
    bob = LabellingSession(folder_frames(frames_dir), surface="hsi100", labeller="bob",
                           out_dir=out)
    with LabellingServer(bob) as server:
        page = Page(browser, server.url)
        assert page.frame == names[0]
        page.act("3", Keys.ENTER)  # rows
        page.act("4", "5", Keys.ENTER)  # generic defect + tip change
        page.act("3", Keys.ENTER)  # rows on frame 2 (alice skipped it)
        page.act(click="skip")  # frame 3
        assert page.frame == names[4]

    # ---- the files ------------------------------------------------------------------------
    assert (out / "votes" / "alice.csv").is_file() and (out / "votes" / "bob.csv").is_file()
    rows = _sheet(out / "labels.csv")
    assert sorted(rows) == names[:5]
    expect = {  # name: (responses, Rows, Tip Change, Bad/Blurry, Individual Atoms, Dimers)
        "scan_0.npy": ("2", 1.0, 0.5, 0.0, 0.0, 0.0),
        "scan_1.npy": ("2", 0.0, 0.5, 1.0, 0.0, 0.0),
        "scan_2.npy": ("1", 1.0, 0.0, 0.0, 0.0, 0.0),
        "scan_3.npy": ("1", 0.0, 0.0, 0.0, 1.0, 0.0),
        "scan_4.npy": ("1", 0.0, 0.0, 1.0, 0.0, 0.0),
    }
    for name, (n, rows_v, tip, bad, atoms, dimers) in expect.items():
        row = rows[name]
        got = (row["No. Responses"], float(row["Rows"]), float(row["Tip Change"]),
               float(row["Bad/Blurry"]), float(row["Individual Atoms"]), float(row["Dimers"]))
        assert got == (n, rows_v, tip, bad, atoms, dimers), name
        assert row["session"] == "frames"
    # The frames the labellers saw were stored for training, bit for bit.
    for name in names:
        np.testing.assert_array_equal(np.load(out / "images" / name),
                                      np.load(frames_dir / name))

    labelled = load_labels(out, surface="hsi100")
    got = {p.name: (labelled.classes[i] if i >= 0 else None, bool(t))
           for p, i, t in zip(labelled.paths, labelled.labels, labelled.tip_change, strict=True)}
    assert got == {
        "scan_0.npy": ("rows", True),
        "scan_1.npy": ("generic_defect", True),
        "scan_2.npy": ("rows", False),
        "scan_3.npy": ("individual_atoms", False),
        "scan_4.npy": ("generic_defect", False),
    }
    # ... and the training input pipeline reads every stored frame.
    images = load_images(labelled, size=32, progress=False)
    assert images.images.shape == (5, 32, 32, 1) and images.skipped == []


@pytest.mark.timeout(240)
def test_model_guess_is_shown_and_g_ticks_it(browser, frames_dir, tmp_path, tiny_bundle):
    _, bundle = tiny_bundle
    session = LabellingSession(folder_frames(frames_dir), surface="hsi100", labeller="gina",
                               out_dir=tmp_path / "labels", model=bundle)
    with LabellingServer(session) as server:
        page = Page(browser, server.url)
        guess = session.guess(page.frame)  # what the server computes for this frame
        page.wait(lambda d: "decision:" in page.text("guess-body"), timeout=120)
        body = page.text("guess-body")
        assert f"decision: {guess['decision']}" in body
        assert f"P(tip change) {guess['tip_change_probability']:.2f}" in body
        for name, p in zip(guess["classes"], guess["probabilities"], strict=True):
            assert f"{name}\n{p:.2f}" in body
        marked = browser.find_elements(By.CSS_SELECTOR, ".category.guessed")
        assert [b.get_attribute("data-category") for b in marked] == [guess["decision"]]
        page.keys("g")
        expect = [c for c in session.store.categories
                  if c == guess["decision"]
                  or (c == "tip_change" and guess["tip_change_probability"] >= 0.5)]
        assert page.selected() == expect
        page.act(Keys.ENTER)
    (event,) = session.store.events
    assert list(event.classes) == expect
