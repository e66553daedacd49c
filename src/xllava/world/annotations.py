"""Scene graphs as Visual Genome files (objects.json, relationships.json) and our full scene_graphs.json.

The VG files let VG-style tooling read the world; scene_graphs.json is the complete ground truth
(objects with grid cells, derived relations, atmosphere, split) that tests recompute answers from.
`image_id` is the scene id string (e.g. "w000123") rather than VG's integer, so every file joins
on the same key as the image file name.
"""

from __future__ import annotations

from xllava.world.render import object_box
from xllava.world.scene import Scene, SceneObject


def vg_object(obj: SceneObject, image_size: int, grid_size: int) -> dict:
    x, y, w, h = object_box(obj, image_size, grid_size)
    return {
        "object_id": obj.object_id,
        "x": x,
        "y": y,
        "w": w,
        "h": h,
        "names": [obj.kind],
        "attributes": [obj.colour, obj.size],
    }


def vg_objects(scenes: list[Scene], image_size: int, grid_size: int, image_dir: str = "images") -> list[dict]:
    return [
        {
            "image_id": s.scene_id,
            "image_url": f"{image_dir}/{s.scene_id}.png",
            "objects": [vg_object(o, image_size, grid_size) for o in s.objects],
        }
        for s in scenes
    ]


def vg_relationships(scenes: list[Scene], image_size: int, grid_size: int) -> list[dict]:
    out = []
    for s in scenes:
        rels = []
        for i, r in enumerate(s.relations):
            rels.append({
                "relationship_id": int(s.objects[0].object_id // 10) * 100 + i,  # unique per world
                "predicate": r.predicate,
                "subject": vg_object(s.by_id(r.subject), image_size, grid_size),
                "object": vg_object(s.by_id(r.object), image_size, grid_size),
            })
        out.append({"image_id": s.scene_id, "relationships": rels})
    return out


def scene_graphs(scenes: list[Scene], image_dir: str = "images") -> list[dict]:
    return [{**s.to_dict(), "image": f"{image_dir}/{s.scene_id}.png"} for s in scenes]
