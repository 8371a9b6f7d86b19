"""Checks shared by both stages: unset values, importable `_target_`s, model folders, parquet files and their
columns (schema only, no rows read), API keys of web search backends."""
from __future__ import annotations

import contextlib
import glob
import importlib
import io
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from hyperseyes_verl.recipes.report import Report

def quiet(fn, *args, **kwargs):
    """Call `fn` with stdout swallowed: verl's validators print progress banners; keep the report readable."""
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()


# Sections verl never reads when their feature is off; an unset (???) value there is not a problem.
_DORMANT_WHEN = {
    "reward.reward_model.": ("reward.reward_model.enable", False),
    "distillation.": ("distillation.enabled", False),
}


def check_missing_values(cfg: DictConfig, report: Report, hints: dict[str, str]) -> None:
    """Unset values: `???` left in verl's defaults, and null in a key the recipe lists in
    `hyperseyes.recipe.required` (a recipe cannot use ??? to force a value: hydra keeps the default under it)."""
    for key in OmegaConf.select(cfg, "hyperseyes.recipe.required", default=None) or []:
        value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        if value is None or value == "" or OmegaConf.is_missing(cfg, key):
            hint = hints.get(key, f"pass {key}=<value> on the command line")
            report.fail("unset", f"{key} is required but unset: {hint}")
    for key in sorted(OmegaConf.missing_keys(cfg)):
        dormant = any(key.startswith(prefix) and OmegaConf.select(cfg, flag) is off
                      for prefix, (flag, off) in _DORMANT_WHEN.items())
        if dormant or key.startswith("critic."):
            continue
        hint = hints.get(key, f"pass {key}=<value> on the command line")
        report.fail("unset", f"{key} is required but unset (???): {hint}")


def iter_targets(node, path: str = "") -> Iterator[tuple[str, str]]:
    """(dotted key, target string) for every literal `_target_` in the config tree."""
    if isinstance(node, DictConfig):
        for key in node.keys():
            child_path = f"{path}.{key}" if path else str(key)
            if key == "_target_":
                value = node._get_node(key)._value()
                if isinstance(value, str) and "${" not in value:
                    yield child_path, value
                continue
            yield from iter_targets(node._get_node(key), child_path)
    elif isinstance(node, ListConfig):
        for i, item in enumerate(node._content or []):
            yield from iter_targets(item, f"{path}[{i}]")


def import_object(fqn: str):
    """Import `pkg.module.Name` (classes nested in modules too)."""
    module_name, _, attr = fqn.rpartition(".")
    if not module_name:
        raise ImportError(f"{fqn!r} is not a dotted path to an object")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError):
        parent = import_object(module_name)  # e.g. pkg.module.Class.Inner
        return getattr(parent, attr)


def check_targets(cfg: DictConfig, report: Report) -> None:
    seen: dict[str, str] = {}
    for key, target in iter_targets(cfg):
        if target in seen:
            continue
        seen[target] = key
        try:
            import_object(target)
        except Exception as exc:
            report.fail("import", f"{key} = {target!r} cannot be imported ({type(exc).__name__}: {exc}); "
                                  "fix the class path or install the package that provides it")


def check_fqn(value: str, key: str, report: Report, what: str):
    try:
        return import_object(value)
    except Exception as exc:
        report.fail("import", f"{key} = {value!r} ({what}) cannot be imported ({type(exc).__name__}: {exc})")
        return None


# `org/name` as the Hugging Face hub spells a model id (no leading ./ or /, one slash)
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def check_model_dir(path, key: str, report: Report, allow_missing: bool) -> bool:
    """True when `path` is a local HF checkpoint folder (config.json present). A hub id (`Qwen/Qwen3-VL-8B-Instruct`)
    is accepted as verl accepts it (downloaded at start-up) but not inspected here: a dry run stays offline."""
    if path in (None, "", "???"):
        return False
    folder = Path(os.path.expanduser(str(path)))
    if (folder / "config.json").is_file():
        return True
    if not folder.exists() and _HUB_ID.fullmatch(str(path)):
        report.note(f"{key} = {path!r} is a Hugging Face hub id: verl downloads it at start-up (the training nodes "
                    "need the hub, or `huggingface-cli download` it first); its config and tokenizer were not checked")
        return False
    if allow_missing:
        report.note(f"{key} = {path!r} not checked (--allow-missing-models)")
        return False
    why = "does not exist" if not folder.exists() else "has no config.json"
    report.fail("model", f"{key} = {str(path)!r} {why}: point it at a local Hugging Face checkpoint folder "
                         "(download it first), or pass --allow-missing-models to skip this check")
    return False


