"""Question templates and the small programs that define their answers.

Every synthesized question carries a `program` (plain JSON) saying how its answer follows from the
entities' facts: `evaluate` runs it. The generator computes answers with it, and a test recomputes
them from facts parsed back out of the corpus text, so "answerable from the corpus" is checked, not
assumed.

Visual ops (entities = those in the mosaic): argmax / argmin (which), compare_lr (leftmost vs
rightmost box), count_gt / count_eq (count), sum / range (aggregate), combine (one fact of the entity
picked by another). Textual op: constraints (the only entity of the class meeting all constraints).

A question is only asked when its answer is unique: ties ("which is tallest" with two equally tall towers, two
equal values on the left and the right) are detected (`ambiguous`) and another question is drawn. Sums are only
asked about additive facts (schema type `quantity`); facts may be ints or floats.
"""
from __future__ import annotations

import math
import random
from typing import Any

from .gallery import EntityClass, FactSpec

_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def _num_text(value: Any) -> str:
    """A number as written in answers and questions: float noise rounded away, 3.0 written 3."""
    if isinstance(value, float):
        value = round(value, 6)
        return str(int(value)) if value.is_integer() else str(value)
    return str(value)


def _value_variants(spec: FactSpec, value: Any) -> list[str]:
    out = [_num_text(value)]
    if spec.unit:
        out.append(f"{out[0]} {spec.unit}")
    return out


def _count_variants(n: int) -> list[str]:
    return [str(n)] + ([_NUMBER_WORDS[n]] if n < len(_NUMBER_WORDS) else [])


def _centre_x(box: list[float]) -> float:
    return (box[0] + box[2]) / 2


def satisfies(value: Any, c: dict[str, Any]) -> bool:
    """Whether a fact value meets one constraint `{"cmp": ">" | "<" | "=", "value": ...}`."""
    if c["cmp"] == ">":
        return value > c["value"]
    if c["cmp"] == "<":
        return value < c["value"]
    return value == c["value"]


def evaluate(program: dict[str, Any], facts: dict[str, dict[str, Any]],
             boxes: dict[str, list[float]] | None = None) -> Any:
    """The answer of `program` given `facts` (entity name -> fact key -> value) and mosaic `boxes`."""
    op, names = program["op"], list(facts)
    key = program.get("fact")
    if op in ("argmax", "argmin"):
        pick = max if op == "argmax" else min
        return pick(names, key=lambda n: facts[n][key])
    if op == "compare_lr":
        if boxes is None:
            raise ValueError("compare_lr needs the mosaic boxes (entity name -> normalized box)")
        left = min(names, key=lambda n: _centre_x(boxes[n]))
        right = max(names, key=lambda n: _centre_x(boxes[n]))
        return max((left, right), key=lambda n: facts[n][key])
    if op == "count_gt":
        return sum(facts[n][key] > program["threshold"] for n in names)
    if op == "count_eq":
        return sum(facts[n][key] == program["value"] for n in names)
    if op == "sum":
        return sum(facts[n][key] for n in names)
    if op == "range":
        values = [facts[n][key] for n in names]
        return max(values) - min(values)
    if op == "combine":
        pick = max if program["pick"] == "max" else min
        return facts[pick(names, key=lambda n: facts[n][program["by"]])][key]
    if op == "constraints":
        hits = [n for n in names if all(satisfies(facts[n][c["fact"]], c) for c in program["constraints"])]
        if len(hits) != 1:
            raise ValueError(f"constraints {program['constraints']} match {len(hits)} entities, not exactly one")
        return hits[0]
    raise ValueError(f"unknown program op {op!r}")


def ambiguous(program: dict[str, Any], facts: dict[str, dict[str, Any]],
              boxes: dict[str, list[float]] | None = None) -> bool:
    """True when `program` has no single answer: a tie for the highest / lowest, or equal values compared."""
    op, names = program["op"], list(facts)
    if op in ("argmax", "argmin", "combine"):
        key = program["by"] if op == "combine" else program["fact"]
        values = [facts[n][key] for n in names]
        best = max(values) if op == "argmax" or program.get("pick") == "max" else min(values)
        return values.count(best) > 1
    if op == "compare_lr":
        left = min(names, key=lambda n: _centre_x(boxes[n]))
        right = max(names, key=lambda n: _centre_x(boxes[n]))
        return facts[left][program["fact"]] == facts[right][program["fact"]]
    return False


