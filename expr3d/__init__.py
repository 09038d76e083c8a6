"""expr3d: 3D dense geometry-guided facial expression synthesis by adversarial learning, in Keras 3."""
import os as _os

# A quiet expr3d command sets this for the processes it starts (e.g. spawned workers): they are quiet too
# (expr3d.quiet.quiet_start_up, --verbosity).
if _os.environ.get("EXPR3D_QUIET_START_UP"):
    from expr3d import quiet as _quiet

    _quiet.quiet_start_up()

from expr3d.labels import ACTION_UNITS, EXPRESSIONS, NUM_EXPRESSIONS, expression_id, expression_name

__version__ = "0.1.0"
