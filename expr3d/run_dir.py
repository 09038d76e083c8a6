"""The run directory: the hand-off from training (`expr3d.train`) to evaluation, export and the ablation study.

    run = RunDir("runs/depth64")
    config = run.config()                     # config.json, checked (RunDirError naming the file)
    run.geometry(config), run.generator(config), run.networks()
    g_rgb = run.load_network("g_rgb")

Layout:
    config.json                      format_version, flags, model_config, dataset card summary, versions, progress,
                                     stage/step (written by the trainer at every checkpoint)
    models/{g_rgb,d_rgb,g_depth,d_depth}.keras   the trained networks, only those trained: a stage-1-only run has no
                                     g_rgb/d_rgb, plain StarGAN without stage 1 no g_depth/d_depth
    depth/checkpoints/ckpt-<step>/   stage-1 checkpoints (`expr3d.training.checkpoints`)
    gan/checkpoints/ckpt-<step>/     stage-2 checkpoints
    <stage>/worker_data/worker-<k>/ckpt-<step>/   worker k's data position at that checkpoint (a multi-worker run
                                     sharded by file: the chief's is in its checkpoint)
    logs/{depth,gan}/, samples/      TensorBoard and sample grids; evaluation/ is `expr3d.evaluate`'s default output

config.json format versions: 2 writes `"format_version": 2`; a config without the field is version 1 (runs written
before it), read the same way, since version 2 only added the field. A newer version is refused with what to do.
Fields a reader relies on: `model_config` (`expr3d.models.ModelConfig.to_dict()`; a run written before
`model_config.generator` existed was built with StarGAN's generator), `flags.geometry` ("depth" when absent),
`flags.data_dir`, `step`.
"""
import dataclasses
import json
import os
import tempfile

from expr3d import storage

FORMAT_VERSION = 2
CONFIG_NAME = "config.json"
MODELS_DIR = "models"
NETWORKS = ("g_rgb", "d_rgb", "g_depth", "d_depth")
TRANSFER_NETWORKS = ("encoder", "decoder", "adversary", "d_rgb", "d_swap", "g_depth", "d_depth", "d_depth_au")
GEOMETRY_KINDS = ("depth", "normals")
DEFAULT_GENERATOR = "stargan"
# What a run directory holds (a folder holding anything else is not a run: the trainer refuses to write into it).
STAGE_DIRS = ("depth", "gan", "transfer")  # one per stage of any model family (training/stages.py STAGES)
# guide*: training/guide.py (the guide, and an interrupted AU guide's staging folder and training state).
ENTRIES = (CONFIG_NAME, *STAGE_DIRS, "guide", "guide.partial", "guide.resume", "logs", "models", "samples",
           "evaluation")


class RunDirError(ValueError):
    """A run directory is missing a file or holds an invalid config; the message names the file."""


def format_version(config):
    """The format version of a parsed config.json (1 when it has no `format_version`)."""
    return int(config.get("format_version", 1))


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


@dataclasses.dataclass
class TransferRun:
    """A loaded transfer run (`--model=transfer`): encoder, decoder, G_depth (None without it) and what the export
    needs to know about them (fields as `Run`)."""

    model_dir: str
    config: dict
    image_size: int
    geometry: str
    step: int
    encoder: object
    decoder: object
    g_depth: object


