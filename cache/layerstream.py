"""A layer's tar stream on its way to the store, on three threads.

The caller's thread produces tar bytes (reading files, building headers); a second
thread hashes them (the diff_id) and compresses them; a third hands the result to the
BlobWriter, which hashes the blob and writes it. hashlib, zstandard, ISA-L and file
writes release the GIL, so on two cores or more the stages overlap. Small writes
(headers, small files) are gathered into blocks of ``batch`` bytes; at most ``depth``
blocks wait before each thread, so memory stays bounded whatever the layer's size. The
compressors' output does not depend on how their input is split (``cache.codecs``),
so the blocks' sizes never change the blob.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from types import TracebackType

from cache.codecs import Compressor
from cache.digest import Digest, Sha256
from cache.store import BlobWriter

_BATCH = 1 << 20
_DEPTH = 3


class _Stage:
    """A worker thread applying ``step`` to each block put to it, in order.

    After ``step`` raised, later blocks are dropped (so ``put`` never blocks for good)
    and ``close`` raises the error again on the caller's thread.
    """

    def __init__(self, name: str, step: Callable[[bytes | None], None], depth: int) -> None:
        self._step = step  # None: the end of the stream
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def put(self, block: bytes) -> None:
        self.raise_error()
        self._queue.put(block)

    def close(self) -> None:
        """End the stream and wait for the thread; raises what ``step`` raised."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self.raise_error()

    def raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _work(self) -> None:
        while True:
            block = self._queue.get()
            if self._error is None:
                try:
                    self._step(block)
                except BaseException as exc:  # raised again on the caller's thread
                    self._error = exc
            if block is None:
                return


class LayerStream:
    """tar bytes -> sha256 (diff_id) and compressor (a thread) -> BlobWriter (another
    thread, which hashes the blob and writes it to disk).

    Use as a context manager: leaving it (normally or by an exception) stops and joins
    the threads, so the blob file is never written to after the block. ``finish`` ends
    the stream; an error raised on a thread (a full disk) is raised again there.
    """

    def __init__(
        self, compressor: Compressor, out: BlobWriter, batch: int = _BATCH, depth: int = _DEPTH
    ) -> None:
        self._compressor = compressor
        self._out = out
        self._batch = batch
        self._diff = Sha256()  # updated on the compressing thread
        self._sent = 0
        self._pending = bytearray()
        self._writer = _Stage("layer-write", self._write_blob, depth)
        self._packer = _Stage("layer-compress", self._compress, depth)

    @property
    def size(self) -> int:
        """tar bytes written so far."""
        return self._sent + len(self._pending)

    def write(self, data: bytes) -> None:
        if not self._pending and len(data) >= self._batch:
            self._send(data)  # a whole block already: no copy
            return
        self._pending += data
        if len(self._pending) >= self._batch:
            self._send(bytes(self._pending))
            self._pending.clear()

    def finish(self) -> Digest:
        """Send what is left, wait for the threads; returns the diff_id."""
        if self._pending:
            self._send(bytes(self._pending))
            self._pending.clear()
        self._packer.close()
        self._writer.close()
        return self._diff.digest()

    def __enter__(self) -> LayerStream:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # After an error: stop both threads (each drains its queue, so this cannot hang);
        # the error being raised is the one that counts.
        for stage in (self._packer, self._writer):
            with contextlib.suppress(BaseException):
                stage.close()

    def _send(self, block: bytes) -> None:
        self._sent += len(block)
        self._packer.put(block)

    def _compress(self, block: bytes | None) -> None:
        if block is not None:
            self._diff.update(block)
        packed = self._compressor.compress(block) if block is not None else self._flush()
        if packed:
            self._writer.put(packed)

    def _flush(self) -> bytes:
        return self._compressor.flush()

    def _write_blob(self, block: bytes | None) -> None:
        if block is not None:
            self._out.write(block)