def as_file_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple, ListConfig)):
        return [str(v) for v in value]
    return [str(value)]


def check_parquet(files: Iterable[str], key: str, report: Report, required: dict[str, tuple[str, ...]]) -> list[str]:
    """Every file exists and has the required columns; `required` maps a column to required struct sub-fields.
    Returns the files that passed."""
    import pyarrow.parquet as pq

    good = []
    files = list(files)
    if not files:
        report.fail("data", f"{key} is empty: pass {key}=<parquet file(s)> written by `hyperseyes to-parquet`")
    for name in files:
        path = os.path.expanduser(name)
        matches = sorted(glob.glob(path)) if any(c in path for c in "*?[") else [path]
        if not matches or not all(os.path.isfile(m) for m in matches):
            report.fail("data", f"{key}: file {name!r} does not exist; create it with `hyperseyes to-parquet` "
                                "or fix the path (DATA_DIR)")
            continue
        for match in matches:
            try:
                schema = pq.read_schema(match)
            except Exception as exc:
                report.fail("data", f"{key}: {match!r} is not a readable parquet file ({exc})")
                continue
            missing = [c for c in required if c not in schema.names]
            if missing:
                report.fail("data", f"{key}: {match!r} lacks column(s) {missing} (has {schema.names}); "
                                    "regenerate it with `hyperseyes to-parquet`")
                continue
            for column, fields in required.items():
                kind = schema.field(column).type
                names = [kind.field(i).name for i in range(kind.num_fields)] if hasattr(kind, "num_fields") else []
                absent = [f for f in fields if f not in names]
                if fields and absent:
                    report.fail("data", f"{key}: {match!r} column {column!r} lacks field(s) {absent} "
                                        f"(has {names}); see docs/CONTRACTS.md §5")
                    break
            else:
                good.append(match)
    return good


def count_rows(files: Iterable[str]) -> int:
    """Rows of parquet files, from their footers (no data read)."""
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(f).num_rows for f in files)


def read_column(files: list[str], column: str) -> list:
    import pyarrow.parquet as pq

    values = []
    for f in files:
        values += pq.read_table(f, columns=[column]).column(column).to_pylist()
    return values


def _section_models(stage: str) -> dict:
    """hyperseyes.<name> -> the function the runtime builds that section with (the sections of HyperEyesConfig,
    so a value the trainer would refuse at start-up is refused here)."""
    from functools import partial

    from hyperseyes_verl.config import SECTIONS, section_from_mapping

    names = ("recipe", "sft") if stage == "sft" else tuple(n for n in SECTIONS if n != "sft")
    # agent_loop: check_agent_settings (merged with the agent-loop YAML entry's keys)
    return {n: None if n == "agent_loop" else partial(section_from_mapping, n) for n in names}


def section_errors(exc: BaseException, name: str) -> str:
    """A refused section, one clause per bad field, e.g.
    `hyperseyes.hdpo.w_tol: Extra inputs are not permitted (got 0.1)`."""
    from pydantic import ValidationError

    cause = exc if isinstance(exc, ValidationError) else exc.__cause__
    if not isinstance(cause, ValidationError):
        return str(exc)
    parts = []
    for err in cause.errors():
        where = ".".join(str(x) for x in (name, *err["loc"]))
        got = "" if err["type"] == "value_error" else f" (got {err.get('input')!r})"
        parts.append(f"{where}: {err['msg'].removeprefix('Value error, ')}{got}")
    return "; ".join(parts)


