"""Benchmark loaders for local files: one `EvalItem` per question, whatever the released format.

Shapes (auto-detected from the columns, or forced with `fmt=`; the column mapping of each is in docs/EVAL.md):

- `imeb`          IMEB-style: question, image | images, answer | answers, entity_count, domain
- `synth`         `hyperseyes synth` items.jsonl: id, kind, question, answers, images, boxes, program, entity_count, domain
- `rl`            our RL parquet (CONTRACTS §5, what `hyperseyes synth` / `to-parquet` write): prompt, images,
                  reward_model.ground_truth, extra_info{question, answers, entity_count, domain, index}
- `mmsearch`      MMSearch end2end: sample_id, query, query_image, gt_answer, alternative_gt_answers, area, subfield
- `mmsearch_plus` MMSearch-Plus (decrypted): question, answer (list), img_1…img_5, category
- `fvqa`          FVQA (MMSearch-R1 release): data_id, prompt, images, reward_model.ground_truth, category
- `livevqa`       LiveVQA: id, question, Ground_Truth_List | Ground_Truth, img_path, topic
- `browsecomp_vl` BrowseComp-VL (WebWatcher): prompt, file_path, answer, level
- `columns`       anything else, with an explicit mapping `question=COL,answer=COL,images=COL[,domain=…,id=…]`

Files: .parquet, .jsonl, .json (a list of objects). Images may be raw bytes, `{"bytes": …}` / `{"path": …}`
dicts, PIL images or local paths (relative paths resolve against `image_root`, default the file's folder).
Remote URLs are refused with a clear error: evaluation runs offline and reproducibly on local files.
"""
from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from hyperseyes_verl.utils.images import open_image, upright
from hyperseyes_verl.utils.jsonl import read_jsonl

log = logging.getLogger(__name__)

ImageRef = Any  # bytes | str (local path) | PIL.Image.Image


@dataclass
class EvalItem:
    """One benchmark question. Images are decoded on demand (`load_images`) so big benchmarks stay cheap."""

    id: str
    benchmark: str
    question: str
    answers: list[str]
    image_refs: list[ImageRef] = field(default_factory=list)
    domain: str = "unknown"
    entity_count: int = -1
    meta: dict[str, Any] = field(default_factory=dict)  # extra per-item data (e.g. entity boxes of synth items)

    def load_images(self) -> list[Image.Image]:
        return [_decode_image(ref, self.id) for ref in self.image_refs]


class BenchmarkFormatError(ValueError):
    """A file whose shape we cannot map; the message names the columns found and what to pass."""


# ----------------------------------------------------------------------------------------------------- values


def _decode_image(ref: ImageRef, item_id: str) -> Image.Image:
    if isinstance(ref, Image.Image):
        return upright(ref).convert("RGB")
    if isinstance(ref, (bytes, bytearray, str)):
        return open_image(bytes(ref) if isinstance(ref, bytearray) else ref)
    raise BenchmarkFormatError(f"item {item_id}: cannot decode image value of type {type(ref).__name__}")


def _is_missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and np.isnan(v):
        return True
    if isinstance(v, (str, list, tuple, dict, bytes)) and len(v) == 0:
        return True
    return isinstance(v, np.ndarray) and v.size == 0


def _as_list(v: Any) -> list:
    if _is_missing(v):
        return []
    if isinstance(v, np.ndarray):
        return list(v)
    if isinstance(v, (list, tuple)):
        return list(v)
    if isinstance(v, str) and v.strip().startswith("["):
        try:
            parsed = json.loads(v)
            if isinstance(parsed, list):
                return parsed
        except json.JSONDecodeError:
            pass
    return [v]


def _answers(*values: Any) -> list[str]:
    out: list[str] = []
    for v in values:
        for a in _as_list(v):
            if isinstance(a, dict):  # {"target": [...]} (Search-R1 style ground truth)
                out.extend(str(x) for x in _as_list(a.get("target")))
            elif not _is_missing(a) and str(a).strip() and str(a).strip() not in out:
                out.append(str(a).strip())
    return out


