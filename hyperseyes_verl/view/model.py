"""One episode as the viewer sees it, whatever source it came from (eval run, PRS folder, verl rollout dump).

Plain dataclasses: loaders fill them, the renderers read them. Everything a model wrote (reasoning, calls,
answers, search hits) is kept as raw text here and escaped only when HTML is written.
"""
from __future__ import annotations

import hashlib
import io
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from hyperseyes_verl.ugs.images import fit_long_side, to_pixels

Box = tuple[float, float, float, float]
_DECODED: OrderedDict[str, Image.Image] = OrderedDict()  # per process: the last decoded input images
_DECODED_MAX = 8

# Index-page outcome of an episode. "unjudged": a source without a verdict (a verl dump without `acc`).
VERDICTS = ("correct", "wrong", "no_answer", "error", "unjudged")


@dataclass
class ImageRef:
    """Where an image's pixels come from: a file, encoded bytes, a PIL image, or a box of another image.

    A crop is re-cut from its parent with the environment's own pixel rule (`ugs.images.to_pixels`), so eval
    runs and rollout dumps, which keep no crop pixels, still show every crop.
    """

    path: str | None = None
    data: bytes | None = None
    pil: Image.Image | None = None
    parent: "ImageRef | None" = None
    box: Box | None = None
    _key: str | None = field(default=None, repr=False, compare=False)

    def key(self) -> str:
        """Stable content key: equal keys are the same pixels, so a thumbnail is written once per run."""
        if self._key is None:
            self._key = self._content_key()
        return self._key

    def _content_key(self) -> str:
        if self.parent is not None:
            return hashlib.sha1(f"{self.parent.key()}|{self.box}".encode()).hexdigest()
        if self.path is not None:
            p = Path(self.path)
            st = p.stat() if p.exists() else None
            return hashlib.sha1(f"{p.resolve()}|{st and st.st_size}|{st and st.st_mtime_ns}".encode()).hexdigest()
        if self.data is not None:
            return hashlib.sha1(self.data).hexdigest()
        if self.pil is not None:
            return hashlib.sha1(self.pil.tobytes() + repr(self.pil.size).encode()).hexdigest()
        return "none"

    def load(self, crop_max_side: int = 1000) -> Image.Image:
        """RGB pixels as the model saw them: inputs at full size, crops at the environment's long-side cap
        (`UGSConfig.crop_max_side`), so a crop of a crop is cut from the resized crop, as the registry does."""
        if self.parent is not None:
            src = self.parent.load(crop_max_side)
            left, top, right, bottom = to_pixels(self.box, src.width, src.height)  # type: ignore[arg-type]
            return fit_long_side(src.crop((left, top, right, bottom)), crop_max_side)
        if self.pil is not None:
            return self.pil.convert("RGB")
        if not self.known:
            raise ValueError("this image has no pixels (source unknown)")
        key = self.key()
        if key not in _DECODED:  # an input is cut into several crops on one page: decode it once
            _DECODED[key] = Image.open(io.BytesIO(self.data) if self.data is not None else self.path).convert("RGB")
            while len(_DECODED) > _DECODED_MAX:
                _DECODED.popitem(last=False)
        return _DECODED[key]

    @property
    def known(self) -> bool:
        return any(v is not None for v in (self.path, self.data, self.pil)) or (
            self.parent is not None and self.parent.known)


@dataclass
class Hit:
    title: str
    snippet: str = ""
    url: str = ""
    score: float | None = None


@dataclass
class SearchView:
    """One search: a text query, a crop, or a whole image; its hits or its failure."""

    hits: list[Hit] = field(default_factory=list)
    failure_kind: str | None = None
    failure_message: str = ""


@dataclass
class QueryView:
    query: str
    search: SearchView = field(default_factory=SearchView)


@dataclass
class CropView:
    """One requested box: the id it consumed, on which image, and what came of it."""

    image_id: str
    source_id: str | None
    box: Box | None  # clamped to [0, 1] as the environment does; None when the value was not a box
    ok: bool
    error_kind: str | None = None
    reason: str = ""
    search: SearchView | None = None
    image: ImageRef | None = None  # the crop's pixels (stored or re-cut)


@dataclass
class CallView:
    """One executed (or refused) tool call of a turn, with everything its observation said about it."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    crops: list[CropView] = field(default_factory=list)
    queries: list[QueryView] = field(default_factory=list)
    whole_images: list[tuple[str, SearchView]] = field(default_factory=list)  # (image id, search)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (kind, message)


@dataclass
class Turn:
    """One assistant turn and the observation that answered it."""

    index: int  # 1-based
    text: str  # the raw assistant text
    reason: str | None = None
    answer: str | None = None
    calls: list[CallView] = field(default_factory=list)
    turn_errors: list[tuple[str, str]] = field(default_factory=list)  # blocks that could not be parsed, refusals
    hints: list[str] = field(default_factory=list)  # budget hint lines of the observation
    observation_text: str | None = None  # the raw observation, for what the structured view does not cover


@dataclass
class Episode:
    uid: str  # unique in the site; also the page's file name stem
    source: str  # eval | prs | rollout
    run: str  # display name of the run / folder / dump it came from
    item_id: str = ""
    question: str = ""
    gold: list[str] = field(default_factory=list)
    prediction: str | None = None
    verdict: str = "unjudged"  # one of VERDICTS
    judge_source: str | None = None
    reward: float | None = None
    step: int | None = None
    tool_rounds: int = 0
    tool_calls: int = 0
    searches: int = 0
    searches_per_round: list[int] = field(default_factory=list)
    tool_errors: dict[str, int] = field(default_factory=dict)
    search_failure_kinds: dict[str, int] = field(default_factory=dict)
    finish_reason: str | None = None
    generated_tokens: int | None = None
    input_images: list[ImageRef] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    trace: dict[str, Any] = field(default_factory=dict)  # rounds, searches, reference, bonus, category
    training: dict[str, Any] = field(default_factory=dict)  # OPD eligibility / teacher status, HDPO advantages
    details: dict[str, Any] = field(default_factory=dict)  # everything else the source recorded
    notes: list[str] = field(default_factory=list)  # what this view could not show, and why

    @property
    def width(self) -> float:
        """Searches per tool round: the parallel width."""
        return self.searches / self.tool_rounds if self.tool_rounds else 0.0

    @property
    def crop_failures(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.turns:
            for c in t.calls:
                for crop in c.crops:
                    if not crop.ok and crop.error_kind:
                        out[crop.error_kind] = out.get(crop.error_kind, 0) + 1
        return out


def verdict_of(acc: float | None, answered: bool | None, error: bool = False) -> str:
    """The index outcome from a judge score and whether an answer was given (a missing answer is its own class)."""
    if error:
        return "error"
    if answered is False:
        return "no_answer"
    if acc is None:
        return "unjudged"
    return "correct" if acc > 0.5 else "wrong"
