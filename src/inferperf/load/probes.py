"""Pipeline probes: request generators and the pre-/post-processing whose cost each query pays.

A served request passes the five stages of the InferBench pipeline tier — pre-processing, transmission,
queue/batching wait, inference, post-processing — and the generators time each one per query. This
module supplies what the first and last stages do:

- images: synthetic PNGs (smooth gradients plus noise, encoded in memory) or the files of a directory;
  pre-processing decodes, resizes (bilinear) to the model's input, normalises with the ImageNet mean/std
  and lays the tensor out as NCHW or NHWC. PNG is decoded here with zlib + numpy; with Pillow installed
  any format Pillow reads (JPEG included) works too.
- text: synthetic sentences or the lines of a file; pre-processing is a whitespace tokenizer whose ids
  are a stable hash of the word into the model's vocabulary ([CLS] … [SEP], padded, with an attention
  mask). No vocabulary file and no hub download: the ids are as valid for a random-weight model as any.
- tensors: seeded random inputs built once (no pre-processing stage: the generator measures the system).

Post-processing is a numerically stable softmax and a top-k over the first output's last axis.
"""

from __future__ import annotations

import importlib.util
import re
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inferperf.errors import ConfigError

WORKLOAD_KINDS = ("auto", "tensor", "image", "text")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".npy"}
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
PAD_ID, UNK_ID, CLS_ID, SEP_ID = 0, 1, 2, 3
_RESERVED_IDS = 4

_WORD_TEXT = (
    "the of and to in is was for on that with as by at from his it an were are which this be has had not "
    "or have but their they one its first new after who been all two more when also other there into time "
    "year during would can city over only some most such may then these where people used them both later "
    "three well many before made through states between under part while school team world known same "
    "model image server request latency batch network queue stage result system measure data value train "
    "predict layer kernel memory energy device cloud service client tensor token input output run load"
)
_WORDS = tuple(_WORD_TEXT.split())


# ------------------------------------------------------------------------------------------------ PNG


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(img: np.ndarray) -> bytes:
    """An 8-bit grey, RGB or RGBA image (H×W[×C] uint8) as PNG bytes (filter 0, zlib level 6)."""
    if img.dtype != np.uint8:
        raise ConfigError("encode_png needs a uint8 image")
    if img.ndim == 2:
        img = img[:, :, None]
    h, w, c = img.shape
    color = {1: 0, 3: 2, 4: 6}.get(c)
    if color is None:
        raise ConfigError(f"encode_png handles 1, 3 or 4 channels, not {c}")
    raw = np.concatenate([np.zeros((h, 1), dtype=np.uint8), img.reshape(h, w * c)], axis=1).tobytes()
    header = struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(raw, 6))
            + _png_chunk(b"IEND", b""))


def _unfilter_sequential(f: int, line: list[int], prev: list[int], bpp: int) -> list[int]:
    """PNG Average (3) and Paeth (4) reconstruction of one row, byte by byte."""
    cur = [0] * len(line)
    for i, x in enumerate(line):
        a = cur[i - bpp] if i >= bpp else 0
        b = prev[i]
        if f == 3:
            cur[i] = (x + (a + b) // 2) & 0xFF
            continue
        c = prev[i - bpp] if i >= bpp else 0
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
        cur[i] = (x + pred) & 0xFF
    return cur


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes → H×W×C uint8 (8-bit grey/RGB/RGBA/grey+alpha, non-interlaced, all five filters)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ConfigError("not a PNG file")
    pos, idat, header = 8, [], None
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if header is None:
        raise ConfigError("PNG without IHDR")
    w, h, depth, color, _, _, interlace = header
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(color)
    if depth != 8 or channels is None or interlace:
        raise ConfigError(f"PNG of depth {depth}, colour type {color}, interlace {interlace} needs Pillow")
    stride = w * channels
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8)
    if raw.size != h * (stride + 1):
        raise ConfigError("truncated PNG data")
    rows = raw.reshape(h, stride + 1)
    filters, lines = rows[:, 0], rows[:, 1:]
    if not filters.any():
        return lines.reshape(h, w, channels).copy()
    out = np.zeros((h, stride), dtype=np.uint8)
    bpp = channels
    prev = np.zeros(stride, dtype=np.uint8)
    for y in range(h):
        line, f = lines[y], filters[y]
        if f == 0:
            cur = line.copy()
        elif f == 1:  # Sub: a running sum along the row, per channel, modulo 256
            cur = (np.cumsum(line.reshape(w, bpp).astype(np.uint32), axis=0) % 256).astype(np.uint8).ravel()
        elif f == 2:  # Up
            cur = line + prev
        elif f in (3, 4):  # Average / Paeth depend on the bytes just decoded: sequential by nature
            cur = np.frombuffer(bytes(_unfilter_sequential(int(f), line.tolist(), prev.tolist(), bpp)),
                                dtype=np.uint8)
        else:
            raise ConfigError(f"invalid PNG filter type {f}")
        out[y] = cur
        prev = cur
    return out.reshape(h, w, channels)


