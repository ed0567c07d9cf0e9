"""Model bundles: a directory of ``.keras`` models plus ``manifest.json``, loaded in Keras safe mode.

Layout::

    BUNDLE/manifest.json
    BUNDLE/members/<i>_<name>.keras
    BUNDLE/tip_change.keras          (optional, H:Si(100) binary network)

The manifest (``format_version`` :data:`FORMAT_VERSION`) records the surface,
class names, preprocessing parameters, thresholds, members (file, architecture,
SHA-256, training settings), training-data summary, metrics, and the package
and Keras versions. Loading never executes code from the bundle
(``keras.saving.load_model(..., safe_mode=True, compile=False)``; the models
contain no Lambda layers). Anything missing, corrupt or incompatible raises
:class:`BundleError` naming the path and the problem. Importing this module does
not import Keras; saving and loading do.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from qcodes_stmtip.classify.ensemble import Ensemble, Member
from qcodes_stmtip.classify.preprocess import IMAGE_SIZE, MIN_PIXELS, MIN_VALID_LINES

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
#: Where the package's default bundles live: ``<this folder>/bundles/<surface>``.
DEFAULT_BUNDLES = Path(__file__).resolve().parent / "bundles"


class BundleError(ValueError):
    """A model bundle is missing, corrupt or incompatible (message names path and problem)."""


def preprocessing_parameters(size: int = IMAGE_SIZE) -> dict[str, object]:
    """The preprocessing a bundle's models expect (stored in the manifest)."""
    return {
        "image_size": size,
        "flatten": "per-line least-squares straight line along x",
        "resize": "Pillow bilinear with anti-aliasing, non-square frames stretched",
        "scale": "min-max to -1..1 after resizing",
        "min_valid_lines": MIN_VALID_LINES,
        "min_pixels": MIN_PIXELS,
        "nan_rows": "dropped",
    }


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _save_model(model, file: Path) -> None:
    """Save ``model`` without optimizer state (an uncompiled clone with the same weights)."""
    from qcodes_stmtip.classify.keras_backend import keras

    if getattr(model, "optimizer", None) is not None:
        # clone_model would compile the clone with the same optimizer; from_config does not.
        clone = keras.Model.from_config(model.get_config())
        clone.set_weights(model.get_weights())
        model = clone
    model.save(file)


def save_bundle(
    ensemble: Ensemble,
    path: str | Path,
    *,
    training_data: dict | None = None,
    metrics: dict | None = None,
    image_size: int = IMAGE_SIZE,
) -> Path:
    """Write ``ensemble`` to the directory ``path`` (created; must be absent or empty).

    Models are stored without optimizer state; weights are stored exactly (float32).
    """
    from qcodes_stmtip import __version__
    from qcodes_stmtip.classify.keras_backend import keras

    root = Path(path)
    if root.exists() and any(root.iterdir()):
        raise BundleError(f"{root}: bundle directory exists and is not empty")
    (root / "members").mkdir(parents=True, exist_ok=True)
    members = []
    for i, member in enumerate(ensemble.members):
        rel = f"members/{i}_{_safe_name(member.name)}.keras"
        _save_model(member.model, root / rel)
        members.append({"name": member.name, "architecture": member.architecture, "file": rel,
                        "sha256": _sha256(root / rel), "training": member.info or {}})
    tip = None
    if ensemble.tip_change is not None:
        _save_model(ensemble.tip_change.model, root / "tip_change.keras")
        tip = {"name": ensemble.tip_change.name, "architecture": ensemble.tip_change.architecture,
               "file": "tip_change.keras", "sha256": _sha256(root / "tip_change.keras"),
               "threshold": ensemble.tip_change_threshold, "training": ensemble.tip_change.info or {}}
    manifest = {
        "format_version": FORMAT_VERSION,
        "surface": ensemble.surface,
        "classes": list(ensemble.classes),
        "good_classes": sorted(ensemble.good_classes),
        "preprocessing": preprocessing_parameters(image_size),
        "thresholds": {c: float(t) for c, t in zip(ensemble.classes, ensemble.thresholds, strict=True)},
        "members": members,
        "tip_change": tip,
        "inference": {"tta": ensemble.tta, "tip_change_vertical_flip": ensemble.tip_change_vertical_flip},
        "training_data": training_data or {},
        "metrics": metrics or {},
        "package_version": __version__,
        "keras_version": keras.__version__,
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, allow_nan=True) + "\n")
    return root


