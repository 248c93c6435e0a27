"""The one save/load convention: config.json carries format and version beside the fields; reading checks
both, names the folder and the writer, and upgrades the versions a format still reads."""

from __future__ import annotations

import json

import pytest

from components.io.pretrained import ArtifactFormat, FormatError, read_config, write_config

FMT = ArtifactFormat(
    "thing", 3, "Thing.save_pretrained", legacy={2: lambda c: {"size": c["old_size"]}},
    legacy_file="thing.json", unversioned=lambda c: {"size": c["n"]},
)  # fmt: skip


def test_round_trip_keeps_fields_and_hides_the_header(tmp_path):
    write_config(tmp_path, FMT, {"size": 4, "name": "a"})
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved == {"format": "thing", "version": 3, "size": 4, "name": "a"}
    assert list(saved) == sorted(saved)  # sorted keys: the same config gives the same bytes
    assert read_config(tmp_path, FMT) == {"size": 4, "name": "a"}
    with pytest.raises(ValueError, match=r"\['format'\] clash with the format header"):
        write_config(tmp_path, FMT, {"format": "x"})


def test_older_versions_are_upgraded_and_unknown_ones_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"format": "thing", "version": 2, "old_size": 7}))
    assert read_config(tmp_path, FMT) == {"size": 7}
    (tmp_path / "config.json").write_text(json.dumps({"format": "thing", "version": 9}))
    with pytest.raises(FormatError, match=r"thing version 9 is not readable here \(versions \[2, 3\]\)"):
        read_config(tmp_path, FMT)
    (tmp_path / "config.json").write_text(json.dumps({"format": "other", "version": 3}))
    with pytest.raises(
        FormatError, match=r"format 'other' is not 'thing' \(written by Thing.save_pretrained\)"
    ):
        read_config(tmp_path, FMT)
    (tmp_path / "config.json").write_text(json.dumps({"n": 5}))  # a bare config from before the convention
    assert read_config(tmp_path, FMT) == {"size": 5}
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(FormatError, match="not valid JSON"):
        read_config(tmp_path, FMT)


def test_legacy_file_is_read_when_config_json_is_absent(tmp_path):
    (tmp_path / "thing.json").write_text(json.dumps({"format": "thing", "version": 2, "old_size": 1}))
    assert read_config(tmp_path, FMT) == {"size": 1}


def test_missing_folder_or_config_names_the_writer_and_the_hint(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"thing folder .*nope does not exist; run the stage"):
        read_config(tmp_path / "nope", FMT, hint="run the stage")
    with pytest.raises(FileNotFoundError, match=r"config.json is missing: .* is not written by Thing"):
        read_config(tmp_path, FMT)
