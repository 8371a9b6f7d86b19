"""RL / SFT parquet load through verl 0.9.1's dataset classes with a tiny Qwen2.5-VL processor."""
from __future__ import annotations

import pandas as pd
import pytest
from PIL import Image

from hyperseyes_verl.data.convert import ConvertConfig, convert_benchmark
from hyperseyes_verl.data.parquet import png_bytes, rl_rows, sft_rows, write_parquet
from hyperseyes_verl.data.prs import PRSConfig, read_results, run_prs
from hyperseyes_verl.testing.fake_chat_server import EpisodeScript, FakeChatServer
from hyperseyes_verl.utils.openai_chat import EndpointConfig, OpenAIChatClient
from test_prs import SCRIPT, backend, make_items

pytestmark = pytest.mark.verl


@pytest.fixture(scope="module")
def prs_dir(tmp_path_factory):
    import asyncio

    root = tmp_path_factory.mktemp("pq")
    items = make_items(root / "items")[:3]

    async def go():
        with FakeChatServer(EpisodeScript(SCRIPT)) as srv:
            async with OpenAIChatClient(EndpointConfig(base_url=srv.base_url, backoff_s=0)) as client:
                await run_prs(items, backend(), client, PRSConfig(model="t", max_rounds=2), root / "prs",
                              progress=False)

    asyncio.run(go())
    return root, items


def _processor(path):
    from verl.utils import hf_processor, hf_tokenizer

    tok, proc = hf_tokenizer(path), hf_processor(path)
    assert proc is not None, "tiny processor failed to load (cpu patch inactive?)"
    return tok, proc


def test_rl_parquet_loads_through_the_verl_dataset(prs_dir, tiny_qwen25_dir, tmp_path):
    from omegaconf import OmegaConf

    from hyperseyes_verl.verl.dataset import HyperEyesDataset

    root, items = prs_dir
    results = read_results(root / "prs" / "results.jsonl")
    textual = {"id": "t-1", "question": "Which spire is oldest?", "answers": ["Old Spire"], "images": [],
               "index": 9, "domain": "landmark"}
    rows = rl_rows(items + [textual], results)
    path = write_parquet(rows, tmp_path / "rl.parquet")
    tok, proc = _processor(tiny_qwen25_dir)
    cfg = OmegaConf.create({"prompt_key": "prompt", "image_key": "images", "max_prompt_length": 4096,
                            "filter_overlong_prompts": False, "return_raw_chat": True, "cache_dir": str(tmp_path)})
    ds = HyperEyesDataset(data_files=[str(path)], tokenizer=tok, config=cfg, processor=proc)
    assert len(ds) == 4
    by_index = {}
    for k in range(len(ds)):
        row = ds[k]
        by_index[row["extra_info"]["index"]] = row
    a, b, c, t = by_index[0], by_index[1], by_index[2], by_index[9]
    assert a["agent_name"] == "hyperseyes_agent" and a["data_source"] == "hyperseyes/synth"
    assert (a["extra_info"]["ref_rounds"], a["extra_info"]["ref_searches"]) == (2, 4)
    assert (b["extra_info"]["ref_rounds"], b["extra_info"]["ref_searches"]) == (1, 4)
    assert (c["extra_info"]["ref_rounds"], t["extra_info"]["ref_rounds"]) == (-1, -1)
    assert a["reward_model"] == {"style": "rule", "ground_truth": "Beta Spire"}
    assert list(a["extra_info"]["answers"]) == ["Beta Spire"] and a["extra_info"]["split"] == "train"
    user = [m for m in a["raw_prompt"] if m["role"] == "user"][0]
    images = [blk["image"] for blk in user["content"] if blk["type"] == "image"]
    assert len(images) == 1 and images[0].size == (240, 120)
    assert all(blk["type"] != "image" for m in t["raw_prompt"] if isinstance(m["content"], list)
               for blk in m["content"])