def _image_ref(v: Any, root: Path, where: str) -> ImageRef | None:
    if _is_missing(v):
        return None
    if isinstance(v, Image.Image):
        return v
    if isinstance(v, dict):
        if not _is_missing(v.get("bytes")):
            return bytes(v["bytes"])
        if not _is_missing(v.get("path")):
            return _image_ref(v["path"], root, where)
        if not _is_missing(v.get("url")) or not _is_missing(v.get("image_url")):
            return _image_ref(v.get("url") or v.get("image_url"), root, where)
        raise BenchmarkFormatError(f"{where}: image dict without bytes/path (keys {sorted(v)})")
    if isinstance(v, (bytes, bytearray)):
        return bytes(v)
    if isinstance(v, str):
        if v.startswith(("http://", "https://")):
            raise BenchmarkFormatError(
                f"{where}: image is a remote URL ({v[:80]}); download the images and point the column at local "
                f"files (relative paths resolve against --image-root)")
        if v.startswith("data:image"):
            import base64

            return base64.b64decode(v.split(",", 1)[1])
        p = Path(v) if os.path.isabs(v) else root / v
        if not p.exists():
            raise BenchmarkFormatError(f"{where}: image file {str(p)!r} does not exist (set --image-root to the "
                                       f"folder the benchmark's image paths are relative to)")
        return str(p)
    raise BenchmarkFormatError(f"{where}: unsupported image value of type {type(v).__name__}")


def _images(values: list[Any], root: Path, where: str) -> list[ImageRef]:
    refs = []
    for v in values:
        for x in _as_list(v):
            ref = _image_ref(x, root, where)
            if ref is not None:
                refs.append(ref)
    return refs


def _prompt_text(prompt: Any) -> str:
    """Question text out of a chat-message list (last user turn), a JSON string of one, or plain text."""
    msgs = _as_list(prompt)
    for m in reversed(msgs):
        if isinstance(m, dict) and m.get("role", "user") == "user":
            content = m.get("content")
            if isinstance(content, str):
                return content
            return "".join(b.get("text", "") for b in _as_list(content) if isinstance(b, dict))
    # plain text (also one that starts with "[" without being a JSON list of messages)
    return prompt if isinstance(prompt, str) and not any(isinstance(m, dict) for m in msgs) else ""


def _clean_question(q: str) -> str:
    return q.replace("<image>", "").strip()


def _int(v: Any, default: int = -1) -> int:
    try:
        return default if _is_missing(v) else int(v)
    except (TypeError, ValueError):
        return default


def _str(v: Any, default: str = "unknown") -> str:
    return default if _is_missing(v) else str(v)


# ----------------------------------------------------------------------------------------------------- shapes

RowFn = Callable[[dict, int, Path, str], EvalItem]


def _imeb(r: dict, i: int, root: Path, bench: str) -> EvalItem:
    where = f"{bench} row {i}"
    return EvalItem(id=f"{bench}/{_str(r.get('id'), str(i))}", benchmark=bench, question=_clean_question(str(r["question"])),
                    answers=_answers(r.get("answer"), r.get("answers")),
                    image_refs=_images([r.get("images"), r.get("image")], root, where),
                    domain=_str(r.get("domain")), entity_count=_int(r.get("entity_count", r.get("num_entities"))))


def _rl(r: dict, i: int, root: Path, bench: str) -> EvalItem:
    extra = r.get("extra_info") or {}
    gt = (r.get("reward_model") or {}).get("ground_truth")
    question = extra.get("question") or _prompt_text(r.get("prompt"))
    bench = _str(r.get("data_source"), bench)
    index = _int(extra.get("index"), i)
    split = extra.get("split")
    meta = {k: v for k, v in extra.items() if k not in ("question", "answers", "index", "domain", "entity_count")}
    return EvalItem(id=f"{bench}/{split + '/' if split else ''}{index}", benchmark=bench,
                    question=_clean_question(str(question)), answers=_answers(extra.get("answers"), gt),
                    image_refs=_images([r.get("images")], root, f"{bench} row {i}"),
                    domain=_str(extra.get("domain")), entity_count=_int(extra.get("entity_count")), meta=meta)


def _synth(r: dict, i: int, root: Path, bench: str) -> EvalItem:
    # Boxes and the question's program (its structure, not its answer) feed the scripted strategies;
    # the entity names stay out of `meta`, so nothing downstream can read the answer from it.
    meta = {k: r[k] for k in ("kind", "boxes", "program", "layout") if k in r}
    return EvalItem(id=f"{bench}/{_str(r.get('id'), str(i))}", benchmark=bench, question=_clean_question(str(r["question"])),
                    answers=_answers(r.get("answers")), image_refs=_images([r.get("images")], root, f"{bench} row {i}"),
                    domain=_str(r.get("domain")), entity_count=_int(r.get("entity_count")), meta=meta)


def _mmsearch(r: dict, i: int, root: Path, bench: str) -> EvalItem:
    return EvalItem(id=f"{bench}/{_str(r.get('sample_id'), str(i))}", benchmark=bench, question=str(r["query"]),
                    answers=_answers(r.get("gt_answer"), r.get("alternative_gt_answers")),
                    image_refs=_images([r.get("query_image")], root, f"{bench} row {i}"),
                    domain=_str(r.get("area")), meta={"subfield": _str(r.get("subfield"))})


