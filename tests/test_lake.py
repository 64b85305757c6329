"""The lake on a local folder and on an S3-compatible server (moto, on loopback)."""
import hashlib

import pyarrow as pa
import pytest

from eval_pipeline.stores.lake import Lake


@pytest.fixture(params=["local", "s3"])
def any_lake(request, tmp_path):
    if request.param == "local":
        return Lake(str(tmp_path / "lake"))
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    return Lake(f"s3://{bucket}/prefix", s3_endpoint_url=endpoint)


def test_parquet_round_trip_with_checksum(any_lake):
    table = pa.table({"doc_id": [1, 2, 3], "prompt": ["a", "b", "c"]})
    stored = any_lake.write_table("x/t.parquet", table)
    assert stored.rows == 3
    assert any_lake.read_table("x/t.parquet").equals(table)
    assert hashlib.sha256(any_lake.read_bytes("x/t.parquet")).hexdigest() == stored.sha256
    assert any_lake.list("x") == ["x/t.parquet"]


def test_a_failed_write_leaves_nothing_visible(any_lake):
    schema = pa.schema([("v", pa.int64())])
    with pytest.raises(RuntimeError):
        with any_lake.parquet_writer("y/partial.parquet", schema) as sink:
            sink.write(pa.table({"v": list(range(1000))}))
            raise RuntimeError("crash after the first chunk")
    assert not any_lake.exists("y/partial.parquet")
    assert any_lake.list() == []


def test_a_rewrite_replaces_the_whole_file(any_lake):
    any_lake.write_bytes("m.json", b'{"v": 1}')
    any_lake.write_bytes("m.json", b'{"v": 2}')
    assert any_lake.read_bytes("m.json") == b'{"v": 2}'


def test_paths_cannot_leave_the_lake(any_lake):
    for bad in ("../x.parquet", "/etc/passwd", "a/../../b"):
        with pytest.raises(ValueError):
            any_lake.write_bytes(bad, b"x")


def test_two_homes_keep_their_state_apart(tmp_path):
    from eval_pipeline.stores.settings import Settings

    a = Settings.from_env({"EVAL_PIPELINE_HOME": str(tmp_path / "a")})
    b = Settings.from_env({"EVAL_PIPELINE_HOME": str(tmp_path / "b")})
    assert {a.database_url, a.lake_url, str(a.dagster_home)}.isdisjoint(
        {b.database_url, b.lake_url, str(b.dagster_home)})
    assert str(tmp_path / "a") in a.database_url and a.dagster_home == tmp_path / "a" / "dagster"
