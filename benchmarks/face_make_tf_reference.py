"""Run the ORIGINAL retinaface==1.1.1 frozen graph in TensorFlow and save its detections as the port's reference.

Not part of the project environment: run it with a throwaway venv that has TensorFlow, e.g.

    python3.11 -m venv /tmp/tfref && /tmp/tfref/bin/pip install tensorflow-cpu scikit-image pillow
    /tmp/tfref/bin/python benchmarks/face_make_tf_reference.py \
        --wheel .howhot/models/_downloads/retinaface-1.1.1-py3-none-any.whl

Input protocol (the test repeats it exactly): decode with Pillow, convert to RGB uint8, zero-pad bottom/right to a
multiple of 32 (as the package's ``predict`` does), feed float32 0-255 to ``x:0`` and read ``Identity:0``: rows of
(x1, y1, x2, y2, 5 landmarks, landmark-valid, score) as fractions of the padded input; the graph keeps faces scoring
≥ 0.5 after NMS at IoU 0.4. We store pixels in the padded input.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

STEP = 32
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SHARED_IMAGES = [  # a few real photos: colour and grayscale FG-NET, and London studio portraits
    "fgnet/images/001A02.JPG",
    "fgnet/images/002A03.JPG",
    "fgnet/images/010A01.JPG",
    "frl_london/images/001_03.jpg",
    "frl_london/images/010_03.jpg",
]
OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "face_retinaface_tf_reference.json"


def pad32(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    return np.pad(rgb, ((0, -h % STEP), (0, -w % STEP), (0, 0)))


def astronaut_pair(astronaut: np.ndarray) -> np.ndarray:
    """Two faces of different sizes in one image: the astronaut and a 2x-subsampled copy to its right."""
    canvas = np.zeros((512, 768, 3), dtype=np.uint8)
    canvas[:, :512] = astronaut
    canvas[:256, 512:] = astronaut[::2, ::2]
    return canvas


def main() -> None:
    import tensorflow as tf

    parser = argparse.ArgumentParser()
    parser.add_argument("--wheel", type=Path, required=True)
    args = parser.parse_args()
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(zipfile.ZipFile(args.wheel).read("retinaface/src/frozen_graph.pb"))
    wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
    run = wrapped.prune(wrapped.graph.as_graph_element("x:0"), wrapped.graph.as_graph_element("Identity:0"))

    from skimage import data

    images: list[tuple[str, str, np.ndarray]] = [
        ("skimage:astronaut", "", data.astronaut()),
        ("skimage:astronaut_pair", "", astronaut_pair(data.astronaut())),
    ]
    for rel in SHARED_IMAGES:
        path = SHARED / rel
        if not path.exists():
            raise SystemExit(f"missing {path}: pick other files in SHARED_IMAGES")
        images.append((rel, hashlib.sha256(path.read_bytes()).hexdigest(), np.asarray(Image.open(path).convert("RGB"))))

    records = []
    for source, sha, rgb in images:
        x = pad32(rgb).astype(np.float32)
        out = run(tf.constant(x[None])).numpy()
        h, w = x.shape[:2]
        faces = []
        for row in out:
            xy = row[:14].reshape(7, 2) * [w, h]
            faces.append({
                "box": np.round(xy[:2].reshape(-1), 3).tolist(),
                "landmarks": np.round(xy[2:], 3).tolist(),
                "score": round(float(row[15]), 5),
            })
        records.append(
            {"source": source, "sha256": sha, "image_shape": list(rgb.shape), "input_shape": [h, w], "faces": faces}
        )
        print(source, rgb.shape, len(faces), [f["score"] for f in faces][:5])
    OUT.write_text(json.dumps({
        "generator": "benchmarks/face_make_tf_reference.py",
        "tensorflow": tf.__version__,
        "graph": "retinaface==1.1.1 retinaface/src/frozen_graph.pb",
        "protocol": "Pillow RGB, zero-pad bottom/right to a multiple of 32, float32 0-255; "
                    "graph NMS IoU 0.4, score>=0.5",
        "images": records,
    }, indent=1) + "\n")


if __name__ == "__main__":
    main()
