"""Judges whose training resumes after its last finished epoch (the AU judge, `expr3d.metrics.au_judge`; the
expression judge, `expr3d.metrics.classifier`): each saves its whole training state after every epoch into a folder
of its own, with the recipe it belongs to, and a later call of the same recipe goes on from there."""
import json
import os

from expr3d import storage

RESUME_FILE = "resume.json"


def seed_states(model):
    """The states of the model's random seed generators (its dropout's): a Keras model's checkpoint leaves them out,
    and a resume that restarts them draws other dropout masks than the uninterrupted training."""
    return [v for v in model.non_trainable_variables if "seed_generator_state" in v.path]


def epoch_checkpointer(resume_dir, checkpoint, recipe, model, optimizer, log, desc):
    """The per-epoch checkpointer of a judge's training in `resume_dir` (an `AtomicCheckpointer` of `checkpoint`,
    the whole training state), its newest checkpoint restored. `recipe` (a JSON-able dict: data, sizes, epochs,
    seed...) is saved beside it; a folder left by another recipe is cleared first (only what this function
    wrote)."""
    import shutil

    from expr3d.training.checkpoints import AtomicCheckpointer

    recipe_path = os.path.join(resume_dir, RESUME_FILE)
    if os.path.isfile(recipe_path):
        with open(recipe_path) as handle:
            saved = json.load(handle)
        if saved != recipe:
            log.write(f"{desc}: the partial training in {resume_dir} is of another recipe; starting afresh\n")
            for name in os.listdir(resume_dir):
                if name == RESUME_FILE or name.startswith("ckpt-") or name.startswith(".tmp"):
                    path = os.path.join(resume_dir, name)
                    shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    os.makedirs(resume_dir, exist_ok=True)
    storage.atomic_write_json(recipe_path, recipe)
    optimizer.build(model.trainable_variables)  # its slots exist before a restore fills them
    checkpointer = AtomicCheckpointer(resume_dir, checkpoint, keep=1)
    restored = checkpointer.restore_latest()
    if restored is not None:
        log.write(f"{desc}: resuming after epoch {restored} of {recipe['epochs']} ({resume_dir})\n")
    return checkpointer