def test_sft_parquet_loads_through_verl_multiturn_sft_dataset(prs_dir, tiny_qwen25_dir, tmp_path):
    """Through the stage-1 dataset class (verl's MultiTurnSFTDataset + the image cap and the JSON `tools` column
    our rows carry: the same tool schemas RL prompts render)."""
    from omegaconf import OmegaConf

    from hyperseyes_verl.verl.sft_dataset import HyperEyesSFTDataset as MultiTurnSFTDataset

    root, _ = prs_dir
    rows = sft_rows(read_results(root / "prs" / "results.jsonl"), root / "prs")
    assert len(rows) == 2  # solved items only
    path = write_parquet(rows, tmp_path / "sft.parquet")
    tok, proc = _processor(tiny_qwen25_dir)
    cfg = OmegaConf.create({"messages_key": "messages", "image_key": "images", "max_length": 8192,
                            "pad_mode": "no_padding", "truncation": "error"})
    ds = MultiTurnSFTDataset(str(path), tok, cfg, processor=proc)
    df = pd.read_parquet(path)
    for k in range(len(ds)):
        item = ds[k]
        msgs = list(df.iloc[k]["messages"])
        ids, mask = item["input_ids"], item["loss_mask"]
        # loss on assistant turns only: the masked tokens decode to exactly the assistant texts
        learned = tok.decode(ids[mask.bool()])
        assistant = [m["content"] for m in msgs if m["role"] == "assistant"]
        assert all(text in learned for text in assistant)
        assert "Question:" not in learned and "<|image_pad|>" not in learned
        text = tok.decode(ids)
        assert "# Tools" in text and '"text_search"' in text and "<tool_response>" in text and "<tool_response>" not in learned
        n_imgs = len(df.iloc[k]["images"])
        assert item["multi_modal_inputs"]["image_grid_thw"].shape[0] == n_imgs
        assert n_imgs == 1 + 2 * (df.iloc[k]["ref_rounds"] >= 1)  # input image + the round-1 crops
        assert item["position_ids"].shape[0] == 4  # M-RoPE rows (text + 3)


def _solved(observations: list[str], budget: int) -> dict:
    turns = [{"role": "system", "content": "teacher prompt"}, {"role": "user", "content": "Question: Q"}]
    for obs in observations:
        turns += [{"role": "assistant", "content": "<tool_call>...</tool_call>"}, {"role": "tool", "content": obs}]
    turns.append({"role": "assistant", "content": "<answer>A</answer>"})
    return {"id": "x", "status": "solved", "budget": budget, "ref_rounds": len(observations), "ref_searches": 2,
            "trajectory": {"messages": turns}, "trajectory_images": []}


def test_sft_row_restates_the_budget_hints_for_the_rl_environment(tmp_path):
    from hyperseyes_verl.data.parquet import sft_row
    from hyperseyes_verl.ugs.schema import system_prompt
    from hyperseyes_verl.ugs.types import UGSConfig

    q = "\nOriginal question: Q"
    teacher = _solved([f"hits 1\nYou have 1 tool round remaining.{q}",
                       f"hits 2\nYou have no tool rounds left: answer now with <answer>...</answer>.{q}"], budget=2)
    env = UGSConfig(max_tool_rounds=3, max_turns=4)
    row = sft_row(teacher, tmp_path, env=env)
    assert [m["content"] for m in row["messages"] if m["role"] == "tool"] == [
        f"hits 1{q}", f"hits 2\nYou have 1 tool round remaining.{q}"]
    assert row["messages"][0]["content"] == system_prompt(env)
    wide = sft_row(teacher, tmp_path, env=env.model_copy(update={"hint_when_rounds_left": 2}))
    assert wide["messages"][3]["content"] == f"hits 1\nYou have 2 tool rounds remaining.{q}"
    kept = sft_row(teacher, tmp_path, env=None)  # the teacher's text as it ran
    assert kept["messages"] == teacher["trajectory"]["messages"]
    with pytest.raises(ValueError, match="more than the environment's 1"):
        sft_row(teacher, tmp_path, env=UGSConfig(max_tool_rounds=1, max_turns=2))
    with pytest.raises(ValueError, match="no 'budget'"):
        sft_row({k: v for k, v in teacher.items() if k != "budget"}, tmp_path, env=env)
    refused = _solved([f"Error (round_budget): no tool rounds are left, so the 1 tool call(s) of this turn were not "
                       f"executed.\nYou have no tool rounds left: answer now with <answer>...</answer>.{q}"], 1)
    with pytest.raises(ValueError, match="refused for want of budget"):
        sft_row(refused, tmp_path, env=env)


