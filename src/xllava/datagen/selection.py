"""Which images go to the teacher: Visual Genome annotations, main objects, shards and a limit.

X-LLaVA chose Visual Genome images by their number of main objects (about 3 to 10) and gave the
teacher each image's main-object list. Here a main object is an annotated object whose box covers at
least `main_object_min_area` of the image; Visual Genome often annotates one object several times, so
objects with the same name and box count once. Shards are drawn by a hash of the image id, so a shard
keeps its images when the annotation file is reordered or filtered.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from PIL import Image

from xllava.datagen.config import SelectionConfig


class AnnotationError(ValueError):
    """Bad annotation input; the message names the file, the entry and the field."""

    def __init__(self, path: Path, entry: int | str, field_name: str, message: str):
        super().__init__(f"{path}: entry {entry}: field {field_name!r}: {message}")


@dataclass(frozen=True)
class MainObject:
    object_id: int | str | None
    name: str
    attributes: tuple[str, ...]
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 as fractions of the image size

    @property
    def label(self) -> str:
        return f"{self.name} ({', '.join(self.attributes)})" if self.attributes else self.name


@dataclass
class SelectedImage:
    image_id: str
    path: Path  # the file on disk
    rel_path: str  # as written in training records, relative to the image root
    digest: str  # sha256 of the file's bytes: part of every request key
    objects: list[MainObject]
    relations: list[tuple[str, str, str]] = field(default_factory=list)  # (subject, predicate, object) labels


@dataclass
class Selection:
    images: list[SelectedImage]
    counts: dict[str, int]  # why images were left out, and how many were kept


def _load_json_list(path: Path) -> list:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise AnnotationError(path, f"line {err.lineno}", "<file>", f"not valid JSON ({err.msg})") from err
    if not isinstance(data, list):
        raise AnnotationError(path, 0, "<file>", "must be a JSON list of per-image entries")
    return data


def _resolve_image(root: Path, cfg: SelectionConfig, image_id: str, url: str | None) -> Path | None:
    candidates: list[Path] = []
    if url:
        parsed = urlparse(url)
        if parsed.scheme in ("", "file"):
            candidates.append(root / parsed.path)
        candidates.append(root / cfg.image_dir / Path(parsed.path).name)
    candidates += [root / cfg.image_dir / f"{image_id}{ext}" for ext in (".jpg", ".png", ".jpeg", ".webp")]
    return next((c for c in candidates if c.is_file()), None)


def _object_name(obj: dict, path: Path, entry: int, index: int) -> str:
    names = obj.get("names")
    if isinstance(names, list) and names and isinstance(names[0], str):
        return names[0].strip()
    if isinstance(obj.get("name"), str):  # Visual Genome 1.0 wrote a single `name`
        return obj["name"].strip()
    raise AnnotationError(path, entry, f"objects[{index}].names", "needs a non-empty list of strings")


def _main_objects(entry: dict, path: Path, i: int, size: tuple[int, int] | None,
                  cfg: SelectionConfig) -> list[MainObject]:
    objects = entry.get("objects")
    if not isinstance(objects, list):
        raise AnnotationError(path, i, "objects", "must be a list")
    seen: set[tuple] = set()
    out: list[tuple[float, MainObject]] = []
    for j, obj in enumerate(objects):
        if not isinstance(obj, dict):
            raise AnnotationError(path, i, f"objects[{j}]", "must be an object")
        name = _object_name(obj, path, i, j)
        try:
            x, y, w, h = (float(obj[k]) for k in ("x", "y", "w", "h"))
        except (KeyError, TypeError, ValueError) as err:
            raise AnnotationError(path, i, f"objects[{j}].x/y/w/h", "needs numeric x, y, w, h") from err
        if (name, x, y, w, h) in seen:
            continue
        seen.add((name, x, y, w, h))
        width, height = size or (max(x + w, 1.0), max(y + h, 1.0))
        area = (w * h) / (width * height)
        if area < cfg.main_object_min_area:
            continue
        attrs = tuple(a.strip() for a in obj.get("attributes", []) or [] if isinstance(a, str) and a.strip())
        box = (round(x / width, 3), round(y / height, 3), round((x + w) / width, 3), round((y + h) / height, 3))
        out.append((area, MainObject(obj.get("object_id"), name, attrs, box)))
    out.sort(key=lambda pair: -pair[0])  # largest first: the prompt lists the most prominent objects
    return [o for _, o in out]


def _relations(path: Path) -> dict[str, list[dict]]:
    by_image: dict[str, list[dict]] = {}
    for i, entry in enumerate(_load_json_list(path)):
        if not isinstance(entry, dict) or "image_id" not in entry:
            raise AnnotationError(path, i, "image_id", "each entry needs an image_id")
        rels = entry.get("relationships", [])
        if not isinstance(rels, list):
            raise AnnotationError(path, i, "relationships", "must be a list")
        by_image[str(entry["image_id"])] = rels
    return by_image


def _relation_labels(rels: list[dict], objects: list[MainObject], limit: int) -> list[tuple[str, str, str]]:
    label = {o.object_id: o.label for o in objects if o.object_id is not None}
    out = []
    for r in rels:
        try:
            s, o = label.get(r["subject"]["object_id"]), label.get(r["object"]["object_id"])
            predicate = str(r["predicate"]).strip().lower()
        except (KeyError, TypeError):
            continue  # a relation we cannot tie to two main objects is only a missing hint
        if s and o and predicate:
            out.append((s, predicate, o))
    return out[:limit]


def in_shard(image_id: str, shard: int, num_shards: int) -> bool:
    digest = hashlib.sha256(image_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % num_shards == shard


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def select_images(root: Path, cfg: SelectionConfig, only_ids: set[str] | None = None) -> Selection:
    """The images to send, in annotation-file order, with their main objects and relation hints."""
    root = Path(root).resolve()
    objects_path = root / cfg.objects_file
    if not objects_path.is_file():
        raise FileNotFoundError(f"{objects_path}: Visual Genome objects.json not found")
    rel_path = root / cfg.relationships_file if cfg.relationships_file else None
    relations = _relations(rel_path) if rel_path and rel_path.is_file() else {}
    counts = {"annotated": 0, "not_requested": 0, "other_shard": 0, "missing_image": 0,
              "too_few_objects": 0, "too_many_objects": 0, "over_limit": 0, "selected": 0}
    images: list[SelectedImage] = []
    for i, entry in enumerate(_load_json_list(objects_path)):
        if not isinstance(entry, dict) or "image_id" not in entry:
            raise AnnotationError(objects_path, i, "image_id", "each entry needs an image_id")
        counts["annotated"] += 1
        image_id = str(entry["image_id"])
        if only_ids is not None and image_id not in only_ids:
            counts["not_requested"] += 1
            continue
        if not in_shard(image_id, cfg.shard, cfg.num_shards):
            counts["other_shard"] += 1
            continue
        path = _resolve_image(root, cfg, image_id, entry.get("image_url"))
        if path is None:
            counts["missing_image"] += 1
            continue
        size = None
        if cfg.main_object_min_area > 0:
            with Image.open(path) as im:  # reads the header only
                size = im.size
        objects = _main_objects(entry, objects_path, i, size, cfg)
        if len(objects) < cfg.min_main_objects:
            counts["too_few_objects"] += 1
            continue
        if len(objects) > cfg.max_main_objects:
            counts["too_many_objects"] += 1
            continue
        if cfg.limit is not None and len(images) >= cfg.limit:
            counts["over_limit"] += 1
            continue
        listed = objects[: cfg.max_listed_objects]
        images.append(SelectedImage(
            image_id=image_id,
            path=path,
            rel_path=path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path),
            digest=file_sha256(path),
            objects=listed,
            relations=_relation_labels(relations.get(image_id, []), listed, cfg.max_listed_relations),
        ))
    counts["selected"] = len(images)
    return Selection(images, counts)