def _between(low: float, high: float) -> float:
    """A short number t with low <= t < high (low < high): the threshold of "how many have more than t"."""
    for digits in range(0, 7):
        t = round((low + high) / 2, digits) if digits else math.floor((low + high) / 2)
        if low <= t < high:
            return t
    return low


def visual_question(rng: random.Random, cls: EntityClass, facts: dict[str, dict[str, Any]],
                    boxes: dict[str, list[float]],
                    tries: int = 8) -> tuple[str, dict[str, Any], list[str], list[str]] | None:
    """(question, program, answers, facts used) for a mosaic of `facts`' entities, or None if none fits (every
    draw of `tries` had a tied answer)."""
    for _ in range(tries):
        made = _visual_question(rng, cls, facts, boxes)
        if made is None or not ambiguous(made[1], facts, boxes):
            return made
    return None


def _visual_question(rng: random.Random, cls: EntityClass, facts: dict[str, dict[str, Any]],
                     boxes: dict[str, list[float]]) -> tuple[str, dict[str, Any], list[str], list[str]] | None:
    names = list(facts)
    numeric = [f for f in cls.facts if f.asked and f.numeric and all(f.key in facts[n] for n in names)]
    categorical = [f for f in cls.facts if f.asked and not f.numeric and all(f.key in facts[n] for n in names)]
    ops = []
    if numeric:
        ops += ["argmax", "argmin", "count_gt", "range"] + (["sum"] if any(f.additive for f in numeric) else [])
        centres = sorted(_centre_x(boxes[n]) for n in names)
        if centres[1] - centres[0] > 0.02 and centres[-1] - centres[-2] > 0.02:
            ops.append("compare_lr")
        if len(numeric) + len(categorical) >= 2:
            ops.append("combine")
    if categorical:
        ops.append("count_eq")
    if not ops:
        return None
    op = rng.choice(ops)
    p, n_ent = cls.plural, len(names)
    if op in ("argmax", "argmin"):
        f = rng.choice(numeric)
        word = "highest" if op == "argmax" else "lowest"
        q = rng.choice([f"Which of the {p} in the image has the {word} {f.label}? Answer with its name.",
                        f"Identify every one of the {n_ent} {p} shown. Which one has the {word} {f.label}?"])
        program = {"op": op, "fact": f.key}
    elif op == "compare_lr":
        f = rng.choice(numeric)
        q = (f"Compare the leftmost and the rightmost of the {p} in the image: which of the two is {f.greater} "
             f"(has the greater {f.label})? Answer with its name.")
        program = {"op": op, "fact": f.key}
    elif op == "count_gt":
        f = rng.choice(numeric)
        vals = sorted({facts[n][f.key] for n in names})
        i = rng.randrange(len(vals) - 1) if len(vals) > 1 else 0
        threshold = _between(vals[i], vals[i + 1]) if len(vals) > 1 else vals[0]
        unit = f" {f.unit}" if f.unit else ""
        q = f"How many of the {p} in the image have a {f.label} greater than {_num_text(threshold)}{unit}?"
        program = {"op": op, "fact": f.key, "threshold": threshold}
    elif op == "count_eq":
        f = rng.choice(categorical)
        value = facts[rng.choice(names)][f.key]
        q = f"How many of the {p} in the image have {value} as their {f.label}?"
        program = {"op": op, "fact": f.key, "value": value}
    elif op in ("sum", "range"):
        f = rng.choice([f for f in numeric if f.additive] if op == "sum" else numeric)
        unit = f" (in {f.unit})" if f.unit else ""
        q = (f"What is the total {f.label} of all the {p} in the image{unit}?" if op == "sum" else
             f"What is the difference between the largest and the smallest {f.label} among the {p} in the "
             f"image{unit}?")
        program = {"op": op, "fact": f.key}
    else:  # combine
        by = rng.choice(numeric)
        target = rng.choice([f for f in numeric + categorical if f.key != by.key])
        pick = rng.choice(("max", "min"))
        word = "highest" if pick == "max" else "lowest"
        q = f"What is the {target.label} of the one among the {p} in the image with the {word} {by.label}?"
        program = {"op": op, "by": by.key, "pick": pick, "fact": target.key}
    answer = evaluate(program, facts, boxes)
    spec = cls.fact(program["fact"])
    if op in ("count_gt", "count_eq"):
        answers = _count_variants(answer)
    elif isinstance(answer, str) and answer in facts:
        answers = [answer]
    else:
        answers = _value_variants(spec, answer)
    used = sorted({program["fact"], program.get("by", program["fact"])})
    return q, program, answers, used


