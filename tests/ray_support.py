"""Helpers for the Ray tests: a private local Ray instance, the local CLI's rows as reference,
what the readers of a Delta table (deltalake, DuckDB, Polars, pandas) see, and a local S3
endpoint (moto's server mode on 127.0.0.1)."""

from __future__ import annotations

import math
import os
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

from gifsent_infer.cli import main
from gifsent_infer.contract import EMOTIONS
from gifsent_infer.writing.outputs import COLUMNS, read_rows


def init_local_ray(ray, num_cpus: int = 2) -> None:
    """A new local Ray instance on free ports; address="local" so that it is never a
    cluster another process on this machine started (plain ray.init() would join one)."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(
        address="local",
        num_cpus=num_cpus,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=200 << 20,
        configure_logging=False,
    )


def local_rows(model: Path, gifs: Path, out: Path) -> dict[str, dict]:
    """The local CLI's rows for the same inputs, keyed by path."""
    try:
        main([str(gifs), "--out", str(out), "--model", str(model), "--device", "cpu", "--quiet"])
    except SystemExit as e:
        assert e.code in (0, 1)  # 1: some inputs failed
    return {r["path"]: r for r in read_rows(out).rows}


def assert_same_rows(got: list[dict], want: dict[str, dict]) -> None:
    paths = [r["path"] for r in got]
    assert Counter(paths) == Counter(list(want)), "not one row per input"
    for row in got:
        assert_same_row(row, want[row["path"]])


def assert_same_row(row: dict, ref: dict) -> None:
    assert tuple(row) == tuple(ref)  # COLUMNS plus the same extras (the default `top`)
    assert set(COLUMNS) <= set(row)
    for c in ref:
        if c in EMOTIONS and row[c] is not None and ref[c] is not None:
            assert math.isclose(row[c], ref[c], rel_tol=0, abs_tol=1e-6), (row["path"], c)
        elif c == "top" and row[c] is not None and ref[c] is not None:
            # the same scores as the emotions' columns, so the same tolerance: a GIF scored in
            # another batch (the driver's warm-up, a partial batch) may differ in the last
            # float32 bit
            assert [t["emotion"] for t in row[c]] == [t["emotion"] for t in ref[c]], row["path"]
            for a, b in zip(row[c], ref[c], strict=True):
                assert math.isclose(a["score"], b["score"], rel_tol=0, abs_tol=1e-6), row["path"]
        else:
            assert row[c] == ref[c], (row["path"], c, row[c], ref[c])


def reader_rows(table: str | Path, reader: str) -> list[dict]:
    """The table's latest snapshot as one of the README's readers sees it."""
    from deltalake import DeltaTable

    uri = str(table)
    if reader == "deltalake":
        return DeltaTable(uri).to_pyarrow_table().to_pylist()
    if reader == "pandas":  # missing values come back as NaN (pandas' null)
        frame = DeltaTable(uri).to_pandas()
        return [{k: _plain(v) for k, v in r.items()} for r in frame.to_dict("records")]
    if reader == "polars":
        import polars as pl

        return pl.read_delta(uri).to_dicts()
    if reader == "duckdb":  # DuckDB scans the snapshot's Arrow dataset (no extension needed)
        import duckdb

        con = duckdb.connect()
        try:
            con.register("snapshot", DeltaTable(uri).to_pyarrow_dataset())
            return con.sql("select * from snapshot").arrow().read_all().to_pylist()
        finally:
            con.close()
    raise ValueError(reader)


def _plain(v):
    """pandas' values as the other readers give them: None for NaN, lists for arrays."""
    if isinstance(v, float) and math.isnan(v):
        return None
    if hasattr(v, "tolist"):
        return v.tolist()
    return v


READERS = ("deltalake", "duckdb", "polars")


def assert_exactly_once(table: str | Path, want: dict[str, dict], readers=READERS) -> None:
    """Every reader sees one row per input, and the local CLI's rows."""
    for reader in readers:
        rows = reader_rows(table, reader)
        twice = {p: n for p, n in Counter(r["path"] for r in rows).items() if n > 1}
        assert not twice, f"{reader} sees two rows for {sorted(twice)}"
        assert_same_rows(rows, want)


@contextmanager
def s3_server(bucket: str = "gifsent-test"):
    """A local S3 endpoint (moto's server mode, on 127.0.0.1 and a free port) with one bucket;
    the AWS_* variables point this process (and the Ray workers it starts) at it."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket=bucket)
        yield client, bucket
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


def upload_folder(client, bucket: str, folder: Path, prefix: str) -> dict[str, str]:
    """Upload a folder's files; returns local path -> s3 URI."""
    names = {}
    for p in sorted(folder.iterdir()):
        client.put_object(Bucket=bucket, Key=f"{prefix}/{p.name}", Body=p.read_bytes())
        names[str(p)] = f"s3://{bucket}/{prefix}/{p.name}"
    return names


def renamed(want: dict[str, dict], names: dict[str, str]) -> dict[str, dict]:
    """The local CLI's rows under the names the same inputs have in the store."""
    return {names[k]: {**r, "path": names[k]} for k, r in want.items()}