def pillow_available() -> bool:
    return importlib.util.find_spec("PIL") is not None


def decode_image(data: bytes) -> np.ndarray:
    """Any image Pillow reads (when installed), else PNG or .npy bytes; returns H×W×3 uint8."""
    if data[:6] == b"\x93NUMPY":
        import io

        img = np.load(io.BytesIO(data), allow_pickle=False)
    elif pillow_available():
        import io

        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            img = np.asarray(im.convert("RGB"))
    else:
        img = decode_png(data)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    elif img.shape[2] >= 4:
        img = img[:, :, :3]
    elif img.shape[2] == 2:
        img = np.repeat(img[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(img.astype(np.uint8, copy=False))


def resize_bilinear(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """H×W×C → height×width×C float32, bilinear with half-pixel centres (as OpenCV/PIL resize)."""
    h, w = img.shape[:2]
    if (h, w) == (height, width):
        return img.astype(np.float32)
    ys = np.clip((np.arange(height) + 0.5) * h / height - 0.5, 0, h - 1)
    xs = np.clip((np.arange(width) + 0.5) * w / width - 0.5, 0, w - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy = (ys - y0).astype(np.float32)[:, None, None]
    wx = (xs - x0).astype(np.float32)[None, :, None]
    a = img.astype(np.float32)
    top = a[y0][:, x0] * (1 - wx) + a[y0][:, x1] * wx
    bottom = a[y1][:, x0] * (1 - wx) + a[y1][:, x1] * wx
    return top * (1 - wy) + bottom * wy


def synthetic_images(count: int, height: int = 256, width: int = 256, seed: int = 0,
                     fmt: str = "png") -> list[bytes]:
    """``count`` camera-like images (gradients, a few shapes, sensor noise), encoded in memory."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    out = []
    for _ in range(count):
        base = rng.uniform(0, 255, size=3)
        gy, gx = rng.uniform(-0.5, 0.5, size=(2, 3))
        img = base + yy[:, :, None] * gy + xx[:, :, None] * gx
        for _ in range(3):
            cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(8, max(9, height / 4))
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
            img[mask] = rng.uniform(0, 255, size=3)
        img += rng.normal(0, 6, size=img.shape)
        arr = np.clip(img, 0, 255).astype(np.uint8)
        if fmt == "png":
            out.append(encode_png(arr))
        elif fmt in ("jpeg", "jpg"):
            if not pillow_available():
                raise ConfigError("JPEG encoding needs Pillow (pip install pillow); use fmt='png'")
            import io

            from PIL import Image

            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, format="JPEG", quality=90)
            out.append(buf.getvalue())
        else:
            raise ConfigError(f"unknown image format {fmt!r} (png or jpeg)")
    return out


def load_image_dir(path: str | Path, limit: int = 256) -> list[bytes]:
    """The bytes of up to ``limit`` image files in a directory (sorted by name)."""
    root = Path(path)
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not files:
        raise ConfigError(f"{root} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return [p.read_bytes() for p in files]


# ------------------------------------------------------------------------------------------------ text


class WhitespaceTokenizer:
    """Lower-cased word pieces → ids by a stable hash into ``[4, vocab_size)``; [CLS] words [SEP] + padding."""

    def __init__(self, vocab_size: int, seq_len: int) -> None:
        if vocab_size <= _RESERVED_IDS:
            raise ConfigError(f"vocabulary of {vocab_size} ids is too small for a tokenizer")
        if seq_len < 2:
            raise ConfigError("sequence length must be at least 2 ([CLS] and [SEP])")
        self.vocab_size = int(vocab_size)
        self.seq_len = int(seq_len)
        self._split = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")
        self._cache: dict[str, int] = {}

    def word_id(self, word: str) -> int:
        wid = self._cache.get(word)
        if wid is None:
            wid = _RESERVED_IDS + zlib.crc32(word.encode()) % (self.vocab_size - _RESERVED_IDS)
            if len(self._cache) < 100_000:
                self._cache[word] = wid
        return wid

    def encode(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """``(input_ids, attention_mask)`` of shape [seq_len], int64."""
        words = self._split.findall(text.lower())[: self.seq_len - 2]
        ids = [CLS_ID, *(self.word_id(w) for w in words), SEP_ID]
        n = len(ids)
        out = np.full(self.seq_len, PAD_ID, dtype=np.int64)
        out[:n] = ids
        mask = np.zeros(self.seq_len, dtype=np.int64)
        mask[:n] = 1
        return out, mask


def synthetic_texts(count: int, seed: int = 0, min_words: int = 8, max_words: int = 64) -> list[str]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        n = int(rng.integers(min_words, max_words + 1))
        words = [_WORDS[int(i)] for i in rng.integers(0, len(_WORDS), size=n)]
        out.append(" ".join(words).capitalize() + ".")
    return out


def load_text_file(path: str | Path, limit: int = 4096) -> list[str]:
    lines = [ln.strip() for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()][:limit]
    if not lines:
        raise ConfigError(f"{path} holds no non-empty lines")
    return lines


# ------------------------------------------------------------------------------------------------ post


def softmax_topk(logits: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Top-k probabilities and indices along the last axis (numerically stable softmax)."""
    x = np.asarray(logits, dtype=np.float32)
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    p = e / e.sum(axis=-1, keepdims=True)
    k = min(k, p.shape[-1])
    idx = np.argpartition(-p, k - 1, axis=-1)[..., :k]
    top = np.take_along_axis(p, idx, axis=-1)
    order = np.argsort(-top, axis=-1)
    return np.take_along_axis(top, order, axis=-1), np.take_along_axis(idx, order, axis=-1)


def postprocess(outputs: dict[str, np.ndarray], k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Softmax + top-k of the first output (the classification head of the served models)."""
    first = next(iter(outputs.values()))
    return softmax_topk(first, k)


# ------------------------------------------------------------------------------------------------ workloads


@dataclass
class Workload:
    """A pool of samples and how one of them becomes model inputs.

    ``feeds`` (tensor workloads) are ready; ``raw`` items go through ``preprocess`` per query.
    """

    kind: str
    source: str
    feeds: list[dict[str, np.ndarray]] = field(default_factory=list)
    raw: list[Any] | None = None
    preprocess: Callable[[Any], dict[str, np.ndarray]] | None = None
    postprocess: Callable[[dict[str, np.ndarray]], Any] | None = None

    @property
    def sample_count(self) -> int:
        return len(self.raw) if self.raw is not None else len(self.feeds)

    def sample_feeds(self, i: int) -> dict[str, np.ndarray]:
        """Model inputs of sample ``i`` (pre-processed now for raw workloads)."""
        if self.raw is not None:
            assert self.preprocess is not None
            return self.preprocess(self.raw[i])
        return self.feeds[i]

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "source": self.source, "samples": self.sample_count,
                "pipeline": self.raw is not None}


def _image_layout(specs: Sequence[Any]) -> tuple[str, int, int, int] | None:
    """(layout, channels, height, width) when the model takes one float image, else None."""
    floats = [s for s in specs if s.dtype.startswith("float")]
    if len(specs) != 1 or len(floats) != 1 or len(floats[0].row_shape) != 3:
        return None
    a, b, c = floats[0].row_shape
    if a in (1, 3) and b > 4 and c > 4:
        return "NCHW", a, b, c
    if c in (1, 3) and a > 4 and b > 4:
        return "NHWC", c, a, b
    return None


def _text_inputs(specs: Sequence[Any]) -> bool:
    return any(s.name in ("input_ids", "input") and s.dtype.startswith("int") for s in specs) and all(
        s.dtype.startswith("int") and len(s.row_shape) == 1 for s in specs)


def build_workload(
    specs: Sequence[Any],
    *,
    kind: str = "auto",
    source: str | None = None,
    count: int = 64,
    seed: int = 0,
    metadata: dict[str, Any] | None = None,
    rows: int = 1,
    example_feeds: Callable[[int, int], dict[str, np.ndarray]] | None = None,
) -> Workload:
    """The samples a run sends: synthetic or user files, images, text or tensors (see the module doc).

    ``specs`` are the model inputs (``name``, ``dtype``, ``row_shape``); ``source`` a directory of images
    or a text file (then ``kind`` follows from it). ``example_feeds(rows, seed)`` builds tensor samples.
    """
    metadata = metadata or {}
    if kind not in WORKLOAD_KINDS:
        raise ConfigError(f"workload must be one of {', '.join(WORKLOAD_KINDS)} or a path; got {kind!r}")
    if source is not None:
        p = Path(source)
        if not p.exists():
            raise ConfigError(f"workload source {source} does not exist")
        kind = "image" if p.is_dir() else "text"
    layout = _image_layout(specs)
    if kind == "auto":
        kind = "image" if layout else "text" if _text_inputs(specs) else "tensor"
    if kind == "tensor":
        if example_feeds is None:
            raise ConfigError("a tensor workload needs a feed generator")
        # tensors measure the system itself: no pre-processing, and no post-processing either
        return Workload("tensor", "random", feeds=[example_feeds(rows, seed + i) for i in range(count)])
    if kind == "image":
        if layout is None:
            raise ConfigError("an image workload needs a model with one float image input (N,3,H,W or N,H,W,3)")
        order, channels, height, width = layout
        name = specs[0].name
        raw = load_image_dir(source, count) if source else synthetic_images(count, height + height // 7,
                                                                            width + width // 7, seed)

        def pre_image(data: bytes) -> dict[str, np.ndarray]:
            img = resize_bilinear(decode_image(data), height, width) / 255.0
            img = (img - IMAGENET_MEAN) / IMAGENET_STD if channels == 3 else img.mean(axis=2, keepdims=True)
            t = img.transpose(2, 0, 1) if order == "NCHW" else img
            t = np.ascontiguousarray(t, dtype=np.float32)[None]
            return {name: np.repeat(t, rows, axis=0) if rows > 1 else t}

        return Workload("image", str(source or "synthetic png"), raw=raw, preprocess=pre_image,
                        postprocess=postprocess)
    if not _text_inputs(specs):
        raise ConfigError("a text workload needs a model whose inputs are integer token sequences")
    seq_len = specs[0].row_shape[0]
    vocab = int(metadata.get("vocab_size") or 1000)
    tok = WhitespaceTokenizer(vocab, seq_len)
    texts = load_text_file(source, count) if source else synthetic_texts(count, seed)
    names = [s.name for s in specs]
    dtypes = {s.name: np.dtype(s.dtype) for s in specs}

    def pre_text(text: str) -> dict[str, np.ndarray]:
        ids, mask = tok.encode(text)
        out = {}
        for n in names:
            ln = n.lower()
            if "mask" in ln:
                arr = mask
            elif "token_type" in ln:
                arr = np.zeros_like(ids)
            elif "position" in ln:
                arr = np.arange(seq_len, dtype=np.int64)
            else:
                arr = ids
            a = arr.astype(dtypes[n], copy=False)[None]
            out[n] = np.repeat(a, rows, axis=0) if rows > 1 else a
        return out

    return Workload("text", str(source or "synthetic sentences"), raw=texts, preprocess=pre_text,
                    postprocess=postprocess)