def read_manifest(path: str | Path) -> dict:
    """Read and check ``BUNDLE/manifest.json`` (no models loaded)."""
    root = Path(path)
    if not root.is_dir():
        raise BundleError(f"{root}: model bundle directory not found")
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise BundleError(f"{root}: not a model bundle (no {MANIFEST})")
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{mpath}: manifest is not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict):
        raise BundleError(f"{mpath}: manifest must be a JSON object")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(f"{mpath}: format_version {version!r} is not supported (expected {FORMAT_VERSION})")
    for key in ("surface", "classes", "preprocessing", "thresholds", "members"):
        if key not in manifest:
            raise BundleError(f"{mpath}: manifest lacks {key!r}")
    if not manifest["members"]:
        raise BundleError(f"{mpath}: manifest lists no member models")
    from qcodes_stmtip.sim.classes import CLASSES

    surface = manifest["surface"]
    if surface not in CLASSES:
        raise BundleError(f"{mpath}: unknown surface {surface!r}")
    if tuple(manifest["classes"]) != CLASSES[surface]:
        raise BundleError(
            f"{mpath}: classes {manifest['classes']} do not match the {surface} classes {CLASSES[surface]}"
        )
    return manifest


def _load_model(root: Path, entry: dict, n_outputs: int, size: int):
    from qcodes_stmtip.classify.keras_backend import keras

    file = root / entry.get("file", "")
    if not file.is_file():
        raise BundleError(f"{file}: member model file missing")
    if entry.get("sha256") and _sha256(file) != entry["sha256"]:
        raise BundleError(f"{file}: SHA-256 does not match the manifest (corrupt or replaced)")
    try:
        model = keras.saving.load_model(file, safe_mode=True, compile=False)
    except Exception as exc:  # keras raises many types for bad archives
        raise BundleError(f"{file}: cannot load Keras model ({type(exc).__name__}: {exc})") from exc
    if tuple(model.input_shape[1:]) != (size, size, 1):
        raise BundleError(f"{file}: input shape {model.input_shape} does not match image size {size}")
    if model.output_shape[-1] != n_outputs:
        raise BundleError(f"{file}: {model.output_shape[-1]} outputs, expected {n_outputs}")
    return model


def load_bundle(path: str | Path, surface: str | None = None) -> Ensemble:
    """Load a bundle as an :class:`Ensemble` (``.manifest`` attached); check ``surface`` if given."""
    root = Path(path)
    manifest = read_manifest(root)
    if surface is not None and manifest["surface"] != surface:
        raise BundleError(f"{root}: bundle is for surface {manifest['surface']!r}, not {surface!r}")
    classes = tuple(manifest["classes"])
    size = int(manifest["preprocessing"].get("image_size", IMAGE_SIZE))
    members = [
        Member(e.get("name", f"member{i}"), e.get("architecture", "?"),
               _load_model(root, e, len(classes), size), e.get("training"))
        for i, e in enumerate(manifest["members"])
    ]
    tip = None
    if manifest.get("tip_change"):
        e = manifest["tip_change"]
        tip = Member(e.get("name", "tip_change"), e.get("architecture", "?"),
                     _load_model(root, e, 2, size), e.get("training"))
    try:
        thresholds = [float(manifest["thresholds"][c]) for c in classes]
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{root / MANIFEST}: thresholds must give a number per class") from exc
    inference = manifest.get("inference") or {}
    views = ({key: inference.get(key, False) for key in ("tta", "tip_change_vertical_flip")}
             if isinstance(inference, dict) else {"tta": None})
    if not all(isinstance(v, bool) for v in views.values()):
        raise BundleError(f"{root / MANIFEST}: 'inference' must map tta and tip_change_vertical_flip "
                          f"to true/false, got {inference!r}")
    ens = Ensemble(
        manifest["surface"], classes, members, thresholds=thresholds, tip_change=tip,
        tip_change_threshold=float((manifest.get("tip_change") or {}).get("threshold", 0.5)),
        good_classes=frozenset(manifest.get("good_classes", ())) or None, **views,
    )
    ens.manifest = manifest
    ens.path = root
    return ens


def default_bundle_path(surface: str) -> Path:
    """The shipped default bundle of ``surface``; :class:`BundleError` if none is installed."""
    path = DEFAULT_BUNDLES / surface
    if not (path / MANIFEST).is_file():
        raise BundleError(f"no default bundle shipped for surface {surface!r} (looked in {path})")
    return path
