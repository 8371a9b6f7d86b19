"""The entity gallery that synthesis draws from: images, facts, and the search corpus describing them.

Two sources, one format. `build_demo_gallery` renders a deterministic, offline gallery of invented
entities (procedural images with no text on them, facts sampled per class). `load_user_gallery` reads a
user's own image folder plus a facts JSONL:

    {"name": "Eiffel Tower", "class": "landmark", "image": "eiffel.jpg",
     "facts": {"height": 330, "year": 1889, "country": "France"},
     "units": {"height": "m"},            # optional, per numeric fact
     "description": "A wrought-iron lattice tower in Paris."}   # optional

and, optionally, a schema (JSON or YAML; `hyperseyes synth --schema`) saying what each fact is, per class:

    landmark:
      plural: landmarks                      # optional, default class + "s"
      facts:
        height: {type: quantity, unit: m, greater: taller}   # numbers that add up: sums, ranges, comparisons
        year:   {type: number}               # numbers that only compare (years, ranks): never summed
        country: {type: category}            # equal / not equal (counts, constraints)
        architect: {type: text}              # stated in the corpus, never asked about

Without a schema a fact whose values are all numbers (int or float) is a `number` (compared, never summed:
a "total year" means nothing), anything else a `category`; declare summable facts as `quantity`.

`write_gallery` turns either into the files `hyperseyes index build` reads (docs/CONTRACTS.md §6):
`corpus.jsonl` (one prose document per entity, every fact stated in one parseable sentence),
`images/` + `images.jsonl` (one reference image per entity) and `entities.jsonl` (the gallery itself).
"""
from __future__ import annotations

import colorsys
import json
import math
import random
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from PIL import Image, ImageDraw
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hyperseyes_verl.utils.jsonl import read_jsonl

URL_ROOT = "https://gallery.hyperseyes.local"


@dataclass(frozen=True)
class FactSpec:
    """One fact of a class. `sentence` is how the corpus states it ({name}, {value}, {unit})."""

    key: str
    label: str  # noun phrase used in questions: "height"
    numeric: bool
    unit: str = ""
    sentence: str = "The {label} of {name} is {value}{unit}."
    low: int = 0  # numeric range of the demo gallery
    high: int = 0
    choices: tuple[str, ...] = ()  # categorical values of the demo gallery
    greater: str = "greater"  # comparative used in questions ("taller", "heavier")
    additive: bool = True  # a sum over entities means something (heights yes, years no)
    asked: bool = True  # False: stated in the corpus only, never the subject of a question (schema type `text`)

    def render(self, name: str, value: Any) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return self.sentence.format(name=name, value=value, unit=unit, label=self.label)

    def pattern(self, name: str) -> re.Pattern:
        """Regex that reads this fact's value back from a corpus document about `name`."""
        unit = f" {re.escape(self.unit)}" if self.unit else ""
        parts = re.split(r"(\{name\}|\{value\}|\{unit\}|\{label\})", self.sentence)
        rx = ""
        for p in parts:
            if p == "{name}":
                rx += re.escape(name)
            elif p == "{value}":
                rx += r"(-?\d+(?:\.\d+)?)" if self.numeric else r"(.+?)"
            elif p == "{unit}":
                rx += unit
            elif p == "{label}":
                rx += re.escape(self.label)
            else:
                rx += re.escape(p)
        return re.compile(rx)

    def parse(self, text: str) -> Any:
        """A value read back by `pattern` as the fact's type (int or float for numbers, else the text)."""
        if not self.numeric:
            return text.strip()
        return float(text) if "." in text else int(text)


@dataclass(frozen=True)
class EntityClass:
    name: str  # "landmark"
    plural: str  # "landmarks"
    intro: str  # "{name} is a landmark in the {country} region."
    facts: tuple[FactSpec, ...]

    def fact(self, key: str) -> FactSpec:
        for f in self.facts:
            if f.key == key:
                return f
        raise KeyError(f"class {self.name!r} has no fact {key!r}; known: {[f.key for f in self.facts]}")