def _mmsearch_plus(r: dict, i: int, root: Path, bench: str) -> EvalItem:
    cols = sorted((k for k in r if k.startswith("img_") and k[4:].isdigit()), key=lambda k: int(k[4:]))
    return EvalItem(id=f"{bench}/{_str(r.get('id'), str(i))}", benchmark=bench, question=str(r["question"]),
                    answers=_answers(r.get("answer")), image_refs=_images([r.get(c) for c in cols], root, f"{bench} row {i}"),
                    domain=_str(r.get("category")), meta={"difficulty": _str(r.get("difficulty"))})


def _fvqa(r: dict, i: int, root: Path, bench: str) -> EvalItem:
    gt = (r.get("reward_model") or {}).get("ground_truth") if isinstance(r.get("reward_model"), dict) else None
    return EvalItem(id=f"{bench}/{_str(r.get('data_id'), str(i))}", benchmark=bench,
                    question=_clean_question(_prompt_text(r.get("prompt")) or str(r.get("question", ""))),
                    answers=_answers(gt, r.get("answer")), image_refs=_images([r.get("images")], root, f"{bench} row {i}"),
                    domain=_str(r.get("category")))


def _livevqa(r: dict, i: int, root: Path, bench: str) -> EvalItem:
    return EvalItem(id=f"{bench}/{_str(r.get('id'), str(i))}", benchmark=bench, question=str(r["question"]),
                    answers=_answers(r.get("Ground_Truth_List"), r.get("Ground_Truth")),
                    image_refs=_images([r.get("image"), r.get("img_path")], root, f"{bench} row {i}"),
                    domain=_str(r.get("topic")), meta={"level": _str(r.get("level"))})


def _browsecomp_vl(r: dict, i: int, root: Path, bench: str) -> EvalItem:
    return EvalItem(id=f"{bench}/{_str(r.get('id'), str(i))}", benchmark=bench, question=_prompt_text(r["prompt"]),
                    answers=_answers(r.get("answer")),
                    image_refs=_images([r.get("image"), r.get("file_path")], root, f"{bench} row {i}"),
                    domain=_str(r.get("level")))


@dataclass(frozen=True)
class Shape:
    fn: RowFn
    required: tuple[tuple[str, ...], ...]  # each inner tuple: at least one of these columns
    default_name: str


# Order matters: the most specific shapes are tried first.
SHAPES: dict[str, Shape] = {
    "synth": Shape(_synth, (("question",), ("answers",), ("program",)), "synthetic"),
    "rl": Shape(_rl, (("prompt",), ("reward_model",), ("extra_info",)), "synthetic"),
    "fvqa": Shape(_fvqa, (("prompt",), ("reward_model",), ("images",)), "fvqa"),
    "mmsearch": Shape(_mmsearch, (("query",), ("gt_answer",)), "mmsearch"),
    "mmsearch_plus": Shape(_mmsearch_plus, (("question",), ("answer",), ("img_1",)), "mmsearch_plus"),
    "livevqa": Shape(_livevqa, (("question",), ("Ground_Truth_List", "Ground_Truth")), "livevqa"),
    "browsecomp_vl": Shape(_browsecomp_vl, (("prompt",), ("answer",), ("file_path", "image")), "browsecomp_vl"),
    "imeb": Shape(_imeb, (("question",), ("answer", "answers"), ("image", "images")), "imeb"),
}


def _matches(shape: Shape, cols: set[str]) -> bool:
    return all(any(c in cols for c in alts) for alts in shape.required)


def _read_rows(path: Path) -> list[dict]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if suffix == ".jsonl":
        try:
            return read_jsonl(path, what="benchmark row")
        except ValueError as e:  # names the file and line
            raise BenchmarkFormatError(f"{e}; fix or remove that line") from None
    if suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):  # {"data": [...]} and similar wrappers
            lists = [v for v in data.values() if isinstance(v, list)]
            if len(lists) == 1:
                data = lists[0]
        if not isinstance(data, list):
            raise BenchmarkFormatError(f"{path}: expected a JSON list of objects, got {type(data).__name__}")
        return data
    raise BenchmarkFormatError(f"{path}: unsupported file type {suffix!r}; use .parquet, .jsonl or .json")


def parse_column_map(spec: str) -> dict[str, str]:
    """`question=q,answer=gt,images=img` -> dict. Keys: question, answer, images, domain, entity_count, id."""
    allowed = {"question", "answer", "images", "domain", "entity_count", "id"}
    out = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, sep, col = part.partition("=")
        if not sep or key.strip() not in allowed or not col.strip():
            raise BenchmarkFormatError(f"bad column mapping {part!r}: write FIELD=COLUMN with FIELD one of "
                                       f"{sorted(allowed)}, e.g. question=query,answer=gt_answer,images=image")
        out[key.strip()] = col.strip()
    missing = {"question", "answer"} - set(out)
    if missing:
        raise BenchmarkFormatError(f"column mapping {spec!r} lacks {sorted(missing)}")
    return out


