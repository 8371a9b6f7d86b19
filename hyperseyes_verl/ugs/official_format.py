"""The released HyperEyes observation text (`UGSConfig.observation_format = "official"`).

A checkpoint cold-started on the release's SFT data expects this text in RL. Facts read from the release
(DeepExperience/HyperEyes, `RL/relax-hypereyes/examples/HyperEyes`: env_agent.py, formatter.py):

- the observation is ONE user message: one image per successful crop first (`<image>` each), then
  `<tool_response>{content}</tool_response>原始问题（Original Question）： {question}{hint}`;
- image_search with boxes: `裁剪成功: img_1, img_2` and/or `裁剪失败: img_3` (two spaces between the parts),
  a newline, then per searched crop `\\n[ img_1 图像搜索结果]: \\n{hits}\\n`, then per failed crop
  `\\n[ img_3 图像搜索结果]: 裁剪失败\\n`; every box failed: `所有区域裁剪均失败`; an unknown id:
  `图片ID img_9 无效`; no boxes: the whole image, `\\n[ img_0 图像搜索结果]: \\n{hits}\\n`;
- text_search: per query `[查询词 {i}]: {query} 搜索结果:\\n{hits}\\n`; no usable query:
  `未检测到有效的搜索关键词`;
- text hits `网页{i}. 相关性: {score:.2f} 标题: {title}\\n 内容: {content}\\n` joined by a blank line
  (score 0 when unknown); image hits `{i}. 网页 {i}. 相关性: {score:.2f} 标题: {title}\\n 内容: {content}\\n`
  joined by a newline (score 0.8 when unknown); no hit: `无相关信息返回`;
- hints (one tool round left / none left) are the release's bilingual sentences; a call that raised in the
  release (unknown tool, an `image_id` that is not a string) is the bare `Error: {message}` with no wrapper,
  question or hint.

The release runs only the first call of a turn; this environment runs all of them, so the contents of several
calls are joined by a newline inside the one `<tool_response>` (docs/OFFICIAL_PARITY.md lists every difference).
"""
from __future__ import annotations

from typing import Any

from hyperseyes_verl.search.base import Hit

NO_RESULTS = "无相关信息返回"
NO_QUERY = "未检测到有效的搜索关键词"
ALL_CROPS_FAILED = "所有区域裁剪均失败"
CROP_FAILED = "裁剪失败"
QUESTION_PREFIX = "原始问题（Original Question）： "
HINT_NONE_LEFT = ("\n(系统提示: 您不能再调用工具了；请直接输出 <reason><answer>)"
                  "（System hint: you have no tool calls remaining, please directly output <reason><answer>）")


def hint_sentence(rounds_left: int) -> str:
    if rounds_left <= 0:
        return HINT_NONE_LEFT
    return (f"\n(系统提示: 您还能再调用 {rounds_left} 次工具，请继续输出新的<reason>/<tool_call>或<answer>)"
            f"（System hint: you still have {rounds_left} tool call(s) remaining, please continue to output "
            "<reason>/<tool_call> or <answer>）")


def hint(rounds_left: int, hint_when_rounds_left: int) -> str:
    """The release's remaining-budget sentence ('' when no hint is due)."""
    return hint_sentence(rounds_left) if rounds_left <= hint_when_rounds_left else ""


def text_hits(hits: list[Hit]) -> str:
    if not hits:
        return NO_RESULTS
    return "\n\n".join(f"网页{i}. 相关性: {_score(h.score, 0.0)} 标题: {h.title}\n 内容: {h.snippet}\n"
                       for i, h in enumerate(hits, 1))


def image_hits(hits: list[Hit]) -> str:
    if not hits:
        return NO_RESULTS
    return "\n".join(f"{i}. 网页 {i}. 相关性: {_score(h.score, 0.8)} 标题: {h.title}\n 内容: {h.snippet}\n"
                     for i, h in enumerate(hits, 1))


def _score(score: float | None, default: float) -> str:
    return f"{default if score is None else score:.2f}"


def text_search_content(queries: list[tuple[str, list[Hit]]]) -> str:
    if not queries:
        return NO_QUERY
    return "".join(f"[查询词 {i}]: {q} 搜索结果:\n{text_hits(hits)}\n" for i, (q, hits) in enumerate(queries, 1))


def crops_content(crops: list[tuple[str, list[Hit] | None]]) -> str:
    """`crops`: (image id, hits) per requested box in order; hits None = the crop failed."""
    ok = [(cid, hits) for cid, hits in crops if hits is not None]
    failed = [cid for cid, hits in crops if hits is None]
    if not ok:
        return ALL_CROPS_FAILED
    header = "  ".join(part for part in (f"裁剪成功: {', '.join(c for c, _ in ok)}" if ok else "",
                                          f"{CROP_FAILED}: {', '.join(failed)}" if failed else "") if part)
    searched = "".join(f"\n[ {cid} 图像搜索结果]: \n{image_hits(hits)}\n" for cid, hits in ok)
    return f"{header}\n{searched}" + "".join(f"\n[ {cid} 图像搜索结果]: {CROP_FAILED}\n" for cid in failed)


def whole_image_content(image_id: str, hits: list[Hit]) -> str:
    return f"\n[ {image_id} 图像搜索结果]: \n{image_hits(hits)}\n"


def unknown_image_content(image_id: str) -> str:
    return f"图片ID {image_id} 无效"


def error_content(message: str) -> str:
    return f"Error: {message}"


def observation_text(contents: list[str], question: str, rounds_left: int, hint_when_rounds_left: int) -> str:
    """The text after the crop images: the wrapped contents, the re-stated question and the hint."""
    return (f"<tool_response>{chr(10).join(contents)}</tool_response>{QUESTION_PREFIX}{question}"
            f"{hint(rounds_left, hint_when_rounds_left)}")


def observation_message(images: list[Any], text: str) -> dict[str, Any]:
    """One user message, images first (the release's `'<image>' * n` before the text)."""
    return {"role": "user", "content": [{"type": "image", "image": im} for im in images]
            + [{"type": "text", "text": text}]}
