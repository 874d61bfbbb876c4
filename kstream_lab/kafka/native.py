"""Replay's native fetch: ``rdfetch.c`` built against confluent-kafka's librdkafka, driven by ctypes.

Why it exists: reading a range through confluent-kafka costs ~1 us of GIL-held Python work per
record (a Message object and four method calls), and on two cores that, not librdkafka, bounded
replay (bench/README.md, "Where the CPU goes"). The C loop writes a consumed chunk straight into
columns -- NumPy arrays and Arrow buffers -- with the GIL released, so the decoding thread runs
meanwhile.

It is the same librdkafka, configured from the same settings (security included), so it reads the
same records as the Python path; it is used by bounded reads only (``kafka.read``), never
by the workers. Building needs a C compiler; without one, or with a client configuration only
Python can express (callbacks), replay falls back to the confluent-kafka path. The library is
built once per source and librdkafka version into ``Settings.native_cache_dir`` (``make setup``
does it; otherwise the first replay does).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pyarrow as pa

from kstream_lab.errors import BrokerError, ConfigError

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("rdfetch.c")
_I64, _VOID = ctypes.c_int64, ctypes.c_void_p


class NativeUnavailable(ConfigError):
    """The native fetch cannot be built or used here (the reason says why)."""


class _Sizes(ctypes.Structure):
    _fields_ = [
        (name, _I64)
        for name in ("data", "value_bytes", "key_bytes", "headers", "header_name_bytes", "header_value_bytes", "events")
    ]


class _Out(ctypes.Structure):
    _fields_ = [
        *(
            (name, _VOID)
            for name in (
                "values",
                "value_len",
                "partition",
                "offset",
                "timestamp",
                "keys",
                "key_off",
                "key_valid",
                "header_off",
                "header_valid",
                "header_names",
                "header_name_off",
                "header_values",
                "header_value_off",
                "header_value_valid",
                "event_err",
                "event_partition",
                "event_offset",
                "event_text",
            )
        ),
        ("event_text_size", ctypes.c_int32),
    ]


def librdkafka_path() -> Path:
    """The librdkafka confluent-kafka runs on: the copy its wheel bundles, else the system's."""
    import ctypes.util

    import confluent_kafka

    bundled = sorted((Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs").glob("librdkafka*.so*"))
    if bundled:
        return bundled[0]
    found = ctypes.util.find_library("rdkafka")
    if found is None:
        raise NativeUnavailable("librdkafka not found (neither bundled with confluent-kafka nor installed)")
    return Path(found)


def build(cache_dir: Path) -> Path:
    """Compile rdfetch.c against librdkafka once; the file name carries a hash of both."""
    lib = librdkafka_path()
    digest = hashlib.sha256(SOURCE.read_bytes() + str(lib.resolve()).encode()).hexdigest()[:16]
    out = cache_dir / f"rdfetch-{digest}.so"
    if out.exists():
        return out
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise NativeUnavailable(
            "no C compiler (cc) on PATH to build replay's native fetch",
            hint="install gcc (apt-get install gcc); replay uses the slower Python fetch meanwhile",
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    cmd = [cc, "-O2", "-shared", "-fPIC", "-o", str(tmp), str(SOURCE)]
    # A bare file path links librdkafka by its soname -- the one confluent-kafka already loaded.
    cmd += [str(lib), f"-Wl,-rpath,{lib.parent}"] if "/" in str(lib) else [f"-l:{lib}"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as exc:
        raise NativeUnavailable(
            f"cannot run the C compiler {cc!r}: {exc}", hint="set CC to a working compiler"
        ) from None
    if done.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise NativeUnavailable(
            f"building replay's native fetch failed: {done.stderr.strip()[-800:]}", hint=f"command: {' '.join(cmd)}"
        )
    os.replace(tmp, out)  # atomic: concurrent builders end with the same file
    return out


@cache
def load(cache_dir: Path) -> ctypes.CDLL:
    """The built library with its signatures (ctypes.CDLL calls release the GIL)."""
    import confluent_kafka  # noqa: F401 -- loads librdkafka first, so the library binds to that copy

    lib = ctypes.CDLL(str(build(cache_dir)))
    lib.kl_open.restype = _VOID
    lib.kl_open.argtypes = [
        ctypes.c_int,
        ctypes.POINTER(ctypes.c_char_p),
        ctypes.POINTER(ctypes.c_char_p),
        ctypes.c_char_p,
        ctypes.c_int,
    ]
    lib.kl_assign.argtypes = [_VOID, ctypes.c_char_p, ctypes.c_int, _VOID, _VOID]
    lib.kl_pause.argtypes = [_VOID, ctypes.c_char_p, ctypes.c_int32]
    lib.kl_err2str.restype = ctypes.c_char_p
    lib.kl_err2str.argtypes = [ctypes.c_int]
    lib.kl_poll.restype = _I64
    lib.kl_poll.argtypes = [_VOID, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Sizes)]
    lib.kl_fill.argtypes = [_VOID, ctypes.POINTER(_Out)]
    lib.kl_close.argtypes = [_VOID]
    return lib


def native_config(conf: dict[str, object]) -> dict[str, str]:
    """A client configuration as librdkafka strings; NativeUnavailable for what only Python can set
    (callbacks such as an OAuth token refresher). The Python logger is dropped: the C side drops
    librdkafka's log lines, as the Python path does unless logging is configured."""
    out = {}
    for key, value in conf.items():
        if key in ("logger", "error_cb"):  # the default error_cb: the C loop gets errors as events
            continue
        if callable(value) or not isinstance(value, str | int | float | bool):
            raise NativeUnavailable(f"client setting {key!r} is a Python object; the native fetch cannot pass it")
        out[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


@dataclass
class Chunk:
    """One consumed chunk in columns (data messages only) plus its events (error messages)."""

    values: np.ndarray  # uint8: every value followed by a newline
    value_len: np.ndarray  # int32, -1 for null values
    partition: np.ndarray  # int32
    offset: np.ndarray  # int64
    timestamp: np.ndarray | None
    keys: pa.Array | None  # large_binary
    headers: pa.Array | None  # list<struct<key: large_string, value: large_binary>>; None if no message had any
    headers_taken: bool  # headers were asked for (``headers`` None then means none had any)
    events: list[tuple[int, int, int]]  # (error code, partition, offset)
    event_text: str

    def __len__(self) -> int:
        return len(self.offset)

    def slice(self, start: int, stop: int) -> Chunk:
        """Records ``start:stop`` without copying: one partition's run, or a cut at a range's end."""
        skip = int((np.maximum(self.value_len[:start], 0) + 1).sum()) if start else 0
        size = int((np.maximum(self.value_len[start:stop], 0) + 1).sum())

        def arrow(col: pa.Array | None) -> pa.Array | None:
            return None if col is None else col.slice(start, stop - start)

        rows = slice(start, stop)
        return Chunk(
            self.values[skip : skip + size],
            self.value_len[rows],
            self.partition[rows],
            self.offset[rows],
            None if self.timestamp is None else self.timestamp[rows],
            arrow(self.keys),
            arrow(self.headers),
            self.headers_taken,
            [],
            "",
        )

    def runs(self) -> list[tuple[int, Chunk]]:
        """(partition, records) for each run of one partition, in order. kl_fill groups a chunk by
        partition, so this is one run per partition present (more only past 64 partitions)."""
        parts = self.partition
        if not len(parts):
            return []
        cuts = [0, *(np.flatnonzero(parts[1:] != parts[:-1]) + 1).tolist(), len(parts)]
        if len(cuts) == 2:
            return [(int(parts[0]), self)]
        return [(int(parts[a]), self.slice(a, b)) for a, b in zip(cuts, cuts[1:], strict=False)]


class NativeConsumer:
    """An assign-only consumer (read_committed unless configured otherwise) whose chunks come back as
    columns (see ``Chunk``)."""

    def __init__(self, lib: ctypes.CDLL, conf: dict[str, str]) -> None:
        self._lib = lib
        names = (ctypes.c_char_p * len(conf))(*(k.encode() for k in conf))
        values = (ctypes.c_char_p * len(conf))(*(v.encode() for v in conf.values()))
        err = ctypes.create_string_buffer(512)
        self._h = lib.kl_open(len(conf), names, values, err, len(err))
        if not self._h:
            raise ConfigError(
                f"client configuration rejected: {err.value.decode(errors='replace')}",
                hint="check KSTREAM_CLIENT_CONFIG and the security settings",
            )
        self._sizes = _Sizes()

    def assign(self, topic: str, starts: dict[int, int]) -> None:
        parts = np.array(sorted(starts), dtype=np.int32)
        offsets = np.array([starts[p] for p in sorted(starts)], dtype=np.int64)
        code = self._lib.kl_assign(self._h, topic.encode(), len(parts), parts.ctypes.data, offsets.ctypes.data)
        if code:
            why = self._lib.kl_err2str(code).decode()
            raise BrokerError(f"cannot assign {topic} partitions {sorted(starts)}: {why}")

    def pause(self, topic: str, partition: int) -> None:
        self._lib.kl_pause(self._h, topic.encode(), partition)

    def poll(
        self, max_messages: int, timeout_ms: int, *, keys: bool = True, timestamps: bool = True, headers: bool = True
    ) -> Chunk | None:
        """Up to ``max_messages`` records (None when none came within the timeout)."""
        s = self._sizes
        got = self._lib.kl_poll(self._h, max_messages, timeout_ms, int(headers), ctypes.byref(s))
        if got < 0:
            raise BrokerError(f"consume failed: {self._lib.kl_err2str(int(got)).decode()}")
        if got == 0:
            return None
        n, h = s.data, s.headers
        cols = {
            "values": np.empty(s.value_bytes, np.uint8),
            "value_len": np.empty(n, np.int32),
            "partition": np.empty(n, np.int32),
            "offset": np.empty(n, np.int64),
            "event_err": np.empty(s.events, np.int32),
            "event_partition": np.empty(s.events, np.int32),
            "event_offset": np.empty(s.events, np.int64),
        }
        if timestamps:
            cols["timestamp"] = np.empty(n, np.int64)
        if keys:
            cols |= {
                "keys": np.empty(s.key_bytes, np.uint8),
                "key_off": np.empty(n + 1, np.int64),
                "key_valid": np.empty(n, np.uint8),
            }
        if headers:
            cols |= {
                "header_off": np.empty(n + 1, np.int32),
                "header_valid": np.empty(n, np.uint8),
                "header_names": np.empty(s.header_name_bytes, np.uint8),
                "header_name_off": np.empty(h + 1, np.int64),
                "header_values": np.empty(s.header_value_bytes, np.uint8),
                "header_value_off": np.empty(h + 1, np.int64),
                "header_value_valid": np.empty(h, np.uint8),
            }
        text = ctypes.create_string_buffer(512) if s.events else None
        out = _Out(
            **{k: a.ctypes.data for k, a in cols.items()},
            event_text=ctypes.addressof(text) if text else None,
            event_text_size=len(text) if text else 0,
        )
        self._lib.kl_fill(self._h, ctypes.byref(out))
        return Chunk(
            cols["values"],
            cols["value_len"],
            cols["partition"],
            cols["offset"],
            cols.get("timestamp"),
            _binary(n, cols["keys"], cols["key_off"], cols["key_valid"]) if keys else None,
            _headers(n, h, cols) if headers and h else None,
            headers,
            list(
                zip(
                    cols["event_err"].tolist(),
                    cols["event_partition"].tolist(),
                    cols["event_offset"].tolist(),
                    strict=True,
                )
            ),
            text.value.decode(errors="replace") if text else "",
        )

    def close(self) -> None:
        if self._h:
            self._lib.kl_close(self._h)
            self._h = None


def _validity(valid: np.ndarray) -> tuple[pa.Buffer | None, int]:
    nulls = len(valid) - int(np.count_nonzero(valid))
    return (pa.py_buffer(np.packbits(valid.view(bool), bitorder="little")) if nulls else None), nulls


def _binary(
    n: int, data: np.ndarray, offsets: np.ndarray, valid: np.ndarray, kind: pa.DataType = pa.large_binary()
) -> pa.Array:
    bitmap, nulls = _validity(valid)
    return pa.Array.from_buffers(kind, n, [bitmap, pa.py_buffer(offsets), pa.py_buffer(data)], null_count=nulls)


def _headers(n: int, h: int, cols: dict[str, np.ndarray]) -> pa.Array:
    fields = pa.StructArray.from_arrays(
        [
            _binary(h, cols["header_names"], cols["header_name_off"], np.ones(h, np.uint8), pa.large_string()),
            _binary(h, cols["header_values"], cols["header_value_off"], cols["header_value_valid"]),
        ],
        names=["key", "value"],
    )
    bitmap, nulls = _validity(cols["header_valid"])
    kind = pa.list_(fields.type)
    return pa.Array.from_buffers(
        kind, n, [bitmap, pa.py_buffer(cols["header_off"])], null_count=nulls, children=[fields]
    )


def main() -> int:
    """``python -m kstream_lab.kafka.native``: build the library now (``make setup`` runs it)."""
    from kstream_lab.settings import Settings

    try:
        print(f"replay's native fetch: {build(Settings().native_cache_dir)}")
    except NativeUnavailable as exc:
        print(f"error: {exc}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