def _mapped(cmap: dict[str, str]) -> RowFn:
    def fn(r: dict, i: int, root: Path, bench: str) -> EvalItem:
        return EvalItem(id=f"{bench}/{_str(r.get(cmap.get('id', 'id')), str(i))}", benchmark=bench,
                        question=_clean_question(str(r[cmap["question"]])), answers=_answers(r.get(cmap["answer"])),
                        image_refs=_images([r.get(cmap["images"])] if "images" in cmap else [], root, f"{bench} row {i}"),
                        domain=_str(r.get(cmap["domain"])) if "domain" in cmap else "unknown",
                        entity_count=_int(r.get(cmap["entity_count"])) if "entity_count" in cmap else -1)
    return fn


def detect_shape(cols: set[str]) -> str | None:
    return next((name for name, s in SHAPES.items() if _matches(s, cols)), None)


def benchmark_file(path: str | os.PathLike) -> Path:
    """The one benchmark file `path` names (a file, or a folder holding exactly one .parquet/.jsonl)."""
    p = Path(path)
    if p.is_dir():
        found = sorted([*p.glob("*.parquet"), *p.glob("*.jsonl")])
        if len(found) != 1:
            raise BenchmarkFormatError(f"{p} is a folder with {len(found)} .parquet/.jsonl files "
                                       f"({[f.name for f in found][:6]}); pass one file")
        p = found[0]
    if not p.exists():
        raise FileNotFoundError(f"benchmark file {str(p)!r} does not exist")
    return p


def load_benchmark(path: str | os.PathLike, *, fmt: str | None = None, columns: str | dict[str, str] | None = None,
                   name: str | None = None, image_root: str | os.PathLike | None = None,
                   limit: int | None = None) -> list[EvalItem]:
    """Read a local benchmark file into items. `fmt` forces a shape; `columns` maps an unknown one."""
    p = benchmark_file(path)
    rows = _read_rows(p)
    if not rows:
        raise BenchmarkFormatError(f"{p}: no rows")
    cols = set().union(*(r.keys() for r in rows[:50]))
    if columns is not None:
        cmap = parse_column_map(columns) if isinstance(columns, str) else dict(columns)
        absent = {k: c for k, c in cmap.items() if c not in cols}
        if absent:  # a typo must not silently make the benchmark text-only or unlabelled
            raise BenchmarkFormatError(
                f"{p}: --columns names column(s) the file does not have: "
                + ", ".join(f"{k}={c}" for k, c in absent.items()) + f". Columns found: {sorted(cols)}")
        fn, shape_name = _mapped(cmap), "columns"
        bench = name or p.stem
    else:
        shape_name = fmt or detect_shape(cols)
        if shape_name is None or shape_name not in SHAPES:
            known = "; ".join(f"{k}: {' + '.join('|'.join(a) for a in s.required)}" for k, s in SHAPES.items())
            what = f"unknown format {fmt!r}" if fmt else "cannot tell which benchmark format this is"
            raise BenchmarkFormatError(
                f"{p}: {what}. Columns found: {sorted(cols)}. Known shapes need: {known}. Pass --format NAME, or "
                f"--columns question=COL,answer=COL,images=COL for another layout.")
        fn = SHAPES[shape_name].fn
        bench = name or (SHAPES[shape_name].default_name if shape_name != "imeb" else p.stem)
    root = Path(image_root) if image_root else p.parent
    items: list[EvalItem] = []
    for i, r in enumerate(rows[:limit] if limit else rows):
        try:
            item = fn(r, i, root, bench)
        except KeyError as e:
            raise BenchmarkFormatError(f"{p} row {i}: column {e.args[0]!r} missing for format {shape_name!r}; "
                                       f"columns in that row: {sorted(r)}") from None
        if not item.question.strip():
            raise BenchmarkFormatError(f"{p} row {i}: empty question (format {shape_name!r})")
        if not item.answers:
            raise BenchmarkFormatError(f"{p} row {i}: no reference answer (format {shape_name!r}); the judge needs one")
        items.append(item)
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        # Duplicate ids would break resume; fall back to positional ids, which are stable for a fixed file.
        dup = next(k for k, n in Counter(ids).items() if n > 1)
        log.warning("%s: item ids are not unique (e.g. %r appears twice); using positional ids "
                    "(<benchmark>/row<N>) instead", p, dup)
        for i, it in enumerate(items):
            it.id = f"{it.benchmark}/row{i}"
    return items
