"""Procedural 3D faces: the embedded default dataset (RGB + exact depth + normals + mask + AU labels).

Public API:
    generate_dataset(output_dir, num_identities, image_size, ...) -> dataset card (dict)
    render_face(identity, expression, pose, light, image_size) -> RenderedFace(image, depth, mask, normals)
    sample_identity(rng), sample_expression(expression_id, rng), neutral(), sample_pose(rng), sample_light(rng)
    render_example(expression, image_size, seed=0, identity=0, frontal=True) -> RenderedFace  (one quick face)

CLI: python -m expr3d.data.synthetic --output=DIR --num_identities=N --image_size=S [--seed --overwrite ...]
"""
import numpy as np

from expr3d.data.synthetic.action_units import Expression, neutral, sample_expression
from expr3d.data.synthetic.dataset import GENERATOR_VERSION, generate_dataset, plan
from expr3d.data.synthetic.face_model import Identity, sample_identity
from expr3d.data.synthetic.render import Light, Pose, RenderedFace, render_face, sample_light, sample_pose

__all__ = ["Expression", "GENERATOR_VERSION", "Identity", "Light", "Pose", "RenderedFace", "generate_dataset",
           "neutral", "plan", "render_example", "render_face", "sample_expression", "sample_identity",
           "sample_light", "sample_pose"]


def render_example(expression, image_size, seed=0, identity=0, frontal=True):
    """Render identity `identity` of `seed` with class id `expression` at full prototype strength.

    With `frontal`, pose is straight-on under a soft frontal light (what a "photo" for detection tests looks like);
    otherwise pose and light are drawn at random.
    """
    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(identity), 99)))
    face = sample_identity(rng)
    expr = neutral() if int(expression) == 0 else sample_expression(expression, rng, strength=(1.0, 1.0))
    if frontal:
        pose, light = Pose(), Light()
    else:
        pose, light = sample_pose(rng), sample_light(rng)
    return render_face(face, expr, pose, light, image_size)