_REGIONS = ("Ostland", "Varenia", "Kelmark", "Sudoria", "Ardent Coast", "Belmire")
_COLOURS = ("Crimson", "Azure", "Amber", "Emerald", "Violet", "Ivory")

DEMO_CLASSES: tuple[EntityClass, ...] = (
    EntityClass("landmark", "landmarks", "{name} is a landmark tower.", (
        FactSpec("height", "height", True, "metres", "{name} rises {value}{unit} above the ground.", 40, 600,
                 greater="taller"),
        FactSpec("year", "completion year", True, "", "Construction of {name} was completed in {value}.", 1700, 2020, additive=False),
        FactSpec("region", "region", False, "", "{name} stands in the region of {value}.", choices=_REGIONS),
    )),
    EntityClass("bird", "birds", "{name} is a species of bird.", (
        FactSpec("wingspan", "wingspan", True, "cm", "The wingspan of {name} reaches {value}{unit}.", 12, 320,
                 greater="wider"),
        FactSpec("weight", "body weight", True, "grams", "An adult {name} weighs about {value}{unit}.", 8, 9000,
                 greater="heavier"),
        FactSpec("region", "home region", False, "", "{name} is native to {value}.", choices=_REGIONS),
    )),
    EntityClass("flag", "flags", "{name} is the flag of a fictional province.", (
        FactSpec("adopted", "adoption year", True, "", "The flag {name} was adopted in {value}.", 1600, 2020, additive=False),
        FactSpec("population", "province population", True, "thousand",
                 "The province flying {name} has a population of {value}{unit}.", 5, 9000),
        FactSpec("colour", "dominant colour", False, "", "The dominant colour of {name} is {value}.",
                 choices=_COLOURS),
    )),
    EntityClass("logo", "logos", "{name} is the logo of a fictional company.", (
        FactSpec("founded", "founding year", True, "", "The company behind {name} was founded in {value}.", 1850,
                 2022, additive=False),
        FactSpec("employees", "number of employees", True, "", "The company behind {name} employs {value} people.",
                 10, 90000),
        FactSpec("region", "headquarters region", False, "", "The company behind {name} is headquartered in {value}.",
                 choices=_REGIONS),
    )),
    EntityClass("car", "cars", "{name} is a fictional car model.", (
        FactSpec("speed", "top speed", True, "km/h", "{name} reaches a top speed of {value}{unit}.", 90, 420,
                 greater="faster"),
        FactSpec("year", "launch year", True, "", "{name} was first sold in {value}.", 1900, 2024, additive=False),
        FactSpec("region", "country of manufacture", False, "", "{name} is manufactured in {value}.",
                 choices=_REGIONS),
    )),
)

_SYLLABLES = ("ka", "lo", "mer", "vi", "dra", "sen", "tor", "ul", "ban", "qui", "zel", "mo", "rha", "fen", "ith",
              "gar", "pol", "nyx", "or", "sal", "ve", "dun", "cas", "ri")
_SUFFIX = {"landmark": "Spire", "bird": "Finch", "flag": "Banner", "logo": "Mark", "car": "Coupe"}


@dataclass
class Entity:
    name: str
    cls: str
    image: Path  # absolute path of the reference image
    facts: dict[str, Any]
    description: str = ""

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")


@dataclass
class Gallery:
    classes: dict[str, EntityClass]
    entities: list[Entity] = field(default_factory=list)

    def of_class(self, cls: str) -> list[Entity]:
        return [e for e in self.entities if e.cls == cls]

    def by_name(self, name: str) -> Entity:
        for e in self.entities:
            if e.name == name:
                return e
        raise KeyError(f"no entity named {name!r} in the gallery")


def _invent_name(rng: random.Random, cls: str, taken: set[str]) -> str:
    while True:
        word = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()
        name = f"{word} {_SUFFIX.get(cls, 'One')}"
        if name not in taken:
            taken.add(name)
            return name


def _colour(rng: random.Random, light: bool) -> tuple[int, int, int]:
    h = rng.random()
    s = rng.uniform(0.45, 0.95)
    v = rng.uniform(0.8, 1.0) if light else rng.uniform(0.25, 0.6)
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return int(r * 255), int(g * 255), int(b * 255)


