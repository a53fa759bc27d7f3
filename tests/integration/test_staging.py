"""The staging area on a local folder and on S3 (moto's server): round trips and deletes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from session_stream.errors import ConfigError, LoadError
from session_stream.runs.staging import LocalStaging, S3Staging, open_staging


@pytest.fixture(params=["local", "s3"])
def area(request, tmp_path):
    if request.param == "local":
        staging = open_staging(str(tmp_path / "staging"))
    else:
        s3 = request.getfixturevalue("s3_server")
        staging = open_staging(f"s3://{s3.create_bucket()}/runs/stage", s3=s3.options())
    with staging:
        yield staging


def make_dir(root: Path) -> dict[str, bytes]:
    files = {
        "session_sessions.csv": b'a,"b\\\nc",\\N\n',
        "session_offers.csv": "é😀\t1\n".encode(),
        "nested/deeper/rejects.csv": b"",  # empty files count too
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def test_file_round_trip(area, tmp_path):
    src = tmp_path / "in.json.gz"
    src.write_bytes(os.urandom(300_000))
    area.put_file(src, "run1/files/in.json.gz")
    assert area.exists("run1/files/in.json.gz")
    assert area.exists("run1")  # a prefix with files under it
    got = area.get_file("run1/files/in.json.gz", tmp_path / "out" / "copy.json.gz")
    assert got.read_bytes() == src.read_bytes()


def test_put_replaces_an_existing_key(area, tmp_path):
    (tmp_path / "a").write_bytes(b"first")
    (tmp_path / "b").write_bytes(b"second, longer")
    area.put_file(tmp_path / "a", "k/x")
    area.put_file(tmp_path / "b", "k/x")
    assert area.get_file("k/x", tmp_path / "got").read_bytes() == b"second, longer"


def test_delete_removes_everything_under_the_prefix_and_nothing_else(area, tmp_path):
    for rel in make_dir(tmp_path / "split"):
        area.put_file(tmp_path / "split" / rel, f"run1/batch-1/{rel}")
        area.put_file(tmp_path / "split" / rel, f"run1/batch-10/{rel}")  # shares 'run1/batch-1'
    area.put_file(tmp_path / "split" / "session_offers.csv", "run1/batch-1.csv")
    area.delete("run1/batch-1")
    assert not area.exists("run1/batch-1")
    assert not area.exists("run1/batch-1/session_sessions.csv")
    assert area.exists("run1/batch-10/session_sessions.csv")
    assert area.exists("run1/batch-1.csv")
    area.delete("run1/batch-1")  # deleting what is gone is fine
    area.delete("run1/batch-1.csv")  # a single key
    assert not area.exists("run1/batch-1.csv")


def test_missing_key_is_a_load_error_with_a_hint(area, tmp_path):
    with pytest.raises(LoadError, match="missing"):
        area.get_file("nope/file.csv", tmp_path / "x")
    assert not area.exists("nope")


@pytest.mark.parametrize("key", ["../escape", "a/../../b", "a//b", ""])
def test_keys_cannot_leave_the_area(area, tmp_path, key):
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(ValueError, match="bad staging key"):
        area.put_file(tmp_path / "f", key)


def test_url_for_names_the_place(area):
    url = area.url_for("run1/f.csv")
    if isinstance(area, S3Staging):
        assert url.startswith("s3://") and url.endswith("/runs/stage/run1/f.csv")
    else:
        assert url == str(area.root / "run1" / "f.csv")


def test_local_put_and_get_do_not_copy_a_file_onto_itself(tmp_path):
    area = LocalStaging(tmp_path / "staging")
    inplace = Path(area.url_for("run1/split/x.csv"))
    inplace.parent.mkdir(parents=True)
    inplace.write_bytes(b"written in place")
    before = os.stat(inplace)
    area.put_file(inplace, "run1/split/x.csv")
    assert area.get_file("run1/split/x.csv", inplace) == inplace
    after = os.stat(inplace)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert inplace.read_bytes() == b"written in place"
    assert sorted(p.name for p in inplace.parent.iterdir()) == ["x.csv"]  # no temp copies


def test_open_staging_urls(tmp_path, s3_server):
    assert isinstance(open_staging(f"file://{tmp_path}/st"), LocalStaging)
    assert isinstance(
        open_staging(f"s3://{s3_server.create_bucket()}", s3=s3_server.options()), S3Staging
    )
    for bad in ("", "ftp://x/y", "s3:///nobucket"):
        with pytest.raises(ConfigError):
            open_staging(bad)


def test_s3_missing_bucket_is_a_config_error(s3_server, tmp_path):
    (tmp_path / "f").write_bytes(b"x")
    area = open_staging("s3://no-such-staging-bucket/p", s3=s3_server.options())
    with pytest.raises(ConfigError, match="does not exist"):
        area.exists("k")
    with pytest.raises(ConfigError, match="does not exist"):
        area.put_file(tmp_path / "f", "k")
