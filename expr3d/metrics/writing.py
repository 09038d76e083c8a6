"""What the evaluations share: their --metrics lists and how they write an evaluation folder (results.json,
results.md, arrays.npz, figures/): `metrics/loop.py` (StarGAN runs), `transfer_evaluation` and `action_unit_control`."""
import os

import numpy as np

from expr3d import storage


def json_safe(value):
    """`value` with numpy scalars as Python numbers and non-finite floats as None (results.json is strict JSON)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if np.isfinite(value) else None
    return value


def parse_names(text, known, runs):
    """"a,b" (or "all", or a list) -> the names of `known` in the order given; ValueError naming an unknown one
    (`runs`: which runs they are metrics of, e.g. "--model=transfer")."""
    names = [n.strip() for n in text.split(",") if n.strip()] if isinstance(text, str) else list(text)
    if names == ["all"]:
        return list(known)
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ValueError(f"--metrics: {', '.join(unknown) or '(empty)'} is not a metric of {runs} runs; they are: "
                         f"{', '.join(known)}")
    return list(dict.fromkeys(names))


def write_results(folder, replaced, writes, document, arrays, draw_figures, markdown):
    """Replace what an earlier evaluation wrote in `folder` (an `outputs.OutputFolder`; `replaced`: the names its
    `check` returned) with `document` (results.json, NaN as null), `markdown(document)` (results.md), `arrays`
    (arrays.npz) and the figures `draw_figures(directory)` returns ({name: path}, recorded in the document)."""
    output = folder.path
    folder.remove_written(replaced)
    folder.makedirs("figures")
    folder.record(*writes)
    if arrays:
        tmp = os.path.join(output, f".arrays-{os.getpid()}.npz")
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, os.path.join(output, "arrays.npz"))
    document["figures"] = draw_figures(os.path.join(output, "figures"))
    document = json_safe(document)
    storage.atomic_write_json(os.path.join(output, "results.json"), document)
    storage.atomic_write_bytes(os.path.join(output, "results.md"), markdown(document).encode("utf-8"))
    folder.remove_written([n for n in folder.written() if not os.path.exists(os.path.join(output, n))])
    return document
