"""The face service: detect faces (RetinaFace), align them into chips (libs.common.chips) and rate chip quality.

Domain API (nothing heavy is imported here; import the modules):
- ``services.face.detector.FaceDetector`` (``from_settings``, ``detect``, ``detect_batch``) → ``DetectedFace``
- ``libs.common.alignment.align_face`` → ``AlignedFace`` (chip, chip landmarks, matrix)
- ``services.face.quality.face_quality`` → ``FaceQuality`` (blur, yaw, roll)
- ``services.face.models.convert_tf_graph.fetch`` (what ``howhot models fetch`` calls for the default detector)
"""