def _constraint_text(spec: FactSpec, c: dict[str, Any]) -> str:
    unit = f" {spec.unit}" if spec.unit else ""
    if c["cmp"] == ">":
        return f"has a {spec.label} above {_num_text(c['value'])}{unit}"
    if c["cmp"] == "<":
        return f"has a {spec.label} below {_num_text(c['value'])}{unit}"
    return f"has {c['value']} as its {spec.label}"


def _nice_threshold(rng: random.Random, value: float, other: float, above: bool) -> float | None:
    """A round-ish threshold t with value > t >= other (above) or value < t <= other, if one exists: a multiple of
    the coarsest step that fits (100, 50, … 1, then 0.5, 0.1, … for float facts)."""
    for step in (100, 50, 10, 5, 1, 0.5, 0.1, 0.05, 0.01, 0.001):
        if above:  # other <= k*step < value
            ks = range(math.ceil(other / step), math.ceil(value / step))
        else:  # value < k*step <= other
            ks = range(math.floor(value / step) + 1, math.floor(other / step) + 1)
        if ks:
            k = rng.choice(ks)
            t = k * step if step >= 1 else round(k * step, 3)
            if (other <= t < value) if above else (value < t <= other):
                return t
    return None


def textual_question(rng: random.Random, cls: EntityClass, facts: dict[str, dict[str, Any]], target: str,
                     min_constraints: int = 2) -> tuple[str, dict[str, Any], list[str], list[str]] | None:
    """A multi-constraint question whose only answer in `facts` (the whole class) is `target`."""
    specs = [f for f in cls.facts if f.asked and f.key in facts[target]]
    rng.shuffle(specs)
    constraints: list[dict[str, Any]] = []
    alive = [n for n in facts if n != target]
    for spec in specs:
        if len(constraints) >= min_constraints and not alive:
            break
        v = facts[target][spec.key]
        if spec.numeric:
            others = [facts[n][spec.key] for n in alive] or [v + (1 if rng.random() < 0.5 else -1)]
            above = rng.random() < 0.5
            side = [o for o in others if (o < v if above else o > v)]
            if not side:
                above, side = not above, [o for o in others if (o < v if not above else o > v)]
            if not side:
                continue
            # Cut between the target and a random other on that side (a cut that removes at least one).
            t = _nice_threshold(rng, v, rng.choice(side), above)
            if t is None:
                continue
            c = {"fact": spec.key, "cmp": ">" if above else "<", "value": t}
        else:
            c = {"fact": spec.key, "cmp": "=", "value": v}
        constraints.append(c)
        alive = [n for n in alive if satisfies(facts[n][spec.key], c)]
    if alive or len(constraints) < min_constraints:
        return None
    program = {"op": "constraints", "constraints": constraints, "class": cls.name}
    parts = [_constraint_text(cls.fact(c["fact"]), c) for c in constraints]
    q = (f"Which of the {cls.plural} described in the knowledge base " + ", ".join(parts[:-1]) + f", and {parts[-1]}? "
         "Answer with its name.")
    assert evaluate(program, facts) == target
    return q, program, [target], [c["fact"] for c in constraints]
