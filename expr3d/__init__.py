"""expr3d: 3D dense geometry-guided facial expression synthesis by adversarial learning, in Keras 3."""
from expr3d.labels import ACTION_UNITS, EXPRESSIONS, NUM_EXPRESSIONS, expression_id, expression_name

__version__ = "0.1.0"