def test_benchmark_converter(tmp_path):
    img = Image.new("RGB", (32, 32), (1, 2, 3))
    one = {"bytes": png_bytes(img)}
    pd.DataFrame({"query": ["Who?", "What?"], "pic": [[one], [one, one]],
                  "gt": ['["Ann", "Anne"]', "blue"]}).to_parquet(tmp_path / "b.parquet")
    rows = convert_benchmark(tmp_path / "b.parquet", ConvertConfig(question_col="query", image_col="pic",
                                                                   answer_col="gt", data_source="bench"))
    assert [len(r["images"]) for r in rows] == [1, 2]
    assert rows[0]["extra_info"]["answers"] == ["Ann", "Anne"] and rows[1]["reward_model"]["ground_truth"] == "blue"
    assert rows[1]["prompt"][-1]["content"].count("<image>") == 2 and rows[0]["extra_info"]["split"] == "test"
    with pytest.raises(ValueError, match="columns \\['question'\\] not found"):
        convert_benchmark(tmp_path / "b.parquet", ConvertConfig(image_col="pic", answer_col="gt"))


def test_to_parquet_cli_rl_with_val_split_and_sft(prs_dir, tmp_path):
    import json

    from hyperseyes_verl.cli import main
    from hyperseyes_verl.data.synth import write_items

    root, items = prs_dir
    items_path = write_items([{**i, "images": [i["images"][0]]} for i in items], tmp_path / "items.jsonl")
    rc = main(["to-parquet", "rl", "--items", str(items_path), "--prs", str(root / "prs"), "--out",
               str(tmp_path / "train.parquet"), "--val-out", str(tmp_path / "val.parquet"), "--val-frac", "0.5",
               "--only-solved"])
    assert rc == 0
    train, val = pd.read_parquet(tmp_path / "train.parquet"), pd.read_parquet(tmp_path / "val.parquet")
    assert len(train) + len(val) == 2  # the unsolved item is left out
    assert {r["split"] for r in train["extra_info"]} <= {"train"} and {r["split"] for r in val["extra_info"]} <= {"val"}
    assert main(["to-parquet", "sft", "--prs", str(root / "prs"), "--out", str(tmp_path / "sft.parquet")]) == 0
    sft = pd.read_parquet(tmp_path / "sft.parquet")
    assert len(sft) == 2 and set(sft["id"]) == {"it-a", "it-b"}
    assert json.dumps(list(sft.columns)) and {"messages", "images", "tools"} <= set(sft.columns)
    assert main(["to-parquet", "sft", "--prs", str(root / "prs"), "--out", str(tmp_path / "bare.parquet"),
                 "--no-tool-schemas", "--max-rounds", "3", "--max-turns", "4"]) == 0
    bare = pd.read_parquet(tmp_path / "bare.parquet")
    assert "tools" not in bare.columns and list(bare["id"]) == list(sft["id"])
    # the rows state the RL recipe's budgets, in the system prompt and in the last observation's hint
    assert "at most 3 turns with tool calls and 4 turns in all" in bare["messages"][0][0]["content"]
    assert "8 turns with tool calls" in sft["messages"][0][0]["content"]
    assert main(["to-parquet", "rl", "--items", str(items_path), "--prs", str(root / "prs"), "--out",
                 str(tmp_path / "rl3.parquet"), "--max-rounds", "3"]) == 0
    assert "at most 3 turns with tool calls" in pd.read_parquet(tmp_path / "rl3.parquet")["prompt"][0][0]["content"]
    assert main(["to-parquet", "sft", "--prs", str(root / "prs"), "--out", str(tmp_path / "x.parquet"),
                 "--max-rounds", "-1"]) == 2  # an error line, no file
    assert not (tmp_path / "x.parquet").exists()


def test_to_parquet_cli_refuses_a_val_fraction_without_a_val_file(tmp_path):
    from hyperseyes_verl.cli import main

    with pytest.raises(SystemExit, match="val rows would be dropped"):
        main(["to-parquet", "rl", "--items", str(tmp_path / "items.jsonl"), "--out", str(tmp_path / "t.parquet"),
              "--val-frac", "0.2"])
    assert not (tmp_path / "t.parquet").exists()