class RunDir:
    """One training run directory: its paths, its versioned config.json and its exported networks.

    Args:
        path: the run directory (it need not exist yet: the trainer creates it).
        flag: the flag that named it, for messages.

    Example:
    ```python
    run = RunDir("runs/depth64")
    run.write_config({"flags": {...}, "model_config": config.to_dict()})   # adds "format_version": 2
    run.save_networks({"g_rgb": g_rgb})                                    # models/g_rgb.keras, atomically
    config = run.config()
    assert run.generator(config) == "stargan" and run.networks() == ("g_rgb",)
    ```
    """

    def __init__(self, path, flag="--model_dir"):
        self.path = path
        self.flag = flag

    # --- paths --------------------------------------------------------------------------------------------------

    @property
    def config_path(self):
        return os.path.join(self.path, CONFIG_NAME)

    @property
    def models_dir(self):
        return os.path.join(self.path, MODELS_DIR)

    @property
    def logs_dir(self):
        return os.path.join(self.path, "logs")

    def stage_dir(self, stage):
        """Where a stage (one of `STAGE_DIRS`) keeps its checkpoints/."""
        return os.path.join(self.path, stage)

    def checkpoint_dir(self, stage):
        return os.path.join(self.stage_dir(stage), "checkpoints")

    def worker_data_dir(self, stage, worker):
        """Where worker `worker` of a run sharded by file keeps its data positions (`--worker_sharding=file`)."""
        return os.path.join(self.stage_dir(stage), "worker_data", f"worker-{worker}")

    def model_path(self, name):
        return os.path.join(self.models_dir, f"{name}.keras")

    def has_network(self, name):
        return os.path.isfile(self.model_path(name))

    def networks(self):
        """The networks this run has exported (models/<name>.keras present), in NETWORKS (then TRANSFER_NETWORKS)
        order."""
        return tuple(name for name in dict.fromkeys(NETWORKS + TRANSFER_NETWORKS) if self.has_network(name))

    def has_checkpoints(self):
        """Whether any stage checkpoint folder holds something (a run that trained but exported nothing yet)."""
        folders = (os.path.join(self.path, "checkpoints"),) + tuple(self.checkpoint_dir(s) for s in STAGE_DIRS)
        return any(os.path.isdir(d) and any(not n.startswith(".") for n in os.listdir(d)) for d in folders)

    def foreign_entries(self):
        """Names in the directory that a run does not hold (temporaries of config.json's atomic writes are ours)."""
        return sorted(name for name in os.listdir(self.path)
                      if name not in ENTRIES and not name.startswith(f".{CONFIG_NAME}."))

    # --- config.json --------------------------------------------------------------------------------------------

    def read_config(self):
        """config.json as saved, or None when there is none yet (the trainer's resume check)."""
        if not os.path.exists(self.config_path):
            return None
        with open(self.config_path, encoding="utf-8") as handle:
            return json.load(handle)

    def config(self):
        """config.json as a dict; RunDirError naming the path when the directory or the file is missing or invalid,
        or when it was written by a newer format than this expr3d reads."""
        if not self.path or not os.path.isdir(self.path):
            raise RunDirError(f"{self.flag}={self.path!r} is not a directory (expected a training run directory with "
                              f"config.json and models/*.keras)")
        path = self.config_path
        if not os.path.isfile(path):
            raise RunDirError(f"{path} is missing: {self.path} is not a run directory written by "
                              "`python -m expr3d.train` (expected config.json, models/, checkpoints/, logs/)")
        try:
            with open(path, encoding="utf-8") as handle:
                config = json.load(handle)
        except (OSError, ValueError) as error:
            raise RunDirError(f"{path} is not valid JSON: {error}") from error
        if not isinstance(config, dict):
            raise RunDirError(f"{path} has no \"model_config\" object (the trainer writes ModelConfig.to_dict() there)")
        version = config.get("format_version", 1)
        if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
            raise RunDirError(f"{path}: format_version {version!r} is not one this expr3d reads (1 to "
                              f"{FORMAT_VERSION}); evaluate or export it with the expr3d that trained it")
        return config

    def write_config(self, config):
        """Write `config` as config.json atomically, stamped `"format_version": FORMAT_VERSION` (first key)."""
        document = {"format_version": FORMAT_VERSION, **{k: v for k, v in config.items() if k != "format_version"}}
        storage.atomic_write_json(self.config_path, document)

    def model_config(self, config):
        """`config["model_config"]` (a dict); RunDirError naming config.json when it has none."""
        model_config = config.get("model_config")
        if not isinstance(model_config, dict):
            raise RunDirError(f"{self.config_path} has no \"model_config\" object (the trainer writes "
                              "ModelConfig.to_dict() there)")
        return model_config

    def geometry(self, config):
        """The run's geometry kind from config.json flags ("depth" when the flag is absent)."""
        geometry = (config.get("flags") or {}).get("geometry", "depth")
        if geometry not in GEOMETRY_KINDS:
            raise RunDirError(f"{self.config_path}: flags.geometry={geometry!r}; expected one of {GEOMETRY_KINDS}")
        return geometry

    @staticmethod
    def generator(config):
        """G_rgb's architecture, `model_config.generator` ("stargan" for runs written before the field existed)."""
        return (config.get("model_config") or {}).get("generator", DEFAULT_GENERATOR)

    @staticmethod
    def family(config):
        """The run's model family, `model_config.family` ("stargan" for runs written before the field existed)."""
        return (config.get("model_config") or {}).get("family", "stargan")

    @staticmethod
    def condition(config):
        """What a StarGAN-family run's G_rgb is conditioned on, `model_config.condition` ("expression" for runs
        written before the field existed, and for transfer runs)."""
        return (config.get("model_config") or {}).get("condition", "expression")

    def require_family(self, family, purpose, config=None):
        """RunDirError naming both families when this run is not of `family` (a transfer run given to the
        expression tools, or the other way round)."""
        config = self.config() if config is None else config
        found = self.family(config)
        if found != family:
            raise RunDirError(f"{self.path} holds a --model={found} run, so it cannot be {purpose} here: this tool "
                              f"takes --model={family} runs")

    @staticmethod
    def data_dir(config):
        """The training data directory recorded in config.json flags, or None."""
        return (config.get("flags") or {}).get("data_dir") or None

    @staticmethod
    def step(config):
        """The training step recorded in config.json (-1 if absent)."""
        return int(config.get("step", -1))

    # --- networks -----------------------------------------------------------------------------------------------

    def save_networks(self, networks):
        """Save each network as `models/<name>.keras`, atomically and all together: every network is written to a
        temp file in the same directory first, and only when all are complete are they renamed into place, so a
        failure (e.g. disk full: `storage.DiskFullError` naming the file and the bytes needed) leaves the previous
        set intact."""
        directory = self.models_dir
        os.makedirs(directory, exist_ok=True)
        written = []
        try:
            for name, model in networks.items():
                final = self.model_path(name)
                handle, tmp = tempfile.mkstemp(prefix=f".{name}.tmp-", suffix=".keras", dir=directory)
                os.close(handle)
                written.append((tmp, final))
                with storage.writing(final, lambda model=model: storage.weights_bytes(model), what="save the network"):
                    model.save(tmp)
                    with open(tmp, "rb") as stream:
                        os.fsync(stream.fileno())
                os.chmod(tmp, storage.default_permissions())
            for tmp, final in written:
                os.replace(tmp, final)
        finally:
            for tmp, _ in written:
                if os.path.exists(tmp):
                    os.remove(tmp)

    def load_network(self, name, required=True):
        """`models/<name>.keras` as a keras.Model (None when missing and not `required`); RunDirError naming the
        file when it is missing or does not load (a truncated or foreign file)."""
        import keras

        import expr3d.models  # noqa: F401  (registers the custom classes for deserialisation)

        path = self.model_path(name)
        if not os.path.isfile(path):
            if not required:
                return None
            raise RunDirError(f"{path} is missing: {self.path} has no exported {name}")
        try:
            return keras.saving.load_model(path, compile=False)
        except Exception as error:  # a truncated or foreign file: say which
            raise RunDirError(f"cannot load {path}: {type(error).__name__}: {error}") from error

    def require_generator(self, purpose, condition=None):
        """RunDirError naming what is missing when the run has no exported G_rgb (`purpose`: "evaluated", ...), or,
        with `condition`, when its G_rgb is conditioned otherwise (an AU-conditioned run given to a tool that asks
        for expressions)."""
        path = self.model_path("g_rgb")
        if os.path.isfile(self.config_path):
            self.require_family("stargan", purpose)
            found = self.condition(self.config())
            if condition is not None and found != condition:
                raise RunDirError(f"{self.path} holds a --condition={found} run, so it cannot be {purpose} here: this "
                                  f"tool takes --condition={condition} runs")
        if os.path.isfile(path):
            return
        hint = ("it has checkpoints but no exported models: a stage-1-only run (no G_rgb), or a run interrupted "
                "before its first export - resume training past a checkpoint" if self.has_checkpoints() else
                "it has neither models/ nor checkpoints/ - train first with `python -m expr3d.train`")
        raise RunDirError(f"{path} is missing, so {self.path} cannot be {purpose}: {hint}")

    def load_generators(self, need_rgb=True):
        """A `Run`: the generators of this run directory (G_depth None when not exported).

        Args:
            need_rgb: raise if models/g_rgb.keras is missing (a stage-1-only run has no expression generator).
        """
        from expr3d.models import ModelConfig

        config = self.config()
        self.require_family("stargan", "loaded as an expression generator", config)
        try:
            model_config = ModelConfig.from_dict(self.model_config(config))
        except (TypeError, ValueError) as error:
            if isinstance(error, RunDirError):
                raise
            raise RunDirError(f"{self.config_path}: invalid model_config: {error}") from error
        geometry = self.geometry(config)
        if need_rgb:
            self.require_generator("exported")
        return Run(model_dir=self.path, config=config, image_size=model_config.image_size, geometry=geometry,
                   step=self.step(config), g_rgb=self.load_network("g_rgb", required=need_rgb),
                   g_depth=self.load_network("g_depth", required=False))

    def load_transfer(self):
        """A `TransferRun`: the encoder and decoder (and G_depth when exported) of a `--model=transfer` run;
        RunDirError naming the family for an expression run, or the file when a network is missing."""
        from expr3d.models import ModelConfig

        config = self.config()
        self.require_family("transfer", "loaded as an expression transfer", config)
        try:
            model_config = ModelConfig.from_dict(self.model_config(config))
        except (TypeError, ValueError) as error:
            raise RunDirError(f"{self.config_path}: invalid model_config: {error}") from error
        for name in ("encoder", "decoder"):
            if not self.has_network(name):
                hint = ("it has checkpoints but no exported models yet: resume training past a checkpoint"
                        if self.has_checkpoints() else "train first with `python -m expr3d.train --model=transfer`")
                raise RunDirError(f"{self.model_path(name)} is missing, so {self.path} cannot be loaded: {hint}")
        return TransferRun(model_dir=self.path, config=config, image_size=model_config.image_size,
                           geometry=self.geometry(config), step=self.step(config),
                           encoder=self.load_network("encoder"), decoder=self.load_network("decoder"),
                           g_depth=self.load_network("g_depth", required=False))
