"""Read a training run directory (the run directory contract: config.json + models/*.keras)."""
import dataclasses
import json
import os

GEOMETRY_KINDS = ("depth", "normals")


class RunDirError(ValueError):
    """A run directory is missing a file or holds an invalid config; the message names the file."""


@dataclasses.dataclass
class Run:
    """A loaded run: the generator(s) and what the export needs to know about them.

    Args:
        model_dir: the run directory.
        config: the parsed config.json.
        image_size: the generators' training size (ModelConfig.image_size).
        geometry: "depth" or "normals" (the geometry map G_depth was trained on).
        step: the training step recorded in config.json (-1 if absent).
        g_rgb: the expression generator (keras.Model).
        g_depth: the depth translator (keras.Model) or None for a run without it.
    """

    model_dir: str
    config: dict
    image_size: int
    geometry: str
    step: int
    g_rgb: object
    g_depth: object


def read_config(model_dir):
    """config.json of `model_dir` as a dict; RunDirError naming the path when missing or invalid."""
    if not os.path.isdir(model_dir):
        raise RunDirError(f"--model_dir={model_dir!r} is not a directory (expected a training run directory with "
                          f"config.json and models/*.keras)")
    path = os.path.join(model_dir, "config.json")
    if not os.path.isfile(path):
        raise RunDirError(f"{path} is missing: {model_dir!r} is not a training run directory")
    try:
        with open(path) as f:
            config = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise RunDirError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(config, dict) or not isinstance(config.get("model_config"), dict):
        raise RunDirError(f"{path} has no \"model_config\" object (the trainer writes ModelConfig.to_dict() there)")
    return config


def geometry_of(config, where="config.json"):
    """The run's geometry kind from config.json flags ("depth" when the flag is absent)."""
    geometry = (config.get("flags") or {}).get("geometry", "depth")
    if geometry not in GEOMETRY_KINDS:
        raise RunDirError(f"{where}: flags.geometry={geometry!r}; expected one of {GEOMETRY_KINDS}")
    return geometry


def data_dir_of(config):
    """The training data directory recorded in config.json flags, or None."""
    return (config.get("flags") or {}).get("data_dir") or None


def load_run(model_dir, need_rgb=True):
    """Load the generators of a run directory.

    Args:
        model_dir: run directory (config.json, models/g_rgb.keras, models/g_depth.keras).
        need_rgb: raise if models/g_rgb.keras is missing (a stage-1-only run has no expression generator).
    """
    import keras

    import expr3d.models  # noqa: F401  (registers the classes for deserialisation)
    from expr3d.models import ModelConfig

    config = read_config(model_dir)
    config_path = os.path.join(model_dir, "config.json")
    try:
        model_config = ModelConfig.from_dict(config["model_config"])
    except (TypeError, ValueError) as e:
        raise RunDirError(f"{config_path}: invalid model_config: {e}") from e
    geometry = geometry_of(config, config_path)

    def load(key):
        path = os.path.join(model_dir, "models", f"{key}.keras")
        if not os.path.isfile(path):
            return None
        try:
            return keras.saving.load_model(path, compile=False)
        except Exception as e:  # a truncated or foreign file: say which
            raise RunDirError(f"cannot load {path}: {type(e).__name__}: {e}") from e

    g_rgb = load("g_rgb")
    if g_rgb is None and need_rgb:
        raise RunDirError(f"{os.path.join(model_dir, 'models', 'g_rgb.keras')} is missing: export needs the expression "
                          f"generator of a stage-2 (end-to-end) run; a stage-1-only run has only g_depth")
    g_depth = load("g_depth")
    return Run(model_dir=model_dir, config=config, image_size=model_config.image_size, geometry=geometry,
               step=int(config.get("step", -1)), g_rgb=g_rgb, g_depth=g_depth)
