"""``howhot analyze`` and ``howhot eval faces``: the face and scoring pipeline in-process, for users and tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from libs.common.settings import Settings

ROUND = 2


def analyze_images(paths: list[Path], settings: Settings, with_scores: bool = True) -> list[dict[str, Any]]:
    """Per image: every face with box, landmarks, detection score, quality and (unless disabled) the ensemble's scores.

    Runs exactly the services' code (detector, alignment, scorer) without a broker or blob store.
    """
    from libs.common.alignment import align_face
    from libs.common.images import decode_image_bytes
    from services.face.detector import FaceDetector
    from services.face.quality import face_quality

    detector = FaceDetector.from_settings(settings)
    scorer = None
    if with_scores:
        from services.scoring.scorer import FaceScorer

        scorer = FaceScorer(settings.models_dir, settings.models.profile, settings.models.device)
    results = []
    for path in paths:
        try:
            image = decode_image_bytes(path.read_bytes())
        except Exception as exc:  # noqa: BLE001 - reported per image, the other images still run
            results.append({"image": str(path), "error": str(exc), "faces": []})
            continue
        faces = detector.detect(image)
        aligned = [align_face(image, face.landmarks_array()) for face in faces]
        scores = scorer.score_batch([a.chip for a in aligned], [a.landmarks for a in aligned]) if scorer else []
        entries = []
        for n, (face, chip) in enumerate(zip(faces, aligned, strict=True)):
            quality = face_quality(chip.chip, chip.landmarks).to_dict()
            entry: dict[str, Any] = {"index": n, **face.to_dict(), "quality": quality}
            if scores:
                summary = scores[n].to_dict()
                members = summary.pop("members")
                entry.update({k: (round(v, ROUND) if isinstance(v, float) else v) for k, v in summary.items()})
                entry["members"] = members
            entries.append(entry)
        results.append({"image": str(path), "width": int(image.shape[1]), "height": int(image.shape[0]),
                        "faces": entries})
    return results


def run_analyze(paths: list[str], settings: Settings, as_json: bool, no_scores: bool) -> int:
    results = analyze_images([Path(p) for p in paths], settings, with_scores=not no_scores)
    if as_json:
        print(json.dumps(results, indent=2, default=float))
        return 0
    for result in results:
        if "error" in result:
            print(f"{result['image']}: cannot read ({result['error']})")
            continue
        print(f"{result['image']}: {len(result['faces'])} face(s)")
        for face in result["faces"]:
            line = f"  #{face['index']} score {face['score']:.3f} box {face['box']}"
            if "age" in face:
                line += f" — age {face['age']:.0f} ({face['age_low']:.0f}–{face['age_high']:.0f}), {face['gender']}"
            print(line)
    return 0


def run_eval_faces(dataset: str, settings: Settings, as_json: bool, limit: int | None) -> int:
    from services.face.detector import FaceDetector
    from services.face.evaluate import evaluate_detection

    report = evaluate_detection(Path(dataset), FaceDetector.from_settings(settings), limit=limit, progress=not as_json)
    if as_json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"\n{report['dataset']}: {report['detected']}/{report['images']} images with a face "
          f"({report['detection_rate']:.2%}), {report['mean_faces_per_image']:.2f} faces/image, "
          f"{report['ms_per_image_median']:.0f} ms/image median — {report['detector']} at {report['threshold']}")
    if report["missed"]:
        print(f"missed: {', '.join(report['missed'][:20])}{' …' if len(report['missed']) > 20 else ''}")
    return 0