def render_entity_image(rng: random.Random, cls: str, size: int = 160) -> Image.Image:
    """A name-less emblem: class silhouette + background pattern + a mirrored 5x5 identicon.

    Colours, pattern and identicon bits are drawn from `rng`, so entities differ in both colour
    histogram and spatial layout (what a deterministic image fingerprint sees).
    """
    bg, fg, accent = _colour(rng, True), _colour(rng, False), _colour(rng, False)
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    pattern = rng.choice(("stripes", "dots", "checker", "diagonal"))
    step = rng.choice((12, 16, 20))
    for i in range(0, size, step):
        for j in range(0, size, step):
            if pattern == "stripes" and (i // step) % 2 == 0:
                d.rectangle([i, 0, i + step // 2, size], fill=accent)
            elif pattern == "dots":
                d.ellipse([i + 3, j + 3, i + 7, j + 7], fill=accent)
            elif pattern == "checker" and ((i + j) // step) % 2 == 0:
                d.rectangle([i, j, i + step // 3, j + step // 3], fill=accent)
            elif pattern == "diagonal" and i == j:
                d.line([i, 0, 0, i], fill=accent, width=3)
    s = size
    if cls == "landmark":
        d.polygon([(s * 0.5, s * 0.08), (s * 0.72, s * 0.92), (s * 0.28, s * 0.92)], fill=fg)
    elif cls == "bird":
        d.ellipse([s * 0.15, s * 0.3, s * 0.85, s * 0.75], fill=fg)
        d.polygon([(s * 0.8, s * 0.45), (s * 0.97, s * 0.5), (s * 0.8, s * 0.55)], fill=accent)
    elif cls == "flag":
        bands = rng.randint(2, 4)
        for b in range(bands):
            d.rectangle([s * 0.1, s * (0.15 + 0.7 * b / bands), s * 0.9, s * (0.15 + 0.7 * (b + 0.5) / bands)],
                        fill=fg)
    elif cls == "logo":
        d.ellipse([s * 0.1, s * 0.1, s * 0.9, s * 0.9], outline=fg, width=int(s * 0.08))
    elif cls == "car":
        d.rounded_rectangle([s * 0.1, s * 0.4, s * 0.9, s * 0.7], radius=int(s * 0.06), fill=fg)
        for cx in (0.27, 0.73):
            d.ellipse([s * (cx - 0.09), s * 0.62, s * (cx + 0.09), s * 0.8], fill=accent)
    else:
        d.rectangle([s * 0.15, s * 0.15, s * 0.85, s * 0.85], outline=fg, width=int(s * 0.06))
    cell = s * 0.08
    x0, y0 = s * 0.3, s * 0.3
    for r in range(5):
        for c in range(3):
            if rng.random() < 0.5:
                for cc in {c, 4 - c}:
                    d.rectangle([x0 + cc * cell, y0 + r * cell, x0 + (cc + 1) * cell - 1, y0 + (r + 1) * cell - 1],
                                fill=accent if (r + c) % 2 else fg)
    return img


def build_demo_gallery(out_dir: str | Path, per_class: int = 12, seed: int = 0, image_size: int = 160) -> Gallery:
    """Render `per_class` invented entities for each demo class into `out_dir/images/`.

    Numeric facts are distinct within a class, so "which is tallest" has one answer.
    """
    if per_class < 2:
        raise ValueError(f"per_class={per_class}: a class needs at least 2 entities to compare; use >= 2")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    taken: set[str] = set()
    gallery = Gallery(classes={c.name: c for c in DEMO_CLASSES})
    for cls in DEMO_CLASSES:
        numeric = {f.key: rng.sample(range(f.low, f.high + 1), per_class) for f in cls.facts if f.numeric}
        for i in range(per_class):
            name = _invent_name(rng, cls.name, taken)
            facts: dict[str, Any] = {}
            for f in cls.facts:
                facts[f.key] = numeric[f.key][i] if f.numeric else rng.choice(f.choices)
            ent = Entity(name=name, cls=cls.name, image=Path(), facts=facts)
            path = out / "images" / f"{cls.name}_{ent.slug}.png"
            render_entity_image(rng, cls.name, image_size).save(path)
            ent.image = path.resolve()
            gallery.entities.append(ent)
    return gallery


class FactSchema(BaseModel):
    """What one fact of a user's class is (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["quantity", "number", "category", "text"] = Field(
        description="quantity: numbers that add up (sum, range, compare); number: numbers that only compare "
        "(years, ranks); category: equal or not; text: stated in the corpus, never asked about")
    unit: str = Field("", description="unit written after numbers, e.g. 'm'")
    label: str | None = Field(None, description="noun phrase in questions (default: the key, '_' as spaces)")
    greater: str = Field("greater", description="comparative in questions, e.g. 'taller'")


class ClassSchema(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plural: str | None = Field(None, description="plural in questions (default: class name + 's')")
    facts: dict[str, FactSchema] = Field(default_factory=dict, description="fact key -> what it is")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def load_schema(path: str | Path) -> dict[str, ClassSchema]:
    """A facts schema file (JSON or YAML): class name -> ClassSchema. Errors name the class and the field."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())  # JSON is YAML
    except yaml.YAMLError as e:
        raise ValueError(f"schema {str(path)!r} is neither JSON nor YAML: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"schema {str(path)!r} must map class names to {{plural, facts}}, got {type(data).__name__}")
    out = {}
    for cls, body in data.items():
        try:
            out[str(cls)] = ClassSchema.model_validate(body)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(x) for x in first["loc"])
            raise ValueError(f"schema {str(path)!r}, class {cls!r}, {where}: {first['msg']} (types: quantity, "
                             f"number, category, text)") from None
    return out


def _user_class(cls: str, values: dict[str, list[tuple[str, Any]]], units: dict[str, str],
                schema: ClassSchema | None, where: str) -> EntityClass:
    """The class of a user's entities: each fact typed by the schema, or inferred from its values (all numbers ->
    `number`, compared but never summed; else `category`)."""
    specs = []
    declared = schema.facts if schema else {}
    for key in sorted(values):
        inferred = "number" if all(_is_number(v) for _, v in values[key]) else "category"
        fs = declared.get(key) or FactSchema(type=inferred)
        if fs.type in ("quantity", "number"):
            bad = [(name, v) for name, v in values[key] if not _is_number(v)]
            if bad:
                raise ValueError(f"{where}: fact {key!r} of class {cls!r} is a {fs.type} but entity {bad[0][0]!r} "
                                 f"gives {bad[0][1]!r}: write a number, or declare it a category in the schema")
        label = fs.label or key.replace("_", " ")
        specs.append(FactSpec(key, label, fs.type in ("quantity", "number"), fs.unit or units.get(key, ""),
                              "The " + label + " of {name} is {value}{unit}.", greater=fs.greater,
                              additive=fs.type == "quantity", asked=fs.type != "text"))
    plural = (schema.plural if schema and schema.plural else None) or cls + "s"
    return EntityClass(cls, plural, "{name} is a " + cls + ".", tuple(specs))


def load_user_gallery(images_dir: str | Path, facts_file: str | Path, schema_file: str | Path | None = None) -> Gallery:
    """Read a user's image folder + facts JSONL (+ optional schema; formats in the module docstring)."""
    images_dir, facts_file = Path(images_dir), Path(facts_file)
    rows = read_jsonl(facts_file, required=("name", "class", "image", "facts"), what="entity")
    schema = load_schema(schema_file) if schema_file else {}
    for row in rows:
        if not isinstance(row["facts"], dict):
            raise ValueError(f"{facts_file}: entity {row['name']!r}: facts must be an object {{key: value}}, got "
                             f"{row['facts']!r}")
        if not (images_dir / row["image"]).is_file():
            raise ValueError(f"{facts_file}: entity {row['name']!r}: image {row['image']!r} not found under "
                             f"{images_dir}; the image path is relative to the image folder")
    values: dict[str, dict[str, list[tuple[str, Any]]]] = {}
    units: dict[str, dict[str, str]] = {}
    for row in rows:
        for key, value in row["facts"].items():
            values.setdefault(row["class"], {}).setdefault(key, []).append((row["name"], value))
        for key, unit in (row.get("units") or {}).items():
            units.setdefault(row["class"], {})[key] = unit
    for cls, body in schema.items():
        unknown = sorted(set(body.facts) - set(values.get(cls, {})))
        if cls not in values or unknown:
            raise ValueError(f"schema {str(schema_file)!r} describes " + (f"class {cls!r}, which no entity of "
                             f"{facts_file} has" if cls not in values else f"facts {unknown} of class {cls!r} that "
                             "no entity gives") + ": fix the name or drop it")
    gallery = Gallery(classes={c: _user_class(c, v, units.get(c, {}), schema.get(c), str(facts_file))
                               for c, v in values.items()})
    names: set[str] = set()
    for row in rows:
        if row["name"] in names:
            raise ValueError(f"duplicate entity name {row['name']!r} in {facts_file}; names must be unique")
        names.add(row["name"])
        cls = gallery.classes[row["class"]]
        facts = {k: (v if cls.fact(k).numeric else str(v)) for k, v in row["facts"].items()}
        gallery.entities.append(Entity(name=row["name"], cls=row["class"], image=(images_dir / row["image"]).resolve(),
                                       facts=facts, description=row.get("description", "")))
    return gallery


def load_classes(path: str | Path) -> dict[str, EntityClass]:
    """The classes of a gallery from the `classes.json` that `write_gallery` wrote (what the scripted strategies
    need to read facts back out of search results)."""
    data = json.loads(Path(path).read_text())
    out = {}
    for name, body in data.items():
        facts = tuple(FactSpec(**{**f, "choices": tuple(f.get("choices", ()))}) for f in body["facts"])
        out[name] = EntityClass(name, body["plural"], body.get("intro", "{name} is a " + name + "."), facts)
    return out


def entity_document(gallery: Gallery, ent: Entity) -> str:
    cls = gallery.classes[ent.cls]
    parts = [cls.intro.format(name=ent.name)]
    if ent.description:
        parts.append(ent.description)
    for f in cls.facts:
        if f.key in ent.facts:
            parts.append(f.render(ent.name, ent.facts[f.key]))
    return " ".join(parts)


def write_gallery(gallery: Gallery, out_dir: str | Path) -> dict[str, Path]:
    """Write entities.jsonl, corpus.jsonl, images.jsonl and classes.json (+ copy images into out_dir/images
    if elsewhere)."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    paths = {k: out / f"{k}.jsonl" for k in ("entities", "corpus", "images")}
    with paths["entities"].open("w") as fe, paths["corpus"].open("w") as fc, paths["images"].open("w") as fi:
        for ent in gallery.entities:
            rel = f"images/{ent.image.name}"
            if ent.image.resolve() != (out / rel).resolve():
                rel = f"images/{ent.cls}_{ent.slug}{ent.image.suffix}"
                shutil.copyfile(ent.image, out / rel)  # the bytes as given: no re-encoding
            url = f"{URL_ROOT}/{ent.cls}/{ent.slug}"
            text = entity_document(gallery, ent)
            fe.write(json.dumps({"name": ent.name, "class": ent.cls, "image": rel, "facts": ent.facts}) + "\n")
            fc.write(json.dumps({"id": f"{ent.cls}/{ent.slug}", "title": ent.name, "text": text, "url": url,
                                 "image": rel}) + "\n")
            cls = gallery.classes[ent.cls]
            fi.write(json.dumps({"path": rel, "title": ent.name, "text": cls.intro.format(name=ent.name), "url": url,
                                 "entity": ent.name}) + "\n")
    (out / "classes.json").write_text(json.dumps(
        {c.name: {"plural": c.plural, "intro": c.intro,
                  "facts": [f.__dict__ | {"choices": list(f.choices)} for f in c.facts]}
         for c in gallery.classes.values()}, indent=1))
    return paths
