"""Deployment: SavedModel signatures for TF Serving, TFLite conversion + parity, the face crop / paste-back pipeline.

Modules:
    signatures  the serving graph (resize/normalise/validate in-graph) and the SavedModel export
    inference   inference clones of the generators (4-D instance norm, sub-pixel up-sampling) that TFLite delegates
    tflite      TFLite conversion of the generator (fp32, fp16, int8, int8_full), LiteRT runner, parity report
    paste       feathered paste-back of a translated crop into the photo
    pipeline    photo -> face crop (expr3d.imaging.faces) -> any generator -> pasted results (shared by expr3d.lite
                and expr3d.synthesize)
"""
