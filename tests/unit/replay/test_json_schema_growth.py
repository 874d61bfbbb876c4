"""JSON has no schema: fields that first appear in later batches are kept from then on (earlier rows
read null), in memory and through a Parquet export whose files then differ in columns."""

from __future__ import annotations

import json

import polars as pl

from kstream_lab.kafka.read import Batch
from kstream_lab.replay.decode import BatchDecoder
from kstream_lab.replay.parquet import scan_export
from kstream_lab.settings import Settings


def raw(records: list[dict], start: int) -> Batch:
    values = [json.dumps(r).encode() for r in records]
    n = len(values)
    return Batch.of("t", 0, values, offsets=list(range(start, start + n)))


def test_a_field_that_appears_in_a_later_batch_is_kept() -> None:
    decoder = BatchDecoder(Settings(), "t", "json")
    first = decoder.decode(raw([{"id": i, "cents": 10 * i} for i in range(3000)], 0))
    later = [{"id": i, "cents": i, **({"coupon": f"C{i}"} if i % 10 == 0 else {})} for i in range(3000, 6000)]
    second = decoder.decode(raw(later, 3000))
    assert "coupon" not in first.columns and second.schema["coupon"] == pl.String
    df = pl.concat([first, second], how="diagonal_relaxed")
    assert df.height == 6000 and df["coupon"].drop_nulls().to_list() == [f"C{i}" for i in range(3000, 6000, 10)]
    assert df.filter(pl.col("offset") < 3000)["coupon"].null_count() == 3000


def test_the_first_batch_schema_looks_past_its_first_thousand_records() -> None:
    records = [{"id": i, **({"tier": "gold"} if i >= 1500 else {})} for i in range(3000)]
    frame = BatchDecoder(Settings(), "t", "json").decode(raw(records, 0))
    assert frame["tier"].drop_nulls().len() == 1500


def test_an_export_whose_files_differ_in_columns_scans_as_their_union(tmp_path) -> None:
    folder = tmp_path / "partition-0"
    folder.mkdir()
    pl.DataFrame({"partition": [0, 0], "offset": [0, 1], "id": [1, 2]}).write_parquet(
        folder / "part-00000000000000000000.parquet"
    )
    pl.DataFrame({"partition": [0], "offset": [2], "id": [3], "coupon": ["C"]}).write_parquet(
        folder / "part-00000000000000000002.parquet"
    )
    df = scan_export(tmp_path).collect()
    assert df.rows() == [(0, 0, 1, None), (0, 1, 2, None), (0, 2, 3, "C")]


def test_raw_values_keep_their_exact_bytes_and_nulls() -> None:
    from kstream_lab.replay.decode import binary_column

    values = [b"\x00\x01", b"", None, b"with\nnewline", b"\n"]
    col = binary_column(Batch.of("t", 0, values).values)
    assert col.dtype == pl.Binary and col.to_list() == values


def test_json_with_tombstones_and_a_value_spanning_lines_is_decoded_record_by_record() -> None:
    values = [b'{"id": 1}', None, b'{\n  "id": 3\n}', b"not json", b'{"id": 5}']
    decoder = BatchDecoder(Settings(), "t", "json")
    df = decoder.decode(Batch.of("t", 0, values))
    assert df["offset"].to_list() == [0, 1, 2, 4] and df["id"].to_list() == [1, None, 3, 5]
    assert decoder.bad == 1 and decoder.first_bad == (0, 3, "not a JSON object: starts with b'not json'")


def test_a_value_that_does_not_fit_the_columns_is_skipped_not_the_whole_read() -> None:
    """A later record with a string where the columns hold integers is one bad record: it is counted
    with its offset and reason, the rest of the batch (tombstones too) is kept in offset order."""
    decoder = BatchDecoder(Settings(), "t", "json")
    decoder.decode(raw([{"id": i, "cents": 10 * i} for i in range(100)], 0))
    later = [json.dumps({"id": i, "cents": 10 * i}).encode() for i in range(100, 110)]
    later[3] = b'{"id": 103, "cents": "abc"}'
    later[6] = None  # a tombstone stays, with null fields
    frame = decoder.decode(Batch.of("t", 0, later, offsets=list(range(100, 110))))
    assert frame["offset"].to_list() == [100, 101, 102, 104, 105, 106, 107, 108, 109]
    assert frame["cents"].to_list() == [1000, 1010, 1020, 1040, 1050, None, 1070, 1080, 1090]
    assert frame.schema["cents"] == pl.Int64
    assert decoder.bad == 1
    p, offset, reason = decoder.first_bad
    assert (p, offset) == (0, 103) and "does not match the expected columns/types" in reason


def test_an_explicit_schema_fixes_the_columns_and_skips_sampling() -> None:
    decoder = BatchDecoder(Settings(), "t", "json", schema={"id": pl.Int32, "cents": pl.Int64, "note": pl.String})
    frame = decoder.decode(raw([{"id": i, "cents": i, "extra": True} for i in range(50)], 0))
    assert frame.select("id", "cents", "note").schema == pl.Schema(
        {"id": pl.Int32, "cents": pl.Int64, "note": pl.String}
    )
    assert "extra" not in frame.columns and frame["note"].null_count() == 50 and frame["cents"].sum() == 1225


def test_schema_names_from_a_file_or_command_line_are_checked_per_field() -> None:
    from kstream_lab.errors import ConfigError
    from kstream_lab.replay.decode import json_schema_from_names

    assert json_schema_from_names({"c": "Int64", "t": "Datetime[ms]", "s": "String"}) == pl.Schema(
        {"c": pl.Int64, "t": pl.Datetime("ms"), "s": pl.String}
    )
    for bad, field in (({"c": "int"}, "'c'"), ({"c": "Int64", "t": "Datetime[s]"}, "'t'")):
        try:
            json_schema_from_names(bad, where="--schema f.json")
        except ConfigError as exc:
            assert str(exc).startswith(f"--schema f.json: field {field}") and "Int64" in exc.hint
        else:
            raise AssertionError(f"{bad} accepted")
    try:
        BatchDecoder(Settings(), "t", "avro", schema={"c": pl.Int64})
    except ConfigError as exc:
        assert "applies to JSON values" in str(exc)
    else:
        raise AssertionError("schema= accepted for Avro")


def test_tombstones_before_any_columns_are_known_stay_as_rows() -> None:
    decoder = BatchDecoder(Settings(), "t", "json")
    first = decoder.decode(Batch.of("t", 0, [None, None]))
    assert first["offset"].to_list() == [0, 1] and first.columns[-1] == "headers"  # no value columns yet
    later = decoder.decode(Batch.of("t", 0, [None, b'{"a": 1}', None], offsets=[5, 6, 7]))
    assert later.select("offset", "a").rows() == [(5, None), (6, 1), (7, None)]
    other = BatchDecoder(Settings(), "t", "json")
    only_bad = other.decode(Batch.of("t", 0, [None, b"bad", None]))
    assert only_bad["offset"].to_list() == [0, 2] and other.bad == 1
