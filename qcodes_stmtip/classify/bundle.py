"""Model bundles: a directory of member models plus ``manifest.json``, loaded without executing code.

Layout::

    BUNDLE/manifest.json
    BUNDLE/members/<i>_<name>.keras      (a CNN member)
    BUNDLE/members/<i>_<name>.skops      (a feature member, :mod:`~qcodes_stmtip.classify.feature_model`)
    BUNDLE/tip_change.keras | .skops     (optional, H:Si(100) binary tip-change model)
    BUNDLE/partial/members/…, BUNDLE/partial/tip_change.*  (optional partial-frame ensemble, manifest
                                         key ``partial``: :mod:`~qcodes_stmtip.classify.partial`)

The manifest (``format_version`` :data:`FORMAT_VERSION`; version 1, Keras members only, still
loads) records the surface, class names, preprocessing parameters, thresholds, members (kind,
file, architecture, SHA-256, training settings), training-data summary and provenance, metrics,
and the package versions. It is checked against :data:`MANIFEST_SCHEMA` (jsonschema) and then
for what a schema cannot say: finite thresholds in 0…1, good classes among the classes, member
files inside the bundle (no absolute paths, ``..`` or symlinks) whose SHA-256 matches, each
member a file of its own (no file or hash listed twice). Each member entry declares its
``size`` (bytes), ``inflated_size`` (its archive's entries once inflated) and ``shapes``
(``input`` or ``features``, and ``outputs``; checked against the classes and image size);
before any member is read, every archive's central directory is checked — entry count, no
duplicate names, the inflated size of every entry against the declaration and the hard caps
(:data:`MAX_MEMBER_INFLATED`, :data:`MAX_BUNDLE_INFLATED`) — so a member that would inflate
to gigabytes is refused at the cost of reading its directory. Loaded members are checked
again: every weight finite, and feature members' arrays shaped for the classes and features
(:func:`~qcodes_stmtip.classify.feature_model.check_fitted_arrays`).
Keras members load in safe mode (``keras.saving.load_model(..., safe_mode=True, compile=False)``;
no Lambda layers), feature members with skops restricted to trusted types. Anything missing,
corrupt, hostile or incompatible raises :class:`BundleError` naming the file and the field.
Importing this module imports neither Keras nor scikit-learn; loading does.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

from qcodes_stmtip.classify.ensemble import Ensemble, Member
from qcodes_stmtip.classify.preprocess import IMAGE_SIZE, MIN_PIXELS, MIN_VALID_LINES

#: Written by :func:`save_bundle`: 2 adds member ``kind`` (``keras`` | ``sklearn``).
FORMAT_VERSION = 2
#: Versions :func:`load_bundle` reads.
READABLE_VERSIONS = (1, 2)
#: Member kinds and their file suffixes.
MEMBER_KINDS = {"keras": ".keras", "sklearn": ".skops"}
#: View designs a ``partial`` section may name (:data:`qcodes_stmtip.classify.partial.DESIGNS`).
PARTIAL_DESIGNS = ("reflect", "stretch", "stack")

#: Largest member file (bytes on disk).
MAX_MEMBER_BYTES = 256 << 20
#: Largest sum of a member archive's entries once inflated (bytes), whatever its manifest says.
MAX_MEMBER_INFLATED = 256 << 20
#: Largest sum over every member of a bundle once inflated (bytes).
MAX_BUNDLE_INFLATED = 1 << 30
#: Most entries in one member archive.
MAX_ARCHIVE_ENTRIES = 1 << 16

_MEMBER = {
    "type": "object",
    "required": ["file", "sha256"],
    "properties": {
        "name": {"type": "string", "maxLength": 200},
        "architecture": {"type": "string", "maxLength": 200},
        "kind": {"enum": sorted(MEMBER_KINDS)},
        "file": {"type": "string", "minLength": 1, "maxLength": 500},
        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "training": {"type": ["object", "null"]},
        # sizes and shapes (issue 26; written by save_bundle, checked before anything is read)
        "size": {"type": "integer", "minimum": 1, "maximum": MAX_MEMBER_BYTES},
        "inflated_size": {"type": "integer", "minimum": 1, "maximum": MAX_MEMBER_INFLATED},
        "shapes": {"type": "object", "additionalProperties": False, "properties": {
            "input": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 3,
                      "maxItems": 3},
            "features": {"type": "integer", "minimum": 1, "maximum": 1 << 20},
            "outputs": {"type": "integer", "minimum": 2, "maximum": 64}}},
    },
}
#: Schema of an ensemble's fields: the manifest's top level and its optional ``partial`` section.
_ENSEMBLE_PROPERTIES: dict = {
    "thresholds": {"type": "object", "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1}},
    "members": {"type": "array", "items": _MEMBER, "minItems": 1, "maxItems": 64},
    "tip_change": {"oneOf": [{"type": "null"}, {"allOf": [_MEMBER, {
        "properties": {"threshold": {"type": "number", "minimum": 0, "maximum": 1}}}]}]},
    "inference": {"type": "object", "properties": {
        "tta": {"type": "boolean"},
        "tip_change_vertical_flip": {"type": "boolean"},
        "class_weights": {"oneOf": [{"type": "null"}, {"type": "array", "maxItems": 64, "items": {
            "type": "number", "exclusiveMinimum": 0, "maximum": 1e6}}]}}},
    "training_data": {"type": "object"},
    "metrics": {"type": "object"},
    # the calibrated good/bad decision (qcodes_stmtip.classify.decision, issue 23); absent: the vote rule
    "decision": {"oneOf": [{"type": "null"}, {
        "type": "object",
        "required": ["class_weight", "change_weight", "bias", "good_below", "bad_above"],
        "properties": {
            **{k: {"type": "number", "minimum": -1e6, "maximum": 1e6}
               for k in ("class_weight", "change_weight", "bias")},
            "good_below": {"type": "number", "minimum": 0, "maximum": 1},
            "bad_above": {"type": "number", "minimum": 0, "maximum": 1},
            "rule": {"enum": ["calibrated", "vote"]},
            "risk": {"type": "object", "properties": {
                k: {"type": "number", "minimum": 0, "exclusiveMaximum": 1}
                for k in ("bad_called_good", "good_called_bad")}},
            "validation": {"type": "object"}}}]},
}

#: JSON schema of ``manifest.json`` (checked with jsonschema before anything is loaded).
MANIFEST_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["format_version", "surface", "classes", "preprocessing", "thresholds", "members"],
    "properties": {
        "format_version": {"type": "integer"},
        "surface": {"type": "string", "maxLength": 100},
        "classes": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 64,
                    "uniqueItems": True},
        "good_classes": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        "preprocessing": {"type": "object",
                          "properties": {"image_size": {"type": "integer", "minimum": 17, "maximum": 1024}}},
        **_ENSEMBLE_PROPERTIES,
        # optional partial-frame ensemble (qcodes_stmtip.classify.partial, issue 14); older readers ignore it
        "partial": {"oneOf": [{"type": "null"}, {
            "type": "object",
            "required": ["min_lines", "thresholds", "members"],
            "properties": {
                "min_lines": {"type": "integer", "minimum": MIN_VALID_LINES, "maximum": 1 << 16},
                "design": {"enum": list(PARTIAL_DESIGNS)},
                "lines": {"type": "array", "maxItems": 64, "items": {
                    "oneOf": [{"type": "null"}, {"type": "integer", "minimum": MIN_VALID_LINES}]}},
                **_ENSEMBLE_PROPERTIES,
            }}]},
    },
}
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


def _is_network(model) -> bool:
    from qcodes_stmtip.classify.ensemble import _is_network as is_network

    return is_network(model)


def _member_shapes(model) -> dict:
    """The ``shapes`` manifest field of a member model: its input (networks) or feature count
    (feature members) and its number of outputs."""
    if _is_network(model):
        return {"input": [int(n) for n in model.input_shape[1:]], "outputs": int(model.output_shape[-1])}
    from qcodes_stmtip.classify.features import feature_names

    return {"features": len(feature_names(model.image_size)), "outputs": int(model.n_outputs)}


def _archive_declarations(file: Path) -> dict:
    """The ``size`` and ``inflated_size`` manifest fields of a member file."""
    with zipfile.ZipFile(file) as zf:
        inflated = sum(info.file_size for info in zf.infolist())
    return {"size": file.stat().st_size, "inflated_size": inflated}


def _save_member(member: Member, root: Path, stem: str) -> dict:
    """Write one member under ``root`` as ``stem`` + suffix; its manifest entry."""
    if _is_network(member.model):
        kind = "keras"
        rel = stem + MEMBER_KINDS[kind]
        _save_model(member.model, root / rel)
    else:
        kind = "sklearn"
        rel = stem + MEMBER_KINDS[kind]
        member.model.save(root / rel)
    return {"name": member.name, "architecture": member.architecture, "kind": kind, "file": rel,
            "sha256": _sha256(root / rel), **_archive_declarations(root / rel),
            "shapes": _member_shapes(member.model), "training": member.info or {}}


def ensemble_fields(ensemble: Ensemble, members: list[dict], tip: dict | None, training_data: dict | None = None,
                    metrics: dict | None = None) -> dict:
    """The manifest fields of ``ensemble`` (:data:`_ENSEMBLE_PROPERTIES`): thresholds, the saved member
    entries ``members`` / ``tip``, inference options, training data and metrics."""
    return {
        "thresholds": {c: float(t) for c, t in zip(ensemble.classes, ensemble.thresholds, strict=True)},
        "members": members,
        "tip_change": tip,
        "inference": {"tta": ensemble.tta, "tip_change_vertical_flip": ensemble.tip_change_vertical_flip,
                      "class_weights": None if ensemble.class_weights is None else ensemble.class_weights.tolist()},
        "training_data": training_data or {},
        "metrics": metrics or {},
        "decision": None if ensemble.decision is None else {**ensemble.decision.as_dict(),
                                                            "rule": ensemble.decision_rule},
    }


def save_bundle(
    ensemble: Ensemble,
    path: str | Path,
    *,
    training_data: dict | None = None,
    metrics: dict | None = None,
    image_size: int = IMAGE_SIZE,
    notice: str | None = None,
) -> Path:
    """Write ``ensemble`` to the directory ``path`` (created; must be absent or empty).

    Keras models are stored without optimizer state, weights exactly (float32); feature
    members with skops. ``notice`` (e.g. the licence of the training data) is written to
    ``BUNDLE/NOTICE`` and recorded in the manifest.
    """
    from qcodes_stmtip import __version__

    root = Path(path)
    if root.exists() and any(root.iterdir()):
        raise BundleError(f"{root}: bundle directory exists and is not empty")
    (root / "members").mkdir(parents=True, exist_ok=True)
    members = [_save_member(m, root, f"members/{i}_{_safe_name(m.name)}")
               for i, m in enumerate(ensemble.members)]
    tip = None
    if ensemble.tip_change is not None:
        tip = {**_save_member(ensemble.tip_change, root, "tip_change"),
               "threshold": ensemble.tip_change_threshold}
    versions = {"package_version": __version__}
    if not ensemble.all_networks:
        import sklearn
        import skops

        versions.update(sklearn_version=sklearn.__version__, skops_version=skops.__version__)
    if any(_is_network(m.model) for m in ensemble.networks):
        from qcodes_stmtip.classify.keras_backend import keras

        versions["keras_version"] = keras.__version__
    manifest = {
        "format_version": FORMAT_VERSION,
        "surface": ensemble.surface,
        "classes": list(ensemble.classes),
        "good_classes": sorted(ensemble.good_classes),
        "preprocessing": preprocessing_parameters(image_size),
        **ensemble_fields(ensemble, members, tip, training_data, metrics),
        **versions,
    }
    if notice:
        (root / "NOTICE").write_text(notice.rstrip() + "\n")
        manifest["notice"] = "NOTICE"
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, allow_nan=True) + "\n")
    return root


def declare_member_sizes(path: str | Path) -> Path:
    """Add the ``size``, ``inflated_size`` and ``shapes`` fields to every member entry of an
    existing bundle's manifest (bundles saved before issue 26); the member files are not
    touched, so predictions stay exactly the same. Returns the manifest path.

    The shapes come from the manifest itself (classes, image size; feature members: this
    version's feature count), the sizes from the files; :func:`load_bundle` then checks both.
    """
    root = Path(path)
    manifest = read_manifest(root)
    size = int(manifest["preprocessing"].get("image_size", IMAGE_SIZE))
    for section in (manifest, manifest.get("partial") or None):
        if section is None:
            continue
        entries = [(e, len(manifest["classes"])) for e in section["members"]]
        if section.get("tip_change"):
            entries.append((section["tip_change"], 2))
        for entry, outputs in entries:
            kind = entry.get("kind", "keras")
            if kind == "keras":
                shapes = {"input": [size, size, 1], "outputs": outputs}
            else:
                from qcodes_stmtip.classify.features import feature_names

                shapes = {"features": len(feature_names(size)), "outputs": outputs}
            declared = {**_archive_declarations(_member_file(root, entry["file"], str(root))),
                        "shapes": shapes}
            items = list(entry.items())
            at = [k for k, _ in items].index("sha256") + 1
            entry.clear()
            entry.update([*[(k, v) for k, v in items[:at] if k not in declared], *declared.items(),
                          *[(k, v) for k, v in items[at:] if k not in declared]])
    mpath = root / MANIFEST
    mpath.write_text(json.dumps(manifest, indent=2, allow_nan=True) + "\n")
    read_manifest(root)
    return mpath


def _check_schema(manifest: object, mpath: Path) -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(MANIFEST_SCHEMA)
    error = jsonschema.exceptions.best_match(validator.iter_errors(manifest))
    if error is not None:
        where = error.json_path.replace("$.", "", 1) if error.json_path != "$" else "manifest"
        raise BundleError(f"{mpath}: {where}: {error.message[:200]}")


def read_manifest(path: str | Path) -> dict:
    """Read and check ``BUNDLE/manifest.json`` (no models loaded; see module doc)."""
    root = Path(path)
    if not root.is_dir():
        raise BundleError(f"{root}: model bundle directory not found")
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise BundleError(f"{root}: not a model bundle (no {MANIFEST})")
    if mpath.stat().st_size > 16 << 20:
        raise BundleError(f"{mpath}: manifest is larger than 16 MiB")
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise BundleError(f"{mpath}: manifest is not valid JSON ({type(exc).__name__})") from exc
    _check_schema(manifest, mpath)
    version = manifest["format_version"]
    if version not in READABLE_VERSIONS:
        raise BundleError(f"{mpath}: format_version: {version!r} is not supported (reads {READABLE_VERSIONS})")
    from qcodes_stmtip.taxonomy import CLASSES

    surface = manifest["surface"]
    if surface not in CLASSES:
        raise BundleError(f"{mpath}: surface: unknown surface {surface!r}")
    if tuple(manifest["classes"]) != CLASSES[surface]:
        raise BundleError(
            f"{mpath}: classes: {manifest['classes']} do not match the {surface} classes {CLASSES[surface]}"
        )
    unknown = sorted(set(manifest.get("good_classes", ())) - set(manifest["classes"]))
    if unknown:
        raise BundleError(f"{mpath}: good_classes: {unknown} are not among the classes")
    entries: list[tuple[str, dict]] = []
    # the full-frame ensemble, then the optional partial-frame one (same checks, "partial." prefix)
    for prefix, section in (("", manifest), ("partial.", manifest.get("partial") or None)):
        if section is None:
            continue
        for c in manifest["classes"]:
            t = section["thresholds"].get(c)
            if not isinstance(t, int | float) or isinstance(t, bool) or not math.isfinite(t) or not 0 <= t <= 1:
                raise BundleError(f"{mpath}: {prefix}thresholds.{c}: must be a number in 0..1, got {t!r}")
        weights = (section.get("inference") or {}).get("class_weights")
        if weights is not None and (len(weights) != len(manifest["classes"])
                                    or not all(math.isfinite(w) for w in weights)):
            raise BundleError(f"{mpath}: {prefix}inference.class_weights: must be one positive number per class")
        tip = section.get("tip_change")
        if tip and "threshold" in tip and not (math.isfinite(tip["threshold"]) and 0 <= tip["threshold"] <= 1):
            raise BundleError(f"{mpath}: {prefix}tip_change.threshold: must be a number in 0..1, "
                              f"got {tip['threshold']!r}")
        entries += [(f"{prefix}members[{i}]", e) for i, e in enumerate(section["members"])]
        entries += [(f"{prefix}tip_change", tip)] if tip else []
    size = int(manifest["preprocessing"].get("image_size", IMAGE_SIZE))
    seen_files: dict[object, str] = {}
    seen_hashes: dict[str, str] = {}
    declared_total = 0  # bytes every member archive inflates to
    for where, e in entries:
        kind = e.get("kind", "keras")
        if version == 1 and kind != "keras":
            raise BundleError(f"{mpath}: {where}.kind: format 1 holds Keras members only, got {kind!r}")
        if not e["file"].endswith(MEMBER_KINDS[kind]):
            raise BundleError(f"{mpath}: {where}.file: a {kind} member must end in {MEMBER_KINDS[kind]}")
        file = _member_file(root, e["file"], f"{mpath}: {where}.file")
        try:
            stat = file.stat()
            key: object = (stat.st_dev, stat.st_ino)
        except OSError:
            key = file.resolve()
        for seen, value, field in ((seen_files, key, "file"), (seen_hashes, e["sha256"], "sha256")):
            if value in seen:
                raise BundleError(f"{mpath}: {where}.{field}: the same member file as {seen[value]} "
                                  "(each member must be a file of its own)")
            seen[value] = where
        outputs = 2 if where.endswith("tip_change") else len(manifest["classes"])
        _check_shapes(e, kind, outputs, size, f"{mpath}: {where}.shapes")
        if file.is_file():  # every archive is checked before any member is read
            declared_total += _check_archive(file, e, f"{mpath}: {where}")
    if declared_total > MAX_BUNDLE_INFLATED:
        raise BundleError(f"{mpath}: members: they inflate to {declared_total} bytes in all, "
                          f"more than the {MAX_BUNDLE_INFLATED} a bundle may hold")
    return manifest


def _check_shapes(entry: dict, kind: str, outputs: int, size: int, where: str) -> None:
    """The member's declared ``shapes`` against the manifest's classes and image size."""
    shapes = entry.get("shapes")
    if shapes is None:
        return
    if shapes.get("outputs", outputs) != outputs:
        raise BundleError(f"{where}.outputs: {shapes['outputs']}, but the manifest's classes give {outputs}")
    if kind == "keras":
        if "features" in shapes:
            raise BundleError(f"{where}.features: a keras member takes images, not features")
        if shapes.get("input", [size, size, 1]) != [size, size, 1]:
            raise BundleError(f"{where}.input: {shapes['input']}, but the image size is {size} ({[size, size, 1]})")
        return
    if "input" in shapes:
        raise BundleError(f"{where}.input: a feature member takes features, not images")
    from qcodes_stmtip.classify.features import feature_names

    n_features = len(feature_names(size))
    if shapes.get("features", n_features) != n_features:
        raise BundleError(f"{where}.features: {shapes['features']}, but this version computes "
                          f"{n_features} features of a {size}-pixel image")


def _check_archive(file: Path, entry: dict, where: str) -> int:
    """Check a member archive from its central directory, before any entry is read: the file
    size cap, the number of entries, no duplicate names, and every entry's inflated size against the
    manifest's ``inflated_size`` (an upper bound, itself at most :data:`MAX_MEMBER_INFLATED`).
    Returns the inflated total.

    Reading an entry never yields more than its declared size (``zipfile`` stops there and
    fails the CRC check), so this bounds what loading the member can inflate.
    """
    actual = file.stat().st_size
    if actual > MAX_MEMBER_BYTES:
        raise BundleError(f"{file}: {actual} bytes, more than a member may be ({MAX_MEMBER_BYTES})")
    limit = min(int(entry.get("inflated_size", MAX_MEMBER_INFLATED)), MAX_MEMBER_INFLATED)
    try:
        with zipfile.ZipFile(file) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return 0  # not an archive: it inflates nothing (its loader refuses it, naming the file)
    if len(infos) > MAX_ARCHIVE_ENTRIES:
        raise BundleError(f"{file}: {len(infos)} archive entries, more than {MAX_ARCHIVE_ENTRIES}")
    names: set[str] = set()
    total = 0
    for info in infos:
        if info.filename in names:
            raise BundleError(f"{file}: archive entry {info.filename!r} appears twice")
        names.add(info.filename)
        total += info.file_size
        if total > limit:
            field = f"{where}.inflated_size" if "inflated_size" in entry else "the member limit"
            raise BundleError(f"{file}: archive entry {info.filename!r} inflates to {info.file_size} "
                              f"bytes; the entries reach {total} bytes, more than {limit} ({field})")
    return total


def _member_file(root: Path, rel: str, where: str) -> Path:
    """``root / rel`` when it is a regular file inside the bundle (no absolute path, ``..`` or symlink)."""
    parts = PurePosixPath(rel).parts
    if PurePosixPath(rel).is_absolute() or Path(rel).is_absolute() or ".." in parts or "\\" in rel:
        raise BundleError(f"{where}: {rel!r} is not a relative path inside the bundle")
    file = root / rel
    for k in range(1, len(parts) + 1):
        if (root.joinpath(*parts[:k])).is_symlink():
            raise BundleError(f"{where}: {rel!r} is a symbolic link; members must be plain files in the bundle")
    try:
        file.resolve().relative_to(root.resolve())
    except ValueError:
        raise BundleError(f"{where}: {rel!r} points outside the bundle") from None
    return file


def _load_member(root: Path, entry: dict, n_outputs: int, size: int, default_name: str) -> Member:
    file = _member_file(root, entry["file"], f"{root / MANIFEST}")
    if not file.is_file():
        raise BundleError(f"{file}: member model file missing")
    where = f"{root / MANIFEST}: member {entry['file']!r}"
    _check_archive(file, entry, where)
    if _sha256(file) != entry["sha256"]:
        raise BundleError(f"{file}: SHA-256 does not match the manifest (corrupt or replaced)")
    if "size" in entry and file.stat().st_size > entry["size"]:
        raise BundleError(f"{file}: {file.stat().st_size} bytes, more than {where}.size declares "
                          f"({entry['size']})")
    name = entry.get("name", default_name)
    architecture = entry.get("architecture", "?")
    if entry.get("kind", "keras") == "sklearn":
        from qcodes_stmtip.classify.feature_model import FEATURE_KINDS, FeatureModel

        if architecture not in FEATURE_KINDS:
            raise BundleError(f"{file}: architecture {architecture!r} is not a feature-model kind {FEATURE_KINDS}")
        try:
            model = FeatureModel.load(file, architecture, n_outputs, size, name)
        except Exception as exc:  # skops raises many types for bad archives
            raise BundleError(f"{file}: cannot load feature model ({type(exc).__name__}: {exc})"[:400]) from exc
    else:
        model = _load_model(file, n_outputs, size)
    return Member(name, architecture, model, entry.get("training"))


def _load_model(file: Path, n_outputs: int, size: int):
    from qcodes_stmtip.classify.keras_backend import keras

    try:
        model = keras.saving.load_model(file, safe_mode=True, compile=False)
    except Exception as exc:  # keras raises many types for bad archives
        raise BundleError(f"{file}: cannot load Keras model ({type(exc).__name__}: {exc})"[:400]) from exc
    if tuple(model.input_shape[1:]) != (size, size, 1):
        raise BundleError(f"{file}: input shape {model.input_shape} does not match image size {size}")
    if model.output_shape[-1] != n_outputs:
        raise BundleError(f"{file}: {model.output_shape[-1]} outputs, expected {n_outputs}")
    for weight in model.weights:
        if not np.all(np.isfinite(np.asarray(weight))):
            raise BundleError(f"{file}: weight {weight.path!r} holds non-finite values (NaN or inf)")
    return model


def load_bundle(path: str | Path, surface: str | None = None) -> Ensemble:
    """Load a bundle as an :class:`Ensemble` (``.manifest`` attached); check ``surface`` if given."""
    root = Path(path)
    manifest = read_manifest(root)
    if surface is not None and manifest["surface"] != surface:
        raise BundleError(f"{root}: bundle is for surface {manifest['surface']!r}, not {surface!r}")
    classes = tuple(manifest["classes"])
    size = int(manifest["preprocessing"].get("image_size", IMAGE_SIZE))
    members = [_load_member(root, e, len(classes), size, f"member{i}")
               for i, e in enumerate(manifest["members"])]
    tip = None
    if manifest.get("tip_change"):
        tip = _load_member(root, manifest["tip_change"], 2, size, "tip_change")
    thresholds = [float(manifest["thresholds"][c]) for c in classes]
    inference = manifest.get("inference") or {}
    views = {key: bool(inference.get(key, False)) for key in ("tta", "tip_change_vertical_flip")}
    decision, rule = None, "calibrated"
    if manifest.get("decision"):
        from qcodes_stmtip.classify.decision import BadTipDecision

        try:
            decision = BadTipDecision.from_dict(manifest["decision"])
        except ValueError as exc:
            raise BundleError(f"{root / MANIFEST}: decision: {exc}") from None
        rule = manifest["decision"].get("rule", "calibrated")
    ens = Ensemble(
        manifest["surface"], classes, members, thresholds=thresholds, tip_change=tip,
        tip_change_threshold=float((manifest.get("tip_change") or {}).get("threshold", 0.5)),
        good_classes=frozenset(manifest.get("good_classes", ())) or None,
        class_weights=inference.get("class_weights"), decision=decision, decision_rule=rule, **views,
    )
    ens.manifest = manifest
    ens.path = root
    return ens


def default_bundle_path(surface: str, *, simulated: bool = False) -> Path:
    """The shipped default bundle of ``surface``; :class:`BundleError` if none is installed.

    ``simulated`` asks for the bundle trained on simulated frames only (``<surface>-sim``,
    for the simulator and as the sim-to-real baseline); surfaces without real training data
    ship only that kind under their plain name, which is returned either way.
    """
    names = [f"{surface}-sim", surface] if simulated else [surface]
    for name in names:
        path = DEFAULT_BUNDLES / name
        if (path / MANIFEST).is_file():
            return path
    raise BundleError(f"no default bundle shipped for surface {surface!r} (looked in {DEFAULT_BUNDLES / names[0]})")