def check_hyperseyes_sections(cfg: DictConfig, report: Report, stage: str) -> None:
    """Every `hyperseyes.*` section built with the model its runtime uses; unknown sections (typos) refused."""
    from hyperseyes_verl.recipes.compose import select

    tree = select(cfg, "hyperseyes", {}) or {}
    models = _section_models(stage)
    # with OPD on in the hyperseyes trainer, check_distillation builds hyperseyes.opd through the trainer itself
    opd_checked_there = select(cfg, "distillation.enabled", False) and \
        select(cfg, "trainer.v1.trainer_mode") == "hyperseyes_sync"
    for name, section in tree.items():
        if name not in models:
            report.fail("hyperseyes", f"hyperseyes.{name} is not read by the {stage} stage (known sections: "
                                      f"{sorted(models)}): a typo, or a section of the other stage")
        elif models[name] is not None and not (name == "opd" and opd_checked_there):
            try:
                models[name](section)
            except Exception as exc:  # pydantic's ValidationError, or our ValueError naming the section
                report.fail("hyperseyes", f"hyperseyes.{name} would be refused at start-up: "
                                          f"{section_errors(exc, 'hyperseyes.' + name)}")


_WEB_BACKENDS = {"serper": "SERPER_API_KEY"}


def _backend_sections(node, path: str = "") -> Iterator[tuple[str, dict]]:
    if isinstance(node, dict):
        if isinstance(node.get("type"), str) and node["type"] in {*_WEB_BACKENDS, "embedded", "search_r1", "memory", "composite"}:
            yield path, node
        for k, v in node.items():
            yield from _backend_sections(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _backend_sections(v, f"{path}[{i}]")


def check_backend_keys(sections: dict, report: Report, environ: Mapping[str, str] | None = None) -> None:
    """Web search backends read their key from an environment variable: it must be set where training runs.
    `sections` maps a name (config key or file) to a plain container searched for backend configs
    (`{"type": "serper", "api_key_env": ...}`); every `*_env` field of a web backend must name a set variable.
    `environ`: default the process environment at the call (not at import: a test's monkeypatch must count)."""
    environ = os.environ if environ is None else environ
    for origin, tree in sections.items():
        for path, backend in _backend_sections(tree):
            kind = backend["type"]
            if kind == "embedded" and backend.get("index_dir") and not os.path.isdir(os.path.expanduser(str(backend["index_dir"]))):
                report.fail("search", f"{origin}:{path} embedded index_dir {backend['index_dir']!r} does not exist: "
                                      "build it with `hyperseyes index build` or fix INDEX_DIR")
            if kind not in _WEB_BACKENDS:
                continue
            env_fields = {k: v for k, v in backend.items() if k.endswith("_env") and isinstance(v, str)}
            env_fields.setdefault("api_key_env", _WEB_BACKENDS[kind])
            for field_name, var in env_fields.items():
                if not environ.get(var):
                    where = f"{origin}:{path}" if path else origin
                    report.fail("search", f"{where} uses the {kind!r} web backend but environment variable "
                                          f"{var} ({field_name}) is not set: export {var}=<key> before training "
                                          "(keys are read from the environment only)")


def check_image_token_cap(value, key: str, report: Report, dataset_class: str | None = None) -> None:
    """Both stages must show the model images at one resolution: the cap of this stage (`key`) must be the shared
    `IMAGE_TOKEN_CAP`, the one place it is set (a model cold-started at 1200 tokens per image meets other
    image-token counts in RL otherwise). For SFT the cap is applied by HyperEyesSFTDataset only."""
    from hyperseyes_verl.utils.images import IMAGE_TOKEN_CAP

    if dataset_class is not None and dataset_class != "HyperEyesSFTDataset":
        report.fail("images", f"data.custom_cls.name = {dataset_class!r} does not cap images: use "
                              "HyperEyesSFTDataset (data.custom_cls.path=pkg://hyperseyes_verl.verl.sft_dataset) "
                              f"so SFT images get the {IMAGE_TOKEN_CAP}-token cap RL uses")
        return
    if value != IMAGE_TOKEN_CAP:
        report.fail("images", f"{key} = {value!r} but the image-token cap of both stages is "
                              f"hyperseyes_verl.utils.images.IMAGE_TOKEN_CAP = {IMAGE_TOKEN_CAP}; a different cap "
                              "in one stage changes the image tokens the model sees between SFT and RL. Remove "
                              f"the override (or change IMAGE_TOKEN_CAP, which both stages read)")
