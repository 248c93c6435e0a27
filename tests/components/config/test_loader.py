"""Tests for components.config.loader and components.config.schema."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from components.config import ConfigError, load_params, load_section, validate_section
from components.data.config import ClipParams, DemoSource, FolderSource, IngestParams, ManifestSource

REPO_PARAMS = Path(__file__).resolve().parents[3] / "params.yaml"

MINIMAL = {"sources": [{"kind": "demo", "videos": ["sports2d/demo"]}]}


def _ingest(**overrides) -> dict:
    """A valid ingest section with ``overrides`` merged in (nested dicts replace whole keys)."""
    return {**MINIMAL, **overrides}


def _write_params(tmp_path: Path, data) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _error(section_data: dict) -> str:
    with pytest.raises(ConfigError) as exc:
        validate_section("ingest", section_data)
    return str(exc.value)


# --- valid sections -----------------------------------------------------------------------------


def test_minimal_ingest_section_gets_defaults() -> None:
    p = validate_section("ingest", MINIMAL)
    assert isinstance(p, IngestParams)
    assert p.clip == ClipParams()
    assert (p.clip.frames, p.clip.stride, p.clip.fps, p.clip.height, p.clip.width) == (17, 17, 16.0, 96, 144)
    assert p.clip.fit == "auto"
    assert p.output == Path("data/ingest")
    assert p.reports == Path("reports/ingest")
    assert p.val_fraction == 0.2
    assert p.limits.min_side == 64
    assert isinstance(p.sources[0], DemoSource)
    assert p.sources[0].videos == ["sports2d/demo"]


def test_nested_values_are_taken_over() -> None:
    p = validate_section("ingest", _ingest(clip={"frames": 25, "fps": 8, "fit": "pad"}, seed=7))
    assert (p.clip.frames, p.clip.fps, p.clip.fit, p.seed) == (25, 8.0, "pad", 7)
    assert p.clip.stride == 17  # untouched default


def test_sources_are_discriminated_by_kind(tmp_path: Path) -> None:
    p = validate_section(
        "ingest",
        {
            "sources": [
                {"kind": "demo", "videos": ["sports2d/demo"]},
                {"kind": "folder", "path": str(tmp_path), "recursive": False},
                {"kind": "manifest", "path": str(tmp_path / "m.csv")},
            ]
        },
    )
    demo, folder, manifest = p.sources
    assert type(demo) is DemoSource
    assert type(folder) is FolderSource
    assert folder.path == tmp_path and folder.recursive is False
    assert ".mp4" in folder.extensions
    assert type(manifest) is ManifestSource
    assert manifest.path == tmp_path / "m.csv"


def test_repository_params_yaml_validates() -> None:
    p = load_section("ingest", REPO_PARAMS)
    assert isinstance(p, IngestParams)
    assert p.clip.frames % 8 == 1
    assert {s.kind for s in p.sources} == {"demo", "synthetic"}  # the embedded default


# --- invalid sections name the bad key ------------------------------------------------------------


def test_unknown_key_is_named_with_its_dotted_path() -> None:
    msg = _error(_ingest(clip={"frmes": 17}))
    assert "ingest.clip.frmes" in msg
    assert "unknown key" in msg


def test_unknown_top_level_key_is_named() -> None:
    msg = _error(_ingest(sourcs=[]))
    assert "ingest.sourcs" in msg and "unknown key" in msg


def test_ill_typed_value_is_named() -> None:
    msg = _error(_ingest(clip={"frames": "abc"}))
    assert "ingest.clip.frames" in msg
    assert "'abc'" in msg
    assert "unknown key" not in msg


def test_frames_not_8n_plus_1_fails() -> None:
    msg = _error(_ingest(clip={"frames": 16}))
    assert "ingest.clip.frames" in msg
    assert "8N+1" in msg
    assert "16" in msg


@pytest.mark.parametrize("key", ["height", "width"])
def test_odd_size_fails(key: str) -> None:
    msg = _error(_ingest(clip={key: 97}))
    assert f"ingest.clip.{key}" in msg
    assert "even" in msg


def test_every_bad_key_is_listed() -> None:
    msg = _error(_ingest(clip={"frames": 16, "height": 97, "frmes": 1}))
    for key in ("ingest.clip.frames", "ingest.clip.height", "ingest.clip.frmes"):
        assert key in msg


def test_unknown_source_kind_fails_naming_sources() -> None:
    msg = _error({"sources": [{"kind": "youtube", "path": "x"}]})
    assert "ingest.sources" in msg
    assert "youtube" in msg


def test_unknown_key_inside_a_source_is_named() -> None:
    msg = _error({"sources": [{"kind": "folder", "path": "x", "recursve": False}]})
    assert "ingest.sources.0.folder.recursve" in msg and "unknown key" in msg


def test_empty_sources_fail() -> None:
    assert "ingest.sources" in _error({"sources": []})


def test_missing_sources_fail() -> None:
    assert "ingest.sources" in _error({})


def test_min_side_over_max_side_fails() -> None:
    msg = _error(_ingest(limits={"min_side": 100, "max_side": 50}))
    assert "min_side" in msg


def test_unknown_section_fails() -> None:
    with pytest.raises(ConfigError, match="unknown params section 'train'"):
        validate_section("train", {})


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_models_are_frozen() -> None:
    p = validate_section("ingest", MINIMAL)
    with pytest.raises(ValidationError, match="frozen"):
        p.seed = 3  # type: ignore[misc]


# --- loading params.yaml ------------------------------------------------------------------------


def test_load_section_from_file(tmp_path: Path) -> None:
    path = _write_params(tmp_path, {"ingest": _ingest(seed=5), "train": {"anything": 1}})
    p = load_section("ingest", path)
    assert p.seed == 5


def test_load_section_error_names_the_file(tmp_path: Path) -> None:
    path = _write_params(tmp_path, {"ingest": _ingest(clip={"frmes": 17})})
    with pytest.raises(ConfigError) as exc:
        load_section("ingest", path)
    assert str(path) in str(exc.value)
    assert "ingest.clip.frmes" in str(exc.value)


def test_missing_file_raises_config_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="params file not found") as exc:
        load_section("ingest", path)
    assert str(path) in str(exc.value)


def test_malformed_yaml_raises_config_error(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("ingest:\n  clip: [1, 2\n  seed: :\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_section("ingest", path)


def test_non_mapping_top_level_raises_config_error(tmp_path: Path) -> None:
    path = _write_params(tmp_path, ["ingest", "train"])
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_params(path)


def test_missing_section_raises_config_error(tmp_path: Path) -> None:
    path = _write_params(tmp_path, {"train": {"lr": 1}})
    with pytest.raises(ConfigError, match="section 'ingest' is missing"):
        load_section("ingest", path)


def test_empty_file_loads_as_empty_mapping(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("", encoding="utf-8")
    assert load_params(path) == {}


def test_overrides_replace_top_level_keys(tmp_path: Path) -> None:
    path = _write_params(tmp_path, {"ingest": _ingest(seed=1, clip={"frames": 25, "stride": 4})})
    new_sources = [{"kind": "folder", "path": str(tmp_path)}]
    p = load_section("ingest", path, overrides={"seed": 9, "sources": new_sources, "clip": {"fps": 8}})
    assert p.seed == 9
    assert len(p.sources) == 1 and isinstance(p.sources[0], FolderSource)
    # the clip key is replaced whole, not merged: frames/stride are back at their defaults
    assert (p.clip.fps, p.clip.frames, p.clip.stride) == (8.0, 17, 17)


def test_overrides_are_validated(tmp_path: Path) -> None:
    path = _write_params(tmp_path, {"ingest": MINIMAL})
    with pytest.raises(ConfigError, match=r"ingest\.val_fraction"):
        load_section("ingest", path, overrides={"val_fraction": 1.5})


def test_overrides_do_not_touch_the_file(tmp_path: Path) -> None:
    path = _write_params(tmp_path, {"ingest": _ingest(seed=1)})
    before = path.read_text(encoding="utf-8")
    load_section("ingest", path, overrides={"seed": 2})
    assert path.read_text(encoding="utf-8") == before
    assert load_section("ingest", path).seed == 1
